#!/usr/bin/python3
"""Drives the inspector page in headless Chromium (Debian's chromium and
chromium-driver, through python3-selenium): the page shows a request made
through the tunnel within a second without a reload, opens it, shows its
headers, replays it and shows the replayed row. Saves screenshots in --out.

Started by test_inspector_browser.cpp with a running grok-server, grok and
local service; exits 0 when every step passed, 1 with the step that failed."""

import argparse
import http.client
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def until(driver, seconds, condition):
    """Waits for condition(driver). The list re-renders as requests arrive, so an
    element found a moment ago may be gone: that counts as "not yet"."""
    return WebDriverWait(driver, seconds, 0.05, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def click(driver, seconds, xpath):
    """Clicks the element at xpath, finding it again if a re-render replaced it."""
    def attempt(d):
        d.find_element(By.XPATH, xpath).click()
        return True
    until(driver, seconds, attempt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inspector", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--public-port", type=int, required=True)
    ap.add_argument("--host", required=True, help="the tunnel's Host, app.localhost")
    ap.add_argument("--out", required=True, help="directory for screenshots")
    ap.add_argument("--time-factor", type=float, default=1.0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    f = a.time_factor

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--window-size=1280,900"):
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="grok-browser-")
    opts.add_argument("--user-data-dir=" + profile)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(20 * f)
    step = "open the page"
    try:
        driver.get(a.inspector + "/")
        step = "the live stream connects"
        until(driver, 10 * f, lambda d: d.find_element(By.ID, "live").text == "live")

        step = "a request through the tunnel appears within 1 s, without a reload"
        conn = http.client.HTTPConnection("127.0.0.1", a.public_port, timeout=10 * f)
        sent = time.monotonic()
        conn.request("POST", "/echo?from=browser", body=b'{"hello":"inspector"}',
                     headers={"Host": a.host, "X-Browser-Test": "yes", "Content-Type": "application/json"})
        res = conn.getresponse()
        res.read()
        if res.status != 200:
            raise AssertionError("the tunnel answered %d" % res.status)
        row_xpath = "//tbody[@id='rows']/tr[td[@class='path' and text()='/echo?from=browser']]"
        until(driver, 1.0 * f, lambda d: d.find_elements(By.XPATH, row_xpath))
        print("row appeared %.0f ms after the request was sent" % ((time.monotonic() - sent) * 1000))
        if driver.execute_script("return performance.getEntriesByType('navigation').length") != 1:
            raise AssertionError("the page was reloaded")

        step = "open it and see its headers"
        original_id = until(driver, 2 * f, lambda d: d.find_element(By.XPATH, row_xpath).get_attribute("data-id"))
        click(driver, 2 * f, row_xpath)
        until(driver, 5 * f,
              lambda d: "X-Browser-Test" in d.find_element(By.ID, "req-headers").text)
        headers = driver.find_element(By.ID, "req-headers").text
        if "yes" not in headers or a.host not in headers:
            raise AssertionError("headers shown: %r" % headers)
        body = driver.find_element(By.ID, "req-body").text
        if '"hello": "inspector"' not in body:
            raise AssertionError("the JSON body is not shown pretty-printed: %r" % body)

        step = "press Replay and see the replayed row"
        driver.find_element(By.ID, "replay").click()
        replay_xpath = "//tbody[@id='rows']/tr[@data-replay-of='%s']" % original_id
        until(driver, 5 * f, lambda d: any(td.text.startswith("200") for r in d.find_elements(By.XPATH, replay_xpath)
                                           for td in r.find_elements(By.TAG_NAME, "td")))
        driver.save_screenshot(os.path.join(a.out, "inspector.png"))

        step = "keyboard: / focuses the filter, typing filters the list"
        driver.find_element(By.TAG_NAME, "body").send_keys("/")
        active = driver.switch_to.active_element
        if active.get_attribute("id") != "f-text":
            raise AssertionError("'/' focused %r" % active.get_attribute("id"))
        active.send_keys("no-such-request")
        until(driver, 2 * f, lambda d: not d.find_elements(By.XPATH, row_xpath))
        active.send_keys(Keys.CONTROL, "a")
        active.send_keys(Keys.BACKSPACE)
        until(driver, 2 * f, lambda d: d.find_elements(By.XPATH, row_xpath))

        step = "a narrow window has no sideways scrolling"
        driver.set_window_size(400, 900)
        until(driver, 2 * f,
              lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"))
        driver.save_screenshot(os.path.join(a.out, "inspector-narrow.png"))
        print("ok: screenshots in " + a.out)
        return 0
    except (TimeoutException, AssertionError) as e:
        print("FAILED at step: %s (%s)" % (step, str(e).strip() or type(e).__name__), file=sys.stderr)
        try:
            driver.save_screenshot(os.path.join(a.out, "inspector-failed.png"))
        except Exception:
            pass
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
