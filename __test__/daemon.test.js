'use strict';
// The daemon as an operator uses it: scripts/worker-pool-daemon.sh, the control
// socket, the worker-pool CLI and npm-start, with real processes. Every test runs in
// its own temp dir (PID_FILE, SOCKET_PATH, LOG_DIR, FIFO_DIR) with POOL_SIZE=2, and
// leaves no process, socket or PID file behind.
// Run: node --test __test__/daemon.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const { request, call } = require('../lib/control-client');
const { ROOT, DAEMON_SH, run, cli, tempDir, daemonEnv, isAlive, waitFor, makeStaleSocket, fileMode, sleep } = require('./helpers');

const CUSTOM_WORKER = path.join(ROOT, 'examples', 'custom-worker.js');

/** Settings for one daemon in a fresh temp dir. */
function setup(extraEnv = {}) {
  const dir = tempDir('wpd-');
  const env = daemonEnv(dir, { MIN_WORKERS: '1', ...extraEnv });
  return { dir, env, pidFile: env.PID_FILE, socket: env.SOCKET_PATH, logFile: path.join(env.LOG_DIR, 'worker-pool.log') };
}

/** Makes `child` the ctx's starter: its stdout and stderr go to ctx.output, its end to ctx.exited. */
function attachStarter(ctx, child) {
  ctx.starter = child;
  ctx.output = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    ctx.output += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d) => {
    ctx.output += d;
  });
  ctx.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return child;
}

/** `worker-pool-daemon.sh start` in the background (own process group). */
function startDaemon(ctx) {
  return attachStarter(ctx, spawn('bash', [DAEMON_SH, 'start'], { env: ctx.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
}

async function waitReady(ctx, timeoutMs = 20000) {
  const pong = await waitFor(
    async () => {
      const r = await request(ctx.socket, { cmd: 'ping' }, 1000);
      return r.ok && r.result;
    },
    timeoutMs,
    `the daemon to answer on ${ctx.socket}; its output so far:\n${ctx.output}`,
  ).catch((e) => {
    throw new Error(`${e.message}\n--- daemon output:\n${ctx.output}`);
  });
  ctx.pid = pong.pid;
  return pong;
}

function sh(ctx, cmd, extraEnv = {}) {
  return run('bash', [DAEMON_SH, cmd], { env: { ...ctx.env, ...extraEnv }, timeoutMs: 60000 });
}

/** Whatever happened, nothing of this daemon survives the test. */
async function teardown(ctx) {
  if (ctx.pid && isAlive(ctx.pid)) process.kill(ctx.pid, 'SIGKILL');
  if (ctx.starter && ctx.starter.exitCode === null && ctx.starter.signalCode === null) {
    try {
      process.kill(-ctx.starter.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (ctx.exited) await Promise.race([ctx.exited, sleep(5000)]);
  for (const pid of ctx.workerPids || []) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  fs.rmSync(ctx.dir, { recursive: true, force: true });
}

/** Stops through the script and checks that nothing is left. */
async function stopAndCheckGone(ctx) {
  const stop = await sh(ctx, 'stop');
  assert.equal(stop.code, 0, stop.stdout + stop.stderr);
  assert.match(stop.stdout, /stopped/);
  const ended = await Promise.race([ctx.exited, sleep(10000).then(() => null)]);
  assert.ok(ended, 'the start script ended');
  assert.equal(ended.code, 0, `start exited with ${JSON.stringify(ended)}; output:\n${ctx.output}`);
  assert.equal(isAlive(ctx.pid), false, 'daemon process gone');
  await waitFor(() => (ctx.workerPids || []).every((p) => !isAlive(p)), 5000, 'the workers to be gone');
  assert.equal(fs.existsSync(ctx.socket), false, 'socket removed');
  assert.equal(fs.existsSync(ctx.pidFile), false, 'PID file removed');
  const status = await sh(ctx, 'status');
  assert.equal(status.code, 1, status.stdout);
  assert.match(status.stdout, /not running/);
}

test('start, status, CLI, bad requests, many clients, stop', { timeout: 120000 }, async (t) => {
  const ctx = setup({ METRICS_LOG_INTERVAL_MS: '300' });
  t.after(() => teardown(ctx));
  startDaemon(ctx);
  const pong = await waitReady(ctx);

  // status: exit 0, the PID, and the pool summary with its worker table.
  const status = await sh(ctx, 'status');
  assert.equal(status.code, 0, status.stdout + status.stderr);
  assert.match(status.stdout, new RegExp(`is running \\(PID ${pong.pid}\\)`));
  assert.match(status.stdout, /worker-0/);
  assert.equal(fs.readFileSync(ctx.pidFile, 'utf8').trim(), String(pong.pid));
  assert.equal(fileMode(ctx.socket), 0o600, 'socket mode 0600');

  const workers = await call(ctx.socket, 'workers');
  ctx.workerPids = workers.map((w) => w.pid);
  assert.equal(workers.length, 2);

  // CLI submit prints the result as JSON.
  const sub = await cli(['submit', '--socket', ctx.socket, '--type', 'test', '--payload', '{"x":1}', '--priority', '0'], { env: ctx.env });
  assert.equal(sub.code, 0, sub.stderr);
  assert.deepEqual(JSON.parse(sub.stdout), { status: 'completed', result: { x: 1 } });
  // ... from the environment's SOCKET_PATH as well.
  const sub2 = await cli(['submit', '--type', 'analysis', '--payload', '[1,2]'], { env: ctx.env });
  assert.equal(sub2.code, 0, sub2.stderr);
  assert.deepEqual(JSON.parse(sub2.stdout), { status: 'completed', result: [1, 2] });
  // A payload that is not JSON: usage error. A failing task: exit 1 with the error.
  const badPayload = await cli(['submit', '--type', 'test', '--payload', '{oops'], { env: ctx.env });
  assert.equal(badPayload.code, 2);
  assert.match(badPayload.stderr, /--payload is not valid JSON/);
  const failed = await cli(['submit', '--type', 'no-such-type', '--payload', '{}'], { env: ctx.env });
  assert.equal(failed.code, 1);
  assert.match(failed.stderr, /ERR_NO_HANDLER/);

  // CLI status, metrics, scale, dlq.
  const st = await cli(['status'], { env: ctx.env });
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /ID\s+PID\s+STATE\s+TASKS\s+RSS MB\s+LAST ACTIVITY/);
  assert.match(st.stdout, /worker-1\s+\d+\s+(ready|busy)/);
  const met = await cli(['metrics'], { env: ctx.env });
  assert.equal(JSON.parse(met.stdout).tasks.completed, 2);
  const up = await cli(['scale', 'up', '1'], { env: ctx.env });
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /pool size is now 3/);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  const dlq = await cli(['dlq'], { env: ctx.env });
  assert.match(dlq.stdout, /no-such-type/);
  assert.match((await cli(['dlq', 'clear'], { env: ctx.env })).stdout, /cleared 1 task/);
  assert.equal((await cli(['scale', 'sideways', '1'], { env: ctx.env })).code, 2);

  // Malformed requests get error replies; the daemon still answers.
  const replies = await new Promise((resolve, reject) => {
    const s = net.connect(ctx.socket);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write('{not json\n{"id":2,"cmd":"explode"}\n{"id":3}\n'));
    s.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n').filter(Boolean);
      if (lines.length === 3) {
        s.destroy();
        resolve(lines.map((l) => JSON.parse(l)));
      }
    });
    s.on('error', reject);
  });
  assert.deepEqual(
    replies.map((r) => [r.id, r.ok, r.error.code]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    [
      [2, false, 'ERR_UNKNOWN_COMMAND'],
      [3, false, 'ERR_BAD_REQUEST'],
      [null, false, 'ERR_BAD_JSON'],
    ],
  );
  // An oversized line: error reply, connection closed.
  const big = await request(ctx.socket, { cmd: 'ping', pad: 'z'.repeat(1100 * 1024) });
  assert.equal(big.error.code, 'ERR_LINE_TOO_LONG');
  // A client that leaves mid-request.
  await new Promise((resolve) => {
    const s = net.connect(ctx.socket, () => s.write('{"id":1,"cmd":"submit","task":{"type":"test","payload":1}}\n', () => resolve(s.destroy())));
    s.on('error', () => {});
  });
  assert.equal((await request(ctx.socket, { cmd: 'ping' })).ok, true, 'still answering');

  // Many clients at once: in-process ones and CLI processes.
  const inproc = Array.from({ length: 100 }, (_, i) => call(ctx.socket, 'submit', { task: { type: 'test', payload: { i } } }, 30000));
  const procs = Array.from({ length: 4 }, (_, i) => cli(['submit', '--type', 'test', '--payload', JSON.stringify({ p: i })], { env: ctx.env }));
  const results = await Promise.all(inproc);
  results.forEach((r, i) => assert.deepEqual(r, { status: 'completed', result: { i } }));
  for (const [i, r] of (await Promise.all(procs)).entries()) {
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).result, { p: i });
  }

  // Starting a second daemon on the same PID file is refused.
  const again = await sh(ctx, 'start');
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already running/);

  await stopAndCheckGone(ctx);

  // The log: metrics lines every METRICS_LOG_INTERVAL_MS and the graceful stop.
  const log = fs.readFileSync(ctx.logFile, 'utf8');
  assert.match(log, /\[Daemon\] metrics: workers \d+ total/);
  assert.match(log, /Received SIGTERM: shutting down gracefully/);
  assert.match(log, /Worker pool daemon stopped/);

  const after = await cli(['status'], { env: ctx.env });
  assert.equal(after.code, 1);
  assert.equal(after.stderr.trim(), `worker-pool daemon is not running (no socket at ${ctx.socket})`);
});

test('a stale PID file and a stale socket are replaced; JSON logs; cleanup', { timeout: 90000 }, async (t) => {
  const ctx = setup({ LOG_FORMAT: 'json', METRICS_PORT: '0' });
  t.after(() => teardown(ctx));
  fs.mkdirSync(ctx.env.FIFO_DIR, { recursive: true });
  // The PID of a live process that is not a daemon, and a socket nobody listens on.
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => sleeper.kill('SIGKILL'));
  fs.writeFileSync(ctx.pidFile, `${sleeper.pid}\n`);
  await makeStaleSocket(ctx.socket);
  assert.equal((await sh(ctx, 'status')).code, 1, 'a stale PID file is not a running daemon');

  startDaemon(ctx);
  const pong = await waitReady(ctx);
  assert.notEqual(pong.pid, sleeper.pid);
  assert.equal(fs.readFileSync(ctx.pidFile, 'utf8').trim(), String(pong.pid));
  assert.equal(fileMode(ctx.socket), 0o600);
  assert.equal((await sh(ctx, 'status')).code, 0);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  assert.equal(isAlive(sleeper.pid), true, 'the unrelated process was left alone');

  // cleanup refuses while the daemon runs.
  const refused = await sh(ctx, 'cleanup');
  assert.equal(refused.code, 1);
  assert.ok(fs.existsSync(ctx.socket));

  // METRICS_PORT: served when the pool has getPrometheusMetrics(), else a log line.
  const served = await waitFor(() => {
    const text = fs.existsSync(ctx.logFile) ? fs.readFileSync(ctx.logFile, 'utf8') : '';
    return /Prometheus metrics at http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(text) || (/HTTP metrics endpoint is disabled/.test(text) && 'disabled');
  }, 10000, 'the metrics endpoint log line');
  if (served !== 'disabled') {
    const body = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: Number(served[1]), path: '/metrics', agent: false }, (res) => {
        let b = '';
        res.setEncoding('utf8').on('data', (d) => {
          b += d;
        });
        res.on('end', () => resolve({ status: res.statusCode, b }));
      }).on('error', reject);
    });
    assert.equal(body.status, 200);
    const prom = await cli(['metrics', '--prometheus'], { env: ctx.env });
    assert.equal(prom.code, 0, prom.stderr);
  } else {
    const prom = await cli(['metrics', '--prometheus'], { env: ctx.env });
    assert.equal(prom.code, 1);
    assert.match(prom.stderr, /ERR_NOT_SUPPORTED/);
  }

  await stopAndCheckGone(ctx);
  // LOG_FORMAT=json: every line of the log is a JSON object.
  const lines = fs.readFileSync(ctx.logFile, 'utf8').split('\n').filter(Boolean);
  assert.ok(lines.length >= 4, lines.join('\n'));
  for (const line of lines) {
    const o = JSON.parse(line);
    assert.equal(typeof o.time, 'string');
    assert.equal(typeof o.message, 'string');
    assert.ok(['error', 'warn', 'info', 'debug'].includes(o.level), line);
  }
  assert.ok(lines.some((l) => JSON.parse(l).component === 'PoolManager'), 'the pool log is in it');

  // cleanup removes a leftover PID file, socket and pipes.
  fs.writeFileSync(ctx.pidFile, '999999\n');
  await makeStaleSocket(ctx.socket);
  const fifo = path.join(ctx.env.FIFO_DIR, 'worker-worker-0-in.fifo');
  assert.equal((await run('mkfifo', [fifo])).code, 0);
  const keep = path.join(ctx.env.FIFO_DIR, 'unrelated.txt');
  fs.writeFileSync(keep, 'x');
  const clean = await sh(ctx, 'cleanup');
  assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  assert.equal(fs.existsSync(ctx.pidFile), false);
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(fifo), false);
  assert.equal(fs.existsSync(keep), true);
});

test('stop drains running tasks; a daemon that does not stop in STOP_TIMEOUT is killed', { timeout: 90000 }, async (t) => {
  const ctx = setup({ WORKER_SCRIPT: CUSTOM_WORKER });
  t.after(() => teardown(ctx));
  startDaemon(ctx);
  await waitReady(ctx);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);

  // A graceful stop (SIGTERM) finishes the running task and replies to its client.
  const running = call(ctx.socket, 'submit', { task: { type: 'sleep', payload: { ms: 800 } } }, 20000);
  await waitFor(async () => (await call(ctx.socket, 'metrics')).tasks.running === 1, 15000, 'the task to run');
  const stop = await sh(ctx, 'stop');
  assert.equal(stop.code, 0, stop.stdout + stop.stderr);
  const r = await running;
  assert.equal(r.slept, 800);
  assert.equal((await ctx.exited).code, 0, ctx.output);
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(ctx.pidFile), false);

  // Again, with a task longer than STOP_TIMEOUT: killed after it, nothing left behind.
  startDaemon(ctx);
  await waitReady(ctx);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  const long = request(ctx.socket, { cmd: 'submit', task: { type: 'sleep', payload: { ms: 30000 } } }, 30000).then(
    (res) => ({ res }),
    (error) => ({ error }),
  );
  await waitFor(async () => (await call(ctx.socket, 'metrics')).tasks.running === 1, 15000, 'the task to run');
  const t0 = Date.now();
  const killed = await sh(ctx, 'stop', { STOP_TIMEOUT: '1' });
  assert.equal(killed.code, 0, killed.stdout + killed.stderr);
  assert.match(killed.stderr, /killing PID/, `${killed.stdout}${killed.stderr}\n--- daemon output:\n${ctx.output}`);
  assert.ok(Date.now() - t0 < 20000);
  assert.equal(isAlive(ctx.pid), false);
  await waitFor(() => ctx.workerPids.every((p) => !isAlive(p)), 5000, 'the workers to die with the daemon');
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(ctx.pidFile), false);
  const outcome = await long;
  assert.equal(outcome.error && outcome.error.code, 'ERR_CONNECTION_CLOSED', JSON.stringify(outcome.res || outcome.error.message));
  assert.equal((await sh(ctx, 'status')).code, 1);
});

test('the control socket shutdown command and SIGINT stop the daemon gracefully', { timeout: 60000 }, async (t) => {
  const ctx = setup();
  t.after(() => teardown(ctx));
  startDaemon(ctx);
  await waitReady(ctx);
  const down = await cli(['shutdown'], { env: ctx.env });
  assert.equal(down.code, 0, down.stderr);
  assert.equal((await Promise.race([ctx.exited, sleep(20000).then(() => 'timeout')])).code, 0);
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(ctx.pidFile), false);

  startDaemon(ctx);
  await waitReady(ctx);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  process.kill(ctx.pid, 'SIGINT');
  assert.equal((await Promise.race([ctx.exited, sleep(20000).then(() => 'timeout')])).code, 0);
  assert.match(ctx.output, /Received SIGINT: shutting down gracefully/);
  await waitFor(() => ctx.workerPids.every((p) => !isAlive(p)), 5000, 'the workers to be gone');
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(ctx.pidFile), false);
});

test('bad settings and usage errors', { timeout: 60000 }, async (t) => {
  const ctx = setup({ POOL_SIZE: 'many' });
  t.after(() => teardown(ctx));
  const start = await sh(ctx, 'start');
  assert.equal(start.code, 1);
  assert.match(start.stdout, /POOL_SIZE must be an integer/);
  assert.equal(fs.existsSync(ctx.pidFile), false);
  const bad = await sh({ ...ctx, env: { ...ctx.env, POOL_SIZE: '2', WORKER_SCRIPT: path.join(ctx.dir, 'missing.js') } }, 'start');
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /missing\.js/);
  assert.equal(fs.existsSync(ctx.pidFile), false);
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal((await sh(ctx, 'bogus')).code, 2);
  assert.equal((await sh(ctx, 'stop')).code, 0, 'stop when not running is fine');

  assert.equal((await cli([], { env: ctx.env })).code, 2);
  assert.equal((await cli(['frobnicate'], { env: ctx.env })).code, 2);
  assert.equal((await cli(['status', '--type', 'x'], { env: ctx.env })).code, 2);
  assert.equal((await cli(['submit', '--payload', '{}'], { env: ctx.env })).code, 2, 'no --type');
  assert.equal((await cli(['submit', '--type', 't', '--priority', 'high'], { env: ctx.env })).code, 2);
  assert.equal((await cli(['scale', 'up', '0'], { env: ctx.env })).code, 2);
  const help = await cli(['--help'], { env: ctx.env });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: worker-pool/);
  const notRunning = await cli(['submit', '--type', 't', '--payload', '1', '--socket', path.join(ctx.dir, 'nope.sock')], { env: ctx.env });
  assert.equal(notRunning.code, 1);
  assert.match(notRunning.stderr, /worker-pool daemon is not running \(no socket at .*nope\.sock\)/);
});

test('npm-start runs the daemon with a status line and stops it on Ctrl-C', { timeout: 60000 }, async (t) => {
  const ctx = setup({ STATUS_INTERVAL_MS: '200' });
  t.after(() => teardown(ctx));
  const child = attachStarter(ctx, spawn(process.execPath, [path.join(ROOT, 'scripts', 'npm-start.js')], { env: ctx.env, stdio: ['ignore', 'pipe', 'pipe'] }));
  await waitReady(ctx);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  await call(ctx.socket, 'submit', { task: { type: 'test', payload: 1 } });
  await waitFor(() => /\[worker-pool\] workers 2 ready \/ 0 busy \(2\) \| queue 0 \| completed 1 \|/.test(ctx.output), 10000, 'a status line');
  child.kill('SIGINT');
  const end = await Promise.race([ctx.exited, sleep(20000).then(() => 'timeout')]);
  assert.equal(end.code, 0, ctx.output);
  assert.equal(isAlive(ctx.pid), false);
  await waitFor(() => ctx.workerPids.every((p) => !isAlive(p)), 5000, 'the workers to be gone');
  assert.equal(fs.existsSync(ctx.socket), false);
  assert.equal(fs.existsSync(ctx.pidFile), false);
  assert.match(fs.readFileSync(ctx.logFile, 'utf8'), /Worker pool daemon stopped/);
});

test('WORKER_COMMAND runs Python workers from a JSON argv; a bad one or one beside WORKER_SCRIPT stops the start', { timeout: 90000 }, async (t) => {
  const pyWorker = path.join(__dirname, 'fixtures', 'python-worker.py');
  const ctx = setup({ POOL_SIZE: '1', WORKER_COMMAND: JSON.stringify(['python3', pyWorker]), PYTHONPATH: path.join(ROOT, 'python') });
  t.after(() => teardown(ctx));
  startDaemon(ctx);
  await waitReady(ctx);
  ctx.workerPids = (await call(ctx.socket, 'workers')).map((w) => w.pid);
  assert.equal(await call(ctx.socket, 'submit', { task: { type: 'double', payload: { n: 21 } } }), 42);
  assert.equal((await call(ctx.socket, 'submit', { task: { type: 'whoami' } })).runtime, 'python');
  const stop = await sh(ctx, 'stop');
  assert.equal(stop.code, 0, stop.stdout + stop.stderr);
  await waitFor(() => ctx.workerPids.every((p) => !isAlive(p)), 10000, 'the Python workers to be gone');

  const notJson = await sh(ctx, 'start', { WORKER_COMMAND: 'python3 worker.py' });
  assert.notEqual(notJson.code, 0);
  assert.match(notJson.stdout + notJson.stderr, /WORKER_COMMAND must be a JSON array of strings/);
  const both = await sh(ctx, 'start', { WORKER_SCRIPT: CUSTOM_WORKER });
  assert.notEqual(both.code, 0);
  assert.match(both.stdout + both.stderr, /WORKER_COMMAND and WORKER_SCRIPT cannot both be set/);
});
