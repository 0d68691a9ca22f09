'use strict';
// shutdown(true) / shutdown(false): what happens to running and queued tasks, and
// that no worker process survives (not even as a zombie).
// Run: node --test __test__/shutdown.test.js

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const { spawn } = require('node:child_process');
const { test, ROOT, fixture, openPool, waitFor, within, settle, assertGone, procState, sleep, finalGoneTest } = require('./helpers');

const seen = new Set();
const ECHO = fixture('echo-worker.js');

const procExists = (pid) => fs.existsSync(`/proc/${pid}`);

test('shutdown(true) lets running (and already accepted) tasks finish, then no worker is left', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
  const pids = pool.getWorkerPids();
  const events = [];
  pool.on('pool-shutdown', () => events.push('pool-shutdown'));
  const tasks = [0, 1, 2, 3].map((i) => pool.submitTask({ type: 'sleep', payload: { ms: 300 + i } }));
  await waitFor(() => pool.getAllWorkersStatus().every((s) => s.state === 'busy'), 5000, { message: 'both busy' });
  const started = Date.now();
  await within(pool.shutdown(true), 30000, 'graceful shutdown');
  const results = await within(Promise.all(tasks.map(settle)), 1000, 'tasks settled by the time shutdown resolved');
  assert.deepEqual(results.slice(0, 2).map((r) => r.ok), [true, true], 'running tasks finished');
  assert.deepEqual(results.map((r) => (r.ok ? r.value : r.error.code)), [{ slept: 300 }, { slept: 301 }, { slept: 302 }, { slept: 303 }]);
  assert.ok(Date.now() - started >= 250, 'shutdown waited for the tasks');
  assert.deepEqual(events, ['pool-shutdown']);
  assert.deepEqual(pool.getWorkerPids(), []);
  // Reaped by the time shutdown resolved: no /proc entry at all (not even a zombie).
  for (const pid of pids) assert.equal(procExists(pid), false, `/proc/${pid} still exists (state ${procState(pid)})`);
  const m = pool.getPoolMetrics();
  assert.equal(m.tasks.completed, 4);
  assert.equal(m.pool.shuttingDown, true);
});

test('shutdown(false) rejects running and queued tasks promptly with ERR_POOL_SHUTDOWN; nothing stays pending', async (t) => {
  const { pool } = await openPool(t, { poolSize: 2, workerScript: ECHO }, { seen });
  const pids = pool.getWorkerPids();
  const settled = [];
  const track = (p, label) => p.then(
    (v) => settled.push({ label, ok: true, v }),
    (e) => settled.push({ label, ok: false, e }),
  );
  // One worker stuck in a synchronous loop (cannot even read the shutdown message),
  // one sleeping, three queued.
  track(pool.submitTask({ type: 'spin' }), 'spin');
  track(pool.submitTask({ type: 'sleep', payload: { ms: 20000 } }), 'sleep');
  for (let i = 0; i < 3; i++) track(pool.submitTask({ type: 'echo', payload: i }), `queued-${i}`);
  await waitFor(() => pool.getAllWorkersStatus().every((s) => s.state === 'busy'), 5000, { message: 'both busy' });

  const started = Date.now();
  const down = pool.shutdown(false);
  await waitFor(() => settled.length === 5, 3000, { message: 'all five settled promptly' });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 3000, `settled in ${elapsed} ms`);
  for (const s of settled) {
    assert.equal(s.ok, false, `${s.label} rejected`);
    assert.ok(s.e instanceof Error);
    assert.equal(s.e.code, 'ERR_POOL_SHUTDOWN', `${s.label}: ${s.e.code} ${s.e.message}`);
  }
  await within(down, 15000, 'shutdown(false)');
  assert.deepEqual(pool.getWorkerPids(), []);
  for (const pid of pids) assert.equal(procExists(pid), false, `/proc/${pid} still exists (state ${procState(pid)})`);
});

test('shutdown(false) while a graceful shutdown is waiting escalates it', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO }, { seen });
  const pids = pool.getWorkerPids();
  const long = settle(pool.submitTask({ type: 'sleep', payload: { ms: 20000 } }));
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'busy' });
  const graceful = pool.shutdown(true);
  await sleep(100);
  const started = Date.now();
  const immediate = pool.shutdown(false);
  const r = await within(long, 5000, 'the long task settles after shutdown(false)');
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'ERR_POOL_SHUTDOWN');
  await within(Promise.all([graceful, immediate]), 15000, 'both shutdown promises');
  assert.ok(Date.now() - started < 10000);
  await assertGone(pids, 5000);
});

test('graceful shutdown gives up after shutdownTimeoutMs on a task that never ends', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: ECHO, shutdownTimeoutMs: 500, gracePeriodMs: 200 }, { seen });
  const pids = pool.getWorkerPids();
  const stuck = settle(pool.submitTask({ type: 'spin' }));
  await waitFor(() => pool.getWorkerStatus('worker-0').state === 'busy', 5000, { message: 'busy' });
  const started = Date.now();
  await within(pool.shutdown(true), 15000, 'graceful shutdown with a spinning worker');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 400, `waited for shutdownTimeoutMs (${elapsed} ms)`);
  const r = await within(stuck, 1000, 'the spinning task settles');
  assert.equal(r.ok, false);
  assert.ok(r.error instanceof Error);
  assert.ok(typeof r.error.code === 'string' && r.error.code.startsWith('ERR_'), r.error.code);
  for (const pid of pids) assert.equal(procExists(pid), false, `/proc/${pid} still exists (state ${procState(pid)})`);
});

test('after shutdown no worker process is alive even after crashes and restarts', async (t) => {
  const { pool } = await openPool(
    t,
    { poolSize: 2, workerScript: ECHO, maxTaskRetries: 0, restartCooldownMs: 0, minUptimeMs: 0 },
    { seen },
  );
  const all = new Set(pool.getWorkerPids());
  const exits = [];
  pool.on('worker-exited', (e) => exits.push(e));
  for (let i = 0; i < 3; i++) {
    await settle(pool.submitTask({ type: 'crash', payload: { code: 1 } }));
    await waitFor(() => exits.length === i + 1, 10000, { message: `exit #${i + 1}` });
    await waitFor(() => pool.getWorkerPids().length === 2, 10000, { message: 'replacement ready' });
    for (const p of pool.getWorkerPids()) all.add(p);
  }
  assert.equal(all.size, 5);
  // Crashed workers are reaped while the pool runs.
  for (const e of exits) await assertGone([e.pid], 5000);
  await within(pool.shutdown(true), 20000, 'shutdown');
  for (const pid of all) {
    seen.add(pid);
    assert.equal(procExists(pid), false, `/proc/${pid} still exists (state ${procState(pid)})`);
  }
});

test('a pool dropped without shutdown(): workers die when the parent exits', async () => {
  // The parent ends its event loop without shutdown() ... (exit hook)
  const natural = `
const { createWorkerPool } = require(${JSON.stringify(ROOT)});
createWorkerPool({ poolSize: 2, logLevel: 'silent' }).then((pool) => {
  process.stdout.write(JSON.stringify(pool.getWorkerPids()) + '\\n');
  setTimeout(() => process.exit(0), 50);
});
`;
  // ... or is SIGKILLed (no JS runs at all).
  const killed = `
const { createWorkerPool } = require(${JSON.stringify(ROOT)});
createWorkerPool({ poolSize: 2, logLevel: 'silent' }).then((pool) => {
  process.stdout.write(JSON.stringify(pool.getWorkerPids()) + '\\n');
  setInterval(() => {}, 1000);
});
`;
  for (const [label, code, kill] of [['process.exit', natural, false], ['SIGKILL', killed, true]]) {
    const child = spawn(process.execPath, ['-e', code], { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const pids = await within(waitFor(() => out.includes('\n') && JSON.parse(out.split('\n')[0]), 30000, { message: 'child pids' }), 35000, 'child start');
    assert.equal(pids.length, 2);
    for (const p of pids) seen.add(p);
    if (kill) child.kill('SIGKILL');
    await within(exited, 10000, `${label}: child exit`);
    // The workers exit by themselves (a zombie here is an exited orphan waiting for
    // PID 1, which reaps lazily on this machine) ...
    await waitFor(() => pids.every((pid) => procState(pid) === null || procState(pid) === 'Z'), 10000, {
      message: `${label}: workers ${pids} exit (states ${pids.map(procState)})`,
    });
    // ... and are reaped (by PID 1) soon after.
    await assertGone(pids, 30000);
  }
});

finalGoneTest(test, seen);
