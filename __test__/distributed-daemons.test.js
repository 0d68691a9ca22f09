'use strict';
// Many machines, one queue, with real daemons: two `scripts/daemon.js` processes
// (POOL_SIZE=2 each, their own sockets and PID files) serve one shared queue on a
// private redis-server, and a producer in this process submits to it. One daemon is
// SIGKILLed, one is SIGTERMed, Redis is stopped and started again: every promise
// settles exactly once and no job completes twice.
// Run: node --test __test__/distributed-daemons.test.js

const { before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createQueueClient } = require('..');
const { request } = require('../lib/control-client');
const { ROOT, fixture, test, waitFor, within, settle, assertGone, tempDir, daemonEnv, sleep } = require('./helpers');
const { startRedis } = require('./redis-harness');
// BullMQ's QueueEvents.close() can wait forever after a Redis restart (its blocking
// read never returns); the product bounds it the same way.
const { closeBull } = require('../lib/distributed/redis');

const DAEMON = path.join(ROOT, 'scripts', 'daemon.js');
const LOCK_MS = 2000;
const STALLED_MS = 1000;
let redis;
let seq = 0;
const daemons = new Set();
const workerPids = new Set();

/** Starts one daemon ("a machine") serving `name`; resolves when it is ready. */
async function startDaemon(name, extraEnv = {}) {
  const dir = tempDir('wpdq-');
  const env = daemonEnv(dir, {
    MIN_WORKERS: '1',
    WORKER_SCRIPT: fixture('queue-worker.js'),
    METRICS_LOG_INTERVAL_MS: '0',
    SHUTDOWN_TIMEOUT: '15000',
    QUEUE_URL: redis.url,
    QUEUE_NAME: name,
    QUEUE_LOCK_MS: String(LOCK_MS),
    QUEUE_STALLED_MS: String(STALLED_MS),
    ...extraEnv,
  });
  const child = spawn(process.execPath, [DAEMON], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const d = { child, dir, socket: env.SOCKET_PATH, output: '', pid: child.pid };
  d.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.stdout.setEncoding('utf8').on('data', (s) => (d.output += s));
  child.stderr.setEncoding('utf8').on('data', (s) => (d.output += s));
  daemons.add(d);
  await waitFor(() => d.output.includes('Worker pool daemon ready') || child.exitCode !== null, 30000, () => `daemon ready; output:\n${d.output}`);
  assert.equal(child.exitCode, null, d.output);
  assert.match(d.output, new RegExp(`serving the shared queue "${name}"`));
  const r = await request(d.socket, { cmd: 'workers' }, 5000);
  d.workers = r.result.map((w) => w.pid);
  for (const pid of d.workers) workerPids.add(pid);
  return d;
}

async function stopDaemon(d) {
  if (d.child.exitCode === null && d.child.signalCode === null) {
    d.child.kill('SIGTERM');
    const timer = setTimeout(() => d.child.kill('SIGKILL'), 20000);
    await d.exited;
    clearTimeout(timer);
  }
  fs.rmSync(d.dir, { recursive: true, force: true });
  daemons.delete(d);
}

/** A producer plus a QueueEvents reader counting 'completed' and 'stalled' per job id. */
async function observe(t, name) {
  const c = createQueueClient({ url: redis.url, name });
  const { QueueEvents } = require('bullmq');
  const ev = new QueueEvents(name, { connection: { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null }, lastEventId: '0-0' });
  ev.on('error', () => {});
  const completed = new Map();
  let stalled = 0;
  ev.on('completed', ({ jobId }) => completed.set(jobId, (completed.get(jobId) || 0) + 1));
  ev.on('stalled', () => stalled++);
  await ev.waitUntilReady();
  t.after(async () => {
    await closeBull(ev, 5000);
    await c.close();
  });
  return { c, completed, stalled: () => stalled };
}

/** Submits n tasks; returns their promises, each wrapped so a second settlement would be seen. */
function submitMany(c, n, task) {
  const settledTwice = [];
  const promises = Array.from({ length: n }, (_, i) => {
    let count = 0;
    return new Promise((resolve) => {
      c.submitTask(task(i)).then(
        (value) => (++count === 1 ? resolve({ ok: true, value }) : settledTwice.push(i)),
        (error) => (++count === 1 ? resolve({ ok: false, error }) : settledTwice.push(i)),
      );
    });
  });
  return { promises, settledTwice };
}

function runLog(file) {
  const runs = new Map();
  for (const line of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const [i, machine] = line.split(' ').map(Number);
    if (!runs.has(i)) runs.set(i, []);
    runs.get(i).push(machine);
  }
  return runs;
}

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const d of [...daemons]) await stopDaemon(d);
  await redis.destroy();
});

test('two daemons serve one queue: 1,000 tasks, both run some, every promise resolves once with its own result', async (t) => {
  const name = `d${process.pid}-${++seq}`;
  const [a, b] = await Promise.all([startDaemon(name), startDaemon(name)]);
  t.after(() => Promise.all([stopDaemon(a), stopDaemon(b)]));
  const { c, completed } = await observe(t, name);
  await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 10000, 'two serving pools');
  const { promises, settledTwice } = submitMany(c, 1000, (i) => ({ type: 'whoami', payload: { i } }));
  const results = await within(Promise.all(promises), 60000, '1,000 tasks');
  results.forEach((r, i) => {
    assert.ok(r.ok, r.error && r.error.message);
    assert.equal(r.value.i, i);
  });
  const machines = new Set(results.map((r) => r.value.machine));
  assert.deepEqual([...machines].sort(), [a.pid, b.pid].sort(), 'both daemons ran tasks');
  await waitFor(() => completed.size >= 1000, 10000, 'every completed event');
  assert.ok([...completed.values()].every((n) => n === 1), 'no job completed twice');
  assert.deepEqual(settledTwice, []);
});

test('a daemon SIGKILLed mid-run: its jobs come back and finish on the other, none completes twice', async (t) => {
  const name = `d${process.pid}-${++seq}`;
  const [a, b] = await Promise.all([startDaemon(name), startDaemon(name)]);
  t.after(() => Promise.all([stopDaemon(a), stopDaemon(b)]));
  const { c, completed } = await observe(t, name);
  await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 10000, 'two serving pools');
  const log = path.join(a.dir, '..', `runs-${name}.log`);
  fs.writeFileSync(log, '');
  t.after(() => fs.rmSync(log, { force: true }));
  const { promises, settledTwice } = submitMany(c, 300, (i) => ({ type: 'logged', payload: { i, ms: 30, log } }));
  await waitFor(() => runLog(log).size >= 60, 30000, 'some tasks to have run');
  a.child.kill('SIGKILL');
  const killedAt = Date.now();
  await a.exited;
  const results = await within(Promise.all(promises), 60000, 'every task after the kill');
  const recoveredIn = Date.now() - killedAt;
  for (const r of results) assert.ok(r.ok, r.error && `${r.error.code}: ${r.error.message}`);
  // Bounded by lockDuration + stalledInterval plus a generous margin for a shared machine.
  assert.ok(recoveredIn < LOCK_MS + STALLED_MS + 20000, `recovered in ${recoveredIn} ms`);
  await assertGone(a.workers, 10000); // its workers died with it
  await waitFor(() => completed.size >= 300, 10000, 'every completed event');
  assert.ok([...completed.values()].every((n) => n === 1), 'no job completed twice');
  assert.deepEqual(settledTwice, []);
  // The only tasks run twice were started on the dead daemon.
  for (const [i, machines] of runLog(log)) {
    if (machines.length > 1) assert.equal(machines[0], a.pid, `task ${i} ran twice (${machines}) but did not start on the killed daemon`);
  }
  assert.ok(results.some((r) => r.value.machine === b.pid), 'the surviving daemon finished tasks');
});

test('a daemon SIGTERMed mid-run exits 0 after its running tasks, no job stalls, the other takes the rest', async (t) => {
  const name = `d${process.pid}-${++seq}`;
  const [a, b] = await Promise.all([startDaemon(name), startDaemon(name)]);
  t.after(() => Promise.all([stopDaemon(a), stopDaemon(b)]));
  const { c, completed, stalled } = await observe(t, name);
  await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 10000, 'two serving pools');
  const log = path.join(a.dir, '..', `runs-${name}.log`);
  fs.writeFileSync(log, '');
  t.after(() => fs.rmSync(log, { force: true }));
  const { promises, settledTwice } = submitMany(c, 60, (i) => ({ type: 'logged', payload: { i, ms: 150, log } }));
  await waitFor(() => [...runLog(log).values()].filter((m) => m[0] === a.pid).length >= 4, 30000, 'daemon A to run some tasks');
  a.child.kill('SIGTERM');
  const exit = await within(a.exited, 30000, 'daemon A to exit');
  assert.deepEqual(exit, { code: 0, signal: null }, a.output);
  const results = await within(Promise.all(promises), 60000, 'every task');
  for (const r of results) assert.ok(r.ok, r.error && r.error.message);
  assert.equal(stalled(), 0, 'no job stalled');
  assert.ok([...runLog(log).values()].every((m) => m.length === 1), 'no task ran twice');
  assert.ok(results.some((r) => r.value.machine === b.pid));
  await waitFor(() => completed.size >= 60, 10000, 'every completed event');
  assert.ok([...completed.values()].every((n) => n === 1));
  assert.deepEqual(settledTwice, []);
  await assertGone(a.workers, 10000);
});

test('Redis stopped and started again mid-run: daemons and producer reconnect, every promise settles', async (t) => {
  const name = `d${process.pid}-${++seq}`;
  const [a, b] = await Promise.all([startDaemon(name), startDaemon(name)]);
  t.after(() => Promise.all([stopDaemon(a), stopDaemon(b)]));
  const { c } = await observe(t, name);
  await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 10000, 'two serving pools');
  const { promises, settledTwice } = submitMany(c, 300, (i) => ({ type: 'whoami', payload: { i } }));
  await sleep(100);
  await redis.stop();
  await sleep(1000);
  // Tasks submitted while Redis is down wait in the client and go when it is back.
  const late = submitMany(c, 50, (i) => ({ type: 'whoami', payload: { i: 1000 + i } }));
  await redis.start();
  const results = await within(Promise.all([...promises, ...late.promises]), 90000, 'every task after the restart');
  results.forEach((r, k) => {
    assert.ok(r.ok, r.error && `${r.error.code}: ${r.error.message}`);
    assert.equal(r.value.i, k < 300 ? k : 1000 + k - 300);
  });
  assert.deepEqual([...settledTwice, ...late.settledTwice], []);
  // Both daemons are still serving.
  await waitFor(async () => (await c.getQueueMetrics()).servingPools === 2, 15000, 'two serving pools after the restart');
  assert.equal(a.child.exitCode, null);
  assert.equal(b.child.exitCode, null);
});

test('no worker process of any daemon is left', async () => {
  for (const d of [...daemons]) await stopDaemon(d);
  await assertGone([...workerPids], 15000);
});
