// workerd-web: the dashboard's page. It polls the JSON API (README.md "The dashboard")
// every two seconds and builds every element with createElement and textContent: nothing
// that came from Redis is ever parsed as HTML. State-changing calls are POSTs carrying
// the CSRF token from GET /api/session.
'use strict';

const POLL_MS = 2000;
let csrf = '';
let page = 'overview';
let timer = null;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function setStatus(text, bad) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('bad', !!bad);
}

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  const body = await r.json().catch(() => ({ error: 'not JSON' }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify(body),
  });
  const out = await r.json().catch(() => ({ error: 'not JSON' }));
  if (!r.ok) throw new Error(out.error || r.statusText);
  return out;
}

function age(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return '-';
  let s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
}

function table(t, headers, rows) {
  t.replaceChildren();
  const head = el('tr');
  for (const h of headers) head.appendChild(el('th', h));
  t.appendChild(head);
  for (const cells of rows) {
    const tr = el('tr');
    for (const c of cells) {
      if (c instanceof Node) { const td = el('td'); td.appendChild(c); tr.appendChild(td); }
      else if (typeof c === 'object' && c !== null) {
        const td = el('td', c.text, c.cls);
        if (c.node) td.appendChild(c.node);
        tr.appendChild(td);
      } else tr.appendChild(el('td', c));
    }
    t.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', 'none', 'note');
    td.colSpan = headers.length;
    tr.appendChild(td);
    t.appendChild(tr);
  }
}

function button(text, onclick, id) {
  const b = el('button', text);
  b.type = 'button';
  if (id) b.dataset.testid = id;
  b.addEventListener('click', onclick);
  return b;
}

async function act(fn) {
  try { const out = await fn(); setStatus('done: ' + JSON.stringify(out)); }
  catch (e) { setStatus(e.message, true); }
  refresh();
}

// ---- overview ----

function card(label, value, id) {
  const c = el('div', null, 'card');
  const n = el('div', value, 'n');
  if (id) n.id = id;
  c.appendChild(n);
  c.appendChild(el('div', label, 'l'));
  return c;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

function chart(minutes) {
  const W = 720, H = 220, L = 40, B = 20, T = 10;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
  let max = 1;
  for (const m of minutes) max = Math.max(max, Number(m.processed) || 0);
  const bw = (W - L) / Math.max(1, minutes.length);
  s.appendChild(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
  for (const f of [0, 0.5, 1]) {
    const y = H - B - f * (H - B - T);
    s.appendChild(svg('line', { x1: L, y1: y, x2: W, y2: y, class: 'axis' }));
    const t = svg('text', { x: 2, y: y + 4, class: 'axis-label' });
    t.textContent = String(Math.round(max * f));
    s.appendChild(t);
  }
  minutes.forEach((m, i) => {
    const p = Number(m.processed) || 0, f = Number(m.failed) || 0;
    const hp = (p / max) * (H - B - T), hf = (f / max) * (H - B - T);
    const x = L + i * bw + 1;
    const r = svg('rect', { x, y: H - B - hp, width: Math.max(1, bw - 2), height: hp, class: 'bar-p' });
    const title = svg('title', {});
    title.textContent = `${new Date(m.minute * 60000).toLocaleTimeString()}: ${p} processed, ${f} failed`;
    r.appendChild(title);
    s.appendChild(r);
    if (f > 0) s.appendChild(svg('rect', { x, y: H - B - hf, width: Math.max(1, bw - 2), height: hf, class: 'bar-f' }));
  });
  const lbl = svg('text', { x: L, y: H - 4, class: 'axis-label' });
  lbl.textContent = '-60 min';
  s.appendChild(lbl);
  const now = svg('text', { x: W - 30, y: H - 4, class: 'axis-label' });
  now.textContent = 'now';
  s.appendChild(now);
  return s;
}

async function showOverview() {
  const o = await api('/api/overview');
  const cards = $('cards');
  cards.replaceChildren(
    card('processed (total)', o.totals.processed, 'total-processed'),
    card('failed (total)', o.totals.failed, 'total-failed'),
    card('in flight', o.in_flight, 'in-flight'),
    card('pending', o.pending, 'pending'),
    card('workers alive', o.workers_alive, 'workers-alive'),
    card('workers dead', o.workers_dead, 'workers-dead'),
    card('dead letters', o.dead_letters, 'dead-letters'),
    card('scheduled / retrying', o.scheduled, 'scheduled'),
    card('revoked ids', o.revoked, 'revoked'),
    card('Redis ' + (o.redis.version || ''), (o.redis.up ? 'up, ' : 'down, ') + o.redis.used_memory_human, 'redis'),
  );
  $('chart').replaceChildren(chart(o.minutes));
  $('events-note').textContent = o.events.enabled ? '' :
    'No task events in Redis: the workers run without -E, so the Tasks page has no event list.';
}

// ---- workers ----

async function showWorkers() {
  const o = await api('/api/workers');
  const now = Date.now() / 1000;
  const rows = o.workers.map(w => {
    const id = el('div', w.id, 'mono');
    if (w.running && w.running.length) {
      const ul = el('ul', null, 'running');
      for (const r of w.running)
        ul.appendChild(el('li', `${r.task ?? '?'} ${r.id ?? ''} (${r.queue})` +
          (r.runtime !== undefined ? ` running ${r.runtime.toFixed(1)}s` : '')));
      id.appendChild(ul);
    }
    return [id, { text: w.alive ? 'alive' : 'dead', cls: w.alive ? 'alive' : 'dead' },
      w.host ?? '-', w.pid ?? '-', (w.queues || []).join(', '), w.concurrency ?? '-',
      { text: w.in_flight, cls: 'num' }, w.started ? age(now - w.started) : '-', w.version ?? '-',
      w.beat_age !== null && w.beat_age !== undefined ? age(w.beat_age) : '-'];
  });
  table($('workers-table'), ['worker / running now', 'state', 'host', 'pid', 'queues',
    'concurrency', 'in flight', 'uptime', 'version', 'heartbeat'], rows);
}

// ---- queues ----

async function showQueues() {
  const o = await api('/api/queues');
  // A paused queue no worker consumes and that holds nothing is listed too: it can be resumed.
  const listed = new Set(o.queues.map(q => q.name));
  const rows = o.queues.concat((o.paused || []).filter(n => !listed.has(n)).map(n => ({
    name: n, depth: 0, latency: null, workers: 0, paused: true, unlisted: true,
  })));
  table($('queues-table'), ['queue', 'pending', 'latency', 'workers', 'state', ''], rows.map(q => {
    const acts = document.createElement('span');
    acts.appendChild(q.paused
      ? button('Resume', () => act(() => post('/api/queues/resume', { queue: q.name })), 'resume-' + q.name)
      : button('Pause', () => act(() => post('/api/queues/pause', { queue: q.name })), 'pause-' + q.name));
    if (!q.unlisted) {
      acts.appendChild(button('Purge…', () => {
        if (!window.confirm(`Delete all ${q.depth} pending messages of queue "${q.name}"? This cannot be undone.`)) return;
        act(() => post('/api/queues/purge', { queue: q.name, confirm: q.name }));
      }, 'purge-' + q.name));
    }
    return [
      { text: q.name, cls: 'mono' }, { text: q.depth, cls: 'num' }, q.latency == null ? '-' : age(q.latency),
      { text: q.workers, cls: 'num' }, q.paused ? 'paused' : 'running', acts,
    ];
  }));
  table($('rates-table'), ['task', 'rate', ''], Object.keys(o.rate_limits).sort().map(t => [
    { text: t, cls: 'mono' }, o.rate_limits[t],
    button('Remove', () => act(() => post('/api/rate-limit', { task: t, rate: 'off' }))),
  ]));
}

// ---- tasks ----

async function lookUp(id) {
  const box = $('task-result');
  box.replaceChildren();
  const o = await api('/api/task?id=' + encodeURIComponent(id));
  if (!o.found) box.appendChild(el('p', `No result for ${id} (not run yet, expired, or unknown).`, 'note'));
  if (o.revoked) box.appendChild(el('p', `Revoked (${o.revoked}).`, 'dead'));
  if (o.result !== undefined) {
    box.appendChild(el('p', `Status: ${o.result.status ?? '?'}`));
    box.appendChild(el('pre', JSON.stringify(o.result, null, 2)));
  } else if (o.text !== undefined) {
    box.appendChild(el('p', `${o.bytes} bytes; showing from byte ${o.offset}.`, 'note'));
    box.appendChild(el('pre', o.text));
  }
}

async function showTasks() {
  const q = new URLSearchParams();
  if ($('ev-task').value) q.set('task', $('ev-task').value);
  if ($('ev-type').value) q.set('type', $('ev-type').value);
  if ($('ev-queue').value) q.set('queue', $('ev-queue').value);
  q.set('limit', '100');
  const o = await api('/api/events?' + q.toString());
  $('events-off').textContent = o.enabled ? '' : (o.note || '');
  table($('events-table'), ['time', 'type', 'task', 'id', 'queue', 'worker', 'runtime / error'],
    o.events.map(e => [e.time ? new Date(Number(e.time) * 1000).toLocaleTimeString() : '-',
      e.type ?? '-', e.task ?? '-', { text: e.id ?? '-', cls: 'mono' }, e.queue ?? '-',
      { text: e.worker ?? '-', cls: 'mono' }, e.error ?? e.runtime ?? '']));
}

// ---- dead letters ----

async function viewDead(index, offset) {
  const o = await api(`/api/dead/entry?index=${index}&offset=${offset}`);
  const box = $('dead-detail');
  box.replaceChildren(el('h2', `Dead letter ${index}: ${o.reason ?? ''}`));
  const p = o.message_page || {};
  if (p.message !== undefined) box.appendChild(el('pre', JSON.stringify(p.message, null, 2)));
  else if (p.text !== undefined) {
    box.appendChild(el('p', `${p.bytes} bytes; from byte ${p.offset}.`, 'note'));
    box.appendChild(el('pre', p.text));
    if (p.next !== null && p.next !== undefined)
      box.appendChild(button('Next page', () => viewDead(index, p.next)));
  } else if (o.raw !== undefined) box.appendChild(el('pre', o.raw));
}

async function showDead() {
  const o = await api('/api/dead?limit=100');
  $('dead-total').textContent = `(${o.total})`;
  const now = Date.now() / 1000;
  table($('dead-table'), ['#', 'age', 'queue', 'id', 'reason', 'message', ''], o.entries.map(e => {
    const acts = el('span', null, 'inline');
    acts.appendChild(button('View', () => viewDead(e.index, 0), 'view-' + e.index));
    acts.appendChild(button('Requeue', () => act(() => post('/api/dead/requeue', { index: e.index, key: e.key })), 'requeue-' + e.index));
    acts.appendChild(button('Delete', () => {
      if (window.confirm('Delete this dead letter?'))
        act(() => post('/api/dead/delete', { index: e.index, key: e.key }));
    }, 'delete-' + e.index));
    return [{ text: e.index, cls: 'num' }, e.time ? age(now - e.time) : '-', e.queue ?? '-',
      { text: e.id ?? '-', cls: 'mono' }, e.reason ?? '-',
      { text: (e.message ?? e.raw ?? '') + (e.message_cut ? ' …' : ''), cls: 'mono' }, acts];
  }));
}

// ---- routing and polling ----

const PAGES = { overview: showOverview, workers: showWorkers, queues: showQueues, tasks: showTasks, dead: showDead };

async function refresh() {
  clearTimeout(timer);
  try {
    await PAGES[page]();
    setStatus('updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    setStatus(e.message, true);
  }
  timer = setTimeout(refresh, POLL_MS);
}

function route() {
  const want = (location.hash || '#overview').slice(1);
  page = PAGES[want] ? want : 'overview';
  for (const s of document.querySelectorAll('.page')) s.classList.toggle('active', s.id === 'page-' + page);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  refresh();
}

async function start() {
  try { csrf = (await api('/api/session')).csrf; } catch (e) { setStatus(e.message, true); }
  $('task-form').addEventListener('submit', ev => {
    ev.preventDefault();
    lookUp($('task-id').value).catch(e => setStatus(e.message, true));
  });
  $('revoke-btn').addEventListener('click', () =>
    act(() => post('/api/revoke', { id: $('task-id').value, terminate: false })));
  $('terminate-btn').addEventListener('click', () => {
    if (window.confirm('Terminate task ' + $('task-id').value + ' wherever it runs?'))
      act(() => post('/api/revoke', { id: $('task-id').value, terminate: true }));
  });
  $('events-form').addEventListener('submit', ev => { ev.preventDefault(); refresh(); });
  $('rate-form').addEventListener('submit', ev => {
    ev.preventDefault();
    act(() => post('/api/rate-limit', { task: $('rate-task').value, rate: $('rate-value').value }));
  });
  $('dead-requeue-all').addEventListener('click', () => {
    if (window.confirm('Requeue every dead letter?')) act(() => post('/api/dead/requeue', { all: true }));
  });
  $('dead-delete-all').addEventListener('click', () => {
    if (window.confirm('Delete every dead letter?')) act(() => post('/api/dead/delete', { all: true }));
  });
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', start);
