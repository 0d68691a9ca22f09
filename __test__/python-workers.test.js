'use strict';
// Workers in Python (workerCommand + the cortex_worker runtime in python/), started
// by a real pool with a real python3: results, every failure's code, timeouts and
// cancellation, crashes, heartbeats under CPU load, memory limits, bursts, the FIFO
// transport, a pool with a Node group and a Python group, the shared queue, options,
// the example, and no Python process left behind.
// Run: node --test __test__/python-workers.test.js

const { describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { createPool, createWorkerPool, createQueueClient } = require('..');
const { startRedis } = require('./redis-harness');
const { ROOT, fixture, test, openPool, finalGoneTest, settle, waitFor, within, isAlive, run } = require('./helpers');

const PY_ROOT = path.join(__dirname, '..', 'python');
const PY_WORKER = fixture('python-worker.py');
const seen = new Set();

/** A pool of Python workers (the fixture), shut down and checked when the test ends. */
function pyPool(t, config = {}, opts = {}) {
  return openPool(
    t,
    {
      workerScript: undefined,
      workerCommand: ['python3', PY_WORKER],
      env: { PYTHONPATH: PY_ROOT },
      maxTaskRetries: 0,
      ...config,
    },
    { seen, ...opts },
  );
}

/** Pids of live processes (not zombies) whose command line names the fixture. */
function pythonWorkersAlive() {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmd;
    try {
      cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.split('\0').includes(PY_WORKER) && isAlive(Number(name))) out.push(Number(name));
  }
  return out;
}

describe('results and failures', () => {
  test('a Python handler returns the task result; task.id, type and timeout reach it', async (t) => {
    const { pool } = await pyPool(t);
    assert.equal(await pool.submitTask({ type: 'double', payload: { n: 21 } }), 42);
    const info = await pool.submitTask({ type: 'task-info', payload: null, timeout: 4321 });
    assert.equal(info.type, 'task-info');
    assert.equal(info.timeout, 4321);
    assert.match(info.id, /^task-\d+-\d+$/);
    const who = await pool.submitTask({ type: 'whoami' });
    assert.equal(who.runtime, 'python');
    assert.deepEqual(pool.getWorkerPids(), [who.pid]);
  });

  test('unicode, quotes, backslashes, tabs and newlines round-trip unchanged', async (t) => {
    const { pool } = await pyPool(t);
    const payload = {
      text: 'héllo "quoted" \'single\' back\\slash\ttab\nnewline\r\n☃ 𝄞 中文 \u2028 \u0000 end',
      nested: [{ 'kéy "q"': ['\t', '\n', '"', '\\'] }, 1.5, -3, true, null],
      empty: '',
    };
    assert.deepEqual(await pool.submitTask({ type: 'echo', payload }), payload);
    assert.equal(await pool.submitTask({ type: 'echo', payload: '𝄞\n' }), '𝄞\n');
  });

  test('TaskError fails with its message and code; any other exception with its message and traceback', async (t) => {
    const { pool } = await pyPool(t);
    const a = await settle(pool.submitTask({ type: 'task-error', payload: { message: 'bad "input" ☃', code: 'E_X' } }));
    assert.equal(a.error.code, 'ERR_TASK_FAILED');
    assert.equal(a.error.message, 'bad "input" ☃');
    assert.equal(a.error.handlerCode, 'E_X');
    assert.match(a.error.stack, /Traceback[\s\S]*TaskError: bad "input"/);
    const b = await settle(pool.submitTask({ type: 'plain-error', payload: { message: 'plain failure' } }));
    assert.equal(b.error.code, 'ERR_TASK_FAILED');
    assert.equal(b.error.message, 'plain failure');
    assert.equal(b.error.handlerCode, undefined);
    assert.match(b.error.stack, /Traceback[\s\S]*ValueError: plain failure/);
    // The worker lives on.
    assert.equal(await pool.submitTask({ type: 'double', payload: { n: 2 } }), 4);
  });

  test('an unknown task type is ERR_NO_HANDLER, not retried', async (t) => {
    const { pool } = await pyPool(t, { maxTaskRetries: 3, retryBackoffMs: 10 });
    const retries = [];
    pool.on('task-retry-scheduled', (e) => retries.push(e));
    const r = await settle(pool.submitTask({ type: 'no-such-type' }));
    assert.equal(r.error.code, 'ERR_NO_HANDLER');
    assert.match(r.error.message, /No handler registered for task type: no-such-type/);
    assert.deepEqual(retries, []);
  });

  test('a result JSON cannot carry fails the task with a clear message', async (t) => {
    const { pool } = await pyPool(t);
    const r = await settle(pool.submitTask({ type: 'unsendable' }));
    assert.equal(r.error.code, 'ERR_TASK_FAILED');
    assert.equal(r.error.handlerCode, 'ERR_RESULT_NOT_SERIALIZABLE');
    assert.match(r.error.message, /could not be sent: .*set.* not JSON serializable/);
    assert.equal(await pool.submitTask({ type: 'double', payload: { n: 5 } }), 10);
  });

  test('worker.log messages arrive as worker-log events', async (t) => {
    const { pool } = await pyPool(t);
    const logs = [];
    pool.on('worker-log', (e) => logs.push(e));
    assert.equal(await pool.submitTask({ type: 'log', payload: { message: 'from python ☃' } }), true);
    await waitFor(() => logs.some((e) => e.message === 'careful'), 5000, 'the warning');
    const info = logs.find((e) => e.message === 'from python ☃');
    assert.equal(info.level, 'info');
    assert.equal(info.tag, 'py');
    assert.equal(info.workerId, (await pool.submitTask({ type: 'whoami' })).worker);
    assert.equal(logs.find((e) => e.message === 'careful').level, 'warning');
  });
});

describe('supervision', () => {
  test('a CPU-bound handler past its timeout is ERR_TASK_TIMEOUT, its worker is replaced, and the pool goes on', async (t) => {
    const { pool } = await pyPool(t, { gracePeriodMs: 200 });
    const [before] = pool.getWorkerPids();
    const r = await settle(pool.submitTask({ type: 'spin', payload: { seconds: 30 }, timeout: 500 }));
    assert.equal(r.error.code, 'ERR_TASK_TIMEOUT');
    assert.equal(await within(pool.submitTask({ type: 'double', payload: { n: 8 } }), 20000, 'the next task'), 16);
    await waitFor(() => !isAlive(before), 10000, 'the timed-out worker to be gone');
    assert.notDeepEqual(pool.getWorkerPids(), [before]);
  });

  test('cancel-task sets task.cancelled: a sync handler that watches it stops, and its worker lives on', async (t) => {
    const { pool } = await pyPool(t, { gracePeriodMs: 5000 });
    const [before] = pool.getWorkerPids();
    const exits = [];
    pool.on('worker-exited', (e) => exits.push(e));
    const r = await settle(pool.submitTask({ type: 'spin-until-cancelled', payload: { seconds: 30 }, timeout: 300 }));
    assert.equal(r.error.code, 'ERR_TASK_TIMEOUT');
    const who = await pool.submitTask({ type: 'whoami' });
    assert.equal(who.pid, before, 'the same worker serves the next task');
    assert.deepEqual(exits, []);
  });

  test('an AbortSignal rejects a running coroutine within seconds; the coroutine is cancelled and the worker lives on', async (t) => {
    const { pool } = await pyPool(t);
    const { pid: before, worker: id } = await pool.submitTask({ type: 'whoami' });
    const mark = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pyw-')), 'cancelled');
    t.after(() => fs.rmSync(path.dirname(mark), { recursive: true, force: true }));
    const ac = new AbortController();
    const running = pool.submitTask({ type: 'sleep', payload: { seconds: 60, mark } }, { signal: ac.signal });
    await waitFor(() => pool.getWorkerStatus(id)?.currentTask, 5000, 'the task to run');
    // Let the coroutine reach its await.
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    ac.abort();
    const r = await settle(within(running, 5000, 'the aborted task'));
    assert.equal(r.error.code, 'ABORT_ERR');
    assert.ok(Date.now() - t0 < 5000);
    await waitFor(() => fs.existsSync(mark), 5000, 'the coroutine to see CancelledError');
    assert.equal(fs.readFileSync(mark, 'utf8'), 'cancelled');
    assert.equal((await pool.submitTask({ type: 'whoami' })).pid, before);
  });

  test('os._exit() mid-task is ERR_WORKER_CRASHED and the slot is refilled', async (t) => {
    const { pool } = await pyPool(t, { restartCooldownMs: 0, minUptimeMs: 0 });
    const [before] = pool.getWorkerPids();
    const r = await settle(pool.submitTask({ type: 'crash', payload: { code: 7 } }));
    assert.equal(r.error.code, 'ERR_WORKER_CRASHED');
    assert.equal(r.error.exitCode, 7);
    const who = await within(pool.submitTask({ type: 'whoami' }), 20000, 'a task on the new worker');
    assert.notEqual(who.pid, before);
    assert.deepEqual(pool.getWorkerPids(), [who.pid]);
  });

  test('a 7.5 s CPU-bound handler keeps heartbeating: it completes and no worker is restarted', async (t) => {
    const { pool } = await pyPool(t, { heartbeatInterval: 300, zombieThresholdMs: 1500, healthCheckInterval: 100 });
    const [before] = pool.getWorkerPids();
    const events = [];
    for (const name of ['worker-exited', 'worker-restarted']) pool.on(name, (e) => events.push([name, e]));
    pool.healthMonitor.on('zombie-detected', (e) => events.push(['zombie-detected', e]));
    const r = await within(pool.submitTask({ type: 'spin', payload: { seconds: 7.5 } }), 30000, 'the long task');
    assert.deepEqual(r, { spun: 7.5 });
    assert.deepEqual(events, []);
    assert.deepEqual(pool.getWorkerPids(), [before]);
    // The heartbeats carried the process's real memory figures.
    const { worker: id } = await pool.submitTask({ type: 'whoami' });
    const samples = pool.healthMonitor.getWorkerMetrics(id);
    assert.ok(samples.some((s) => s.heapUsed > 1024 * 1024 && s.heapTotal >= s.heapUsed), JSON.stringify(samples.at(-1)));
  });

  test('a Python worker over workerMemoryLimitMB (RSS from /proc) is recycled after its task', async (t) => {
    const { pool } = await pyPool(t, { workerMemoryLimitMB: 100, healthCheckInterval: 50 });
    const exits = [];
    pool.on('worker-exited', (e) => exits.push(e));
    const [before] = pool.getWorkerPids();
    assert.deepEqual(await pool.submitTask({ type: 'leak', payload: { mb: 150 } }), { retainedMB: 150 });
    await waitFor(() => exits.length === 1, 15000, 'the worker over its limit to be recycled');
    assert.equal(exits[0].pid, before);
    assert.equal(exits[0].code, 0, 'recycled through a graceful shutdown');
    const who = await within(pool.submitTask({ type: 'whoami' }), 20000, 'a task on the replacement');
    assert.notEqual(who.pid, before);
    assert.ok(pool.healthMonitor.getAlerts().some((a) => a.type === 'high-memory'));
  });

  test('a burst of 3,000 tasks over 3 Python workers: every result right', async (t) => {
    const { pool } = await pyPool(t, { poolSize: 3 }, { initSize: 3 });
    const results = await within(
      Promise.all(Array.from({ length: 3000 }, (_, i) => pool.submitTask({ type: 'double', payload: { n: i } }))),
      60000,
      'the burst',
    );
    results.forEach((r, i) => assert.equal(r, 2 * i));
    const done = pool.getPoolMetrics().tasks.completed;
    assert.ok(done >= 3000, `completed ${done}`);
    const perWorker = pool.getWorkerPids().length;
    assert.equal(perWorker, 3);
  });

  test('a worker recycled after maxTasksPerWorker exits 0 on the graceful shutdown message', async (t) => {
    const { pool } = await pyPool(t, { maxTasksPerWorker: 2 });
    const exits = [];
    pool.on('worker-exited', (e) => exits.push(e));
    for (let i = 0; i < 3; i++) assert.equal(await pool.submitTask({ type: 'double', payload: { n: i } }), 2 * i);
    await waitFor(() => exits.length >= 1, 10000, 'the recycled worker to exit');
    assert.equal(exits[0].code, 0);
  });
});

describe('transports and mixed pools', () => {
  test('the FIFO transport: results, failures and a burst', async (t) => {
    const fifoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyfifo-'));
    t.after(() => fs.rmSync(fifoDir, { recursive: true, force: true }));
    const { pool } = await pyPool(t, { transport: 'fifo', fifoDir, poolSize: 2 }, { initSize: 2 });
    assert.equal(await pool.submitTask({ type: 'double', payload: { n: 4 } }), 8);
    const payload = { s: 'tab\t"q" ☃\n' };
    assert.deepEqual(await pool.submitTask({ type: 'echo', payload }), payload);
    const r = await settle(pool.submitTask({ type: 'task-error', payload: { message: 'over fifo', code: 'E_F' } }));
    assert.equal(r.error.message, 'over fifo');
    assert.equal(r.error.handlerCode, 'E_F');
    const many = await Promise.all(Array.from({ length: 1000 }, (_, i) => pool.submitTask({ type: 'double', payload: { n: i } })));
    many.forEach((v, i) => assert.equal(v, 2 * i));
  });

  test('a pool with a Node group and a Python group routes tasks by capability', async (t) => {
    const { pool } = await openPool(
      t,
      {
        workerScript: undefined,
        env: { PYTHONPATH: PY_ROOT },
        workerGroups: [
          { size: 1, workerScript: fixture('echo-worker.js'), capabilities: ['node'] },
          { size: 1, workerCommand: ['python3', PY_WORKER], capabilities: ['python'] },
        ],
      },
      { seen, initSize: 2 },
    );
    const py = await pool.submitTask({ type: 'whoami', requires: ['python'] });
    assert.equal(py.runtime, 'python');
    assert.deepEqual(py.capabilities, ['python']);
    for (let i = 0; i < 20; i++) {
      assert.equal(await pool.submitTask({ type: 'double', payload: { n: i }, requires: ['python'] }), 2 * i);
      assert.deepEqual(await pool.submitTask({ type: 'echo', payload: { i }, requires: ['node'] }), { i });
    }
    // The Node fixture has no 'double': a task routed there would fail.
    const r = await settle(pool.submitTask({ type: 'double', payload: { n: 1 }, requires: ['node'] }));
    assert.equal(r.error.code, 'ERR_NO_HANDLER');
  });
});

describe('options', () => {
  test('workerCommand with workerScript or execArgv, or a program not on PATH, is ERR_INVALID_CONFIG naming the option', () => {
    const bad = [
      [{ workerCommand: ['python3', PY_WORKER], workerScript: fixture('echo-worker.js') }, /"workerCommand".*"workerScript"/],
      [{ workerCommand: ['python3', PY_WORKER], execArgv: ['--expose-gc'] }, /"workerCommand".*"execArgv"/],
      [{ workerCommand: [] }, /"workerCommand": expected a non-empty array of strings/],
      [{ workerCommand: 'python3 worker.py' }, /"workerCommand": expected a non-empty array/],
      [{ workerCommand: ['no-such-program-h22', 'w.py'] }, /"workerCommand".*"no-such-program-h22" \(not found on PATH\)/],
      [{ workerCommand: ['/no/such/python3'] }, /"\/no\/such\/python3" \(no such file\)/],
      [{ workerGroups: [{ size: 1, workerCommand: ['python3'], workerScript: fixture('echo-worker.js') }] }, /"workerGroups\[0\]\.workerCommand"/],
      [{ workerGroups: [{ size: 1, workerCommand: ['nope-h22'] }] }, /"workerGroups\[0\]\.workerCommand".*not found on PATH/],
    ];
    for (const [config, pattern] of bad) {
      assert.throws(() => createPool({ logLevel: 'silent', poolSize: 1, ...config }), (e) => {
        assert.equal(e.code, 'ERR_INVALID_CONFIG', e.message);
        assert.match(e.message, pattern);
        return true;
      });
    }
  });

  test('the program is found on the workers\' own PATH, and pool.config shows the command', async (t) => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'pybin-'));
    t.after(() => fs.rmSync(bin, { recursive: true, force: true }));
    const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
    fs.symlinkSync(python, path.join(bin, 'my-python-h22'));
    const { pool } = await openPool(
      t,
      {
        workerScript: undefined,
        workerCommand: ['my-python-h22', PY_WORKER],
        env: { PYTHONPATH: PY_ROOT, PATH: `${bin}:${process.env.PATH}` },
      },
      { seen },
    );
    assert.deepEqual(pool.config.workerCommand, ['my-python-h22', PY_WORKER]);
    assert.equal(await pool.submitTask({ type: 'double', payload: { n: 1 } }), 2);
  });
});

describe('the shared queue', () => {
  let redis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.destroy();
  });

  test('Python workers serve tasks a createQueueClient submits', async (t) => {
    const name = `py${process.pid}-${Date.now()}`;
    const pool = await createWorkerPool({
      logLevel: 'silent',
      poolSize: 2,
      workerCommand: ['python3', PY_WORKER],
      env: { PYTHONPATH: PY_ROOT },
      maxTaskRetries: 0,
      queue: { url: redis.url, name },
    });
    for (const pid of pool.getWorkerPids()) seen.add(pid);
    pool.on('worker-exited', (e) => seen.add(e.pid));
    t.after(() => within(pool.shutdown(false), 20000, 'pool shutdown'));
    const client = createQueueClient({ url: redis.url, name });
    t.after(() => client.close());
    const results = await within(
      Promise.all(Array.from({ length: 100 }, (_, i) => client.submitTask({ type: 'double', payload: { n: i } }))),
      30000,
      'the jobs',
    );
    results.forEach((r, i) => assert.equal(r, 2 * i));
    const who = await client.submitTask({ type: 'whoami' });
    assert.equal(who.runtime, 'python');
    assert.ok(pool.getWorkerPids().includes(who.pid));
    const r = await settle(client.submitTask({ type: 'task-error', payload: { message: 'shared ☃', code: 'E_Q' } }));
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'ERR_TASK_FAILED');
    assert.equal(r.error.message, 'shared ☃');
  });
});

test('examples/python-pool.js runs to the end and exits 0', async () => {
  const r = await run(process.execPath, [path.join(ROOT, 'examples', 'python-pool.js')], { timeoutMs: 60000 });
  assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(r.stdout, /word-count: \{"words":6,"distinct":5\}/);
  assert.match(r.stdout, /TaskError -> ERR_TASK_FAILED \(E_BAD_TEXT\)/);
  assert.match(r.stdout, /timeout -> ERR_TASK_TIMEOUT/);
  assert.match(r.stdout, /abort -> ABORT_ERR/);
  assert.match(r.stdout, /1000 tasks/);
});

test('after shutdown() no Python worker process is left', async (t) => {
  const { pool, close } = await pyPool(t, { poolSize: 3 }, { initSize: 3 });
  await Promise.all(Array.from({ length: 30 }, (_, i) => pool.submitTask({ type: 'double', payload: { n: i } })));
  assert.equal(pythonWorkersAlive().length >= 3, true);
  await within(pool.shutdown(), 20000, 'graceful shutdown');
  await close();
  await waitFor(() => pythonWorkersAlive().length === 0, 10000, () => `no python worker alive (left: ${pythonWorkersAlive()})`);
});

finalGoneTest(test, seen);
