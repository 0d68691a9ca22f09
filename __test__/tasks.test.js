'use strict';
// Tasks end to end: results, priorities, retries and the DLQ, handler errors, custom
// and fork-style worker scripts, worker ids, metrics and status shapes.
// Run: node --test __test__/tasks.test.js

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test, fixture, openPool, waitFor, within, settle, sleep, assertGone, finalGoneTest } = require('./helpers');

const seen = new Set();
const ECHO = fixture('echo-worker.js');
const TASK_ID = /^task-\d+-\d+$/;

test('results round-trip: nested objects, unicode, 1 MB string, scalars, null/undefined payload', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
  const nested = {
    a: 1,
    b: [1, 2, { c: [null, true, false, 'x'] }],
    d: { e: { f: { g: { h: 'deep' } } } },
    n: -12.5e-3,
    big: Number.MAX_SAFE_INTEGER,
    empty: {},
    list: [],
    quote: 'she said "hi"\n\ttab\\back',
  };
  assert.deepEqual(await pool.submitTask({ type: 'echo', payload: nested }), nested);

  const unicode = { s: 'héllo wörld — 日本語 — Ελληνικά — 🚀🎉👩‍👩‍👧', key_ü: 'ñ', '🔑': '\u0000\u001f\u2028\u2029' };
  assert.deepEqual(await pool.submitTask({ type: 'echo', payload: unicode }), unicode);

  const mb = 'x'.repeat(1024 * 1024 - 7) + 'é🚀end';
  const back = await pool.submitTask({ type: 'echo', payload: mb });
  assert.equal(back.length, mb.length);
  assert.ok(back === mb, '1 MB string comes back intact');

  for (const v of [0, 1.5, -3, true, false, '', 'str', [], [1, 'two', null]]) {
    assert.deepEqual(await pool.submitTask({ type: 'echo', payload: v }), v, `payload ${JSON.stringify(v)}`);
  }
  assert.equal(await pool.submitTask({ type: 'echo', payload: null }), null);
  const u = await pool.submitTask({ type: 'echo', payload: undefined });
  assert.ok(u === null || u === undefined, `undefined payload gives null/undefined, got ${JSON.stringify(u)}`);
  const noPayload = await pool.submitTask({ type: 'echo' });
  assert.ok(noPayload === null || noPayload === undefined);
  // The default handlers' shape with a custom script too.
  assert.deepEqual(await pool.submitTask({ type: 'test', payload: nested }), { status: 'completed', result: nested });
});

test('a payload with a lone surrogate (valid JSON from JSON.stringify) round-trips', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, maxTaskRetries: 0 }, { seen });
  const s = 'a\ud800b\udfffc';
  const r = await settle(within(pool.submitTask({ type: 'echo', payload: { s } }), 10000, 'lone surrogate task'));
  assert.ok(r.ok, `rejected: ${r.error && r.error.code} ${r.error && r.error.message}`);
  assert.equal(r.value.s, s);
  assert.equal(await pool.submitTask({ type: 'echo', payload: 1 }), 1, 'the pool still works');
});

test('priority order on a one-worker pool: lower first, FIFO among equals', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const assigned = [];
  pool.on('task-assigned', (e) => assigned.push(e.taskId));
  const completedEvents = [];
  pool.on('task-completed', (e) => completedEvents.push(e.taskId));

  const blocker = pool.submitTask({ type: 'sleep', payload: { ms: 400 } });
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'worker busy' });

  const order = [];
  const submitted = [];
  for (const [label, priority] of [['p10', 10], ['p0a', 0], ['p5', 5], ['p0b', 0], ['p100', 100]]) {
    submitted.push(pool.submitTask({ type: 'echo', payload: label, priority }).then((r) => order.push(r)));
  }
  assert.equal(pool.getPoolMetrics().tasks.queued, 5, 'the five wait in the queue');
  await within(Promise.all([blocker, ...submitted]), 10000, 'all tasks');
  assert.deepEqual(order, ['p0a', 'p0b', 'p5', 'p10', 'p100']);
  // The events agree with the results: dispatch order = completion order here.
  await waitFor(() => completedEvents.length === 6, 5000, { message: '6 task-completed events' });
  assert.deepEqual(completedEvents, assigned);
  for (const id of assigned) assert.match(id, TASK_ID);
});

// Small tasks of another type than the long one, and of the same type (whose
// average run time says nothing about the one running now). Each scenario is tried a
// few times, submitting right after the long task was dispatched (the riskiest moment
// for a scheduler that sends tasks ahead to busy workers).
const SMALL = {
  'another type': (label) => ({ type: 'echo', payload: label }),
  'the same type': (label) => ({ type: 'sleep', payload: { ms: 0, label } }),
};
const ROUNDS = 5;

for (const [variant, small] of Object.entries(SMALL)) {
  test(`priority order holds on a warmed-up worker busy with a long task (${variant})`, async (t) => {
    const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
    for (let round = 1; round <= ROUNDS; round++) {
      // Many fast tasks first: the worker's average run time is tiny.
      for (let i = 0; i < 30; i++) await pool.submitTask(small(`warm-${i}`));
      const ac = new AbortController();
      const blocker = settle(pool.submitTask({ type: 'sleep', payload: { ms: 5000 } }, { signal: ac.signal }));
      await sleep(1);
      const order = [];
      const submitted = [];
      // Tasks arrive one by one while the worker is busy.
      for (const [label, priority] of [['p10', 10], ['p0a', 0], ['p5', 5], ['p0b', 0], ['p100', 100]]) {
        submitted.push(pool.submitTask({ ...small(label), priority }).then(() => order.push(label)));
        await sleep(20);
      }
      ac.abort(); // the long task ends now; the five run in priority order
      await within(Promise.all([blocker, ...submitted]), 10000, 'all tasks');
      assert.deepEqual(order, ['p0a', 'p0b', 'p5', 'p10', 'p100'], `round ${round}`);
    }
  });

  test(`a task is not committed behind a long-running task while another worker frees up (${variant})`, async (t) => {
    const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
    for (let round = 1; round <= ROUNDS; round++) {
      for (let i = 0; i < 30; i++) await Promise.all([pool.submitTask(small(i)), pool.submitTask(small(i))]);
      const started = Date.now();
      const ac = new AbortController();
      const long = settle(pool.submitTask({ type: 'sleep', payload: { ms: 5000 } }, { signal: ac.signal }));
      const short = pool.submitTask({ type: 'sleep', payload: { ms: 100 } });
      await sleep(1);
      const smalls = Promise.all([0, 1, 2, 3].map((i) => pool.submitTask(small(`x${i}`)).then(() => Date.now() - started)));
      // The original ran one task per worker: all four run on the worker that frees
      // up after ~100 ms. None may wait for the long task.
      const done = await Promise.race([smalls, sleep(2000).then(() => 'stuck')]);
      ac.abort();
      await within(Promise.all([long, short, smalls]), 10000, 'all tasks');
      assert.notEqual(done, 'stuck', `round ${round}: a small task waited behind the 5 s task while the other worker was free`);
      assert.ok(done.every((ms) => ms < 1500), `round ${round}: completion times (ms after start): ${done}`);
    }
  });
}

test('many equal priorities keep FIFO order (sequence number, not a millisecond clock)', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const blocker = pool.submitTask({ type: 'sleep', payload: { ms: 200 } });
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'worker busy' });
  const order = [];
  const all = [];
  for (let i = 0; i < 200; i++) {
    all.push(pool.submitTask({ type: 'echo', payload: i, priority: i % 2 === 0 ? 3 : 7 }).then((r) => order.push(r)));
  }
  await within(Promise.all([blocker, ...all]), 20000, '200 tasks');
  const evens = [];
  const odds = [];
  for (let i = 0; i < 200; i++) (i % 2 === 0 ? evens : odds).push(i);
  assert.deepEqual(order, [...evens, ...odds]);
});

test('priority 0 is the highest (not treated as the default 10)', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const blocker = pool.submitTask({ type: 'sleep', payload: { ms: 300 } });
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'worker busy' });
  const order = [];
  const a = pool.submitTask({ type: 'echo', payload: 'default' }).then((r) => order.push(r));
  const b = pool.submitTask({ type: 'echo', payload: 'zero', priority: 0 }).then((r) => order.push(r));
  await within(Promise.all([blocker, a, b]), 10000, 'tasks');
  assert.deepEqual(order, ['zero', 'default']);
});

test('a throwing handler is retried maxTaskRetries times, then rejected and dead-lettered', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO, maxTaskRetries: 2, retryBackoffMs: 20, maxBackoffMs: 100 }, { seen });
  const failed = [];
  pool.on('task-failed', (e) => failed.push(e));
  const started = Date.now();
  const r = await settle(within(pool.submitTask({ type: 'throw', payload: { message: 'kaboom' }, priority: 3 }), 15000, 'throwing task'));
  assert.equal(r.ok, false);
  assert.ok(r.error instanceof Error);
  assert.equal(r.error.message, 'kaboom');
  assert.equal(r.error.code, 'ERR_TASK_FAILED');
  assert.ok(Date.now() - started < 3000, `retries are dispatched after their small backoff (${Date.now() - started} ms)`);

  await waitFor(() => failed.length === 3, 5000, { message: '3 task-failed events' });
  assert.deepEqual(failed.map((e) => e.retried), [true, true, false]);
  const taskId = failed[0].taskId;
  assert.match(taskId, TASK_ID);
  for (const e of failed) {
    assert.equal(e.taskId, taskId, 'the same task id across attempts');
    assert.equal(e.error, 'kaboom');
  }

  const dlq = pool.taskQueue.getDeadLetterQueue();
  assert.equal(dlq.length, 1);
  const rec = dlq[0];
  assert.equal(rec.id, taskId);
  assert.equal(rec.status, 'failed');
  assert.equal(rec.retries, 2);
  assert.equal(typeof rec.task, 'object');
  assert.equal(rec.task.type, 'throw');
  assert.deepEqual(rec.task.payload, { message: 'kaboom' });
  assert.ok(rec.finalError, 'finalError is set');
  const finalMessage = typeof rec.finalError === 'string' ? rec.finalError : rec.finalError.message;
  assert.match(finalMessage, /kaboom/);
  assert.equal(rec.metadata.attempts.length, rec.retries + 1);
  for (const a of rec.metadata.attempts) {
    assert.equal(typeof a.timestamp, 'number');
    assert.match(typeof a.error === 'string' ? a.error : a.error.message, /kaboom/);
  }
  const m = pool.getPoolMetrics();
  assert.equal(m.tasks.dlq, 1);
  assert.equal(m.tasks.failed, 1);
  assert.equal(m.queue.dlqSize, 1);
  // The pool still works.
  assert.equal(await pool.submitTask({ type: 'echo', payload: 'ok' }), 'ok');
});

test('unknown task type rejects promptly with ERR_NO_HANDLER and is not retried', async (t) => {
  // Default retry settings (3 retries, 1 s backoff): a retried task would take > 7 s.
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const failed = [];
  pool.on('task-failed', (e) => failed.push(e));
  const started = Date.now();
  const r = await settle(within(pool.submitTask({ type: 'no-such-type', payload: 1 }), 15000, 'unknown type'));
  const elapsed = Date.now() - started;
  assert.equal(r.ok, false);
  assert.equal(r.error.message, 'No handler registered for task type: no-such-type');
  assert.equal(r.error.code, 'ERR_NO_HANDLER');
  // A retry would come after >= 1 s (and all three after >= 7 s).
  assert.ok(elapsed < 3000, `rejected in ${elapsed} ms (not retried)`);
  await waitFor(() => failed.length >= 1, 2000, { message: 'task-failed' });
  assert.equal(failed.length, 1);
  assert.equal(failed[0].retried, false);
  // Same with the package's default worker script.
  const { pool: pool2 } = await openPool(t, { poolSize: 1, workerScript: undefined }, { seen });
  const r2 = await settle(pool2.submitTask({ type: 'frobnicate' }));
  assert.equal(r2.error.message, 'No handler registered for task type: frobnicate');
  assert.equal(r2.error.code, 'ERR_NO_HANDLER');
});

test('custom worker script built on WorkerProcess', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
  const pids = pool.getWorkerPids();
  const a = await pool.submitTask({ type: 'pid' });
  assert.ok(pids.includes(a.pid), 'the task ran in one of the pool workers');
  assert.match(a.workerId, /^worker-[01]$/);
  assert.deepEqual(await pool.submitTask({ type: 'fib', payload: { n: 15 } }), 610);
  assert.deepEqual(await pool.submitTask({ type: 'sleep', payload: { ms: 20 } }), { slept: 20 });
});

test('a fork-style worker written for the original pool (plain process.send) works', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: fixture('fork-style-worker.js'), maxTaskRetries: 0 }, { seen });
  assert.equal(pool.getWorkerPids().length, 2);
  const results = await Promise.all([1, 2, 3, 4].map((n) => pool.submitTask({ type: 'anything', payload: { n } })));
  assert.deepEqual(results, [1, 2, 3, 4].map((n) => ({ echo: { n }, by: 'fork-style' })));
  const r = await settle(pool.submitTask({ type: 'fail', payload: null }));
  assert.equal(r.ok, false);
  assert.equal(r.error.message, 'fork-style failure');
  assert.equal(r.error.code, 'ERR_TASK_FAILED');
  assert.deepEqual(await pool.submitTask({ type: 'again', payload: 'x' }), { echo: 'x', by: 'fork-style' });
  const pids = pool.getWorkerPids();
  await within(pool.shutdown(true), 20000, 'graceful shutdown of fork-style workers');
  for (const p of pids) seen.add(p);
});

test('WORKER_ID is worker-<n> and is never reused after a crash', async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 1, workerScript: ECHO, maxTaskRetries: 0, restartCooldownMs: 0, minUptimeMs: 0, maxRestartAttempts: 10 },
    { seen },
  );
  const exited = [];
  pool.on('worker-exited', (e) => exited.push(e));
  const env = () => pool.submitTask({ type: 'env', payload: { keys: ['WORKER_ID', 'WORKER_CONFIG'] } });

  const first = await env();
  assert.equal(first.WORKER_ID, 'worker-0');
  const cfg = JSON.parse(first.WORKER_CONFIG);
  assert.equal(cfg.heartbeatInterval, 5000);
  assert.equal(cfg.memoryThresholdMB, 512);

  const ids = ['worker-0'];
  for (let i = 1; i <= 2; i++) {
    const r = await settle(within(pool.submitTask({ type: 'crash', payload: { code: 3 } }), 15000, 'crash task'));
    assert.equal(r.ok, false, 'a task whose worker crashed rejects (no retries)');
    assert.equal(r.error.code, 'ERR_WORKER_CRASHED');
    await waitFor(() => exited.length === i, 10000, { message: `worker-exited #${i}` });
    const next = await within(env(), 15000, 'env on the replacement worker');
    ids.push(next.WORKER_ID);
    for (const p of pool.getWorkerPids()) seen.add(p);
  }
  assert.deepEqual(ids, ['worker-0', 'worker-1', 'worker-2']);
  assert.deepEqual(pool.getAllWorkersStatus().map((w) => w.id), ['worker-2']);
  assert.equal(pool.getWorkerStatus('worker-0'), null);
  assert.equal(exited[0].workerId, 'worker-0');
  assert.equal(exited[0].code, 3);
  const m = pool.getPoolMetrics();
  assert.equal(m.performance.workersSpawned, 3);
  assert.equal(m.performance.workersCrashed, 2);
});

test('a task whose worker crashed is retried promptly on an idle pool (not after its timeout)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wp-flaky-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { pool } = await openPool(
    t,
    { poolSize: 1, workerScript: fixture('flaky-worker.js'), maxTaskRetries: 2, retryBackoffMs: 50, taskTimeout: 60000, restartCooldownMs: 0, minUptimeMs: 0 },
    { seen },
  );
  const started = Date.now();
  const r = await within(pool.submitTask({ type: 'crash-once', payload: { marker: path.join(dir, 'm') } }), 20000, 'crash-once task');
  const elapsed = Date.now() - started;
  assert.deepEqual(r, { recovered: true, workerId: 'worker-1' });
  assert.ok(elapsed < 5000, `retried in ${elapsed} ms`);
  for (const p of pool.getWorkerPids()) seen.add(p);
  const m = pool.getPoolMetrics();
  assert.equal(m.tasks.completed, 1);
  assert.equal(m.performance.workersCrashed, 1);
});

test('a timed-out task rejects with ERR_TASK_TIMEOUT and its worker is reclaimed', async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 1, workerScript: ECHO, maxTaskRetries: 0, gracePeriodMs: 200, restartCooldownMs: 0, minUptimeMs: 0 },
    { seen },
  );
  // A handler that honours its abort signal: the same worker is reused.
  let started = Date.now();
  let r = await settle(within(pool.submitTask({ type: 'sleep', payload: { ms: 10000 }, timeout: 200 }), 10000, 'sleep task'));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'ERR_TASK_TIMEOUT');
  assert.match(r.error.message, /Task timeout after 200ms/);
  assert.ok(Date.now() - started < 2000);
  started = Date.now();
  assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'next' }), 5000, 'next task'), 'next');
  assert.ok(Date.now() - started < 1500, 'the worker is free again right away');

  // A handler that never yields: its worker is killed and replaced.
  const pid = pool.getWorkerPids()[0];
  started = Date.now();
  r = await settle(within(pool.submitTask({ type: 'spin', timeout: 200 }), 10000, 'spin task'));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'ERR_TASK_TIMEOUT');
  assert.ok(Date.now() - started < 2000);
  assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'after spin' }), 10000, 'task after a spin'), 'after spin');
  const now = pool.getWorkerPids();
  for (const p of now) seen.add(p);
  assert.notDeepEqual(now, [pid]);
  await assertGone([pid], 5000);
});

test('handler errors of every kind reject with an Error; the pool carries on', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, maxTaskRetries: 0, restartCooldownMs: 0, minUptimeMs: 0 }, { seen });
  let r = await settle(pool.submitTask({ type: 'throw-value', payload: { value: 'plain string' } }));
  assert.ok(r.error instanceof Error);
  assert.equal(r.error.message, 'plain string');
  assert.equal(r.error.code, 'ERR_TASK_FAILED');

  r = await settle(pool.submitTask({ type: 'throw', payload: { message: 'with code', code: 'E_CUSTOM' } }));
  assert.equal(r.error.message, 'with code');
  assert.ok(r.error.code === 'ERR_TASK_FAILED' || r.error.code === 'E_CUSTOM', r.error.code);

  r = await settle(pool.submitTask({ type: 'unserializable' }));
  assert.ok(r.error instanceof Error);
  assert.equal(typeof r.error.code, 'string');

  r = await settle(within(pool.submitTask({ type: 'uncaught' }), 10000, 'uncaught'));
  assert.ok(r.error instanceof Error);
  assert.equal(r.error.code, 'ERR_WORKER_CRASHED');

  assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'alive' }), 10000, 'after errors'), 'alive');
  for (const p of pool.getWorkerPids()) seen.add(p);
});

test('an AbortSignal cancels a queued and a running task', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const running = new AbortController();
  const queued = new AbortController();
  const a = settle(pool.submitTask({ type: 'sleep', payload: { ms: 10000 } }, { signal: running.signal }));
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'busy' });
  const b = settle(pool.submitTask({ type: 'echo', payload: 1 }, { signal: queued.signal }));
  const started = Date.now();
  queued.abort();
  running.abort(new Error('user gave up'));
  const [ra, rb] = await within(Promise.all([a, b]), 5000, 'aborted tasks');
  assert.ok(Date.now() - started < 2000);
  for (const r of [ra, rb]) {
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'ABORT_ERR');
    assert.equal(r.error.name, 'AbortError');
  }
  const pre = await settle(pool.submitTask({ type: 'echo' }, { signal: AbortSignal.abort() }));
  assert.equal(pre.error.code, 'ABORT_ERR');
  assert.equal(await pool.submitTask({ type: 'echo', payload: 2 }), 2);
});

test('maxQueueSize: submissions beyond it reject with ERR_QUEUE_FULL', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, maxQueueSize: 2 }, { seen });
  const blocker = pool.submitTask({ type: 'sleep', payload: { ms: 300 } });
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'busy' });
  const q1 = pool.submitTask({ type: 'echo', payload: 1 });
  const q2 = pool.submitTask({ type: 'echo', payload: 2 });
  const r = await settle(pool.submitTask({ type: 'echo', payload: 3 }));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'ERR_QUEUE_FULL');
  assert.deepEqual(await within(Promise.all([blocker, q1, q2]), 10000, 'queued tasks'), [{ slept: 300 }, 1, 2]);
});

test('thousands of tasks: every result goes to its own promise (batched settlements)', async (t) => {
  for (const strategy of ['round-robin', 'least-loaded']) {
    const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO, loadBalancing: strategy, prefetch: 4 }, { seen });
    const n = 3000;
    const results = await within(Promise.all(Array.from({ length: n }, (_, i) => pool.submitTask({ type: 'echo', payload: { i } }))), 60000, `${n} tasks (${strategy})`);
    for (let i = 0; i < n; i++) assert.equal(results[i].i, i);
    const m = pool.getPoolMetrics();
    assert.equal(m.tasks.completed, n);
    assert.equal(m.tasks.queued, 0);
    const per = pool.getAllWorkersStatus().map((s) => s.tasksExecuted);
    assert.equal(per.reduce((a, b) => a + b, 0), n);
    assert.ok(per.every((c) => c > 0), `both workers used: ${per}`);
    assert.ok(parseInt(m.performance.workerReuseRate, 10) >= 99, m.performance.workerReuseRate);
    await pool.shutdown();
  }
});

test('getPoolMetrics has every key of the documented shape with the right types', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO, loadBalancing: 'round-robin' }, { seen });
  for (let i = 0; i < 10; i++) await pool.submitTask({ type: 'echo', payload: i });
  await settle(pool.submitTask({ type: 'no-such-type' }));
  const m = pool.getPoolMetrics();
  const num = (v, name) => assert.equal(typeof v, 'number', `${name} is a number (got ${JSON.stringify(v)})`);
  const bool = (v, name) => assert.equal(typeof v, 'boolean', `${name} is a boolean`);

  num(m.pool.size, 'pool.size');
  bool(m.pool.initialized, 'pool.initialized');
  bool(m.pool.shuttingDown, 'pool.shuttingDown');
  num(m.pool.uptime, 'pool.uptime');
  assert.equal(m.pool.size, 2);
  assert.equal(m.pool.initialized, true);
  assert.equal(m.pool.shuttingDown, false);

  for (const k of ['total', 'ready', 'busy', 'unhealthy']) num(m.workers[k], `workers.${k}`);
  assert.equal(m.workers.total, 2);
  assert.equal(m.workers.ready, 2);
  assert.equal(m.workers.busy, 0);

  for (const k of ['submitted', 'completed', 'failed', 'queued', 'dlq']) num(m.tasks[k], `tasks.${k}`);
  assert.equal(m.tasks.submitted, 11);
  assert.equal(m.tasks.completed, 10);
  assert.equal(m.tasks.failed, 1);
  assert.equal(m.tasks.queued, 0);

  assert.equal(typeof m.performance.workerReuseRate, 'string');
  assert.match(m.performance.workerReuseRate, /^\d{1,3}%$/);
  // Ten sequential tasks, round-robin on two workers: the first task of each worker
  // is not a reuse; the other eight are.
  assert.equal(m.performance.workerReuseRate, '80%');
  for (const k of ['workersSpawned', 'workersRestarted', 'workersCrashed', 'avgTaskWaitTimeMs', 'avgTaskDurationMs']) {
    num(m.performance[k], `performance.${k}`);
  }
  assert.equal(m.performance.workersSpawned, 2);

  for (const k of ['timestamp', 'monitoring', 'capacity', 'alerts', 'workers', 'status']) assert.ok(k in m.health, `health.${k}`);
  assert.ok(['healthy', 'degraded', 'critical'].includes(m.health.status));
  for (const k of ['total', 'healthy', 'unhealthy', 'busy', 'idle', 'capacityPercent', 'utilizationPercent']) {
    num(m.health.capacity[k], `health.capacity.${k}`);
  }
  bool(m.health.capacity.degraded, 'health.capacity.degraded');
  for (const k of ['total', 'recent', 'critical']) num(m.health.alerts[k], `health.alerts.${k}`);

  for (const k of ['queueDepth', 'totalTasks', 'dlqSize', 'avgWaitTimeMs', 'avgDurationMs', 'oldestTaskAge']) num(m.queue[k], `queue.${k}`);
  assert.equal(typeof m.queue.byStatus, 'object');
  assert.equal(typeof m.queue.byPriority, 'object');
  assert.deepEqual(m.queue, pool.taskQueue.getStats());
  const { timestamp: _t1, ...h1 } = m.health;
  const { timestamp: _t2, ...h2 } = pool.healthMonitor.getHealthSummary();
  assert.deepEqual(h1, h2);
});

test('getWorkerStatus and getAllWorkersStatus', async (t) => {
  const { pool } = await openPool(t, { poolSize: 3, workerScript: ECHO }, { seen });
  await pool.submitTask({ type: 'echo', payload: 1 });
  const all = pool.getAllWorkersStatus();
  assert.ok(Array.isArray(all));
  assert.deepEqual(all.map((s) => s.id), ['worker-0', 'worker-1', 'worker-2']);
  const pids = pool.getWorkerPids();
  assert.deepEqual(all.map((s) => s.pid).sort(), [...pids].sort());
  for (const s of all) {
    assert.equal(typeof s.id, 'string');
    assert.ok(Number.isInteger(s.pid) && s.pid > 0);
    assert.ok(['initializing', 'ready', 'busy', 'shutting-down'].includes(s.state), s.state);
    assert.equal(typeof s.healthy, 'boolean');
    assert.equal(typeof s.tasksExecuted, 'number');
    assert.ok(s.currentTask === null || typeof s.currentTask === 'string');
    assert.equal(typeof s.uptime, 'number');
    assert.equal(typeof s.lastActivity, 'number');
    assert.equal(typeof s.restartCount, 'number');
    assert.equal(typeof s.health, 'object');
    assert.equal(s.health.workerId, s.id);
    const one = pool.getWorkerStatus(s.id);
    assert.equal(one.id, s.id);
    assert.equal(one.pid, s.pid);
  }
  assert.equal(all.reduce((n, s) => n + s.tasksExecuted, 0), 1);

  // A busy worker shows its current task.
  const running = pool.submitTask({ type: 'sleep', payload: { ms: 300 } });
  const busy = await waitFor(() => pool.getAllWorkersStatus().find((s) => s.state === 'busy'), 5000, { message: 'a busy worker' });
  assert.match(busy.currentTask, TASK_ID);
  await running;
  await waitFor(() => pool.getAllWorkersStatus().every((s) => s.state === 'ready'), 5000, { message: 'all ready' });

  // health is healthMonitor.getWorkerHealth(id)
  const s0 = pool.getWorkerStatus('worker-0');
  const h0 = pool.healthMonitor.getWorkerHealth('worker-0');
  for (const k of ['workerId', 'pid', 'healthy', 'state', 'tasksExecuted', 'currentTask', 'timeSinceHeartbeat', 'uptime',
    'restartAttempts', 'consecutiveFailures', 'metrics']) {
    assert.ok(k in h0, `getWorkerHealth().${k}`);
  }
  assert.equal(s0.health.workerId, h0.workerId);
  assert.equal(s0.health.pid, h0.pid);
  assert.equal(pool.getWorkerStatus('worker-99'), null);
  assert.equal(pool.healthMonitor.getWorkerHealth('worker-99'), null);
});

finalGoneTest(test, seen);
