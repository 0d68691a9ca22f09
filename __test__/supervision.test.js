'use strict';

// Fault injection, supervision (issue 4): zombies, start failures, memory limits,
// protocol violations, parent death, a blocked JS thread, crash loops.
// Run: node --test __test__/supervision.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { createWorkerPool } = require('..');
const {
  ROOT,
  fixture,
  waitFor,
  assertGone,
  assertNoDefunct,
  childrenOf,
  isAlive,
  POOL_DEFAULTS,
  openPool,
  settle,
  within,
  serving,
} = require('./helpers');

/** Resolves when the pool's monitor has a heartbeat from every current worker. */
async function heartbeatsFromAll(pool, ms = 5000) {
  const seen = new Set();
  const onBeat = (e) => seen.add(e.workerId);
  pool.healthMonitor.on('heartbeat-received', onBeat);
  try {
    await waitFor(() => pool.getAllWorkersStatus().every((w) => seen.has(w.id)), ms, {
      what: () => `heartbeats from ${[...seen]} of ${pool.getAllWorkersStatus().map((w) => w.id)}`,
    });
  } finally {
    pool.healthMonitor.off('heartbeat-received', onBeat);
  }
}

test.afterEach(async () => {
  await assertNoDefunct(3000);
});

// ---------------------------------------------------------------------------------

test('a SIGSTOPped worker is detected as a zombie, killed and replaced; its task is retried elsewhere', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 2,
    heartbeatInterval: 100,
    zombieThresholdMs: 1000,
    healthCheckInterval: 200,
    gracePeriodMs: 500,
    taskTimeout: 60000,
    retryBackoffMs: 10,
  });
  let stopped = null;
  const zombies = [];
  pool.on('zombie-detected', (e) => zombies.push({ ...e, at: Date.now() }));
  try {
    await heartbeatsFromAll(pool);
    const task = pool.submitTask({ type: 'sleep', payload: { ms: 1500 }, maxRetries: 1 });
    const victim = await waitFor(() => pool.getAllWorkersStatus().find((w) => w.state === 'busy'), 3000);
    stopped = victim.pid;
    process.kill(stopped, 'SIGSTOP');
    const t0 = Date.now();

    await waitFor(() => zombies.length > 0, 5000, { what: 'zombie-detected on the pool' });
    const z = zombies[0];
    t.diagnostic(`zombie-detected ${z.at - t0} ms after SIGSTOP`);
    assert.ok(z.at - t0 < 1000 + 5 * 200 + 500, `detected ${z.at - t0} ms after SIGSTOP`);
    assert.equal(z.workerId, victim.id);
    assert.equal(z.pid, stopped);
    assert.equal(typeof z.timeSinceHeartbeat, 'number');
    assert.ok(z.timeSinceHeartbeat >= 1000, `timeSinceHeartbeat ${z.timeSinceHeartbeat}`);
    assert.equal(z.state, 'busy');
    assert.equal(z.currentTask, victim.currentTask);
    assert.match(String(z.currentTask), /^task-\d+-\d+$/);

    // The retry on the other worker resolves.
    assert.deepEqual(await within(task, 10000, 'the retried sleep task'), { slept: 1500 });
    // Killed (SIGKILL reaches a stopped process) and replaced.
    await assertGone([stopped], 5000);
    await waitFor(() => serving(pool) === 2 && !pool.getWorkerPids().includes(stopped), 8000, {
      what: () => JSON.stringify(pool.getAllWorkersStatus().map((w) => [w.id, w.pid, w.state])),
    });
    note();
    assert.equal(zombies.length, 1, 'one zombie-detected event');
  } finally {
    if (stopped && isAlive(stopped)) {
      try {
        process.kill(stopped, 'SIGCONT');
      } catch {
        /* gone */
      }
    }
    await close();
  }
});

test('a handler stuck in a sync loop is detected as a zombie when no timeout fires', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 1,
    heartbeatInterval: 100,
    zombieThresholdMs: 1000,
    healthCheckInterval: 200,
    gracePeriodMs: 500,
    taskTimeout: 600000,
  });
  const zombies = [];
  pool.on('zombie-detected', (e) => zombies.push({ ...e, at: Date.now() }));
  try {
    await heartbeatsFromAll(pool);
    const [pid] = pool.getWorkerPids();
    const t0 = Date.now();
    const err = await within(settle(pool.submitTask({ type: 'spin', maxRetries: 0 })), 10000, 'spin task');
    assert.equal(err.ok, false);
    assert.equal(err.error.code, 'ERR_WORKER_CRASHED', `${err.error.code}: ${err.error.message}`);
    assert.match(err.error.message, /unresponsive/);
    assert.equal(zombies.length, 1);
    assert.equal(zombies[0].pid, pid);
    assert.equal(zombies[0].state, 'busy');
    assert.ok(zombies[0].at - t0 < 1000 + 5 * 200 + 500, `detected after ${zombies[0].at - t0} ms`);
    await assertGone([pid], 5000);
    await waitFor(() => serving(pool) === 1, 8000);
    note();
    assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'next' }), 5000, 'echo'), 'next');
  } finally {
    await close();
  }
});

test('a worker that hangs before its first heartbeat is still detected as a zombie', { timeout: 30000 }, async (t) => {
  // WorkerProcess sends its first heartbeat one heartbeatInterval after start; a task
  // that hangs the worker before then (a fresh or replacement worker's first task)
  // must not escape zombie detection.
  const { pool, note, close } = await openPool(t, {
    poolSize: 1,
    heartbeatInterval: 400,
    zombieThresholdMs: 1000,
    healthCheckInterval: 100,
    gracePeriodMs: 300,
    taskTimeout: 600000,
  });
  const zombies = [];
  pool.on('zombie-detected', (e) => zombies.push({ ...e, at: Date.now() }));
  try {
    const [pid] = pool.getWorkerPids();
    const t0 = Date.now();
    const task = settle(pool.submitTask({ type: 'spin', maxRetries: 0 }));
    await waitFor(() => zombies.length > 0, 6000, {
      what: () => `zombie-detected for a worker that never sent a heartbeat; its health: ${JSON.stringify(pool.healthMonitor.getAllWorkersHealth())}`,
    });
    t.diagnostic(`zombie-detected after ${zombies[0].at - t0} ms`);
    assert.equal(zombies[0].pid, pid);
    const out = await within(task, 5000, 'spin task');
    assert.equal(out.ok, false);
    assert.equal(out.error.code, 'ERR_WORKER_CRASHED');
    await assertGone([pid], 5000);
    await waitFor(() => serving(pool) === 1, 8000);
    note();
  } finally {
    await close();
  }
});

for (const [name, expectCode, expectStderr] of [
  ['crash-at-start.js', 1, /boom at start/],
  ['syntax-error.js', 1, /SyntaxError/],
  ['exit-before-ready.js', 3, null],
]) {
  test(`a worker script that dies at start (${name}) rejects createWorkerPool with ERR_WORKER_START_FAILED`, { timeout: 30000 }, async () => {
    const before = new Set(childrenOf().map((c) => c.pid));
    const script = fixture(name);
    const t0 = Date.now();
    const out = await within(settle(createWorkerPool({ ...POOL_DEFAULTS, poolSize: 2, workerScript: script })), 15000, 'createWorkerPool');
    assert.ok(Date.now() - t0 < 15000);
    assert.equal(out.ok, false, 'createWorkerPool must reject');
    const err = out.error;
    assert.equal(err.code, 'ERR_WORKER_START_FAILED', `${err.code}: ${err.message}`);
    assert.ok(err.message.includes(script), `message names the script: ${err.message}`);
    assert.match(err.message, new RegExp(`code ${expectCode}\\b`), `message names the exit code: ${err.message}`);
    assert.equal(err.exitCode, expectCode);
    assert.equal(typeof err.stderr, 'string');
    if (expectStderr) assert.match(err.stderr, expectStderr);
    // No worker left behind (alive or <defunct>).
    await waitFor(() => childrenOf().filter((c) => !before.has(c.pid)).length === 0, 3000, {
      what: () => `children left: ${JSON.stringify(childrenOf().filter((c) => !before.has(c.pid)))}`,
    });
  });
}

test('a pool from createPool whose workers die at start: initialize rejects and leaves no process', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 2, workerScript: fixture('crash-at-start.js') }, { init: false });
  const out = await within(settle(pool.initialize()), 15000, 'initialize');
  assert.equal(out.ok, false);
  assert.equal(out.error.code, 'ERR_WORKER_START_FAILED');
  assert.deepEqual(pool.getWorkerPids(), []);
  await close();
});

test('a worker over the memory limit raises high-memory and is recycled', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 2,
    workerMemoryLimitMB: 100,
    healthCheckInterval: 200,
  });
  const high = [];
  pool.on('high-memory', (e) => high.push(e));
  try {
    const r = await within(pool.submitTask({ type: 'leak', payload: { mb: 200 } }), 15000, 'leak task');
    assert.equal(r.retainedMB, 200);
    await waitFor(() => high.length > 0, 5000, { what: 'high-memory on the pool' });
    const e = high[0];
    const leaker = e.workerId;
    assert.equal(typeof e.memoryMB, 'number');
    assert.ok(e.memoryMB > 100, `memoryMB ${e.memoryMB}`);
    assert.equal(e.threshold, 100);
    const status = pool.getAllWorkersStatus().find((w) => w.id === leaker);
    const leakerPid = status ? status.pid : null;
    await waitFor(() => !pool.getAllWorkersStatus().some((w) => w.id === leaker), 10000, { what: `${leaker} recycled` });
    if (leakerPid) await assertGone([leakerPid], 5000);
    await waitFor(() => serving(pool) === 2, 8000, { what: 'pool back to 2 workers' });
    note();
  } finally {
    await close();
  }
});

test('a worker that writes a non-JSON line fails its task with ERR_PROTOCOL and is replaced', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, { poolSize: 1, workerScript: fixture('garbage-worker.js') });
  const errors = [];
  pool.on('worker-error', (e) => errors.push(e));
  try {
    const [pid] = pool.getWorkerPids();
    const out = await within(settle(pool.submitTask({ type: 'anything', payload: 1, maxRetries: 0 })), 10000, 'task');
    assert.equal(out.ok, false);
    assert.equal(out.error.code, 'ERR_PROTOCOL', `${out.error.code}: ${out.error.message}`);
    await assertGone([pid], 5000);
    await waitFor(() => {
      const pids = pool.getWorkerPids();
      return pids.length === 1 && pids[0] !== pid && serving(pool) === 1;
    }, 8000, { what: 'a replacement worker' });
    note();
    assert.ok(errors.some((e) => e.pid === pid && e.code === 'ERR_PROTOCOL'));
    // The parent is fine: the pool answers queries and the event loop runs.
    const m = pool.getPoolMetrics();
    assert.equal(m.pool.initialized, true);
    assert.equal(m.tasks.failed, 1);
  } finally {
    await close();
  }
});

test('a worker that writes 96 MB without a newline: ERR_PROTOCOL, bounded parent memory, worker killed', { timeout: 60000 }, async (t) => {
  const { pool, note, close } = await openPool(t, { poolSize: 1, workerScript: fixture('huge-line-worker.js') });
  let sampler = null;
  try {
    const [pid] = pool.getWorkerPids();
    const base = process.memoryUsage().rss;
    let peak = base;
    sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    const out = await within(settle(pool.submitTask({ type: 'anything', payload: 1, maxRetries: 0 })), 30000, 'task');
    peak = Math.max(peak, process.memoryUsage().rss);
    clearInterval(sampler);
    sampler = null;
    assert.equal(out.ok, false);
    assert.equal(out.error.code, 'ERR_PROTOCOL', `${out.error.code}: ${out.error.message}`);
    await assertGone([pid], 5000);
    const grew = (peak - base) / 1048576;
    t.diagnostic(`parent RSS growth: ${grew.toFixed(1)} MB`);
    assert.ok(grew < 40, `parent RSS grew by ${grew.toFixed(1)} MB`);
    await waitFor(() => serving(pool) === 1, 8000);
    note();
  } finally {
    if (sampler) clearInterval(sampler);
    await close();
  }
});

test('workers die with a parent that is SIGKILLed', { timeout: 30000 }, async () => {
  const script = `
    const { createWorkerPool } = require('./');
    createWorkerPool({ poolSize: 3, minWorkers: 1, logLevel: 'silent' }).then((pool) => {
      process.stdout.write(JSON.stringify(pool.getWorkerPids()) + '\\n');
      setInterval(() => {}, 1000);
    }, (e) => { console.error(e); process.exit(2); });
  `;
  const child = spawn(process.execPath, ['-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let pids = [];
  try {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      out += d;
    });
    await waitFor(() => out.includes('\n'), 15000, { what: 'worker pids from the child' });
    pids = JSON.parse(out.trim().split('\n')[0]);
    assert.equal(pids.length, 3);
    for (const p of pids) assert.ok(isAlive(p), `worker ${p} alive before the kill`);
    child.kill('SIGKILL');
    assert.deepEqual(await exited, { code: null, signal: 'SIGKILL' });
    await assertGone(pids, 2000);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
});

test('a JS thread blocked past the zombie threshold does not make workers zombies', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, {
    poolSize: 2,
    heartbeatInterval: 100,
    zombieThresholdMs: 500,
    healthCheckInterval: 100,
  });
  const bad = [];
  for (const em of [pool, pool.healthMonitor]) {
    for (const ev of ['zombie-detected', 'missed-heartbeat']) em.on(ev, (e) => bad.push({ ev, e }));
  }
  let exits = 0;
  pool.on('worker-exited', () => exits++);
  try {
    await heartbeatsFromAll(pool);
    const pids = pool.getWorkerPids().slice().sort();
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      /* block the JS thread */
    }
    // Let everything queued during the block arrive, then some fresh heartbeats.
    await heartbeatsFromAll(pool);
    assert.deepEqual(await Promise.all([1, 2, 3, 4].map((i) => pool.submitTask({ type: 'echo', payload: i }))), [1, 2, 3, 4]);
    await heartbeatsFromAll(pool);
    assert.deepEqual(bad, []);
    assert.equal(exits, 0);
    assert.deepEqual(pool.getWorkerPids().slice().sort(), pids);
    assert.equal(pool.getPoolMetrics().performance.workersRestarted, 0);
    assert.equal(pool.healthMonitor.getAlerts(50).filter((a) => a.type === 'zombie-detected' || a.type === 'missed-heartbeat').length, 0);
  } finally {
    await close();
  }
});

test('crash-loop protection: a worker killed while idle right after start respawns with backoff', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 1,
    minUptimeMs: 5000,
    restartCooldownMs: 800,
    maxRestartAttempts: 3,
  });
  const exits = [];
  pool.on('worker-exited', (e) => exits.push({ ...e, at: Date.now() }));
  try {
    const [pid] = pool.getWorkerPids();
    process.kill(pid, 'SIGKILL');
    await waitFor(() => exits.length === 1, 5000);
    const exitAt = exits[0].at;
    const fresh = await waitFor(() => {
      const pids = pool.getWorkerPids();
      return pids.length === 1 && pids[0] !== pid ? { pid: pids[0], at: Date.now() } : null;
    }, 10000, { interval: 10, what: 'a respawned worker' });
    const waited = fresh.at - exitAt;
    t.diagnostic(`respawned ${waited} ms after the exit`);
    assert.ok(waited >= 600, `respawned ${waited} ms after the exit; expected a backoff of ~restartCooldownMs (800)`);
    await waitFor(() => serving(pool) === 1, 8000);
    note();
    await assertGone([pid], 3000);
    assert.equal(pool.getPoolMetrics().performance.workersRestarted, 1);
    assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'x' }), 5000, 'echo'), 'x');
  } finally {
    await close();
  }
});

test('crash-loop protection: a slot whose worker always dies after ready is marked failed', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, {
    poolSize: 1,
    workerScript: fixture('dies-after-ready.js'),
    restartCooldownMs: 100,
    maxRestartAttempts: 2,
    healthCheckInterval: 200,
  });
  try {
    const alert = await waitFor(() => pool.healthMonitor.getAlerts(50).find((a) => a.type === 'worker-restart-failed'), 10000, {
      what: () => `worker-restart-failed alert; alerts: ${JSON.stringify(pool.healthMonitor.getAlerts(10))}`,
    });
    assert.equal(alert.severity, 'critical');
    assert.ok(['critical', 'degraded'].includes(pool.getPoolMetrics().health.status), pool.getPoolMetrics().health.status);
    const spawned = pool.getPoolMetrics().performance.workersSpawned;
    assert.ok(spawned <= 3, `workersSpawned ${spawned}`);
    // No endless respawning: nothing new over the next 3 s.
    const until = Date.now() + 3000;
    await waitFor(() => Date.now() >= until || pool.getPoolMetrics().performance.workersSpawned !== spawned, 5000);
    assert.equal(pool.getPoolMetrics().performance.workersSpawned, spawned, 'no respawn after the slot failed');
    assert.deepEqual(pool.getWorkerPids(), []);
  } finally {
    await close();
  }
});
