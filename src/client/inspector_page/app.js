// grok inspector: the live list (Server-Sent Events), filters, the detail
// view, Replay and Edit and replay. Talks only to this inspector's API.
'use strict';

const $ = (id) => document.getElementById(id);
const rows = new Map();  // id -> summary, newest seq highest
let selected = null;     // id shown in the detail view
let detail = null;       // its full record
const MAX_ROWS = 2000;   // rows kept on the page; the API keeps what memory allows

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function statusClass(r) {
  if (r.state === 'failed') return 'sfailed';
  if (!r.response.status_code) return 'sopen';
  return 's' + String(r.response.status_code)[0];
}

function human(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MiB';
  return (n / 1073741824).toFixed(2) + ' GiB';
}

function duration(ns, state) {
  const ms = ns / 1e6;
  const t = ms < 1 ? ms.toFixed(2) + ' ms' : ms < 1000 ? ms.toFixed(0) + ' ms' : (ms / 1000).toFixed(2) + ' s';
  return state === 'open' ? t + '…' : t;
}

function statusText(r) {
  if (r.state === 'failed' && !r.response.status_code) return 'failed';
  if (r.kind === 'tcp') return r.state === 'open' ? 'open' : 'closed';
  if (!r.response.status_code) return '…';
  return String(r.response.status_code) + (r.kind === 'websocket' ? ' ws' : r.kind === 'sse' ? ' sse' : '');
}

function matches(r) {
  const text = $('f-text').value.trim().toLowerCase();
  const method = $('f-method').value;
  const status = $('f-status').value;
  if (method && r.request.method !== method) return false;
  if (status === 'open' && r.state !== 'open') return false;
  if (status === 'failed' && r.state !== 'failed') return false;
  if (/^[0-9]$/.test(status) && String(r.response.status_code)[0] !== status) return false;
  if (text) {
    const hay = [r.id, r.request.method, r.request.uri, r.remote_addr, String(r.response.status_code), r.error || ''];
    if (r.headers_text) hay.push(r.headers_text);
    if (!hay.join(' ').toLowerCase().includes(text)) return false;
  }
  return true;
}

function rowFor(r) {
  const time = new Date(r.start).toLocaleTimeString();
  const size = r.kind === 'tcp' || r.kind === 'websocket' ? human(r.request.body_size) + ' / ' + human(r.response.body_size)
                                                         : human(r.response.body_size);
  const tr = el('tr', {'data-id': r.id, tabindex: '0', role: 'row', 'aria-selected': String(r.id === selected)},
    el('td', {}, time), el('td', {}, r.request.method), el('td', {class: 'path', title: r.request.uri}, r.request.uri || (r.kind === 'tcp' ? 'connection' : '')),
    el('td', {class: statusClass(r)}, statusText(r)), el('td', {class: 'mid'}, duration(r.duration, r.state)),
    el('td', {class: 'mid'}, size), el('td', {class: 'wide'}, r.remote_addr));
  if (r.replay_of) {
    tr.classList.add('replay');
    tr.setAttribute('data-replay-of', r.replay_of);
    tr.title = 'replay of ' + r.replay_of;
  }
  tr.addEventListener('click', () => select(r.id));
  return tr;
}

function render() {
  const body = $('rows');
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
  const list = [...rows.values()].sort((a, b) => b.seq - a.seq).filter(matches);
  body.replaceChildren(...list.map(rowFor));
  $('empty').hidden = rows.size > 0;
  if (focused) {
    const again = body.querySelector(`tr[data-id="${focused}"]`);
    if (again) again.focus();
  }
}

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function upsert(r) {
  rows.set(r.id, r);
  if (rows.size > MAX_ROWS) {
    const oldest = [...rows.values()].sort((a, b) => a.seq - b.seq).slice(0, rows.size - MAX_ROWS);
    for (const o of oldest) rows.delete(o.id);
  }
  if (r.id === selected && detail && (detail.state !== r.state || detail.duration !== r.duration)) loadDetail(r.id);
  scheduleRender();
}

async function api(path, init) {
  const res = await fetch(path, Object.assign({headers: {'Content-Type': 'application/json'}}, init || {}));
  if (!res.ok && res.status !== 204) {
    let msg = res.status + ' ' + res.statusText;
    try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res.status === 204 ? res : res.json();
}

async function loadList() {
  const data = await api('/api/requests/http?summary=1&limit=' + MAX_ROWS);
  rows.clear();
  for (const r of data.requests) rows.set(r.id, r);
  render();
}

async function loadTunnel() {
  try {
    const t = (await api('/api/tunnels')).tunnels[0];
    if (t) $('tunnel').textContent = (t.public_url || '(connecting)') + ' → ' + t.config.addr;
  } catch (e) { /* shown as the live badge */ }
}

function connect() {
  const es = new EventSource('/api/requests/events');
  es.onopen = () => {
    $('live').textContent = 'live';
    $('live').classList.add('on');
    loadList().catch(() => {});
    loadTunnel();
  };
  es.onerror = () => {
    $('live').textContent = 'reconnecting…';
    $('live').classList.remove('on');
  };
  es.addEventListener('request', (ev) => upsert(JSON.parse(ev.data)));
  es.addEventListener('reset', () => loadList().catch(() => {}));
}

// ---- bodies -------------------------------------------------------------------

function b64bytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function headerValue(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) if (k.toLowerCase() === name) return v[0];
  return '';
}

function hexdump(bytes) {
  const lines = [];
  const n = Math.min(bytes.length, 64 * 1024);
  for (let i = 0; i < n; i += 16) {
    const chunk = bytes.subarray(i, Math.min(i + 16, n));
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...chunk].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(i.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + '  ' + ascii);
  }
  if (bytes.length > n) lines.push('… ' + (bytes.length - n) + ' more bytes');
  return lines.join('\n');
}

function renderBody(target, part, kind) {
  const box = $(target);
  box.replaceChildren();
  if (kind === 'tcp' || kind === 'websocket') {
    box.append(el('p', {class: 'note'}, human(part.body_size) + ' so far (raw bytes are counted, not kept)'));
    return;
  }
  const bytes = b64bytes(part.body);
  if (part.body_size === 0) {
    box.append(el('p', {class: 'note'}, 'no body'));
    return;
  }
  const type = headerValue(part.headers, 'content-type').toLowerCase();
  const note = human(part.body_size) + (part.body_truncated ? ' — truncated: the first ' + human(bytes.length) + ' are kept' : '');
  box.append(el('p', {class: 'note'}, note));
  if (type.startsWith('image/') && !part.body_truncated) {
    box.append(el('img', {alt: 'image body', src: 'data:' + type.split(';')[0] + ';base64,' + part.body}));
    return;
  }
  let text = null;
  try { text = new TextDecoder('utf-8', {fatal: true}).decode(bytes); } catch (e) { text = null; }
  if (text !== null && /[\x00-\x08\x0e-\x1f]/.test(text)) text = null;
  if (text === null) {
    box.append(el('pre', {class: 'hex'}, hexdump(bytes)));
    return;
  }
  if (type.includes('json') || /^\s*[{[]/.test(text)) {
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as it is */ }
  }
  box.append(el('pre', {}, text));
}

function renderHeaders(target, headers) {
  const t = $(target);
  t.replaceChildren();
  for (const [k, vs] of Object.entries(headers || {})) for (const v of vs) t.append(el('tr', {}, el('td', {}, k), el('td', {}, v)));
}

async function loadDetail(id) {
  try {
    const r = await api('/api/requests/http/' + encodeURIComponent(id));
    if (selected !== id) return;
    detail = r;
    $('detail').hidden = false;
    $('d-title').textContent = r.request.method + ' ' + r.request.uri;
    let meta = r.id + ' · ' + (r.response.status || statusText(r)) + ' · ' + duration(r.duration, r.state) + ' · from ' +
               r.remote_addr + ' · ' + new Date(r.start).toLocaleString();
    if (r.error) meta += ' · ' + r.error;
    $('d-meta').replaceChildren(meta);
    if (r.replay_of) {
      const a = el('a', {href: '#' + r.replay_of}, r.replay_of);
      a.addEventListener('click', (ev) => { ev.preventDefault(); select(r.replay_of); });
      $('d-meta').append(' · replay of ', a);
    }
    const canReplay = r.kind !== 'tcp';
    $('replay').disabled = !canReplay;
    $('edit').disabled = !canReplay;
    renderHeaders('req-headers', r.request.headers);
    renderBody('req-body', r.request, r.kind);
    renderHeaders('res-headers', r.response.headers);
    renderBody('res-body', r.response, r.kind);
  } catch (e) {
    $('d-meta').textContent = 'cannot load ' + id + ': ' + e.message;
  }
}

function select(id) {
  selected = id;
  $('editor').hidden = true;
  for (const tr of $('rows').children) tr.setAttribute('aria-selected', String(tr.dataset.id === id));
  loadDetail(id);
}

async function replay(body) {
  const res = await api('/api/requests/http', {method: 'POST', body: JSON.stringify(body)});
  const id = res.headers && res.headers.get('Grok-Replay-Id');
  if (id) select(id);
}

function openEditor() {
  if (!detail) return;
  $('e-method').value = detail.request.method;
  $('e-path').value = detail.request.uri;
  const lines = [];
  for (const [k, vs] of Object.entries(detail.request.headers || {})) for (const v of vs) lines.push(k + ': ' + v);
  $('e-headers').value = lines.join('\n');
  $('e-body').value = new TextDecoder().decode(b64bytes(detail.request.body));
  $('e-error').textContent = '';
  $('editor').hidden = false;
  $('e-method').focus();
}

async function sendEdited() {
  const headers = [];
  for (const line of $('e-headers').value.split('\n')) {
    if (!line.trim()) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) { $('e-error').textContent = 'not a header line: ' + line; return; }
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  try {
    await replay({id: detail.id, method: $('e-method').value.trim(), path: $('e-path').value.trim(), headers,
                  body: $('e-body').value});
    $('editor').hidden = true;
  } catch (e) {
    $('e-error').textContent = e.message;
  }
}

// ---- wiring and keys ---------------------------------------------------------------

for (const id of ['f-text', 'f-method', 'f-status']) $(id).addEventListener('input', render);
$('clear').addEventListener('click', async () => {
  await api('/api/requests/http', {method: 'DELETE'}).catch(() => {});
  rows.clear();
  selected = null;
  detail = null;
  $('detail').hidden = true;
  render();
});
$('replay').addEventListener('click', () => detail && replay({id: detail.id}).catch((e) => { $('d-meta').textContent = e.message; }));
$('edit').addEventListener('click', openEditor);
$('e-send').addEventListener('click', sendEdited);
$('e-cancel').addEventListener('click', () => { $('editor').hidden = true; });
$('close').addEventListener('click', () => { $('detail').hidden = true; selected = null; render(); });

document.addEventListener('keydown', (ev) => {
  const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(ev.target.tagName);
  if (ev.key === 'Escape') {
    if (!$('editor').hidden) $('editor').hidden = true;
    else if (typing) ev.target.blur();
    else { $('detail').hidden = true; selected = null; }
    return;
  }
  if (typing) return;
  const tr = ev.target.closest && ev.target.closest('#rows tr');
  if (ev.key === '/') { ev.preventDefault(); $('f-text').focus(); return; }
  if (ev.key === 'Enter' && tr) { select(tr.dataset.id); return; }
  if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp' || ev.key === 'j' || ev.key === 'k') {
    const down = ev.key === 'ArrowDown' || ev.key === 'j';
    const from = tr || $('rows').querySelector('tr[aria-selected="true"]');
    const next = from ? (down ? from.nextElementSibling : from.previousElementSibling) : $('rows').firstElementChild;
    if (next) { ev.preventDefault(); next.focus(); select(next.dataset.id); }
    return;
  }
  if (ev.key === 'r' && detail && !$('replay').disabled) $('replay').click();
  if (ev.key === 'e' && detail && !$('edit').disabled) { ev.preventDefault(); openEditor(); }
});

connect();
