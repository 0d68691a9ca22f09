'use strict';
// Bad input: every rejection is an Error with a stable code and a message naming the
// field; nothing crashes the process or the pool. Lifecycle misuse.
// Run: node --test __test__/validation.test.js

const assert = require('node:assert/strict');
const { test, ROOT, fixture, openPool, within, settle, waitFor, finalGoneTest } = require('./helpers');

const seen = new Set();
const ECHO = fixture('echo-worker.js');
const { createPool, createWorkerPool } = require(ROOT);

function circular() {
  const o = { a: 1 };
  o.self = o;
  return o;
}

/** Asserts r is a rejection with an Error of `code` whose message matches `field`. */
function assertCoded(r, code, field, label) {
  assert.equal(r.ok, false, `${label}: should reject`);
  assert.ok(r.error instanceof Error, `${label}: an Error (got ${r.error})`);
  assert.equal(r.error.code, code, `${label}: code (message: ${r.error.message})`);
  assert.match(r.error.message, field, `${label}: message names the field`);
}

test('bad submitTask input rejects with ERR_INVALID_TASK naming the field; the pool keeps working', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const cases = [
    ['no task', undefined, /task/],
    ['null task', null, /task/],
    ['a string task', 'echo', /task/],
    ['no type', { payload: 1 }, /type/],
    ['empty type', { type: '', payload: 1 }, /type/],
    ['non-string type', { type: 42, payload: 1 }, /type/],
    ['object type', { type: { name: 'echo' }, payload: 1 }, /type/],
    ['circular payload', { type: 'echo', payload: circular() }, /payload/],
    ['BigInt payload', { type: 'echo', payload: { n: 10n } }, /payload/],
    ['top-level BigInt payload', { type: 'echo', payload: 10n }, /payload/],
    ['function payload', { type: 'echo', payload: () => 1 }, /payload/],
    ['priority NaN', { type: 'echo', payload: 1, priority: NaN }, /priority/],
    ["priority 'high'", { type: 'echo', payload: 1, priority: 'high' }, /priority/],
    ['priority Infinity', { type: 'echo', payload: 1, priority: Infinity }, /priority/],
    ['negative timeout', { type: 'echo', payload: 1, timeout: -1 }, /timeout/],
    ['string timeout', { type: 'echo', payload: 1, timeout: '1000' }, /timeout/],
    ['circular metadata', { type: 'echo', payload: 1, metadata: circular() }, /metadata/],
  ];
  for (const [label, task, field] of cases) {
    let r;
    try {
      r = await settle(pool.submitTask(task));
    } catch (e) {
      assert.fail(`${label}: submitTask threw synchronously instead of rejecting: ${e.message}`);
    }
    assertCoded(r, 'ERR_INVALID_TASK', field, label);
  }
  const m = pool.getPoolMetrics();
  assert.equal(m.tasks.submitted, 0, 'nothing bad was accepted');
  assert.equal(await pool.submitTask({ type: 'echo', payload: 'good' }), 'good');
  assert.equal(pool.getWorkerPids().length, 1);
});

test('validation messages describe NaN and Infinity as such (not as null)', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen, init: false });
  const nan = await settle(pool.submitTask({ type: 'echo', priority: NaN }));
  assert.equal(nan.error.code, 'ERR_INVALID_TASK');
  assert.match(nan.error.message, /NaN/, `message: ${nan.error.message}`);
  const inf = await settle(pool.submitTask({ type: 'echo', timeout: -Infinity }));
  assert.match(inf.error.message, /Infinity/, `message: ${inf.error.message}`);
});

test('bad config: ERR_INVALID_CONFIG thrown by createPool and rejected by createWorkerPool, naming the option', async (t) => {
  const cases = [
    ["loadBalancing 'random'", { loadBalancing: 'random' }, /loadBalancing/],
    ['poolSize 0', { poolSize: 0 }, /poolSize/],
    ['poolSize -1', { poolSize: -1 }, /poolSize/],
    ['poolSize 1.5', { poolSize: 1.5 }, /poolSize/],
    ["poolSize '3'", { poolSize: '3' }, /poolSize/],
    ['minWorkers > maxWorkers', { minWorkers: 10, maxWorkers: 2 }, /minWorkers[\s\S]*maxWorkers|maxWorkers[\s\S]*minWorkers/],
    ['maxWorkers 0', { maxWorkers: 0 }, /maxWorkers/],
    ['workerScript missing', { workerScript: '/nonexistent/dir/worker.js' }, /workerScript/],
    ["autoRestart 'yes'", { autoRestart: 'yes' }, /autoRestart/],
    ['heartbeatInterval 0', { heartbeatInterval: 0 }, /heartbeatInterval/],
    ['taskTimeout -5', { taskTimeout: -5 }, /taskTimeout/],
    ['maxTaskRetries -1', { maxTaskRetries: -1 }, /maxTaskRetries/],
    ["logLevel 'loud'", { logLevel: 'loud' }, /logLevel/],
    ['spinWaitUs -1', { spinWaitUs: -1 }, /spinWaitUs/],
    ['spinWaitUs 1001', { spinWaitUs: 1001 }, /spinWaitUs[\s\S]*0 to 1000/],
    ["spinWaitUs '50'", { spinWaitUs: '50' }, /spinWaitUs/],
  ];
  const pools = [];
  t.after(() => Promise.all(pools.map((p) => p.shutdown(false))));
  for (const [label, config, field] of cases) {
    const full = { logLevel: 'silent', ...config };
    let thrown = null;
    try {
      pools.push(createPool(full));
    } catch (e) {
      thrown = e;
    }
    assertCoded({ ok: !thrown, error: thrown }, 'ERR_INVALID_CONFIG', field, `createPool(${label})`);

    let p;
    try {
      p = createWorkerPool(full);
    } catch (e) {
      assert.fail(`createWorkerPool(${label}) threw synchronously: ${e.message}`);
    }
    assert.ok(p instanceof Promise, `createWorkerPool(${label}) returns a promise`);
    const r = await settle(within(p, 20000, `createWorkerPool(${label})`));
    if (r.ok) {
      for (const pid of r.value.getWorkerPids()) seen.add(pid);
      pools.push(r.value);
    }
    assertCoded(r, 'ERR_INVALID_CONFIG', field, `createWorkerPool(${label})`);
  }
  for (const bad of [null, 'x', 42, [1]]) {
    assert.throws(() => createPool(bad), (e) => e.code === 'ERR_INVALID_CONFIG', `createPool(${JSON.stringify(bad)})`);
  }
  // No process was spawned for any of them.
  assert.equal(pools.length, 0);
});

test('a worker script that dies before it is ready: createWorkerPool rejects, nothing left behind', async (t) => {
  for (const script of ['crash-at-start.js', 'exit-before-ready.js', 'syntax-error.js']) {
    const { pool } = await openPool(t, { poolSize: 2, workerScript: fixture(script), readyTimeoutMs: 5000 }, { seen, init: false });
    const r = await settle(within(pool.initialize(), 20000, `initialize with ${script}`));
    assert.equal(r.ok, false, script);
    assert.ok(r.error instanceof Error);
    assert.equal(r.error.code, 'ERR_WORKER_START_FAILED', `${script}: ${r.error.message}`);
    assert.match(r.error.message, /worker-\d/);
    await waitFor(() => pool.getWorkerPids().length === 0, 10000, { message: `no workers of ${script} left` });
    const s = await settle(pool.submitTask({ type: 'test' }));
    assert.equal(s.ok, false, 'a pool whose initialize failed takes no task');
  }
});

test('initialize: second call rejects "Pool already initialized"; bad sizes are rejected', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen, init: false });
  for (const bad of [0, -1, 1.5, '2']) {
    const r = await settle(pool.initialize(bad));
    assertCoded(r, 'ERR_INVALID_ARGUMENT', /poolSize/, `initialize(${JSON.stringify(bad)})`);
  }
  assert.equal(pool.getWorkerPids().length, 0);
  await within(pool.initialize(), 30000, 'initialize');
  for (const p of pool.getWorkerPids()) seen.add(p);
  const again = await settle(pool.initialize());
  assert.equal(again.ok, false);
  assert.match(again.error.message, /Pool already initialized/);
  assert.equal(again.error.code, 'ERR_POOL_ALREADY_INITIALIZED');
  assert.equal(pool.getWorkerPids().length, 2);
  assert.equal(await pool.submitTask({ type: 'echo', payload: 1 }), 1);
});

test('two concurrent initialize() calls: one wins, the other rejects, no extra workers', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen, init: false });
  const [a, b] = await Promise.all([settle(pool.initialize()), settle(pool.initialize())]);
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal([a, b].filter((r) => r.ok).length, 1, 'exactly one initialize succeeds');
  const failed = a.ok ? b : a;
  assert.match(failed.error.message, /already initialized|initializ/i);
  assert.equal(pool.getWorkerPids().length, 2);
  assert.equal(pool.getAllWorkersStatus().length, 2);
});

test('submit before initialize rejects ERR_POOL_NOT_INITIALIZED', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen, init: false });
  const r = await settle(pool.submitTask({ type: 'echo', payload: 1 }));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'ERR_POOL_NOT_INITIALIZED');
  assert.match(r.error.message, /Pool not initialized/);
  await pool.initialize();
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal(await pool.submitTask({ type: 'echo', payload: 2 }), 2, 'works once initialized');
});

test('submit during and after shutdown rejects; shutdown twice (and before initialize) is fine', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const running = pool.submitTask({ type: 'sleep', payload: { ms: 300 } });
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'busy' });
  const down = pool.shutdown(true);
  const during = await settle(pool.submitTask({ type: 'echo', payload: 1 }));
  assert.equal(during.ok, false);
  assert.equal(during.error.code, 'ERR_POOL_SHUTTING_DOWN');
  assert.match(during.error.message, /Pool is shutting down/);
  await within(down, 20000, 'shutdown');
  assert.deepEqual(await running, { slept: 300 });

  const after = await settle(pool.submitTask({ type: 'echo', payload: 1 }));
  assert.equal(after.ok, false);
  assert.ok(['ERR_POOL_SHUTDOWN', 'ERR_POOL_SHUTTING_DOWN'].includes(after.error.code), after.error.code);
  await within(pool.shutdown(), 10000, 'second shutdown');
  await within(pool.shutdown(false), 10000, 'third shutdown');
  const m = pool.getPoolMetrics();
  assert.equal(m.pool.shuttingDown, true);

  const { pool: never } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen, init: false });
  await within(never.shutdown(), 10000, 'shutdown before initialize');
  await within(never.shutdown(), 10000, 'again');
  const r = await settle(never.initialize());
  assert.equal(r.ok, false, 'initialize after shutdown rejects');
  assert.equal(never.getWorkerPids().length, 0);
});

finalGoneTest(test, seen);
