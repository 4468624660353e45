#!/usr/bin/env bash
# Package test: builds the grok .deb and checks what it would install.
#
#   check_deb.sh BUILD_DIR   run `cpack -G DEB` on BUILD_DIR's CPackConfig.cmake
#                            into a temporary directory, then check that package
#   check_deb.sh FILE.deb    check an existing package
#
# Unpacks with dpkg-deb -x / -e into a temporary root (nothing is installed on
# this machine) and checks the file layout, the control data, the maintainer
# scripts, and that the packaged grok-server accepts the packaged config.
set -euo pipefail

die() { echo "check_deb: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: $0 BUILD_DIR | FILE.deb"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -d "$1" ]; then
  build=$(realpath "$1")
  [ -f "$build/CPackConfig.cmake" ] || die "$build/CPackConfig.cmake not found (configure with cmake first)"
  command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps not found: install dpkg-dev (bash .ci/setup)"
  cpack=cpack
  if [ -f "$build/CMakeCache.txt" ]; then
    c=$(sed -n 's/^CMAKE_CPACK_COMMAND:INTERNAL=//p' "$build/CMakeCache.txt")
    [ -n "$c" ] && [ -x "$c" ] && cpack=$c
  fi
  echo "check_deb: $cpack --config $build/CPackConfig.cmake -G DEB -B $tmp/out"
  if ! (cd "$build" && "$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/out") >"$tmp/cpack.log" 2>&1; then
    cat "$tmp/cpack.log" >&2
    die "cpack failed"
  fi
  debs=("$tmp"/out/*.deb)
  if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
    cat "$tmp/cpack.log" >&2
    die "expected one .deb in $tmp/out"
  fi
  deb=${debs[0]}
else
  [ -f "$1" ] || die "$1: no such file or directory"
  deb=$(realpath "$1")
fi
echo "check_deb: package $(basename "$deb") ($(du -h "$deb" | cut -f1))"

root=$tmp/root
ctl=$tmp/control
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$ctl"

failures=0
pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; failures=$((failures + 1)); }
check() {  # DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# ---- files ------------------------------------------------------------------
for exe in usr/bin/grok-server usr/bin/grok; do
  check "$exe is an executable file" test -f "$root/$exe" -a -x "$root/$exe"
done
check "etc/grok/grok-server.yaml exists" test -f "$root/etc/grok/grok-server.yaml"
check "etc/grok/grok.yaml is not shipped (the client's configuration is per user)" test ! -e "$root/etc/grok/grok.yaml"
for doc in README.md copyright changelog.gz examples/grok.yaml; do
  check "usr/share/doc/grok/$doc exists" test -f "$root/usr/share/doc/grok/$doc"
done
check "the changelog is a gzip file" gzip -t "$root/usr/share/doc/grok/changelog.gz"
for page in man1/grok.1.gz man8/grok-server.8.gz; do
  check "usr/share/man/$page exists and renders" sh -c "zcat '$root/usr/share/man/$page' | grep -q '^\.SH NAME'"
done
if [ -f "$root/etc/grok/grok-server.yaml" ]; then
  mode=$(stat -c %a "$root/etc/grok/grok-server.yaml")
  check "etc/grok/grok-server.yaml is not world-readable (mode $mode)" test $((8#$mode & 8#007)) -eq 0
fi
unit=$root/lib/systemd/system/grok-server.service
check "lib/systemd/system/grok-server.service exists" test -f "$unit"
check "the unit's ExecStart runs /usr/bin/grok-server" grep -Eq '^ExecStart=/usr/bin/grok-server( |$)' "$unit"
# A refused reload must fail `systemctl reload`: the check runs first, then the signal.
check "the unit's first ExecReload checks the configuration" \
  sh -c "grep '^ExecReload=' '$unit' | head -n1 | grep -q -- '--check-config --config /etc/grok/grok-server.yaml'"
check "the unit's last ExecReload signals the daemon" sh -c "grep '^ExecReload=' '$unit' | tail -n1 | grep -q 'kill -HUP'"
check "postinst makes /etc/grok root:grok 0750" sh -c "grep -q 'chown root:grok /etc/grok$' '$ctl/postinst' && grep -q 'chmod 0750 /etc/grok$' '$ctl/postinst'"
check "no file outside usr/, etc/grok/, lib/systemd/system/" \
  test -z "$(cd "$root" && find . -type f ! -path './usr/*' ! -path './etc/grok/*' ! -path './lib/systemd/system/*')"

# ---- control ----------------------------------------------------------------
field() { sed -n "s/^$1: //p" "$ctl/control"; }
depends=$(field Depends)
echo "  Depends: $depends"
check "control: Package is grok" test "$(field Package)" = grok
check "control: Maintainer is grok maintainers <grok@localhost>" \
  test "$(field Maintainer)" = "grok maintainers <grok@localhost>"
check "control: Depends lists libgrpc (dpkg-shlibdeps ran)" grep -q 'libgrpc' <<<"$depends"
check "control: Depends lists adduser (postinst needs it)" grep -Eq '(^|, )adduser($|[ ,])' <<<"$depends"
check "conffiles lists /etc/grok/grok-server.yaml" grep -qx '/etc/grok/grok-server.yaml' "$ctl/conffiles"
if [ -f "$ctl/conffiles" ]; then
  while read -r f; do
    [ -n "$f" ] || continue
    check "conffile $f is in the package" test -f "$root$f"
  done <"$ctl/conffiles"
fi

# ---- maintainer scripts -------------------------------------------------------
for s in postinst prerm postrm; do
  check "$s is an executable script" test -f "$ctl/$s" -a -x "$ctl/$s"
  [ -f "$ctl/$s" ] && check "$s passes sh -n" sh -n "$ctl/$s"
done
check "postinst creates the user with adduser" grep -Eq '^[^#]*adduser .*--system' "$ctl/postinst"
starts_service() {  # FILE: true when a non-comment line enables or starts a unit
  grep -Ev '^[[:space:]]*#' "$1" |
    grep -Eq 'systemctl[^;|&]*[[:space:]](enable|start|restart|try-restart|reload-or-restart)([[:space:]]|$)|deb-systemd-(helper|invoke)|--now'
}
starts_nothing() { ! starts_service "$1"; }
check "postinst neither enables nor starts anything" starts_nothing "$ctl/postinst"

# ---- the packaged binary with the packaged config ----------------------------
if [ -x "$root/usr/bin/grok-server" ] && [ -f "$root/etc/grok/grok-server.yaml" ]; then
  # As shipped, the config holds the example's placeholder token: refused by name until an admin
  # replaces it; with a real token it is valid.
  if out=$("$root/usr/bin/grok-server" --check-config --config "$root/etc/grok/grok-server.yaml" 2>&1); then
    fail "grok-server --check-config refuses the shipped placeholder token, but it accepted it: $out"
  elif printf '%s' "$out" | grep -q "auth.tokens: 'change-me' is the example configuration's placeholder"; then
    pass "grok-server --check-config refuses the shipped placeholder token, by name"
  else
    fail "grok-server --check-config refuses the shipped placeholder token, by name: $out"
  fi
  edited="$tmp/grok-server-edited.yaml"
  sed 's/- change-me$/- a-real-token-from-the-admin/' "$root/etc/grok/grok-server.yaml" >"$edited"
  if out=$("$root/usr/bin/grok-server" --check-config --config "$edited" 2>&1); then
    pass "grok-server --check-config accepts the shipped config once its token is replaced"
  else
    fail "grok-server --check-config accepts the shipped config once its token is replaced: $out"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "check_deb: $failures check(s) failed"
  exit 1
fi
echo "check_deb: all checks passed"
