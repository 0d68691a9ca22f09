'use strict';

// Fault injection, task lifecycle (issue 3): crashes under load, retries, timeouts,
// cancellation, queue limits, the dead-letter queue, immediate shutdown, late replies.
// Run: node --test __test__/lifecycle.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { waitFor, assertGone, assertNoDefunct, isAlive, openPool, settle, within, serving } = require('./helpers');

async function expectReject(promise, check, ms = 15000) {
  const out = await within(settle(promise), ms, 'task promise');
  assert.equal(out.ok, false, `expected a rejection, got ${JSON.stringify(out.value)}`);
  if (check) check(out.error);
  return out.error;
}

test.afterEach(async () => {
  await assertNoDefunct(3000);
});

// ---------------------------------------------------------------------------------

test('5,000+ echo tasks survive a busy worker being SIGKILLed every 50 ms', { timeout: 90000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 4,
    taskTimeout: 120000,
    maxTaskRetries: 10,
    retryBackoffMs: 10,
  });
  const killed = [];
  let killer = null;
  try {
    const MIN_TASKS = 5000;
    const MIN_KILLS = 40;
    const WINDOW = 64;
    const resolved = new Map(); // i -> number of resolve calls
    const rejected = new Map(); // i -> errors
    let wrong = 0;
    let submitted = 0;
    let settled = 0;
    const started = Date.now();

    killer = setInterval(() => {
      note();
      // A killed worker stays listed until its exit is processed: never pick it twice.
      const busy = pool.getAllWorkersStatus().filter((w) => w.state === 'busy' && w.pid && !killed.includes(w.pid));
      if (busy.length === 0) return;
      const victim = busy[Math.floor(Math.random() * busy.length)];
      try {
        process.kill(victim.pid, 'SIGKILL');
        killed.push(victim.pid);
      } catch {
        /* already gone */
      }
    }, 50);

    // Keep WINDOW tasks in flight until at least MIN_TASKS ran and MIN_KILLS kills
    // happened (so the kills overlap the run however fast the pool is).
    await new Promise((resolve) => {
      const submitOne = () => {
        const i = submitted++;
        pool.submitTask({ type: 'echo', payload: i }).then(
          (r) => {
            resolved.set(i, (resolved.get(i) || 0) + 1);
            if (r !== i) wrong++;
            done();
          },
          (e) => {
            const list = rejected.get(i) || [];
            list.push(e);
            rejected.set(i, list);
            done();
          },
        );
      };
      const done = () => {
        settled++;
        // The time bound only stops a run that cannot make progress: on a loaded machine
        // (every kill costs a worker start) 5,000 tasks took up to 27 s, 8 s on a quiet one.
        const more = (submitted < MIN_TASKS || killed.length < MIN_KILLS) && submitted < 200000 && Date.now() - started < 60000;
        if (more) submitOne();
        else if (settled === submitted) resolve();
      };
      for (let k = 0; k < WINDOW; k++) submitOne();
    });
    clearInterval(killer);
    killer = null;
    const elapsed = Date.now() - started;
    t.diagnostic(`${submitted} tasks, ${killed.length} kills, ${elapsed} ms`);

    const firstRejections = [...rejected.entries()].slice(0, 5).map(([i, es]) => `${i}: ${es.map((e) => `${e.code} ${e.message}`).join(' | ')}`);
    assert.equal(rejected.size, 0, `tasks rejected: ${rejected.size}; first: ${firstRejections.join('; ')}`);
    assert.equal(wrong, 0, 'some task resolved with another task\'s result');
    assert.equal(resolved.size, submitted, 'every task resolved');
    for (const [i, n] of resolved) assert.equal(n, 1, `task ${i} resolved ${n} times`);
    assert.ok(submitted >= MIN_TASKS, `submitted ${submitted}`);
    assert.ok(killed.length >= MIN_KILLS, `only ${killed.length} kills happened during the run`);
    assert.ok(elapsed < 70000, `run took ${elapsed} ms`);

    // Back to full size.
    await waitFor(() => {
      const ws = pool.getAllWorkersStatus();
      return ws.length === 4 && ws.every((w) => w.state === 'ready');
    }, 15000, { what: () => JSON.stringify(pool.getAllWorkersStatus().map((w) => [w.id, w.state])) });
    note();
    await assertGone(killed, 5000);
    const m = pool.getPoolMetrics();
    assert.equal(m.tasks.dlq, 0);
    assert.ok(m.performance.workersCrashed >= killed.length, `workersCrashed ${m.performance.workersCrashed}, kills ${killed.length}`);
  } finally {
    if (killer) clearInterval(killer);
    await close();
    await assertGone(killed, 5000);
  }
});

test('a task that always crashes its worker rejects ERR_WORKER_CRASHED after its retries, within seconds', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, {
    poolSize: 2,
    taskTimeout: 60000,
    retryBackoffMs: 50,
    maxTaskRetries: 2,
  });
  const exits = [];
  pool.on('worker-exited', (e) => exits.push(e));
  try {
    const t0 = Date.now();
    const err = await expectReject(pool.submitTask({ type: 'crash', payload: { code: 7 } }), null, 20000);
    const elapsed = Date.now() - t0;
    assert.equal(err.code, 'ERR_WORKER_CRASHED', `${err.code}: ${err.message}`);
    assert.equal(err.exitCode, 7, `exitCode in the error: ${JSON.stringify({ exitCode: err.exitCode, message: err.message })}`);
    assert.ok(elapsed < 10000, `rejected after ${elapsed} ms`);
    assert.equal(exits.filter((e) => e.code === 7).length, 3, 'three attempts, three crashed workers');

    const dlq = pool.taskQueue.getDeadLetterQueue();
    assert.equal(dlq.length, 1);
    assert.equal(dlq[0].task.type, 'crash');
    assert.equal(dlq[0].metadata.attempts.length, 3);
    for (const a of dlq[0].metadata.attempts) assert.match(a.error, /exited with code 7/);

    // The pool still serves (slots come back).
    note();
    assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'after' }), 15000, 'echo after crashes'), 'after');
    note();
  } finally {
    await close();
    await assertGone(exits.map((e) => e.pid), 3000);
  }
});

test('a poison task that crashes every worker it runs on does not disable the pool', { timeout: 30000 }, async (t) => {
  // Crashes caused by a task are not unstable starts: the slots must come back.
  const { pool, note, close } = await openPool(t, {
    poolSize: 2,
    retryBackoffMs: 10,
    maxTaskRetries: 5,
    restartCooldownMs: 100,
  });
  const exits = [];
  pool.on('worker-exited', (e) => exits.push(e));
  try {
    const err = await expectReject(pool.submitTask({ type: 'crash', payload: { code: 7 } }), null, 20000);
    assert.equal(err.code, 'ERR_WORKER_CRASHED');
    assert.equal(exits.length, 6, 'six attempts, six crashed workers');
    await waitFor(() => serving(pool) === 2, 10000, {
      what: () => `pool back to 2 workers; workers: ${JSON.stringify(pool.getAllWorkersStatus().map((w) => [w.id, w.state]))}, ` +
        `alerts: ${JSON.stringify(pool.healthMonitor.getAlerts(5).map((a) => a.type))}`,
    });
    note();
    assert.equal(await within(pool.submitTask({ type: 'echo', payload: 'ok' }), 5000, 'echo after the poison task'), 'ok');
  } finally {
    await close();
    await assertGone(exits.map((e) => e.pid), 3000);
  }
});

test('a spinning task times out (ERR_TASK_TIMEOUT), its worker is killed and replaced', { timeout: 30000 }, async (t) => {
  const { pool, note, close } = await openPool(t, { poolSize: 1, gracePeriodMs: 500 });
  try {
    const [spinPid] = pool.getWorkerPids();
    const t0 = Date.now();
    const err = await expectReject(pool.submitTask({ type: 'spin', timeout: 500, maxRetries: 0 }), null, 10000);
    assert.equal(err.code, 'ERR_TASK_TIMEOUT');
    assert.equal(err.message, 'Task timeout after 500ms');
    assert.ok(Date.now() - t0 < 3000, `timeout reported after ${Date.now() - t0} ms`);

    const t1 = Date.now();
    const r = await within(pool.submitTask({ type: 'pid' }), 8000, 'next task after the spin');
    assert.ok(Date.now() - t1 < 5000, `next task served after ${Date.now() - t1} ms`);
    assert.notEqual(r.pid, spinPid, 'the next task ran on a new worker');
    note();
    await assertGone([spinPid], 3000);
  } finally {
    await close();
  }
});

test('a sleep task that honours the signal times out without its worker being killed', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 1, gracePeriodMs: 2000 });
  const exits = [];
  pool.on('worker-exited', (e) => exits.push(e));
  try {
    const [pid] = pool.getWorkerPids();
    const err = await expectReject(pool.submitTask({ type: 'sleep', payload: { ms: 10000 }, timeout: 300, maxRetries: 0 }));
    const timedOutAt = Date.now();
    assert.equal(err.code, 'ERR_TASK_TIMEOUT');
    const r = await within(pool.submitTask({ type: 'pid' }), 5000, 'next task');
    assert.equal(r.pid, pid, 'the same worker serves the next task');
    // Past the grace period (2000 ms), still the same worker.
    await waitFor(() => Date.now() - timedOutAt > 2500 || exits.length > 0, 8000);
    assert.deepEqual(pool.getWorkerPids(), [pid]);
    assert.ok(isAlive(pid));
    assert.deepEqual(exits, []);
    assert.equal(pool.getPoolMetrics().performance.workersRestarted, 0);
  } finally {
    await close();
  }
});

test('cancellation with AbortSignal', { timeout: 60000 }, async (t) => {
  await t.test('an already-aborted signal rejects at once and submits nothing', async (t) => {
    const { pool, close } = await openPool(t, { poolSize: 1 });
    try {
      const before = pool.getPoolMetrics().tasks.submitted;
      const t0 = Date.now();
      const err = await expectReject(pool.submitTask({ type: 'echo', payload: 1 }, { signal: AbortSignal.abort() }));
      assert.ok(Date.now() - t0 < 200);
      assert.equal(err.name, 'AbortError');
      assert.equal(err.code, 'ABORT_ERR');
      assert.equal(pool.getPoolMetrics().tasks.submitted, before);
    } finally {
      await close();
    }
  });

  await t.test('a queued task aborted rejects AbortError and never runs', async (t) => {
    const { pool, close } = await openPool(t, { poolSize: 1 });
    const exits = [];
    pool.on('worker-exited', (e) => exits.push(e));
    try {
      const [pid] = pool.getWorkerPids();
      const busy = pool.submitTask({ type: 'sleep', payload: { ms: 800 } });
      await waitFor(() => pool.getAllWorkersStatus()[0].state === 'busy', 3000);
      const ac = new AbortController();
      // 'crash' would kill the worker if it ever ran.
      const queued = pool.submitTask({ type: 'crash', payload: { code: 9 } }, { signal: ac.signal });
      assert.equal(pool.taskQueue.getQueueDepth(), 1);
      const t0 = Date.now();
      ac.abort();
      const err = await expectReject(queued);
      assert.ok(Date.now() - t0 < 500, `rejected after ${Date.now() - t0} ms`);
      assert.equal(err.name, 'AbortError');
      assert.equal(pool.taskQueue.getQueueDepth(), 0);
      assert.deepEqual(await busy, { slept: 800 });
      const r = await within(pool.submitTask({ type: 'pid' }), 5000, 'next task');
      assert.equal(r.pid, pid);
      assert.deepEqual(exits, [], 'the aborted crash task never ran');
      assert.equal(pool.getAllWorkersStatus()[0].tasksExecuted, 2);
    } finally {
      await close();
    }
  });

  await t.test('a task waiting for its retry aborted rejects AbortError and never runs again', async (t) => {
    const { pool, close } = await openPool(t, { poolSize: 2, retryBackoffMs: 1500, maxTaskRetries: 3 });
    const exits = [];
    const failed = [];
    pool.on('worker-exited', (e) => exits.push(e));
    pool.on('task-failed', (e) => failed.push(e));
    try {
      const ac = new AbortController();
      const p = pool.submitTask({ type: 'crash', payload: { code: 5 } }, { signal: ac.signal });
      await waitFor(() => failed.length === 1 && exits.length === 1, 5000);
      assert.equal(failed[0].retried, true);
      const t0 = Date.now();
      ac.abort();
      const err = await expectReject(p);
      assert.ok(Date.now() - t0 < 500, `rejected after ${Date.now() - t0} ms`);
      assert.equal(err.name, 'AbortError');
      // Past the backoff: no second attempt ran.
      await waitFor(() => Date.now() - t0 > 2500, 5000);
      assert.equal(exits.length, 1, `worker exits: ${JSON.stringify(exits)}`);
      assert.equal(failed.length, 1);
      assert.equal(pool.taskQueue.getStats().byStatus['retry-pending'] ?? 0, 0);
      assert.equal(pool.getPoolMetrics().tasks.dlq, 0);
    } finally {
      await close();
      await assertGone(exits.map((e) => e.pid), 3000);
    }
  });

  await t.test('a running sleep task aborted rejects AbortError; the worker survives', async (t) => {
    const { pool, close } = await openPool(t, { poolSize: 1, gracePeriodMs: 2000 });
    const exits = [];
    pool.on('worker-exited', (e) => exits.push(e));
    try {
      const [pid] = pool.getWorkerPids();
      const ac = new AbortController();
      const running = pool.submitTask({ type: 'sleep', payload: { ms: 20000 } }, { signal: ac.signal });
      await waitFor(() => pool.getAllWorkersStatus()[0].state === 'busy', 3000);
      const t0 = Date.now();
      ac.abort(new Error('user gave up'));
      const err = await expectReject(running);
      assert.ok(Date.now() - t0 < 1000, `rejected after ${Date.now() - t0} ms`);
      assert.equal(err.name, 'AbortError');
      const r = await within(pool.submitTask({ type: 'pid' }), 5000, 'next task');
      // The handler stops on the signal and replies, so the worker must not be killed.
      assert.equal(r.pid, pid, `same worker expected; worker exits: ${JSON.stringify(exits)}`);
      assert.deepEqual(exits, []);
    } finally {
      await close();
    }
  });

  await t.test('a running spin task aborted rejects AbortError; the worker is recycled within grace', async (t) => {
    const { pool, note, close } = await openPool(t, { poolSize: 1, gracePeriodMs: 500 });
    try {
      const [pid] = pool.getWorkerPids();
      const ac = new AbortController();
      const running = pool.submitTask({ type: 'spin' }, { signal: ac.signal });
      await waitFor(() => pool.getAllWorkersStatus()[0].state === 'busy', 3000);
      const t0 = Date.now();
      ac.abort();
      const err = await expectReject(running);
      assert.ok(Date.now() - t0 < 1000, `rejected after ${Date.now() - t0} ms`);
      assert.equal(err.name, 'AbortError');
      // grace (500) before SIGTERM, SIGKILL after another grace, then a respawn.
      await waitFor(() => {
        const pids = pool.getWorkerPids();
        const ws = pool.getAllWorkersStatus();
        return pids.length === 1 && pids[0] !== pid && ws[0].state === 'ready';
      }, 6000, { what: 'a new ready worker' });
      note();
      await assertGone([pid], 3000);
      const r = await within(pool.submitTask({ type: 'pid' }), 5000, 'next task');
      assert.notEqual(r.pid, pid);
    } finally {
      await close();
    }
  });
});

test('maxQueueSize: submits beyond the limit reject ERR_QUEUE_FULL at once; drain fires later', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 1, maxQueueSize: 2 });
  try {
    let drains = 0;
    pool.on('drain', () => drains++);
    const busy = pool.submitTask({ type: 'sleep', payload: { ms: 500 } });
    await waitFor(() => pool.getAllWorkersStatus()[0].state === 'busy', 3000);
    const q1 = pool.submitTask({ type: 'echo', payload: 'q1' });
    const q2 = pool.submitTask({ type: 'echo', payload: 'q2' });
    for (const extra of ['x1', 'x2']) {
      const t0 = Date.now();
      const err = await expectReject(pool.submitTask({ type: 'echo', payload: extra }));
      assert.ok(Date.now() - t0 < 100, `ERR_QUEUE_FULL after ${Date.now() - t0} ms`);
      assert.equal(err.code, 'ERR_QUEUE_FULL');
    }
    assert.equal(drains, 0);
    assert.deepEqual(await Promise.all([busy, q1, q2]), [{ slept: 500 }, 'q1', 'q2']);
    await waitFor(() => drains === 1, 3000, { what: `drain events: ${drains}` });
    // Room again.
    assert.equal(await pool.submitTask({ type: 'echo', payload: 'again' }), 'again');
  } finally {
    await close();
  }
});

test('dead-letter records: contents, clearDeadLetterQueue, requeueDeadLetter', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 2, retryBackoffMs: 20, maxTaskRetries: 1 });
  try {
    const before = Date.now();
    const e1 = await expectReject(pool.submitTask({ type: 'throw', payload: { message: 'dlq boom', code: 'E_CUSTOM' }, priority: 5 }));
    const e2 = await expectReject(pool.submitTask({ type: 'throw', payload: { message: 'second' }, maxRetries: 0 }));
    assert.equal(e1.code, 'ERR_TASK_FAILED');
    assert.equal(e1.message, 'dlq boom');
    assert.equal(e2.code, 'ERR_TASK_FAILED');

    const dlq = pool.taskQueue.getDeadLetterQueue();
    assert.equal(dlq.length, 2);
    const [r1, r2] = dlq;
    assert.match(r1.id, /^task-\d+-\d+$/);
    assert.deepEqual(r1.task.type, 'throw');
    assert.deepEqual(r1.task.payload, { message: 'dlq boom', code: 'E_CUSTOM' });
    assert.equal(r1.priority, 5);
    assert.equal(r1.retries, 1);
    assert.equal(r1.status, 'failed');
    assert.equal(typeof r1.failedAt, 'number');
    assert.ok(r1.failedAt >= before && r1.failedAt <= Date.now() + 5);
    assert.equal(r1.finalError.message, 'dlq boom');
    assert.equal(r1.finalError.code, e1.code);
    assert.equal(typeof r1.finalError.stack, 'string');
    assert.match(r1.finalError.stack, /dlq boom/);
    assert.equal(r1.metadata.attempts.length, 2);
    const workerIds = new Set(pool.getAllWorkersStatus().map((w) => w.id));
    for (const a of r1.metadata.attempts) {
      assert.equal(typeof a.timestamp, 'number');
      assert.equal(a.error, 'dlq boom');
      assert.equal(typeof a.stack, 'string');
      assert.ok(workerIds.has(a.workerId), `attempt workerId ${a.workerId}`);
    }
    assert.equal(r2.retries, 0);
    assert.equal(r2.priority, 10);
    assert.equal(r2.metadata.attempts.length, 1);

    // Requeue one by id: a promise that settles (it throws again).
    const one = pool.taskQueue.requeueDeadLetter(r1.id);
    assert.ok(Array.isArray(one));
    assert.equal(one.length, 1);
    const again = await expectReject(one[0]);
    assert.equal(again.message, 'dlq boom');
    // Requeue all.
    const all = pool.taskQueue.requeueDeadLetter();
    assert.equal(all.length, 2);
    const outs = await within(Promise.all(all.map(settle)), 10000, 'requeued tasks');
    assert.ok(outs.every((o) => !o.ok && o.error.code === 'ERR_TASK_FAILED'));
    assert.equal(pool.taskQueue.getDeadLetterQueue().length, 2);
    assert.equal(pool.taskQueue.clearDeadLetterQueue(), 2);
    assert.deepEqual(pool.taskQueue.getDeadLetterQueue(), []);
    assert.equal(pool.taskQueue.clearDeadLetterQueue(), 0);
    assert.deepEqual(pool.taskQueue.requeueDeadLetter(), []);
  } finally {
    await close();
  }
});

test('shutdown(false) rejects 20 running and queued tasks promptly with ERR_POOL_SHUTDOWN', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 2 });
  try {
    const pids = pool.getWorkerPids();
    const tasks = Array.from({ length: 20 }, () => settle(pool.submitTask({ type: 'sleep', payload: { ms: 30000 } })));
    await waitFor(() => pool.getAllWorkersStatus().every((w) => w.state === 'busy'), 3000);
    const t0 = Date.now();
    await within(pool.shutdown(false), 5000, 'shutdown(false)');
    const outs = await within(Promise.all(tasks), 5000, 'task promises');
    assert.ok(Date.now() - t0 < 5000, `settled after ${Date.now() - t0} ms`);
    for (const o of outs) {
      assert.equal(o.ok, false);
      assert.equal(o.error.code, 'ERR_POOL_SHUTDOWN', `${o.error.code}: ${o.error.message}`);
    }
    await assertGone(pids, 3000);
    assert.deepEqual(pool.getWorkerPids(), []);
  } finally {
    await close();
  }
});

test('a late reply after a timeout never settles twice; the worker is reused', { timeout: 30000 }, async (t) => {
  const { pool, close } = await openPool(t, { poolSize: 1, gracePeriodMs: 2000 });
  const exits = [];
  pool.on('worker-exited', (e) => exits.push(e));
  const completed = [];
  const failed = [];
  pool.on('task-completed', (e) => completed.push(e));
  pool.on('task-failed', (e) => failed.push(e));
  try {
    const [pid] = pool.getWorkerPids();
    let settles = 0;
    const p = pool.submitTask({ type: 'sleep', payload: { ms: 600, ignoreSignal: true }, timeout: 200, maxRetries: 0 });
    p.then(() => settles++, () => settles++);
    const t0 = Date.now();
    const err = await expectReject(p);
    assert.equal(err.code, 'ERR_TASK_TIMEOUT');
    assert.equal(err.message, 'Task timeout after 200ms');
    assert.ok(Date.now() - t0 < 1500);
    assert.equal(failed.length, 1);
    const lateId = failed[0].taskId;

    const r = await within(pool.submitTask({ type: 'pid' }), 5000, 'next task');
    const took = Date.now() - t0;
    assert.equal(r.pid, pid, 'the same worker serves the next task');
    assert.ok(took >= 500, `next task ran after the sleep finished (${took} ms)`);
    assert.equal(settles, 1);
    assert.ok(!completed.some((e) => e.taskId === lateId), 'the late reply produced no task-completed');
    const m = pool.getPoolMetrics();
    assert.equal(m.tasks.failed, 1);
    assert.equal(m.tasks.completed, 1);
    assert.deepEqual(exits, []);
  } finally {
    await close();
  }
});
