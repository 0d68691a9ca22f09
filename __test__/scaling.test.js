'use strict';
// scaleUp / scaleDown / initialize(n): clamping, worker counts, busy workers.
// Run: node --test __test__/scaling.test.js

const assert = require('node:assert/strict');
const { test, fixture, openPool, waitFor, within, settle, assertGone, finalGoneTest } = require('./helpers');

const seen = new Set();
const ECHO = fixture('echo-worker.js');

const count = (pool) => pool.getAllWorkersStatus().length;

test('scaleUp clamps to maxWorkers; the count after the promise matches', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, minWorkers: 1, maxWorkers: 4, workerScript: ECHO }, { seen });
  const ups = [];
  pool.on('pool-scaled-up', (e) => ups.push(e));
  assert.equal(count(pool), 2);

  await within(pool.scaleUp(1), 30000, 'scaleUp(1)');
  assert.equal(count(pool), 3);
  assert.equal(pool.getWorkerPids().length, 3);
  assert.equal(pool.getPoolMetrics().pool.size, 3);

  await within(pool.scaleUp(10), 30000, 'scaleUp(10)');
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal(count(pool), 4, 'clamped to maxWorkers');
  assert.equal(pool.getWorkerPids().length, 4);

  await within(pool.scaleUp(3), 30000, 'scaleUp at max');
  assert.equal(count(pool), 4);
  assert.deepEqual(ups.slice(0, 2), [{ count: 1, newSize: 3 }, { count: 1, newSize: 4 }]);
  assert.ok(ups.length === 2 || (ups.length === 3 && ups[2].count === 0), `no growth past max: ${JSON.stringify(ups)}`);

  // New workers are ready and take tasks; ids are fresh.
  const ids = pool.getAllWorkersStatus().map((s) => s.id);
  assert.deepEqual(ids, ['worker-0', 'worker-1', 'worker-2', 'worker-3']);
  assert.ok(pool.getAllWorkersStatus().every((s) => s.state === 'ready'));
  const results = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(() => pool.submitTask({ type: 'pid' })));
  assert.equal(new Set(results.map((r) => r.workerId)).size, 4, 'round-robin reaches all four workers');
});

test('scaleDown clamps to minWorkers; removed workers exit before the promise resolves', async (t) => {
  const { pool } = await openPool(t, { poolSize: 4, minWorkers: 2, maxWorkers: 6, workerScript: ECHO }, { seen });
  const downs = [];
  pool.on('pool-scaled-down', (e) => downs.push(e));
  const before = pool.getWorkerPids();
  assert.equal(before.length, 4);

  await within(pool.scaleDown(1), 30000, 'scaleDown(1)');
  assert.equal(count(pool), 3);
  assert.equal(pool.getWorkerPids().length, 3);

  await within(pool.scaleDown(10), 30000, 'scaleDown(10)');
  assert.equal(count(pool), 2, 'clamped to minWorkers');
  const after = pool.getWorkerPids();
  assert.equal(after.length, 2);
  assert.equal(pool.getPoolMetrics().pool.size, 2);
  const removed = before.filter((p) => !after.includes(p));
  assert.equal(removed.length, 2);
  await assertGone(removed, 5000);

  await within(pool.scaleDown(1), 30000, 'scaleDown at min');
  assert.equal(count(pool), 2);
  assert.deepEqual(downs.slice(0, 2), [{ count: 1, newSize: 3 }, { count: 1, newSize: 2 }]);

  // The survivors still work, and a later scaleUp uses new ids.
  assert.equal(await pool.submitTask({ type: 'echo', payload: 'still here' }), 'still here');
  await within(pool.scaleUp(1), 30000, 'scaleUp after scaleDown');
  for (const p of pool.getWorkerPids()) seen.add(p);
  const ids = pool.getAllWorkersStatus().map((s) => s.id);
  assert.equal(ids.length, 3);
  assert.ok(ids.includes('worker-4'), `a new worker gets a never-used id: ${ids}`);
});

test('scaleDown of busy workers lets their tasks finish', async (t) => {
  const { pool } = await openPool(t, { poolSize: 3, minWorkers: 1, maxWorkers: 3, workerScript: ECHO }, { seen });
  const tasks = [0, 1, 2].map(() => pool.submitTask({ type: 'sleep', payload: { ms: 500 } }));
  await waitFor(() => pool.getAllWorkersStatus().every((s) => s.state === 'busy'), 5000, { message: 'all three busy' });
  const before = pool.getWorkerPids();
  const started = Date.now();
  await within(pool.scaleDown(2), 30000, 'scaleDown of busy workers');
  const results = await within(Promise.all(tasks), 10000, 'tasks of removed workers');
  assert.deepEqual(results, [{ slept: 500 }, { slept: 500 }, { slept: 500 }]);
  assert.ok(Date.now() - started >= 300, 'scaleDown waited for the running tasks');
  assert.equal(count(pool), 1);
  const after = pool.getWorkerPids();
  assert.equal(after.length, 1);
  await assertGone(before.filter((p) => !after.includes(p)), 5000);
  const m = pool.getPoolMetrics();
  assert.equal(m.tasks.completed, 3);
  assert.equal(m.tasks.failed, 0);
  assert.equal(await pool.submitTask({ type: 'echo', payload: 1 }), 1);
});

test('scaleDown prefers idle workers over busy ones', async (t) => {
  const { pool } = await openPool(t, { poolSize: 3, minWorkers: 1, workerScript: ECHO }, { seen });
  let finished = false;
  const running = pool.submitTask({ type: 'sleep', payload: { ms: 3000 } }).finally(() => { finished = true; });
  const busy = await waitFor(() => pool.getAllWorkersStatus().find((s) => s.state === 'busy'), 5000, { message: 'a busy worker' });
  await within(pool.scaleDown(2), 30000, 'scaleDown');
  assert.equal(finished, false, 'removing two idle workers does not wait for the busy one');
  assert.deepEqual(pool.getAllWorkersStatus().map((s) => s.id), [busy.id]);
  assert.deepEqual(await running, { slept: 3000 });
});

test('initialize(n) clamps n into [minWorkers, maxWorkers]', async (t) => {
  const { pool: big } = await openPool(t, { poolSize: 2, minWorkers: 2, maxWorkers: 3, workerScript: ECHO }, { seen, initSize: 10 });
  assert.equal(count(big), 3);
  const { pool: small } = await openPool(t, { poolSize: 3, minWorkers: 2, maxWorkers: 3, workerScript: ECHO }, { seen, initSize: 1 });
  assert.equal(count(small), 2);
  const { pool: exact } = await openPool(t, { poolSize: 1, minWorkers: 1, maxWorkers: 3, workerScript: ECHO }, { seen, initSize: 2 });
  assert.equal(count(exact), 2);
});

test('concurrent scaleUps never exceed maxWorkers', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, minWorkers: 1, maxWorkers: 4, workerScript: ECHO }, { seen });
  await within(Promise.all([pool.scaleUp(2), pool.scaleUp(2), pool.scaleUp(2)]), 30000, 'three scaleUps');
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal(count(pool), 4);
  assert.equal(pool.getWorkerPids().length, 4);
  await within(Promise.all([pool.scaleDown(2), pool.scaleDown(2), pool.scaleDown(2)]), 30000, 'three scaleDowns');
  assert.equal(count(pool), 1);
  assert.equal(pool.getWorkerPids().length, 1);
});

test('scaleUp/scaleDown reject bad counts with ERR_INVALID_ARGUMENT naming "count"', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  for (const bad of [0, -1, 1.5, NaN, '2', null, Infinity]) {
    for (const m of ['scaleUp', 'scaleDown']) {
      const r = await settle(pool[m](bad));
      assert.equal(r.ok, false, `${m}(${String(bad)})`);
      assert.equal(r.error.code, 'ERR_INVALID_ARGUMENT', `${m}(${String(bad)})`);
      assert.match(r.error.message, /count/);
    }
  }
  assert.equal(count(pool), 1);
});

test('scaling before initialize / after shutdown rejects', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen, init: false });
  const early = await settle(pool.scaleUp(1));
  assert.equal(early.ok, false);
  assert.equal(early.error.code, 'ERR_POOL_NOT_INITIALIZED');
  assert.equal(pool.getWorkerPids().length, 0);
  await pool.initialize();
  for (const p of pool.getWorkerPids()) seen.add(p);
  await pool.shutdown();
  const late = await settle(pool.scaleUp(1));
  assert.equal(late.ok, false);
  assert.ok(['ERR_POOL_SHUTDOWN', 'ERR_POOL_SHUTTING_DOWN'].includes(late.error.code), late.error.code);
  assert.equal(pool.getWorkerPids().length, 0);
});

finalGoneTest(test, seen);
