'use strict';

// Drives worker-process.js and the fixtures directly with child_process.fork
// (no pool involved). Run: node --test __test__/worker-process.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { fork, spawn } = require('child_process');

const ROOT = path.join(__dirname, '..');
const WORKER = path.join(ROOT, 'worker-process.js');
const fixture = (name) => path.join(__dirname, 'fixtures', name);
const TEST_TIMEOUT = 15000;

let nextId = 0;
const taskId = () => `task-${Date.now()}-${nextId++}`;

/** Forks a worker, records its messages and kills it when the test ends. */
function startWorker(t, script, { id = 'worker-t', config = {}, env = {} } = {}) {
  const child = fork(script, [], {
    env: { ...process.env, ...env, WORKER_ID: id, WORKER_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const w = { child, messages: [], stderr: '', exit: null, waiters: new Set() };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { w.stderr += d; });
  child.stdout.resume();
  child.on('message', (msg) => {
    w.messages.push(msg);
    for (const waiter of w.waiters) waiter.check();
  });
  child.on('error', () => {});
  w.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      w.exit = { code, signal };
      for (const waiter of w.waiters) waiter.check();
      resolve(w.exit);
    });
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Resolves with the first message (at index >= from) matching pred. */
  w.waitFor = (pred, { timeout = 5000, from = 0 } = {}) => new Promise((resolve, reject) => {
    const waiter = {
      check() {
        for (let i = from; i < w.messages.length; i++) {
          if (pred(w.messages[i])) { done(); resolve(w.messages[i]); return; }
        }
        if (w.exit) {
          done();
          reject(new Error(`worker exited (${JSON.stringify(w.exit)}) before the expected message; ` +
            `stderr: ${w.stderr}; got: ${JSON.stringify(w.messages).slice(0, 2000)}`));
        }
      },
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for a message; got: ${JSON.stringify(w.messages).slice(0, 2000)}`));
    }, timeout);
    function done() { clearTimeout(timer); w.waiters.delete(waiter); }
    w.waiters.add(waiter);
    waiter.check();
  });
  w.type = (type, opts) => w.waitFor((m) => m.type === type, opts);
  w.send = (msg) => child.send(msg);
  w.waitExit = (timeout = 5000) => Promise.race([
    w.exited,
    new Promise((_, reject) => setTimeout(() => reject(new Error('worker did not exit')), timeout).unref()),
  ]);
  return w;
}

/** task-results entries for the given ids, in arrival order, once all have arrived. */
async function collectResults(w, ids, timeout = 5000) {
  const want = new Set(ids);
  const byId = new Map();
  await w.waitFor(() => {
    byId.clear();
    for (const m of w.messages) {
      if (m.type !== 'task-results') continue;
      for (const r of m.results) if (want.has(r.taskId)) byId.set(r.taskId, r);
    }
    return byId.size === want.size;
  }, { timeout });
  const ordered = [];
  for (const m of w.messages) {
    if (m.type !== 'task-results') continue;
    for (const r of m.results) if (want.has(r.taskId)) ordered.push(r);
  }
  return ordered;
}

const replyFor = (id) => (m) => (m.type === 'task-complete' || m.type === 'task-failed') && m.taskId === id;

test('default worker: worker-ready carries capabilities and features', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { id: 'worker-7', config: { capabilities: ['gpu', 'fast'], heartbeatInterval: 60000 } });
  const ready = await w.type('worker-ready');
  assert.equal(ready.workerId, 'worker-7');
  assert.equal(ready.pid, w.child.pid);
  assert.equal(typeof ready.timestamp, 'number');
  assert.deepEqual(ready.capabilities, ['gpu', 'fast']);
  assert.deepEqual(ready.features, ['batch', 'cancel']);
  const log = await w.type('worker-log');
  assert.equal(log.level, 'info');
  assert.equal(log.message, 'Worker started');
  assert.equal(log.workerId, 'worker-7');
  assert.equal(log.pid, w.child.pid);
});

test('default worker: execute-task replies with task-complete / task-failed', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  for (const type of ['implementation', 'analysis', 'test']) {
    const id = taskId();
    w.send({ type: 'execute-task', task: { id, type, payload: { n: 1, type }, timeout: 1000 } });
    const reply = await w.waitFor(replyFor(id));
    assert.equal(reply.type, 'task-complete');
    assert.equal(reply.workerId, 'worker-t');
    assert.deepEqual(reply.result, { status: 'completed', result: { n: 1, type } });
    assert.equal(typeof reply.duration, 'number');
    assert.ok(reply.duration >= 0);
    assert.equal(typeof reply.timestamp, 'number');
  }
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'nope', payload: null, timeout: 1000 } });
  const failed = await w.waitFor(replyFor(id));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.message, 'No handler registered for task type: nope');
  assert.equal(failed.error.code, 'ERR_NO_HANDLER');
  assert.equal(typeof failed.error.stack, 'string');
  assert.ok(!w.messages.some((m) => m.type === 'task-results'), 'single tasks never get task-results');
});

test('execute-batch: 100 echo tasks come back in order in few messages', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const tasks = Array.from({ length: 100 }, (_, i) => ({ id: taskId(), type: 'echo', payload: { i }, timeout: 5000 }));
  w.send({ type: 'execute-batch', tasks });
  const results = await collectResults(w, tasks.map((x) => x.id));
  assert.deepEqual(results.map((r) => r.taskId), tasks.map((x) => x.id));
  results.forEach((r, i) => {
    assert.equal(r.ok, true);
    assert.deepEqual(r.result, { i });
    assert.equal(typeof r.duration, 'number');
  });
  const batches = w.messages.filter((m) => m.type === 'task-results');
  assert.ok(batches.length <= 3, `expected few task-results messages, got ${batches.length}`);
  assert.equal(batches[0].workerId, 'worker-t');
  assert.ok(!w.messages.some((m) => m.type === 'task-complete'));
});

test('execute-batch: failures, error codes and non-Error throws', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const tasks = [
    { id: taskId(), type: 'throw', payload: { message: 'bad input', code: 'E_BAD' } },
    { id: taskId(), type: 'throw', payload: {} },
    { id: taskId(), type: 'throw-value', payload: { value: 'just a string' } },
    { id: taskId(), type: 'throw-value', payload: { value: 42 } },
    { id: taskId(), type: 'missing-type', payload: 1 },
    { id: taskId(), type: 'unserializable', payload: null },
    { id: taskId(), type: 'sleep', payload: { ms: 5 } },
    { id: taskId(), type: 'fib', payload: { n: 20 } },
  ];
  w.send({ type: 'execute-batch', tasks });
  const r = await collectResults(w, tasks.map((x) => x.id));
  assert.deepEqual(r.map((x) => x.taskId), tasks.map((x) => x.id));
  assert.equal(r[0].ok, false);
  assert.equal(r[0].error.message, 'bad input');
  assert.equal(r[0].error.code, 'E_BAD');
  assert.equal(r[0].error.name, 'Error');
  assert.match(r[0].error.stack, /bad input/);
  assert.equal(r[1].error.message, 'boom');
  assert.equal(r[1].error.code, 'ERR_TASK_FAILED');
  assert.equal(r[2].error.message, 'just a string');
  assert.equal(r[2].error.code, 'ERR_TASK_FAILED');
  assert.equal(r[3].error.message, '42');
  assert.equal(r[4].error.message, 'No handler registered for task type: missing-type');
  assert.equal(r[4].error.code, 'ERR_NO_HANDLER');
  assert.equal(r[5].ok, false);
  assert.equal(r[5].error.code, 'ERR_RESULT_NOT_SERIALIZABLE');
  assert.deepEqual(r[6], { ...r[6], ok: true, result: { slept: 5 } });
  assert.ok(r[6].duration >= 4, `sleep duration ${r[6].duration}`);
  assert.equal(r[7].result, 6765);
});

test('tasks run one at a time in arrival order across execute-task messages', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const ids = [];
  for (let i = 0; i < 5; i++) {
    const id = taskId();
    ids.push(id);
    w.send({ type: 'execute-task', task: { id, type: 'sleep', payload: { ms: 20 - i * 4 }, timeout: 5000 } });
  }
  await w.waitFor(replyFor(ids[4]));
  const order = w.messages.filter((m) => m.type === 'task-complete').map((m) => m.taskId);
  assert.deepEqual(order, ids);
});

test('cancel-task: running and queued tasks fail with AbortError, worker stays usable', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const running = taskId();
  const queued = taskId();
  w.send({ type: 'execute-batch', tasks: [
    { id: running, type: 'sleep', payload: { ms: 20000 }, timeout: 100 },
    { id: queued, type: 'echo', payload: 'never', timeout: 100 },
  ] });
  w.send({ type: 'health-check' });
  const health = await w.type('health-status');
  assert.equal(health.state, 'busy');

  w.send({ type: 'cancel-task', taskId: queued, reason: 'cancelled' });
  const [q] = await collectResults(w, [queued]);
  assert.equal(q.ok, false);
  assert.equal(q.error.name, 'AbortError');
  assert.equal(q.error.code, 'ABORT_ERR');
  assert.equal(q.error.message, `Task ${queued} was cancelled (cancelled)`);

  w.send({ type: 'cancel-task', taskId: running, reason: 'timeout' });
  const [r] = await collectResults(w, [running]);
  assert.equal(r.ok, false);
  assert.equal(r.error.name, 'AbortError');
  assert.equal(r.error.code, 'ABORT_ERR');
  assert.equal(r.error.message, `Task ${running} was cancelled (timeout)`);

  // Single-task path: reply is a task-failed.
  const single = taskId();
  w.send({ type: 'execute-task', task: { id: single, type: 'sleep', payload: { ms: 20000 }, timeout: 100 } });
  w.send({ type: 'cancel-task', taskId: single, reason: 'cancelled' });
  const failed = await w.waitFor(replyFor(single));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.name, 'AbortError');
  assert.equal(failed.error.message, `Task ${single} was cancelled (cancelled)`);

  // Cancelling something unknown or already answered is ignored.
  w.send({ type: 'cancel-task', taskId: 'no-such-task', reason: 'timeout' });

  const after = taskId();
  w.send({ type: 'execute-task', task: { id: after, type: 'echo', payload: 'still here', timeout: 1000 } });
  const ok = await w.waitFor(replyFor(after));
  assert.equal(ok.type, 'task-complete');
  assert.equal(ok.result, 'still here');
  const replies = w.messages.filter((m) => m.type === 'task-failed' || m.type === 'task-complete');
  assert.equal(replies.length, 2, 'exactly one reply per single task');
});

test('cancel-task: a handler that ignores the signal is answered with AbortError when it settles', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const id = taskId();
  const next = taskId();
  w.send({ type: 'execute-batch', tasks: [
    { id, type: 'sleep', payload: { ms: 300, ignoreSignal: true } },
    { id: next, type: 'echo', payload: 'next' },
  ] });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const cancelledAt = Date.now();
  w.send({ type: 'cancel-task', taskId: id, reason: 'timeout' });
  const [r, n] = await collectResults(w, [id, next]);
  assert.ok(Date.now() - cancelledAt >= 150, 'reply waits for the handler to settle');
  assert.equal(r.ok, false);
  assert.equal(r.error.name, 'AbortError');
  assert.equal(r.error.message, `Task ${id} was cancelled (timeout)`);
  assert.ok(r.duration >= 250);
  assert.equal(n.ok, true);
  assert.equal(n.result, 'next');
});

test('health-check and get-metrics replies', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { id: 'worker-3', config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'echo', payload: 1 } });
  await w.waitFor(replyFor(id));
  w.send({ type: 'health-check' });
  const h = await w.type('health-status');
  assert.equal(h.workerId, 'worker-3');
  assert.equal(h.pid, w.child.pid);
  assert.equal(h.state, 'ready');
  assert.equal(h.healthy, true);
  assert.equal(h.tasksExecuted, 1);
  for (const k of ['memoryMB', 'memoryTotalMB', 'uptime', 'lastTaskAge', 'timestamp']) {
    assert.equal(typeof h[k], 'number', k);
  }
  w.send({ type: 'get-metrics' });
  const m = await w.type('worker-metrics');
  assert.equal(typeof m.timestamp, 'number');
  assert.equal(m.metrics.workerId, 'worker-3');
  assert.equal(m.metrics.pid, w.child.pid);
  assert.equal(m.metrics.tasksExecuted, 1);
  assert.equal(typeof m.metrics.uptime, 'number');
  assert.equal(typeof m.metrics.memory.heapUsed, 'number');
  assert.equal(typeof m.metrics.cpu.user, 'number');
  assert.equal(typeof m.metrics.heap.used_heap_size, 'number');
  assert.equal(m.metrics.loadAverage.length, 3);
});

test('heartbeats arrive every heartbeatInterval with the documented fields', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { id: 'worker-9', config: { heartbeatInterval: 40 } });
  await w.type('worker-ready');
  const hb = await w.type('heartbeat');
  assert.equal(hb.workerId, 'worker-9');
  assert.equal(hb.pid, w.child.pid);
  assert.equal(hb.state, 'ready');
  assert.equal(hb.tasksExecuted, 0);
  assert.equal(typeof hb.uptime, 'number');
  for (const k of ['heapUsed', 'heapTotal', 'rss', 'external']) assert.equal(typeof hb.memoryUsage[k], 'number', k);
  assert.equal(typeof hb.cpuUsage.user, 'number');
  assert.equal(typeof hb.cpuUsage.system, 'number');
  assert.equal(hb.currentTask, null);
  assert.equal(typeof hb.timestamp, 'number');
  await w.waitFor(() => w.messages.filter((m) => m.type === 'heartbeat').length >= 3, { timeout: 2000 });
});

test('heartbeats report the running task and can be stopped', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('no-heartbeat-worker.js'), { config: { heartbeatInterval: 30 } });
  await w.type('worker-ready');
  await w.type('heartbeat');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'stop-heartbeats', payload: null } });
  const reply = await w.waitFor(replyFor(id));
  assert.deepEqual(reply.result, { stopped: true });
  const from = w.messages.length;
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(w.messages.slice(from).filter((m) => m.type === 'heartbeat').length, 0);
  // Still answers tasks.
  const id2 = taskId();
  w.send({ type: 'execute-task', task: { id: id2, type: 'echo', payload: 'x' } });
  assert.equal((await w.waitFor(replyFor(id2))).result, 'x');
});

test('heartbeat shows busy state and current task', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 30 } });
  await w.type('worker-ready');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'sleep', payload: { ms: 300 } } });
  const hb = await w.waitFor((m) => m.type === 'heartbeat' && m.currentTask === id);
  assert.equal(hb.state, 'busy');
  await w.waitFor(replyFor(id));
});

test('graceful shutdown finishes running and queued tasks, then worker-shutdown and exit 0', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const a = taskId();
  const b = taskId();
  w.send({ type: 'execute-task', task: { id: a, type: 'sleep', payload: { ms: 200 } } });
  w.send({ type: 'execute-task', task: { id: b, type: 'echo', payload: 'b' } });
  w.send({ type: 'shutdown', graceful: true });
  const late = taskId();
  w.send({ type: 'execute-task', task: { id: late, type: 'echo', payload: 'late' } });
  const lateReply = await w.waitFor(replyFor(late));
  assert.equal(lateReply.type, 'task-failed');
  assert.equal(lateReply.error.code, 'ERR_WORKER_SHUTTING_DOWN');
  const bye = await w.type('worker-shutdown');
  assert.equal(bye.workerId, 'worker-t');
  assert.equal(bye.tasksExecuted, 2);
  assert.equal(typeof bye.uptime, 'number');
  assert.equal(typeof bye.timestamp, 'number');
  const { code } = await w.waitExit();
  assert.equal(code, 0);
  const replies = w.messages.filter((m) => m.type === 'task-complete').map((m) => m.taskId);
  assert.deepEqual(replies, [a, b]);
  assert.ok(w.messages.indexOf(bye) > w.messages.findIndex(replyFor(b)));
});

test('non-graceful shutdown answers the running task and exits 0 at once', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'spin-async', payload: null } });
  w.send({ type: 'shutdown', graceful: false });
  const failed = await w.waitFor(replyFor(id));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.code, 'ERR_WORKER_SHUTDOWN');
  await w.type('worker-shutdown');
  const { code } = await w.waitExit(2000);
  assert.equal(code, 0);
});

test('SIGTERM starts a graceful shutdown', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  w.child.kill('SIGTERM');
  await w.type('worker-shutdown');
  const { code, signal } = await w.waitExit();
  assert.equal(code, 0);
  assert.equal(signal, null);
});

test('the worker exits when the parent disconnects', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  w.child.disconnect();
  const { code } = await w.waitExit(3000);
  assert.equal(code, 0);
});

test('the worker exits when disconnected in the middle of a never-ending task', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  w.send({ type: 'execute-task', task: { id: taskId(), type: 'spin-async', payload: null } });
  await new Promise((resolve) => setTimeout(resolve, 50));
  w.child.disconnect();
  const { code } = await w.waitExit(3000);
  assert.equal(code, 0);
});

test('without an IPC channel the worker exits 1 with a clear message', { timeout: TEST_TIMEOUT }, async (t) => {
  const child = spawn(process.execPath, [WORKER], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 1);
  assert.match(stderr, /IPC channel/);
});

test('bad WORKER_CONFIG exits 1 naming the problem', { timeout: TEST_TIMEOUT }, async (t) => {
  const bad = fork(WORKER, [], {
    env: { ...process.env, WORKER_ID: 'w', WORKER_CONFIG: '{"heartbeatInterval": -5}' },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  t.after(() => { if (bad.exitCode === null && bad.signalCode === null) bad.kill('SIGKILL'); });
  let stderr = '';
  bad.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const code = await new Promise((resolve) => bad.on('close', resolve));
  assert.equal(code, 1);
  assert.match(stderr, /heartbeatInterval/);
});

test('high-memory-warning after a task over the threshold, at most once per 10 s', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000, memoryThresholdMB: 1 } });
  await w.type('worker-ready');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'leak', payload: { mb: 4 } } });
  const warn = await w.type('high-memory-warning');
  assert.equal(warn.workerId, 'worker-t');
  assert.equal(warn.threshold, 1);
  assert.ok(warn.memoryMB >= 4, `memoryMB ${warn.memoryMB}`);
  assert.deepEqual((await w.waitFor(replyFor(id))).result, { retainedMB: 4 });
  const id2 = taskId();
  w.send({ type: 'execute-task', task: { id: id2, type: 'echo', payload: 1 } });
  await w.waitFor(replyFor(id2));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(w.messages.filter((m) => m.type === 'high-memory-warning').length, 1);
});

test('uncaught exception: worker-error fatal, exit 1; unhandled rejection: not fatal', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await w.type('worker-ready');
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'unhandled-rejection', payload: null } });
  assert.equal((await w.waitFor(replyFor(id))).result, 'still alive');
  const soft = await w.type('worker-error');
  assert.equal(soft.fatal, false);
  assert.equal(soft.error.message, 'rejected in worker');
  assert.equal(soft.error.type, 'unhandledRejection');
  assert.equal(soft.workerId, 'worker-t');

  w.send({ type: 'execute-task', task: { id: taskId(), type: 'uncaught', payload: null } });
  const fatal = await w.waitFor((m) => m.type === 'worker-error' && m.fatal === true);
  assert.equal(fatal.error.message, 'uncaught in worker');
  assert.equal(fatal.error.type, 'uncaughtException');
  assert.match(fatal.error.stack, /uncaught in worker/);
  const { code } = await w.waitExit();
  assert.equal(code, 1);
});

test('crash and kill-self handlers end the process', { timeout: TEST_TIMEOUT }, async (t) => {
  const a = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  const b = startWorker(t, fixture('echo-worker.js'), { config: { heartbeatInterval: 60000 } });
  await Promise.all([a.type('worker-ready'), b.type('worker-ready')]);
  a.send({ type: 'execute-task', task: { id: taskId(), type: 'crash', payload: { code: 7 } } });
  b.send({ type: 'execute-task', task: { id: taskId(), type: 'kill-self', payload: {} } });
  assert.deepEqual(await a.waitExit(), { code: 7, signal: null });
  assert.deepEqual(await b.waitExit(), { code: null, signal: 'SIGKILL' });
});

test('echo-worker: pid and env handlers', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('echo-worker.js'), { id: 'worker-5', env: { FIXTURE_VAR: 'hello' } });
  await w.type('worker-ready');
  const p = taskId();
  const e = taskId();
  w.send({ type: 'execute-batch', tasks: [
    { id: p, type: 'pid', payload: null },
    { id: e, type: 'env', payload: { keys: ['FIXTURE_VAR', 'WORKER_ID'] } },
  ] });
  const [rp, re] = await collectResults(w, [p, e]);
  assert.deepEqual(rp.result, { pid: w.child.pid, workerId: 'worker-5' });
  assert.deepEqual(re.result, { FIXTURE_VAR: 'hello', WORKER_ID: 'worker-5' });
});

test('fork-style worker fixture speaks the original protocol', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, fixture('fork-style-worker.js'), { id: 'worker-2', config: { heartbeatInterval: 30 } });
  const ready = await w.type('worker-ready');
  assert.equal(ready.workerId, 'worker-2');
  assert.equal(ready.pid, w.child.pid);
  const ok = taskId();
  const bad = taskId();
  w.send({ type: 'execute-task', task: { id: ok, type: 'anything', payload: { a: 1 } } });
  w.send({ type: 'execute-task', task: { id: bad, type: 'fail', payload: null } });
  const done = await w.waitFor(replyFor(ok));
  assert.equal(done.type, 'task-complete');
  assert.deepEqual(done.result, { echo: { a: 1 }, by: 'fork-style' });
  const failed = await w.waitFor(replyFor(bad));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.message, 'fork-style failure');
  await w.type('heartbeat');
  w.send({ type: 'shutdown', graceful: true });
  assert.equal((await w.waitExit()).code, 0);
});

test('start-up failure fixtures', { timeout: TEST_TIMEOUT }, async (t) => {
  const crash = startWorker(t, fixture('crash-at-start.js'));
  const syntax = startWorker(t, fixture('syntax-error.js'));
  const early = startWorker(t, fixture('exit-before-ready.js'));
  assert.equal((await crash.waitExit()).code, 1);
  assert.equal((await syntax.waitExit()).code, 1);
  assert.equal((await early.waitExit()).code, 3);
  await new Promise((resolve) => setTimeout(resolve, 50)); // let stderr drain
  assert.match(crash.stderr, /fixture: about to crash/);
  assert.match(crash.stderr, /boom at start/);
  assert.match(syntax.stderr, /SyntaxError/);
  for (const w of [crash, syntax, early]) assert.equal(w.messages.length, 0);
});

/** A non-Node parent's view: the child's IPC channel is a plain socket at fd 3. */
function rawChannel(t, script) {
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_CHANNEL_FD: '3', WORKER_ID: 'worker-raw', WORKER_CONFIG: '{}' },
  });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  child.stderr.resume();
  return { child, channel: child.stdio[3] };
}

test('garbage-worker writes a non-JSON line onto the channel', { timeout: TEST_TIMEOUT }, async (t) => {
  const { child, channel } = rawChannel(t, fixture('garbage-worker.js'));
  channel.setEncoding('utf8');
  let data = '';
  await new Promise((resolve, reject) => {
    channel.on('data', (d) => {
      data += d;
      if (data.includes('worker-ready') && !data.includes('"sent"')) {
        if (!data.includes('\n')) return;
        const ready = JSON.parse(data.slice(0, data.indexOf('\n')));
        assert.equal(ready.type, 'worker-ready');
        if (!channel.wrote) {
          channel.wrote = true;
          channel.write(`${JSON.stringify({ type: 'execute-task', task: { id: 't1', type: 'x', payload: 1 } })}\n`);
        }
      }
      if (data.includes('this is not json\n')) resolve();
    });
    channel.on('error', reject);
    child.on('exit', (code, signal) => reject(new Error(`fixture exited early (${code}, ${signal})`)));
  });
  assert.match(data, /^\{"type":"worker-ready".*\}\nthis is not json\n$/);
});

test('huge-line-worker writes 96 MB without a newline', { timeout: 30000 }, async (t) => {
  const { child, channel } = rawChannel(t, fixture('huge-line-worker.js'));
  let phase = 'ready';
  let pending = '';
  let count = 0;
  let newlines = 0;
  const TOTAL = 96 * 1024 * 1024;
  await new Promise((resolve, reject) => {
    channel.on('data', (buf) => {
      if (phase === 'ready') {
        pending += buf.toString('utf8');
        const nl = pending.indexOf('\n');
        if (nl < 0) return;
        assert.equal(JSON.parse(pending.slice(0, nl)).type, 'worker-ready');
        phase = 'huge';
        count = Buffer.byteLength(pending.slice(nl + 1));
        channel.write(`${JSON.stringify({ type: 'execute-task', task: { id: 't1', type: 'x', payload: 1 } })}\n`);
        return;
      }
      count += buf.length;
      if (buf.includes(10)) newlines++;
      if (count >= TOTAL) resolve();
    });
    channel.on('error', reject);
    child.on('exit', (code, signal) => reject(new Error(`fixture exited early (${code}, ${signal})`)));
  });
  assert.equal(newlines, 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(count, TOTAL);
});

test('idleTimeoutMs only produces a debug log, the worker stays up', { timeout: TEST_TIMEOUT }, async (t) => {
  const w = startWorker(t, WORKER, { config: { heartbeatInterval: 20, idleTimeoutMs: 60 } });
  await w.type('worker-ready');
  const idle = await w.waitFor((m) => m.type === 'worker-log' && m.level === 'debug');
  assert.match(idle.message, /idle/);
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(w.exit, null);
  assert.equal(w.messages.filter((m) => m.type === 'worker-log' && m.level === 'debug').length, 1);
  const id = taskId();
  w.send({ type: 'execute-task', task: { id, type: 'test', payload: 1 } });
  assert.equal((await w.waitFor(replyFor(id))).type, 'task-complete');
});

test('purgeModuleCache and forceGC (with --expose-gc) keep tasks working', { timeout: TEST_TIMEOUT }, async (t) => {
  const child = fork(fixture('echo-worker.js'), [], {
    execArgv: ['--expose-gc'],
    env: { ...process.env, WORKER_ID: 'worker-gc', WORKER_CONFIG: JSON.stringify({ purgeModuleCache: true, forceGC: true }) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const results = [];
  const tasks = Array.from({ length: 20 }, (_, i) => ({ id: taskId(), type: 'fib', payload: { n: i } }));
  const done = new Promise((resolve) => child.on('message', (m) => {
    if (m.type === 'worker-ready') child.send({ type: 'execute-batch', tasks });
    if (m.type === 'task-results') {
      results.push(...m.results);
      if (results.length === tasks.length) resolve();
    }
  }));
  await done;
  assert.deepEqual(results.map((r) => r.result), [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]);
});

test('WorkerProcess constructor validates options and is exported both ways', () => {
  const WorkerProcess = require(WORKER);
  assert.equal(WorkerProcess.WorkerProcess, WorkerProcess);
  const w = new WorkerProcess('worker-x');
  assert.equal(w.heartbeatInterval, 5000);
  assert.equal(w.memoryThresholdMB, 512);
  assert.equal(w.idleTimeoutMs, 300000);
  assert.deepEqual(w.capabilities, []);
  assert.equal(w.purgeModuleCache, false);
  assert.equal(w.forceGC, false);
  assert.equal(w.state, 'initializing');
  assert.throws(() => new WorkerProcess('w', { heartbeatInterval: 0 }), /heartbeatInterval/);
  assert.throws(() => new WorkerProcess('w', { memoryThresholdMB: 'x' }), /memoryThresholdMB/);
  assert.throws(() => new WorkerProcess('w', { capabilities: 'gpu' }), /capabilities/);
  assert.throws(() => w.registerTaskHandler('x', null), /function/);
});
