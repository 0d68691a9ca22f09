'use strict';
// The dashboard in a real browser: the daemon runs as its own process (scripts/daemon.js,
// the echo fixture worker, METRICS_PORT=0, a DASHBOARD_TOKEN) and headless Chromium
// (Debian's `chromium`, driven by playwright-core) opens the page. Without Chromium
// this file fails: CI installs it (.ci/run); set CHROMIUM_PATH for another binary.
// The screenshot is kept under the OS temp dir (its path is printed as a diagnostic).
// Nothing started here survives the file: daemon, workers and every Chromium process
// are checked gone at the end.
// Run: node --test __test__/dashboard.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { spawn, execFileSync } = require('node:child_process');
const { call } = require('../lib/control-client');
const { startMetricsServer } = require('../lib/metrics-http');
const { quantileMs, parseHistograms } = require('../lib/dashboard/status');
const { ROOT, fixture, tempDir, daemonEnv, waitFor, sleep, isGone, assertGone, childrenOf, openPool, run } = require('./helpers');

const TOKEN = 'dashboard-test-token-0123456789abcdef';
const WAIT_MS = 30000;

function findChromium() {
  // An explicit CHROMIUM_PATH is the only candidate: a wrong one must not pass by luck.
  if (process.env.CHROMIUM_PATH) return fs.existsSync(process.env.CHROMIUM_PATH) ? process.env.CHROMIUM_PATH : null;
  for (const c of ['/usr/bin/chromium', '/usr/bin/chromium-browser']) if (fs.existsSync(c)) return c;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** Every descendant pid of `pid` (Chromium's zygote, renderers, GPU and utility processes). */
function descendants(pid) {
  const out = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    for (const c of childrenOf(p)) {
      out.push(c.pid);
      stack.push(c.pid);
    }
  }
  return out;
}

function httpRequest(port, method, urlPath, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => {
        text += d;
      });
      res.on('end', () => {
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends `tasks` as submit requests on one control connection; resolves with the responses. */
function submitMany(socketPath, tasks) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const responses = [];
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      sock.write(tasks.map((task, i) => JSON.stringify({ id: i, cmd: 'submit', task })).join('\n') + '\n');
    });
    sock.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        responses.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      if (responses.length === tasks.length) {
        sock.end();
        resolve(responses);
      }
    });
    sock.on('error', reject);
  });
}

/** Resolves after ms without keeping the process alive (a bound on a cleanup step). */
const bound = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref());

const ctx = { dir: null, daemon: null, output: '', port: null, socket: null, workerPids: new Set(), browserServer: null, browser: null, chromePids: new Set(), page: null };

async function status() {
  const r = await httpRequest(ctx.port, 'GET', '/api/status');
  assert.equal(r.status, 200, r.text);
  return r.json;
}

function noteWorkers(s) {
  for (const w of s.workers) ctx.workerPids.add(w.pid);
}

test.before(async () => {
  const chromium = findChromium();
  assert.ok(
    chromium,
    process.env.CHROMIUM_PATH
      ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} does not exist: this suite drives a real browser`
      : 'Chromium is not installed: this suite drives a real browser. Install it (Debian: apt-get install -y chromium) or set CHROMIUM_PATH.',
  );
  ctx.dir = tempDir('wpdash-');
  ctx.socket = path.join(ctx.dir, 'pool.sock');
  const env = daemonEnv(ctx.dir, {
    MIN_WORKERS: '1',
    MAX_WORKERS: '4',
    WORKER_SCRIPT: fixture('echo-worker.js'),
    METRICS_PORT: '0',
    METRICS_LOG_INTERVAL_MS: '0',
    DASHBOARD_TOKEN: TOKEN,
  });
  delete env.METRICS_HOST;
  ctx.daemon = spawn(process.execPath, [path.join(ROOT, 'scripts', 'daemon.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.exited = new Promise((resolve) => ctx.daemon.on('close', (code, signal) => resolve({ code, signal })));
  for (const s of [ctx.daemon.stdout, ctx.daemon.stderr]) {
    s.setEncoding('utf8').on('data', (d) => {
      ctx.output += d;
    });
  }
  const m = await waitFor(
    () => /Dashboard at http:\/\/127\.0\.0\.1:(\d+)\/ \(actions allowed with DASHBOARD_TOKEN\)/.exec(ctx.output),
    WAIT_MS,
    { message: () => `the daemon's "Dashboard at" line; its output:\n${ctx.output}` },
  );
  ctx.port = Number(m[1]);
  noteWorkers(await status());

  const { chromium: pw } = require('playwright-core');
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  // A browser server, because only it tells the pid of the Chromium it started.
  ctx.browserServer = await pw.launchServer({ executablePath: chromium, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  ctx.chromePids.add(ctx.browserServer.process().pid);
  ctx.browser = await pw.connect(ctx.browserServer.wsEndpoint());
  ctx.page = await ctx.browser.newPage({ viewport: { width: 1400, height: 1000 } });
  ctx.pageErrors = [];
  ctx.page.on('pageerror', (e) => ctx.pageErrors.push(e.message));
  ctx.page.setDefaultTimeout(WAIT_MS);
});

test.after(async () => {
  if (ctx.browserServer) {
    const main = ctx.browserServer.process().pid;
    for (const p of descendants(main)) ctx.chromePids.add(p);
    if (ctx.browser) await Promise.race([ctx.browser.close().catch(() => {}), bound(10000)]);
    await Promise.race([ctx.browserServer.close().catch(() => {}), bound(10000)]);
    for (const p of ctx.chromePids) {
      try {
        if (!isGone(p)) process.kill(p, 'SIGKILL');
      } catch {
        /* gone in between */
      }
    }
  }
  if (ctx.daemon && ctx.daemon.exitCode === null && ctx.daemon.signalCode === null) {
    ctx.daemon.kill('SIGTERM');
    const ended = await Promise.race([ctx.exited, bound(25000).then(() => null)]);
    if (!ended) ctx.daemon.kill('SIGKILL');
    await ctx.exited;
  }
  try {
    await assertGone([...ctx.workerPids, ...ctx.chromePids, ctx.daemon && ctx.daemon.pid], 15000);
  } finally {
    if (ctx.dir) fs.rmSync(ctx.dir, { recursive: true, force: true });
  }
});

test('the page opens and lists the workers', { timeout: 60000 }, async () => {
  const { page } = ctx;
  const res = await page.goto(`http://127.0.0.1:${ctx.port}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /default-src 'none'/);
  await page.waitForSelector('#conn.conn-live');
  const s = await status();
  await waitFor(async () => (await page.locator('#workers tbody tr[data-state="ready"]').count()) === 2, WAIT_MS, 'two ready workers in the table');
  for (const w of s.workers) {
    const row = page.locator(`#workers tbody tr[data-worker-id="${w.id}"]`);
    assert.match(await row.innerText(), new RegExp(`${w.id}\\s+${w.pid}\\s+ready`));
  }
  assert.equal(await page.locator('#health-status').innerText(), 'healthy');
  assert.equal(await page.locator('#shared').isVisible(), false, 'no shared queue, no shared-queue panel');
  // A token is configured: the controls are shown, not the read-only note.
  assert.equal(await page.locator('#actions-controls').isVisible(), true);
  assert.equal(await page.locator('#actions-readonly').isVisible(), false);
});

test('a burst moves the counters and the throughput chart', { timeout: 90000 }, async () => {
  const { page } = ctx;
  const num = async (sel) => Number((await page.locator(sel).innerText()).replace(/[^\d.]/g, ''));
  const before = await num('#c-completed');
  const N = 3000;
  const responses = await submitMany(
    ctx.socket,
    Array.from({ length: N }, (_, i) => ({ type: 'echo', payload: { i } })),
  );
  assert.equal(responses.filter((r) => r.ok).length, N);
  await waitFor(async () => (await num('#c-completed')) >= before + N, WAIT_MS, 'the completed counter to count the burst');
  assert.ok((await num('#c-submitted')) >= before + N);
  // The chart drew a second with tasks in it (the burst may straddle two ticks).
  await waitFor(
    async () => Number(await page.locator('#chart-throughput').getAttribute('data-max')) > 0,
    WAIT_MS,
    'the throughput chart to show the burst',
  );
  await waitFor(
    async () => Number(await page.locator('#chart-latency').getAttribute('data-max')) > 0,
    WAIT_MS,
    'the latency chart to show the burst',
  );
  const s = await status();
  assert.ok(s.tasks.completed >= before + N);
  assert.ok(s.latencyTotal.run.count >= N, 'the run histogram counted the burst');
});

test('a killed worker is shown restarting, then replaced', { timeout: 90000 }, async () => {
  const { page } = ctx;
  const s = await status();
  const victim = s.workers.find((w) => w.state === 'ready');
  process.kill(victim.pid, 'SIGKILL');
  const row = page.locator(`#workers tbody tr.gone[data-worker-id="${victim.id}"]`);
  await row.waitFor();
  assert.match(await row.getAttribute('data-state'), /^(restarting|restarted)$/);
  assert.match(await row.innerText(), /killed by SIGKILL/);
  await waitFor(
    async () => /replaced by worker-\d+/.test(await row.innerText()),
    WAIT_MS,
    'the row to name the replacement',
  );
  const replacement = /replaced by (worker-\d+)/.exec(await row.innerText())[1];
  await page.locator(`#workers tbody tr[data-worker-id="${replacement}"][data-state="ready"]`).waitFor();
  await waitFor(async () => /SIGKILL/.test(await page.locator('#events').innerText()), WAIT_MS, 'the exit in the events list');
  const after = await status();
  noteWorkers(after);
  assert.ok(after.performance.workersRestarted >= 1);
  assert.match(await page.locator('#c-lifecycle').innerText(), /^\d+ \/ [1-9]\d* \/ [1-9]\d*$/);
});

test('a failed task shows up in the dead-letter view with its error', { timeout: 60000 }, async () => {
  const { page } = ctx;
  const failed = await call(ctx.socket, 'submit', {
    task: { type: 'throw', payload: { message: 'the dashboard should show this', code: 'E_DASH_TEST' }, maxRetries: 0 },
  }).catch((e) => e);
  assert.equal(failed.code, 'ERR_TASK_FAILED');
  const row = page.locator('#dlq tbody tr', { hasText: 'the dashboard should show this' });
  await row.waitFor();
  assert.match(await row.innerText(), /^task-\d+-\d+\s+throw\s+1\s/);
  assert.match(await row.locator('.dlq-error').innerText(), /^ERR_TASK_FAILED the dashboard should show this/);
  assert.equal(await page.locator('#c-dlq').innerText(), '1');
  assert.equal(await page.locator('#dlq-empty').isVisible(), false);
});

test('scaling from the page: refused without the token, done with it', { timeout: 90000 }, async () => {
  const { page } = ctx;
  const size = async () => (await status()).pool.size;
  assert.equal(await size(), 2);

  // The page without a token: the server answers 401 and nothing changes.
  await page.locator('#token').fill('');
  await page.locator('#scale-up').click();
  await waitFor(async () => /401/.test(await page.locator('#action-msg').innerText()), WAIT_MS, 'the 401 message on the page');
  assert.match(await page.locator('#action-msg').innerText(), /ERR_UNAUTHORIZED/);
  // Straight to the API: no token, a wrong token (same length and not), no scheme.
  for (const headers of [{}, { authorization: `Bearer ${TOKEN.replace(/.$/, 'x')}` }, { authorization: 'Bearer short' }, { authorization: TOKEN }]) {
    const r = await httpRequest(ctx.port, 'POST', '/api/scale', { body: '{"direction":"up"}', headers: { 'content-type': 'application/json', ...headers } });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.json.error.code, 'ERR_UNAUTHORIZED');
    assert.match(r.headers['www-authenticate'], /^Bearer/);
  }
  const clearNoToken = await httpRequest(ctx.port, 'POST', '/api/dlq/clear');
  assert.equal(clearNoToken.status, 401);
  await sleep(300);
  assert.equal(await size(), 2, 'refused requests changed nothing');
  assert.equal((await status()).dlq.total, 1, 'the dead letter is still there');

  // With the token.
  await page.locator('#token').fill(TOKEN);
  await page.locator('#scale-up').click();
  await waitFor(async () => /scaled up by 1: pool size 3/.test(await page.locator('#action-msg').innerText()), WAIT_MS, 'the scale-up result');
  await waitFor(async () => (await page.locator('#workers tbody tr[data-state="ready"]').count()) === 3, WAIT_MS, 'three ready workers');
  noteWorkers(await status());
  assert.equal(await size(), 3);
  await page.locator('#scale-down').click();
  await waitFor(async () => /scaled down by 1: pool size 2/.test(await page.locator('#action-msg').innerText()), WAIT_MS, 'the scale-down result');
  assert.equal(await size(), 2);

  // Bad requests get a stable code.
  const auth = { authorization: `Bearer ${TOKEN}` };
  const bad = [
    ['/api/scale', '{"direction":"sideways"}', 400, 'ERR_BAD_REQUEST'],
    ['/api/scale', '{"direction":"up","count":0}', 400, 'ERR_BAD_REQUEST'],
    ['/api/scale', '{oops', 400, 'ERR_BAD_JSON'],
    ['/api/dlq/requeue', '{"taskId":"task-0-0"}', 404, 'ERR_NOT_FOUND'],
    ['/api/nothing', '{}', 404, 'ERR_NOT_FOUND'],
    ['/api/scale', JSON.stringify({ direction: 'up', pad: 'x'.repeat(5000) }), 413, 'ERR_BODY_TOO_LARGE'],
  ];
  for (const [p, body, code, errCode] of bad) {
    const r = await httpRequest(ctx.port, 'POST', p, { body, headers: auth });
    assert.equal(r.status, code, `${p} ${body}: ${r.text}`);
    assert.equal(r.json.error.code, errCode);
  }
  assert.equal((await httpRequest(ctx.port, 'GET', '/api/scale')).status, 405);
  assert.match(ctx.output, /Dashboard action scale from 127\.0\.0\.1: \{"direction":"up","requested":1,"count":1,"newSize":3\}/);

  // The dead-letter queue is cleared from the page's API with the token.
  const cleared = await httpRequest(ctx.port, 'POST', '/api/dlq/clear', { headers: auth });
  assert.equal(cleared.status, 200);
  assert.deepEqual(cleared.json, { cleared: 1 });
  await page.locator('#dlq-empty').waitFor({ state: 'visible' });
  await waitFor(async () => /dashboard: dlq\/clear/.test(await page.locator('#events').innerText()), WAIT_MS, 'the action in the events list');
});

test('screenshot (kept under the temp dir)', { timeout: 60000 }, async (t) => {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-pool-dashboard-'));
  const file = path.join(outDir, 'dashboard.png');
  await ctx.page.screenshot({ path: file, fullPage: true });
  const png = fs.readFileSync(file);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.ok(png.length > 10000, 'a real picture');
  t.diagnostic(`screenshot: ${file}`);
  assert.deepEqual(ctx.pageErrors, [], 'no script error on the page');
});

test('no page open: no listeners on the pool and no timer; one stream: one snapshot a second', { timeout: 60000 }, async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, minWorkers: 1, workerScript: fixture('echo-worker.js') });
  const m = await startMetricsServer(pool, { port: 0, dashboard: true });
  t.after(() => m.close());
  assert.equal(m.host, '127.0.0.1');
  const events = () => pool.eventNames().reduce((n, e) => n + pool.listenerCount(e), 0);
  const idle = events();
  assert.equal(pool.listenerCount('task-completed') + pool.listenerCount('task-assigned'), 0);

  // Read-only without a token: actions are 403 with their own code.
  const ro = await httpRequest(m.port, 'POST', '/api/scale', { body: '{"direction":"up"}', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(ro.status, 403);
  assert.equal(ro.json.error.code, 'ERR_READ_ONLY');
  assert.equal((await httpRequest(m.port, 'GET', '/api/status')).json.actions.enabled, false);

  // One event stream: listeners while it is open (never the per-task ones), and
  // status frames no closer together than the tick.
  const frames = [];
  const req = http.get({ host: '127.0.0.1', port: m.port, path: '/api/events', agent: false });
  const res = await new Promise((resolve) => req.on('response', resolve));
  assert.match(res.headers['content-type'], /^text\/event-stream/);
  let buf = '';
  res.setEncoding('utf8').on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (/^event: status$/m.test(frame)) frames.push(Date.now());
    }
  });
  await waitFor(() => frames.length >= 1 && m.dashboard.streams() === 1, 10000, 'the first status frame');
  assert.ok(events() > idle, 'pool listeners while a page is open');
  assert.equal(pool.listenerCount('task-completed') + pool.listenerCount('task-assigned'), 0, 'no per-task listener even then');
  const ps = [];
  for (let i = 0; i < 200; i++) ps.push(pool.submitTask({ type: 'echo', payload: i }));
  await Promise.all(ps);
  await waitFor(() => frames.length >= 4, 10000, 'four status frames');
  for (let i = 1; i < frames.length; i++) assert.ok(frames[i] - frames[i - 1] >= 500, `frames ${frames.join(', ')} at most one a second`);
  req.destroy();
  await waitFor(() => m.dashboard.streams() === 0, 10000, 'the stream to close');
  assert.equal(events(), idle, 'the listeners went with the last page');

  // The page of a read-only server says so and offers no controls.
  await ctx.page.goto(`http://127.0.0.1:${m.port}/`);
  await ctx.page.locator('#actions-readonly').waitFor({ state: 'visible' });
  assert.equal(await ctx.page.locator('#actions-controls').isVisible(), false);
  await ctx.page.locator('#workers tbody tr[data-state="ready"]').first().waitFor();
  await ctx.page.goto('about:blank');
  await waitFor(() => m.dashboard.streams() === 0, 10000, 'the page\'s stream to close');
});

test("distributed mode: the shared queue's counts and its failed jobs are shown", { timeout: 90000 }, async (t) => {
  const { createPool } = require('..');
  const { startRedis } = require('./redis-harness');
  const redis = await startRedis();
  const pool = createPool({ poolSize: 1, minWorkers: 1, logLevel: 'silent', workerScript: fixture('echo-worker.js'), queue: { url: redis.url, name: 'dash' } });
  let m = null;
  t.after(async () => {
    if (m) await m.close();
    await pool.shutdown(false);
    await redis.destroy();
  });
  await pool.initialize();
  assert.deepEqual(await pool.submitTask({ type: 'echo', payload: 1 }), 1);
  await assert.rejects(pool.submitTask({ type: 'throw', payload: { message: 'failed on the shared queue' }, maxRetries: 0 }), /failed on the shared queue/);
  await waitFor(() => {
    const s = pool.getPoolMetrics().queue.shared;
    return s.completed >= 1 && s.failed >= 1 && s.servingPools === 1;
  }, WAIT_MS, 'the shared counts');
  m = await startMetricsServer(pool, { port: 0, dashboard: true });
  const shared = (await httpRequest(m.port, 'GET', '/api/status')).json.queue.shared;
  assert.equal(shared.servingPools, 1);
  assert.equal(shared.failed, 1);
  await ctx.page.goto(`http://127.0.0.1:${m.port}/`);
  await ctx.page.locator('#shared').waitFor({ state: 'visible' });
  await waitFor(async () => (await ctx.page.locator('#shared-completed').innerText()) === '1', WAIT_MS, 'one completed job shown');
  assert.match(await ctx.page.locator('#shared-pools').innerText(), /serving pools: 1 · connected, \d+ job\(s\) held here/);
  // The dead-letter view reads the shared failed set (in Redis, answered in the background).
  const row = ctx.page.locator('#dlq tbody tr', { hasText: 'failed on the shared queue' });
  await row.waitFor({ timeout: WAIT_MS });
  assert.match(await row.locator('.dlq-error').innerText(), /^ERR_TASK_FAILED failed on the shared queue/);
  await ctx.page.goto('about:blank');
});

test('a bad DASHBOARD_TOKEN stops the daemon at start, saying why', { timeout: 30000 }, async () => {
  const dir = tempDir('wpdash-');
  try {
    const env = { ...process.env, PID_FILE: path.join(dir, 'pool.pid'), FIFO_DIR: path.join(dir, 'fifo'), POOL_SIZE: '1', METRICS_PORT: '0', DASHBOARD_TOKEN: 'short' };
    delete env.NODE_OPTIONS;
    const r = await run(process.execPath, [path.join(ROOT, 'scripts', 'daemon.js')], { env, timeoutMs: 20000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /DASHBOARD_TOKEN must be at least 16 printable ASCII characters/);
    assert.equal(fs.existsSync(env.PID_FILE), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('histogram quantiles', () => {
  const text = [
    'worker_pool_task_wait_seconds_bucket{le="0.001"} 50',
    'worker_pool_task_wait_seconds_bucket{le="0.01"} 99',
    'worker_pool_task_wait_seconds_bucket{le="+Inf"} 100',
    'worker_pool_task_run_seconds_bucket{le="0.5"} 0',
    'worker_pool_task_run_seconds_bucket{le="+Inf"} 0',
    '',
  ].join('\n');
  const h = parseHistograms(text);
  assert.deepEqual(h.wait, [[0.001, 50], [0.01, 99], [Infinity, 100]]);
  assert.equal(quantileMs(h.wait, 0.5), 1);
  assert.ok(Math.abs(quantileMs(h.wait, 0.99) - 10) < 1e-9);
  assert.equal(quantileMs(h.wait, 1), 10, 'the +Inf bucket answers the highest finite bound');
  assert.equal(quantileMs(h.run, 0.5), null);
});
