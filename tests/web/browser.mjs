// browser.mjs - the dashboard in Debian's chromium, driven by puppeteer-core (browser.sh
// sets it up): every page loads with no console error, its counts are Redis's, the
// processed counter moves while tasks run, a dead letter is requeued and another
// deleted, a queue is paused and resumed, a queue is purged only once the confirmation
// is accepted, a task id is revoked, and markup stored in Redis shows as text. Screenshots go to SHOT_DIR.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const require = createRequire(process.env.NODE_MODULES + '/');
const puppeteer = require('puppeteer-core');
const URL = process.env.WEB_URL;
const SHOTS = process.env.SHOT_DIR;
const XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';

function redis(...args) {
  return execFileSync('redis-cli', ['-p', process.env.REDIS_PORT, ...args], { encoding: 'utf8' }).trim();
}

const T0 = Date.now();
const stamp = () => ((Date.now() - T0) / 1000).toFixed(1).padStart(5) + 's ';

function check(cond, what) {
  if (!cond) throw new Error('FAILED: ' + what);
  console.log(stamp() + 'ok - ' + what);
}

// Click sel; again when the page redrew its table between finding the button and
// clicking it (the page redraws after every action and every poll).
async function press(page, sel) {
  for (let i = 0; ; i++) {
    try { return await page.click(sel); } catch (e) {
      if (i >= 20 || !/detached/i.test(e.message)) throw e;
    }
  }
}

async function until(fn, what, timeout = 60000) {
  const end = Date.now() + timeout;
  for (;;) {
    let v;
    try { v = await fn(); } catch (e) { v = false; }
    if (v) { console.log(stamp() + 'ok - ' + what); return v; }
    if (Date.now() > end) throw new Error('FAILED within ' + timeout / 1000 + ' s: ' + what);
    await new Promise(r => setTimeout(r, 50));
  }
}

const text = (page, sel) => page.$eval(sel, e => e.textContent).catch(() => null);

// ---- what Redis holds before the browser looks ----
for (let i = 0; i < 3; i++) redis('LPUSH', 'workerd:queue:parked', JSON.stringify({ id: 'park' + i, task: 'echo' }));
const dead = (id, extra) => JSON.stringify({
  message: JSON.stringify({ id, task: 'echo', args: [extra] }), reason: 'NotRegistered: ' + extra,
  id, queue: 'back', time: Date.now() / 1000,
});
redis('LPUSH', 'workerd:dead', dead('dead-old', 'old'));
redis('LPUSH', 'workerd:dead', dead('dead-xss', XSS));
redis('LPUSH', 'workerd:queue:default', JSON.stringify({ id: 'xss1', task: 'echo', args: [XSS] }));
await until(() => redis('GET', 'workerd:result:xss1').includes('SUCCESS'), 'the XSS task ran');

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-proxy-server', '--disable-dev-shm-usage'],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const errors = [];
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', e => errors.push(String(e)));
  const dialogs = [];
  let acceptDialogs = true;
  page.on('dialog', d => { dialogs.push(d.message()); acceptDialogs ? d.accept() : d.dismiss(); });
  const shot = name => page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
  const go = async name => {
    await page.goto(URL + '/#' + name, { waitUntil: 'networkidle0' });
    await page.waitForSelector('#page-' + name + '.active');
  };

  // ---- overview ----
  await go('overview');
  await until(async () => (await text(page, '#pending')) === '3', 'overview: 3 pending, as enqueued');
  check((await text(page, '#dead-letters')) === '2', 'overview: 2 dead letters');
  check((await text(page, '#workers-alive')) === '1', 'overview: 1 worker alive');
  check(await page.$('#chart svg rect'), 'overview: the chart is drawn');
  const before = Number(await text(page, '#total-processed'));
  for (let i = 0; i < 40; i++) redis('LPUSH', 'workerd:queue:default', JSON.stringify({ id: 'live' + i, task: 'echo', args: [i] }));
  await until(async () => Number(await text(page, '#total-processed')) >= before + 40,
    'overview: the processed counter moves while tasks run, without a reload');
  await shot('overview');

  // ---- workers ----
  redis('LPUSH', 'workerd:queue:default', JSON.stringify({ id: 'slow1', task: 'sleep', args: [3] }));
  await go('workers');
  await until(async () => (await text(page, '#workers-table')).includes('sleep slow1'),
    'workers: what the worker runs now');
  check((await text(page, '#workers-table')).includes('alive'), 'workers: the worker is alive');
  await shot('workers');

  // ---- queues: purge only with the confirmation ----
  await go('queues');
  await until(async () => (await text(page, '#queues-table')).includes('parked'), 'queues: the parked queue is listed');
  // Pause, then resume: the set every worker reads, and the state the page shows.
  await press(page, 'button[data-testid="pause-parked"]');
  await until(() => redis('SISMEMBER', 'workerd:paused', 'parked') === '1', 'queues: Pause pauses the queue');
  await until(async () => (await text(page, '#queues-table')).includes('paused'), 'queues: the page says paused');
  await press(page, 'button[data-testid="resume-parked"]');
  await until(() => redis('SISMEMBER', 'workerd:paused', 'parked') === '0', 'queues: Resume resumes it');
  await until(async () => !(await text(page, '#queues-table')).includes('paused'), 'queues: the page says running again');
  acceptDialogs = false;
  await press(page, 'button[data-testid="purge-parked"]');
  await until(() => dialogs.length === 1, 'queues: purge asks first');
  await new Promise(r => setTimeout(r, 300));
  check(redis('LLEN', 'workerd:queue:parked') === '3', 'queues: a dismissed purge deletes nothing');
  acceptDialogs = true;
  await press(page, 'button[data-testid="purge-parked"]');
  await until(() => redis('LLEN', 'workerd:queue:parked') === '0', 'queues: a confirmed purge empties the queue');
  await shot('queues');

  // ---- tasks: markup as text, revoke ----
  await go('tasks');
  await page.type('#task-id', 'xss1');
  await page.click('#task-form button[type=submit]');
  await until(async () => (await text(page, '#task-result')).includes('<script>window.__xss=1</script>'),
    'tasks: the result shows the markup as text');
  check(await page.evaluate(() => window.__xss === undefined && !document.querySelector('#task-result img, #task-result script')),
    'tasks: the markup did not run or render');
  await until(async () => (await text(page, '#events-table')).includes('succeeded'), 'tasks: events are listed (-E)');
  await page.$eval('#task-id', e => { e.value = ''; });
  await page.type('#task-id', 'rv1');
  await page.click('#revoke-btn');
  await until(() => redis('GET', 'workerd:revoked:rv1') === '1', 'tasks: revoke marks the id');
  await shot('tasks');

  // ---- dead letters: requeue one, delete another ----
  await go('dead');
  await until(async () => (await text(page, '#dead-table')).includes('dead-old'), 'dead: entries listed');
  check((await text(page, '#dead-table')).includes('<img src=x onerror'), 'dead: markup shown as text');
  check(await page.evaluate(() => window.__xss === undefined && !document.querySelector('#dead-table img')),
    'dead: the markup did not run or render');
  await shot('dead');
  await page.click('button[data-testid="requeue-1"]');
  await until(() => redis('LLEN', 'workerd:dead') === '1' && redis('LLEN', 'workerd:queue:back') === '1',
    'dead: requeue puts the old entry back on its queue');
  await until(async () => !(await text(page, '#dead-table')).includes('dead-old'), 'dead: the list follows');
  await page.click('button[data-testid="delete-0"]');
  await until(() => redis('LLEN', 'workerd:dead') === '0', 'dead: delete removes the other');

  check(errors.length === 0, 'no console errors' + (errors.length ? ': ' + errors.join(' | ') : ''));

  // A script on the page that leaves out the CSRF header is refused (after the console
  // check: the browser logs the 403 itself).
  const status = await page.evaluate(() => fetch('/api/revoke', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"id":"nocsrf"}',
  }).then(r => r.status));
  check(status === 403 && redis('EXISTS', 'workerd:revoked:nocsrf') === '0',
    'a POST without the CSRF token is refused and changes nothing');
} catch (e) {
  console.error(e.message);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
