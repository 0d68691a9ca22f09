'use strict';

// worker-process.js over the FIFO transport. The test plays the pool: it
// creates the two pipes with FIFOChannel, connects, and spawns the worker
// with WORKER_TRANSPORT=fifo (no IPC channel).
// Run: node --test __test__/worker-fifo.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const FIFOChannel = require('../fifo-channel.js');
const { encodeFrame } = FIFOChannel;
// isAlive: a zombie (exited, not yet reaped by whoever adopted it) counts as dead.
const { isAlive, procStat } = require('./helpers');

const ROOT = path.join(__dirname, '..');
const WORKER = path.join(ROOT, 'worker-process.js');
const FIXTURE = path.join(__dirname, 'fixtures', 'fifo-transport-worker.js');
const TEST_TIMEOUT = 20000;

let nextId = 0;
const taskId = () => `fifo-task-${process.pid}-${nextId++}`;
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const replyFor = (id) => (m) => (m.type === 'task-complete' || m.type === 'task-failed') && m.taskId === id;

/** The environment of a spawned worker: ours without any IPC channel, plus `extra`. */
function workerEnv(extra) {
  const env = { ...process.env, ...extra };
  delete env.NODE_CHANNEL_FD;
  delete env.NODE_CHANNEL_SERIALIZATION_MODE;
  return env;
}

/** The parent pid of a live process (throws when there is no such process). */
function parentPid(pid) {
  const stat = procStat(pid);
  if (!stat) throw new Error(`no process ${pid}`);
  return stat.ppid;
}

function killQuietly(pid) {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** A temp dir with both pipes, the pool's end connected; removed when the test ends. */
async function poolChannel(t, id) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-fifo-test-'));
  const channel = new FIFOChannel(id, dir);
  // cleanups: run before the pipes are closed and removed (they stop processes).
  const pool = { dir, channel, messages: [], errors: [], waiters: new Set(), cleanups: [] };
  channel.on('error', (err) => pool.errors.push(err));
  channel.on('message', (msg) => {
    pool.messages.push(msg);
    for (const waiter of pool.waiters) waiter.check();
  });
  t.after(async () => {
    for (const fn of pool.cleanups) await fn();
    await channel.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await channel.createChannel();
  await channel.connect();

  /** Resolves with the first message (at index >= from) matching pred. */
  pool.waitFor = (pred, { timeout = 5000, from = 0 } = {}) => new Promise((resolve, reject) => {
    const waiter = {
      check() {
        for (let i = from; i < pool.messages.length; i++) {
          if (pred(pool.messages[i])) { done(); resolve(pool.messages[i]); return; }
        }
        if (pool.exit) {
          done();
          reject(new Error(`worker exited (${JSON.stringify(pool.exit)}) before the expected frame; ` +
            `stderr: ${pool.stderr}; got: ${summary(pool.messages)}`));
        }
      },
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for a frame; got: ${summary(pool.messages)}`));
    }, timeout);
    function done() { clearTimeout(timer); pool.waiters.delete(waiter); }
    pool.waiters.add(waiter);
    waiter.check();
  });
  pool.type = (type, opts) => pool.waitFor((m) => m.type === type, opts);
  pool.send = (msg) => channel.sendToWorker(msg);
  return pool;
}

function summary(messages) {
  return JSON.stringify(messages.map((m) => {
    const s = JSON.stringify(m);
    return s.length > 200 ? `${s.slice(0, 200)}...` : m;
  })).slice(0, 3000);
}

/** Pipes + a worker spawned on them (no IPC); everything is cleaned up after the test. */
async function startFifoWorker(t, { script = WORKER, id = 'worker-1', config = { heartbeatInterval: 60000 }, env = {} } = {}) {
  const pool = await poolChannel(t, id);
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: workerEnv({
      WORKER_ID: id,
      WORKER_CONFIG: JSON.stringify(config),
      WORKER_TRANSPORT: 'fifo',
      WORKER_FIFO_IN: pool.channel.inPath,
      WORKER_FIFO_OUT: pool.channel.outPath,
      ...env,
    }),
  });
  pool.child = child;
  pool.stderr = '';
  pool.exit = null;
  child.stderr.setEncoding('utf8').on('data', (d) => { pool.stderr += d; });
  child.on('error', () => {});
  pool.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      pool.exit = { code, signal };
      for (const waiter of pool.waiters) waiter.check();
      resolve(pool.exit);
    });
  });
  pool.waitExit = (timeout = 5000) => Promise.race([
    pool.exited,
    new Promise((_, reject) => setTimeout(() => reject(new Error(
      `worker did not exit; stderr: ${pool.stderr}`)), timeout).unref()),
  ]);
  pool.cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await pool.exited;
    }
  });
  return pool;
}

/** task-results entries for the given ids, in arrival order, once all have arrived. */
async function collectResults(pool, ids, timeout = 5000) {
  const want = new Set(ids);
  const entries = () => {
    const out = [];
    for (const m of pool.messages) {
      if (m.type !== 'task-results') continue;
      for (const r of m.results) if (want.has(r.taskId)) out.push(r);
    }
    return out;
  };
  await pool.waitFor(() => entries().length >= want.size, { timeout });
  return entries();
}

test('fifo: worker-ready and the start-up log arrive as frames', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { id: 'worker-7', config: { heartbeatInterval: 60000, capabilities: ['gpu'] } });
  const ready = await pool.type('worker-ready');
  assert.equal(ready.workerId, 'worker-7');
  assert.equal(ready.pid, pool.child.pid);
  assert.equal(typeof ready.timestamp, 'number');
  assert.deepEqual(ready.capabilities, ['gpu']);
  assert.deepEqual(ready.features, ['batch', 'cancel']);
  const log = await pool.type('worker-log');
  assert.equal(log.level, 'info');
  assert.equal(log.message, 'Worker started');
  assert.equal(pool.messages[0].type, 'worker-ready', 'worker-ready is the first frame');
  assert.deepEqual(pool.errors, []);
});

test('fifo: no IPC channel, and the pipe variables are not passed on to child processes', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE });
  await pool.type('worker-ready');
  const id = taskId();
  pool.send({ type: 'execute-task', task: { id, type: 'environment',
    payload: { keys: ['WORKER_TRANSPORT', 'WORKER_FIFO_IN', 'WORKER_FIFO_OUT', 'WORKER_ID'] } } });
  const reply = await pool.waitFor(replyFor(id));
  assert.equal(reply.type, 'task-complete');
  assert.deepEqual(reply.result, {
    env: { WORKER_TRANSPORT: null, WORKER_FIFO_IN: null, WORKER_FIFO_OUT: null, WORKER_ID: 'worker-1' },
    hasSend: 'undefined',
    connected: false,
    transport: 'fifo',
  });
});

test('fifo: execute-task is answered with task-complete / task-failed frames', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t);
  await pool.type('worker-ready');
  for (const type of ['implementation', 'analysis', 'test']) {
    const id = taskId();
    pool.send({ type: 'execute-task', task: { id, type, payload: { n: 1, type }, timeout: 1000 } });
    const reply = await pool.waitFor(replyFor(id));
    assert.equal(reply.type, 'task-complete');
    assert.equal(reply.workerId, 'worker-1');
    assert.deepEqual(reply.result, { status: 'completed', result: { n: 1, type } });
    assert.equal(typeof reply.duration, 'number');
    assert.equal(typeof reply.timestamp, 'number');
  }
  const id = taskId();
  pool.send({ type: 'execute-task', task: { id, type: 'nope', payload: null } });
  const failed = await pool.waitFor(replyFor(id));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.message, 'No handler registered for task type: nope');
  assert.equal(failed.error.code, 'ERR_NO_HANDLER');

  pool.send({ type: 'health-check' });
  const health = await pool.type('health-status');
  assert.equal(health.pid, pool.child.pid);
  assert.equal(health.healthy, true);
  pool.send({ type: 'get-metrics' });
  assert.equal((await pool.type('worker-metrics')).metrics.workerId, 'worker-1');
});

test('fifo: execute-batch of 200 comes back in order as task-results frames', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t);
  await pool.type('worker-ready');
  const tasks = Array.from({ length: 200 }, (_, i) => ({ id: taskId(), type: 'test', payload: { i } }));
  pool.send({ type: 'execute-batch', tasks });
  const results = await collectResults(pool, tasks.map((x) => x.id));
  assert.deepEqual(results.map((r) => r.taskId), tasks.map((x) => x.id));
  results.forEach((r, i) => {
    assert.equal(r.ok, true);
    assert.deepEqual(r.result, { status: 'completed', result: { i } });
  });
  const frames = pool.messages.filter((m) => m.type === 'task-results');
  assert.ok(frames.length <= 5, `expected few task-results frames, got ${frames.length}`);
  assert.ok(!pool.messages.some((m) => m.type === 'task-complete'), 'batched tasks never get task-complete');
});

test('fifo: 3000 small execute-task messages sent back to back are answered in order', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t);
  await pool.type('worker-ready');
  const ids = Array.from({ length: 3000 }, () => taskId());
  for (let i = 0; i < ids.length; i++) {
    pool.send({ type: 'execute-task', task: { id: ids[i], type: 'test', payload: i } });
  }
  const last = ids[ids.length - 1];
  await pool.waitFor(replyFor(last), { timeout: 10000 });
  const replies = pool.messages.filter((m) => m.type === 'task-complete');
  assert.deepEqual(replies.map((m) => m.taskId), ids);
  replies.forEach((m, i) => assert.equal(m.result.result, i));
});

test('fifo: a 2 MB payload (multi-byte UTF-8) makes the round trip intact', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t);
  await pool.type('worker-ready');
  const unit = 'aé€😀'; // 1 + 2 + 3 + 4 bytes
  const text = unit.repeat(Math.ceil((2 * 1024 * 1024) / 10));
  assert.ok(Buffer.byteLength(text) >= 2 * 1024 * 1024);
  const id = taskId();
  pool.send({ type: 'execute-task', task: { id, type: 'analysis', payload: { text } } });
  const small = taskId();
  pool.send({ type: 'execute-task', task: { id: small, type: 'test', payload: 'after' } });
  const reply = await pool.waitFor(replyFor(id), { timeout: 10000 });
  assert.equal(reply.type, 'task-complete');
  assert.equal(reply.result.result.text.length, text.length);
  assert.ok(reply.result.result.text === text, 'payload came back unchanged');
  const after = await pool.waitFor(replyFor(small));
  assert.ok(pool.messages.indexOf(after) > pool.messages.indexOf(reply), 'order kept');
  assert.deepEqual(pool.errors, []);
});

test('fifo: a pool that stops reading does not block the worker; queued frames arrive in order', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE, config: { heartbeatInterval: 50 } });
  await pool.type('worker-ready');
  const SIZE = 256 * 1024;
  const ids = Array.from({ length: 40 }, () => taskId()); // 10 MB of results, the pipe holds 64 KB
  for (const id of ids) pool.send({ type: 'execute-task', task: { id, type: 'blob', payload: { bytes: SIZE } } });
  // Play a pool whose event loop is stuck: nothing is read from the out-pipe.
  const stallStart = Date.now();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 800);
  const stallEnd = Date.now();
  await pool.waitFor(replyFor(ids[ids.length - 1]), { timeout: 10000 });
  const replies = pool.messages.filter((m) => m.type === 'task-complete' || m.type === 'task-failed');
  assert.deepEqual(replies.map((m) => m.taskId), ids);
  for (const m of replies) {
    assert.equal(m.type, 'task-complete');
    assert.equal(m.result.length, SIZE);
  }
  // The worker's event loop kept running while its frames could not be written.
  const during = pool.messages.filter((m) => m.type === 'heartbeat' &&
    m.timestamp >= stallStart + 100 && m.timestamp <= stallEnd);
  assert.ok(during.length >= 3, `heartbeats generated while the pipe was full: ${during.length}`);
  const beats = pool.messages.filter((m) => m.type === 'heartbeat').map((m) => m.timestamp);
  for (let i = 1; i < beats.length; i++) assert.ok(beats[i] >= beats[i - 1], 'frames keep their order');
});

test('fifo: frames over WORKER_FIFO_MAX_FRAME_BYTES fail the task, not the worker', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE, env: { WORKER_FIFO_MAX_FRAME_BYTES: '65536' } });
  await pool.type('worker-ready');
  // A result too large for one frame: task-failed instead.
  const big = taskId();
  pool.send({ type: 'execute-task', task: { id: big, type: 'blob', payload: { bytes: 100000 } } });
  const failed = await pool.waitFor(replyFor(big));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.code, 'ERR_RESULT_NOT_SERIALIZABLE');
  assert.match(failed.error.message, /maxFrameBytes/);
  // In a batch: the too-large entry is replaced by a failure, the others get through.
  const a = taskId();
  const b = taskId();
  const c = taskId();
  pool.send({ type: 'execute-batch', tasks: [
    { id: a, type: 'blob', payload: { bytes: 40000 } },
    { id: b, type: 'blob', payload: { bytes: 100000 } },
    { id: c, type: 'blob', payload: { bytes: 40000 } },
  ] });
  const [ra, rb, rc] = await collectResults(pool, [a, b, c]);
  assert.equal(ra.taskId, a);
  assert.equal(ra.ok, true);
  assert.equal(ra.result.length, 40000);
  assert.equal(rb.taskId, b);
  assert.equal(rb.ok, false);
  assert.equal(rb.error.code, 'ERR_RESULT_NOT_SERIALIZABLE');
  assert.equal(rc.taskId, c);
  assert.equal(rc.ok, true);
  // An incoming frame over the limit is skipped with a warning; the next one works.
  pool.send({ type: 'execute-task', task: { id: taskId(), type: 'echo', payload: 'y'.repeat(100000) } });
  const warning = await pool.waitFor((m) => m.type === 'worker-log' && m.level === 'warning');
  assert.match(warning.message, /Ignored a frame from the pool/);
  assert.equal(warning.error.code, 'ERR_FRAME_TOO_LARGE');
  const ok = taskId();
  pool.send({ type: 'execute-task', task: { id: ok, type: 'echo', payload: 'fine' } });
  assert.equal((await pool.waitFor(replyFor(ok))).result, 'fine');
});

test('fifo: a frame that is not JSON is skipped with a warning', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t);
  await pool.type('worker-ready');
  // Write a raw frame straight into the in-pipe (small: the write is atomic).
  const fd = fs.openSync(pool.channel.inPath, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  try {
    const body = Buffer.from('{not json');
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length, 0);
    fs.writeSync(fd, Buffer.concat([header, body]));
    const id = taskId();
    fs.writeSync(fd, encodeFrame({ type: 'execute-task', task: { id, type: 'test', payload: 1 } }));
    const warning = await pool.waitFor((m) => m.type === 'worker-log' && m.level === 'warning');
    assert.equal(warning.error.code, 'ERR_FRAME_INVALID_JSON');
    assert.equal((await pool.waitFor(replyFor(id))).type, 'task-complete');
  } finally {
    fs.closeSync(fd);
  }
});

test('fifo: cancel-task fails the running and a queued task with AbortError', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE });
  await pool.type('worker-ready');
  const running = taskId();
  const queued = taskId();
  const kept = taskId();
  pool.send({ type: 'execute-batch', tasks: [
    { id: running, type: 'sleep', payload: { ms: 10000 } },
    { id: queued, type: 'sleep', payload: { ms: 10000 } },
    { id: kept, type: 'echo', payload: 'kept' },
  ] });
  await delay(50);
  pool.send({ type: 'cancel-task', taskId: queued, reason: 'not needed' });
  pool.send({ type: 'cancel-task', taskId: running, reason: 'user' });
  const [rq, rr, rk] = await collectResults(pool, [running, queued, kept]);
  assert.equal(rq.taskId, queued);
  assert.equal(rq.ok, false);
  assert.equal(rq.error.name, 'AbortError');
  assert.equal(rq.error.code, 'ABORT_ERR');
  assert.match(rq.error.message, /not needed/);
  assert.equal(rr.taskId, running);
  assert.equal(rr.ok, false);
  assert.equal(rr.error.name, 'AbortError');
  assert.match(rr.error.message, /user/);
  assert.ok(rr.duration < 5000);
  assert.equal(rk.taskId, kept);
  assert.equal(rk.result, 'kept');
  // Single tasks too.
  const single = taskId();
  pool.send({ type: 'execute-task', task: { id: single, type: 'sleep', payload: { ms: 10000 } } });
  await delay(50);
  pool.send({ type: 'cancel-task', taskId: single });
  const failed = await pool.waitFor(replyFor(single));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.code, 'ABORT_ERR');
});

test('fifo: graceful shutdown flushes every result, then worker-shutdown, exit 0', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE });
  await pool.type('worker-ready');
  const sleeper = taskId();
  const blobs = Array.from({ length: 20 }, () => taskId()); // 4 MB still queued when shutdown finishes
  pool.send({ type: 'execute-task', task: { id: sleeper, type: 'sleep', payload: { ms: 200 } } });
  for (const id of blobs) pool.send({ type: 'execute-task', task: { id, type: 'blob', payload: { bytes: 200 * 1024 } } });
  pool.send({ type: 'shutdown', graceful: true });
  const bye = await pool.type('worker-shutdown', { timeout: 10000 });
  assert.equal(bye.workerId, 'worker-1');
  assert.equal(bye.tasksExecuted, 21);
  assert.equal(typeof bye.uptime, 'number');
  const { code, signal } = await pool.waitExit();
  assert.equal(code, 0, `signal ${signal}, stderr: ${pool.stderr}`);
  const replies = pool.messages.filter((m) => m.type === 'task-complete');
  assert.deepEqual(replies.map((m) => m.taskId), [sleeper, ...blobs]);
  assert.ok(pool.messages.indexOf(bye) > pool.messages.indexOf(replies[replies.length - 1]));
});

test('fifo: non-graceful shutdown and SIGTERM', { timeout: TEST_TIMEOUT }, async (t) => {
  const a = await startFifoWorker(t, { script: FIXTURE, id: 'worker-a' });
  const b = await startFifoWorker(t, { script: FIXTURE, id: 'worker-b' });
  await Promise.all([a.type('worker-ready'), b.type('worker-ready')]);
  const id = taskId();
  a.send({ type: 'execute-task', task: { id, type: 'sleep', payload: { ms: 10000 } } });
  await delay(50);
  a.send({ type: 'shutdown', graceful: false });
  const failed = await a.waitFor(replyFor(id));
  assert.equal(failed.type, 'task-failed');
  assert.equal(failed.error.code, 'ERR_WORKER_SHUTDOWN');
  await a.type('worker-shutdown');
  assert.equal((await a.waitExit()).code, 0);

  b.child.kill('SIGTERM');
  await b.type('worker-shutdown');
  assert.equal((await b.waitExit()).code, 0);
});

test('fifo: an uncaught exception is reported (fatal worker-error frame) before exit 1', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await startFifoWorker(t, { script: FIXTURE });
  await pool.type('worker-ready');
  pool.send({ type: 'execute-task', task: { id: taskId(), type: 'uncaught', payload: null } });
  const fatal = await pool.waitFor((m) => m.type === 'worker-error' && m.fatal === true);
  assert.equal(fatal.error.message, 'uncaught in fifo worker');
  assert.equal(fatal.error.type, 'uncaughtException');
  assert.equal((await pool.waitExit()).code, 1);
});

test('fifo: the worker exits within ~2 s after the process that spawned it dies', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await poolChannel(t, 'worker-orphan');
  // An intermediate parent that spawns the worker and then just waits.
  const launcher = `
    const { spawn } = require('child_process');
    spawn(process.execPath, [process.env.FIFO_TEST_WORKER], { stdio: ['ignore', 'ignore', 'inherit'] });
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['-e', launcher], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: workerEnv({
      FIFO_TEST_WORKER: WORKER,
      WORKER_ID: 'worker-orphan',
      WORKER_CONFIG: JSON.stringify({ heartbeatInterval: 60000 }),
      WORKER_TRANSPORT: 'fifo',
      WORKER_FIFO_IN: pool.channel.inPath,
      WORKER_FIFO_OUT: pool.channel.outPath,
    }),
  });
  const parentExited = new Promise((resolve) => parent.on('exit', resolve));
  let workerPid = null;
  pool.cleanups.push(async () => {
    if (parent.exitCode === null && parent.signalCode === null) {
      parent.kill('SIGKILL');
      await parentExited;
    }
    if (workerPid !== null) killQuietly(workerPid);
  });

  const ready = await pool.type('worker-ready');
  workerPid = ready.pid;
  assert.equal(parentPid(workerPid), parent.pid, 'the worker is a child of the intermediate process');
  // Still alive and working while its parent lives.
  const id = taskId();
  pool.send({ type: 'execute-task', task: { id, type: 'test', payload: 1 } });
  assert.equal((await pool.waitFor(replyFor(id))).type, 'task-complete');

  parent.kill('SIGKILL');
  await parentExited;
  const killedAt = Date.now();
  while (isAlive(workerPid) && Date.now() - killedAt < 5000) await delay(25);
  const elapsed = Date.now() - killedAt;
  assert.equal(isAlive(workerPid), false, 'the orphaned worker is still running');
  assert.ok(elapsed <= 2500, `the worker took ${elapsed} ms to notice its parent died`);
});

test('fifo: unusable transport settings exit 1 with a clear message', { timeout: TEST_TIMEOUT }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'worker-fifo-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const regular = path.join(dir, 'plain-file');
  fs.writeFileSync(regular, '');
  const run = (env) => new Promise((resolve) => {
    const child = spawn(process.execPath, [WORKER], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: workerEnv({ WORKER_ID: 'worker-bad', WORKER_CONFIG: '{}', ...env }),
    });
    t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    child.on('close', (code) => resolve({ code, stderr }));
  });
  const missing = await run({ WORKER_TRANSPORT: 'fifo', WORKER_FIFO_IN: path.join(dir, 'in.fifo') });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /WORKER_FIFO_OUT/);
  const absent = await run({
    WORKER_TRANSPORT: 'fifo', WORKER_FIFO_IN: path.join(dir, 'nope-in.fifo'), WORKER_FIFO_OUT: path.join(dir, 'nope-out.fifo'),
  });
  assert.equal(absent.code, 1);
  assert.match(absent.stderr, /cannot open its FIFOs.*ENOENT/s);
  const notFifo = await run({ WORKER_TRANSPORT: 'fifo', WORKER_FIFO_IN: regular, WORKER_FIFO_OUT: regular });
  assert.equal(notFifo.code, 1);
  assert.match(notFifo.stderr, /Not a FIFO/);
  const unknown = await run({ WORKER_TRANSPORT: 'carrier-pigeon' });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /WORKER_TRANSPORT must be "ipc" or "fifo"/);
  const badMax = await run({
    WORKER_TRANSPORT: 'fifo', WORKER_FIFO_IN: regular, WORKER_FIFO_OUT: regular, WORKER_FIFO_MAX_FRAME_BYTES: '8MB',
  });
  assert.equal(badMax.code, 1);
  assert.match(badMax.stderr, /WORKER_FIFO_MAX_FRAME_BYTES/);
});

test('fifo: constructor validates the transport options', () => {
  const WorkerProcess = require(WORKER);
  assert.throws(() => new WorkerProcess('w', { transport: 'tcp' }), /transport/);
  assert.throws(() => new WorkerProcess('w', { transport: 'fifo', fifoIn: '' }), /fifoIn/);
  assert.throws(() => new WorkerProcess('w', { transport: 'fifo', fifoOut: 3 }), /fifoOut/);
  assert.throws(() => new WorkerProcess('w', { fifoMaxFrameBytes: 0 }), /fifoMaxFrameBytes/);
  const w = new WorkerProcess('w', { transport: 'fifo', fifoIn: '/tmp/a', fifoOut: '/tmp/b', fifoMaxFrameBytes: 1024 });
  assert.equal(w.transport, null, 'set by start()');
});

test('fifo: options.transport with fifoIn / fifoOut works without the environment', { timeout: TEST_TIMEOUT }, async (t) => {
  const pool = await poolChannel(t, 'worker-opt');
  const script = `
    const WorkerProcess = require(${JSON.stringify(WORKER)});
    new WorkerProcess('worker-opt', { transport: 'fifo', fifoIn: process.argv[1], fifoOut: process.argv[2], heartbeatInterval: 60000 })
      .registerTaskHandler('double', (n) => n * 2)
      .start();
  `;
  const child = spawn(process.execPath, ['-e', script, pool.channel.inPath, pool.channel.outPath], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: workerEnv({}),
  });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  pool.cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const ready = await pool.type('worker-ready');
  assert.equal(ready.workerId, 'worker-opt');
  const id = taskId();
  pool.send({ type: 'execute-task', task: { id, type: 'double', payload: 21 } });
  assert.equal((await pool.waitFor(replyFor(id))).result, 42);
  pool.send({ type: 'shutdown', graceful: true });
  await pool.type('worker-shutdown');
  assert.equal(await exited, 0);
});
