'use strict';
// The pool's events and their payloads.
// Run: node --test __test__/events.test.js

const assert = require('node:assert/strict');
const os = require('node:os');
const { spawn } = require('node:child_process');
const { test, ROOT, fixture, openPool, waitFor, within, settle, assertGone, finalGoneTest } = require('./helpers');

const seen = new Set();
const ECHO = fixture('echo-worker.js');
const TASK_ID = /^task-\d+-\d+$/;
const WORKER_ID = /^worker-\d+$/;

/** Records every event of the given names on an emitter. */
function recorder(emitter, names) {
  const got = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) emitter.on(n, (...args) => got[n].push(args.length <= 1 ? args[0] : args));
  return got;
}

test('pool-initialized { poolSize, config } and log { level, component, message, timestamp }', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen, init: false });
  const got = recorder(pool, ['pool-initialized', 'log']);
  await within(pool.initialize(), 30000, 'initialize');
  assert.equal(got['pool-initialized'].length, 1);
  const e = got['pool-initialized'][0];
  assert.equal(e.poolSize, 2);
  assert.equal(typeof e.config, 'object');
  assert.equal(e.config.poolSize, 2);
  assert.equal(e.config.workerScript, ECHO);
  assert.ok(got.log.length >= 1, 'the pool logged something (silently)');
  for (const l of got.log) {
    assert.ok(['error', 'warn', 'info', 'debug'].includes(l.level), `level ${l.level}`);
    assert.equal(typeof l.component, 'string');
    assert.ok(l.component.length > 0);
    assert.equal(typeof l.message, 'string');
    assert.equal(typeof l.timestamp, 'number');
    assert.ok(Math.abs(Date.now() - l.timestamp) < 60000, 'timestamp is epoch ms');
  }
  assert.ok(got.log.some((l) => /initialized/i.test(l.message)), JSON.stringify(got.log));
});

test('task-assigned { taskId, workerId, queuedTimeMs } and task-completed { taskId, workerId, duration, workerReused }', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const got = recorder(pool, ['task-assigned', 'task-completed']);
  await pool.submitTask({ type: 'echo', payload: 1 });
  await pool.submitTask({ type: 'sleep', payload: { ms: 30 } });
  await waitFor(() => got['task-completed'].length === 2, 5000, { message: '2 task-completed' });
  assert.equal(got['task-assigned'].length, 2);
  for (const e of got['task-assigned']) {
    assert.match(e.taskId, TASK_ID);
    assert.equal(e.workerId, 'worker-0');
    assert.equal(typeof e.queuedTimeMs, 'number');
    assert.ok(e.queuedTimeMs >= 0);
  }
  const [c1, c2] = got['task-completed'];
  for (const e of [c1, c2]) {
    assert.match(e.taskId, TASK_ID);
    assert.equal(e.workerId, 'worker-0');
    assert.equal(typeof e.duration, 'number');
    assert.equal(typeof e.workerReused, 'boolean');
  }
  assert.equal(c1.taskId, got['task-assigned'][0].taskId);
  assert.equal(c2.taskId, got['task-assigned'][1].taskId);
  assert.notEqual(c1.taskId, c2.taskId);
  assert.equal(c1.workerReused, false, 'first task on a fresh worker');
  assert.equal(c2.workerReused, true, 'second task on the same worker');
  assert.ok(c2.duration >= 25, `sleep 30 ms took ${c2.duration} ms`);
});

test('task-failed { taskId, workerId, error, duration, retried }', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, maxTaskRetries: 1, retryBackoffMs: 10 }, { seen });
  const got = recorder(pool, ['task-failed']);
  const r = await settle(within(pool.submitTask({ type: 'throw', payload: { message: 'bad thing' } }), 15000, 'a task failing twice (one retry after 10 ms)'));
  assert.equal(r.ok, false);
  await waitFor(() => got['task-failed'].length === 2, 5000, { message: '2 task-failed' });
  const [f1, f2] = got['task-failed'];
  for (const e of [f1, f2]) {
    assert.match(e.taskId, TASK_ID);
    assert.equal(e.workerId, 'worker-0');
    assert.equal(e.error, 'bad thing');
    assert.equal(typeof e.duration, 'number');
    assert.equal(typeof e.retried, 'boolean');
  }
  assert.equal(f1.taskId, f2.taskId);
  assert.equal(f1.retried, true);
  assert.equal(f2.retried, false);
});

test('worker-exited { workerId, pid, code, signal, uptime } after a crash and after SIGKILL', async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 1, workerScript: ECHO, maxTaskRetries: 0, restartCooldownMs: 0, minUptimeMs: 0, maxRestartAttempts: 5 },
    { seen },
  );
  const got = recorder(pool, ['worker-exited']);
  const pid0 = pool.getWorkerPids()[0];
  const r = await settle(pool.submitTask({ type: 'crash', payload: { code: 7 } }));
  assert.equal(r.ok, false);
  await waitFor(() => got['worker-exited'].length === 1, 10000, { message: 'worker-exited' });
  const e = got['worker-exited'][0];
  assert.equal(e.workerId, 'worker-0');
  assert.equal(e.pid, pid0);
  assert.equal(e.code, 7);
  assert.equal(e.signal, null);
  assert.equal(typeof e.uptime, 'number');
  assert.ok(e.uptime >= 0);

  // The replacement gets killed by a signal.
  await waitFor(() => pool.getWorkerPids().length === 1 && pool.getWorkerPids()[0] !== pid0, 10000, { message: 'replacement worker' });
  await within(pool.submitTask({ type: 'echo', payload: 1 }), 10000, 'task on the replacement');
  const pid1 = pool.getWorkerPids()[0];
  seen.add(pid1);
  await settle(pool.submitTask({ type: 'kill-self', payload: { signal: 'SIGKILL' } }));
  await waitFor(() => got['worker-exited'].length === 2, 10000, { message: 'second worker-exited' });
  const k = got['worker-exited'][1];
  assert.equal(k.workerId, 'worker-1');
  assert.equal(k.pid, pid1);
  assert.equal(k.code, null);
  assert.equal(k.signal, 'SIGKILL');
});

test('worker-error { workerId, pid, error } for an unhandled rejection in a worker', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const got = recorder(pool, ['worker-error']);
  assert.equal(await pool.submitTask({ type: 'unhandled-rejection' }), 'still alive');
  await waitFor(() => got['worker-error'].length >= 1, 5000, { message: 'worker-error' });
  const e = got['worker-error'][0];
  assert.equal(e.workerId, 'worker-0');
  assert.equal(e.pid, pool.getWorkerPids()[0]);
  assert.equal(typeof e.error, 'string');
  assert.match(e.error, /rejected in worker/);
});

test('pool-scaled-up / pool-scaled-down { count, newSize }', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, minWorkers: 1, maxWorkers: 4, workerScript: ECHO }, { seen });
  const got = recorder(pool, ['pool-scaled-up', 'pool-scaled-down']);
  await within(pool.scaleUp(2), 30000, 'scaleUp');
  for (const p of pool.getWorkerPids()) seen.add(p);
  await within(pool.scaleDown(1), 30000, 'scaleDown');
  assert.deepEqual(got['pool-scaled-up'], [{ count: 2, newSize: 3 }]);
  assert.deepEqual(got['pool-scaled-down'], [{ count: 1, newSize: 2 }]);
});

test('pool-shutdown is emitted once', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const got = recorder(pool, ['pool-shutdown']);
  await within(pool.shutdown(true), 20000, 'shutdown');
  await within(pool.shutdown(true), 20000, 'second shutdown');
  assert.equal(got['pool-shutdown'].length, 1);
});

test('worker-log { workerId, level, message, ... } from a worker calling log()', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: fixture('log-worker.js') }, { seen, init: false });
  const got = recorder(pool, ['worker-log']);
  await within(pool.initialize(), 30000, 'initialize');
  // WorkerProcess.start() logs 'Worker started' at info level.
  await waitFor(() => got['worker-log'].some((e) => e.message === 'Worker started'), 5000, { message: 'startup worker-log' });
  for (const level of ['error', 'warning', 'info', 'debug']) {
    assert.equal(await pool.submitTask({ type: 'log', payload: { level, message: `a ${level} line`, extra: { detail: 42 } } }), 'logged');
  }
  await waitFor(() => got['worker-log'].filter((e) => /^a \w+ line$/.test(e.message)).length === 4, 5000, { message: '4 worker-log events' });
  const lines = got['worker-log'].filter((e) => /^a \w+ line$/.test(e.message));
  assert.deepEqual(lines.map((e) => e.level), ['error', 'warning', 'info', 'debug']);
  for (const e of lines) {
    assert.equal(e.workerId, 'worker-0');
    assert.equal(e.message, `a ${e.level} line`);
    assert.equal(e.detail, 42);
    assert.equal(typeof e.timestamp, 'number');
  }
});

test("zombie-detected is re-emitted on the pool { workerId, pid, timeSinceHeartbeat, state, currentTask }", async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 1, workerScript: fixture('no-heartbeat-worker.js'), heartbeatInterval: 50, zombieThresholdMs: 400, healthCheckInterval: 20, restartCooldownMs: 0, minUptimeMs: 0 },
    { seen },
  );
  const got = recorder(pool, ['zombie-detected']);
  // Let a few heartbeats arrive, then silence them.
  await waitFor(() => pool.healthMonitor.getWorkerHealth('worker-0').timeSinceHeartbeat < 100 && pool.getWorkerStatus('worker-0').uptime > 150, 5000, { message: 'heartbeats flowing' });
  const pid = pool.getWorkerPids()[0];
  assert.deepEqual(await pool.submitTask({ type: 'stop-heartbeats' }), { stopped: true });
  await waitFor(() => got['zombie-detected'].length >= 1, 10000, { message: 'zombie-detected on the pool' });
  const e = got['zombie-detected'][0];
  assert.equal(e.workerId, 'worker-0');
  assert.equal(e.pid, pid);
  assert.equal(typeof e.timeSinceHeartbeat, 'number');
  assert.ok(e.timeSinceHeartbeat > 400);
  assert.equal(typeof e.state, 'string');
  assert.ok('currentTask' in e);
  // The zombie is replaced.
  await waitFor(() => pool.getWorkerPids().length === 1 && pool.getWorkerPids()[0] !== pid, 10000, { message: 'zombie replaced' });
  for (const p of pool.getWorkerPids()) seen.add(p);
});

test('a blocked JS thread does not make healthy workers look like zombies', async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 2, workerScript: ECHO, heartbeatInterval: 50, zombieThresholdMs: 800, healthCheckInterval: 20 },
    { seen },
  );
  const got = recorder(pool, ['zombie-detected', 'worker-exited']);
  const pids = pool.getWorkerPids();
  await waitFor(() => pool.getAllWorkersStatus().every((s) => s.health.timeSinceHeartbeat < 100), 5000, { message: 'heartbeats flowing' });
  const until = Date.now() + 2500; // three times the zombie threshold
  while (Date.now() < until) { /* block this thread */ }
  await new Promise((r) => setTimeout(r, 200)); // let any queued events arrive
  assert.deepEqual(got['zombie-detected'], []);
  assert.deepEqual(got['worker-exited'], []);
  assert.deepEqual(pool.getWorkerPids(), pids);
  assert.equal(pool.getPoolMetrics().performance.workersRestarted, 0);
  assert.deepEqual(await pool.submitTask({ type: 'echo', payload: 'ok' }), 'ok');
});

test('high-memory { workerId, memoryMB, threshold }: a worker over workerMemoryLimitMB is recycled', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, workerMemoryLimitMB: 100, healthCheckInterval: 50 }, { seen });
  const got = recorder(pool, ['high-memory', 'worker-exited']);
  const pid = pool.getWorkerPids()[0];
  assert.deepEqual(await pool.submitTask({ type: 'leak', payload: { mb: 150 } }), { retainedMB: 150 });
  await waitFor(() => got['high-memory'].length >= 1, 10000, { message: 'high-memory' });
  const e = got['high-memory'][0];
  assert.equal(e.workerId, 'worker-0');
  assert.equal(e.threshold, 100);
  assert.ok(e.memoryMB > 100, `memoryMB ${e.memoryMB}`);
  await waitFor(() => got['worker-exited'].length === 1, 10000, { message: 'recycled worker exits' });
  await waitFor(() => pool.getAllWorkersStatus().length === 1 && pool.getAllWorkersStatus()[0].id === 'worker-1', 10000, { message: 'replacement' });
  for (const p of pool.getWorkerPids()) seen.add(p);
  await assertGone([pid], 5000);
  assert.equal(await pool.submitTask({ type: 'echo', payload: 'fresh' }), 'fresh');
  assert.ok(pool.healthMonitor.getAlerts().some((a) => a.type === 'high-memory'));
});

test('task ids are task-<epoch ms>-<counter>', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
  const got = recorder(pool, ['task-assigned']);
  const before = Date.now();
  await Promise.all([1, 2, 3, 4, 5].map((n) => pool.submitTask({ type: 'echo', payload: n })));
  await waitFor(() => got['task-assigned'].length === 5, 5000, { message: '5 task-assigned' });
  const ids = got['task-assigned'].map((e) => e.taskId);
  assert.equal(new Set(ids).size, 5);
  for (const id of ids) {
    assert.match(id, TASK_ID);
    const ms = Number(id.split('-')[1]);
    assert.ok(ms >= before - 1000 && ms <= Date.now() + 1000, `epoch ms in ${id}`);
  }
  for (const e of got['task-assigned']) assert.match(e.workerId, WORKER_ID);
});

/** Runs a small pool script in a child and returns its stdout/stderr. */
function runChild(code) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child hung; ${stdout} ${stderr}`)); }, 60000);
    child.on('close', (codeOut) => { clearTimeout(timer); resolve({ code: codeOut, stdout, stderr }); });
  });
}

function loggingScript(options) {
  return `
const { createWorkerPool } = require(${JSON.stringify(ROOT)});
(async () => {
  const pool = await createWorkerPool(${JSON.stringify({ poolSize: 1, workerScript: fixture('log-worker.js'), ...options })});
  process.stderr.write('PIDS ' + JSON.stringify(pool.getWorkerPids()) + '\\n');
  for (const level of ['error', 'warning', 'info', 'debug']) {
    await pool.submitTask({ type: 'log', payload: { level, message: 'line-' + level } });
  }
  await new Promise((r) => setTimeout(r, 200));
  await pool.shutdown(true);
})();
`;
}

function pidsOf(stderr) {
  return stderr.split('\n').filter((l) => l.startsWith('PIDS ')).flatMap((l) => JSON.parse(l.slice(5)));
}

test("logLevel 'silent' prints nothing; otherwise lines carry [PoolManager] / [Worker <id>] and the logWorker* filters", async () => {
  const silent = await runChild(loggingScript({ logLevel: 'silent', logWorkerInfo: true, logWorkerDebug: true }));
  for (const p of pidsOf(silent.stderr)) seen.add(p);
  assert.equal(silent.code, 0, silent.stderr);
  assert.equal(silent.stdout, '');
  assert.equal(silent.stderr.split('\n').filter((l) => l && !l.startsWith('PIDS ')).join('\n'), '');

  const loud = await runChild(loggingScript({}));
  for (const p of pidsOf(loud.stderr)) seen.add(p);
  assert.equal(loud.code, 0, loud.stderr);
  const all = loud.stdout + loud.stderr;
  assert.match(all, /\[PoolManager\] /);
  // Defaults: errors and warnings printed, info and debug not.
  assert.match(all, /\[Worker worker-0\] line-error/);
  assert.match(all, /\[Worker worker-0\] line-warning/);
  assert.doesNotMatch(all, /line-info/);
  assert.doesNotMatch(all, /line-debug/);
});

finalGoneTest(test, seen);
