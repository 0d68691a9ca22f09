'use strict';
// The original README's Quick Start and API examples, run against this package as a
// drop-in for `require('./lib/worker-pool')`.
// Run: node --test __test__/quickstart.test.js

const assert = require('node:assert/strict');
const os = require('node:os');
const { spawn } = require('node:child_process');
const { EventEmitter } = require('node:events');
const { test, ROOT, openPool, waitFor, within, finalGoneTest } = require('./helpers');

const seen = new Set();

/** Runs `node -e code` with cwd = os.tmpdir(); resolves { code, signal, stdout, stderr }. */
function runNode(code, timeoutMs = 90000) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', code], {
      cwd: os.tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child did not exit within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Pids a child printed as `PIDS [..]` lines on stderr. */
function pidsFrom(stderr) {
  const out = [];
  for (const line of stderr.split('\n')) {
    if (line.startsWith('PIDS ')) out.push(...JSON.parse(line.slice(5)));
  }
  return out;
}

test('Quick Start, as written (poolSize 20), from another directory, exits on its own', async () => {
  // The README's Quick Start verbatim, except the require path and one stderr line
  // that reports the worker pids (so this file can check they are gone afterwards).
  const code = `
const { createWorkerPool } = require(${JSON.stringify(ROOT)});

async function main() {
  // Create and initialize pool
  const pool = await createWorkerPool({
    poolSize: 20,
    heartbeatInterval: 5000,
    taskTimeout: 300000 // 5 minutes
  });
  process.stderr.write('PIDS ' + JSON.stringify(pool.getWorkerPids()) + '\\n');

  // Submit a task
  const result = await pool.submitTask({
    type: 'implementation',
    payload: {
      feature: 'user-auth',
      requirements: ['JWT', 'bcrypt']
    },
    priority: 5 // Lower = higher priority
  });

  console.log('Result:', result);
  console.log('JSON:' + JSON.stringify(result));

  // Shutdown when done
  await pool.shutdown(true);
}

main();
`;
  const r = await runNode(code);
  const pids = pidsFrom(r.stderr);
  for (const p of pids) seen.add(p);
  assert.equal(r.code, 0, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.signal, null);
  assert.equal(pids.length, 20, `20 workers (stderr: ${r.stderr})`);
  assert.match(r.stdout, /Result: \{/);
  const jsonLine = r.stdout.split('\n').find((l) => l.startsWith('JSON:'));
  assert.ok(jsonLine, `stdout: ${r.stdout}`);
  assert.deepEqual(JSON.parse(jsonLine.slice(5)), {
    status: 'completed',
    result: { feature: 'user-auth', requirements: ['JWT', 'bcrypt'] },
  });
  // The pool's own log lines keep the original prefix (default logLevel prints them).
  for (const line of r.stdout.split('\n')) {
    if (line === '' || line.startsWith('Result:') || line.startsWith('JSON:') || /^\s/.test(line) || line.startsWith('}')) continue;
    assert.match(line, /^\[(PoolManager|Worker [^\]]+)\] /, `unexpected stdout line: ${line}`);
  }
});

test('require(<package root>) from another directory is a drop-in for lib/worker-pool', async () => {
  const code = `
const { EventEmitter } = require('events');
const m = require(${JSON.stringify(ROOT)});
const WorkerProcess = require(${JSON.stringify(ROOT + '/worker-process.js')});
const out = {
  keys: Object.keys(m).sort(),
  createWorkerPool: typeof m.createWorkerPool,
  createPool: typeof m.createPool,
  WorkerPoolManager: typeof m.WorkerPoolManager,
  managerIsEmitter: m.WorkerPoolManager.prototype instanceof EventEmitter,
  TaskQueue: typeof m.TaskQueue,
  queueIsEmitter: new m.TaskQueue() instanceof EventEmitter,
  HealthMonitor: typeof m.HealthMonitor,
  monitorIsEmitter: new m.HealthMonitor() instanceof EventEmitter,
  FIFOChannel: typeof m.FIFOChannel,
  channelIsEmitter: m.FIFOChannel.prototype instanceof EventEmitter,
  defaultIsCreateWorkerPool: m.default === m.createWorkerPool,
  workerProcess: typeof WorkerProcess,
  workerProcessNamed: WorkerProcess.WorkerProcess === WorkerProcess,
};
const pool = m.createPool({ poolSize: 2, logLevel: 'silent' });
out.createdIsManager = pool instanceof m.WorkerPoolManager && pool instanceof EventEmitter;
out.notInitialized = pool.getPoolMetrics().pool.initialized === false;
out.noWorkersYet = pool.getWorkerPids().length === 0;
(async () => {
  await pool.initialize();
  process.stderr.write('PIDS ' + JSON.stringify(pool.getWorkerPids()) + '\\n');
  out.results = await Promise.all(['implementation', 'analysis', 'test'].map((type, i) =>
    pool.submitTask({ type, payload: { n: i, type } })));
  out.workerScript = pool.config.workerScript;
  await pool.shutdown(true);
  console.log(JSON.stringify(out));
})();
`;
  const r = await runNode(code);
  for (const p of pidsFrom(r.stderr)) seen.add(p);
  assert.equal(r.code, 0, `exit code; stderr: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  for (const k of ['createWorkerPool', 'createPool', 'WorkerPoolManager', 'TaskQueue', 'HealthMonitor', 'FIFOChannel', 'default']) {
    assert.ok(out.keys.includes(k), `export ${k} (have ${out.keys})`);
  }
  assert.equal(out.createWorkerPool, 'function');
  assert.equal(out.createPool, 'function');
  assert.equal(out.WorkerPoolManager, 'function');
  assert.equal(out.managerIsEmitter, true);
  assert.equal(out.TaskQueue, 'function');
  assert.equal(out.queueIsEmitter, true);
  assert.equal(out.HealthMonitor, 'function');
  assert.equal(out.monitorIsEmitter, true);
  assert.equal(out.FIFOChannel, 'function');
  assert.equal(out.channelIsEmitter, true);
  assert.equal(out.defaultIsCreateWorkerPool, true);
  assert.equal(out.workerProcess, 'function');
  assert.equal(out.workerProcessNamed, true);
  assert.equal(out.createdIsManager, true);
  assert.equal(out.notInitialized, true);
  assert.equal(out.noWorkersYet, true);
  assert.equal(out.workerScript, `${ROOT}/worker-process.js`);
  assert.deepEqual(out.results, [
    { status: 'completed', result: { n: 0, type: 'implementation' } },
    { status: 'completed', result: { n: 1, type: 'analysis' } },
    { status: 'completed', result: { n: 2, type: 'test' } },
  ]);
});

test('README API examples and events (default worker script)', async (t) => {
  const { pool } = await openPool(t, { poolSize: 4, minWorkers: 1, workerScript: undefined }, { seen, init: false });

  // The README's event listeners, attached before initialize so all can fire.
  const got = {};
  const record = (name) => (payload) => {
    (got[name] ??= []).push(payload);
  };
  for (const name of ['pool-initialized', 'task-completed', 'task-failed', 'worker-error', 'zombie-detected',
    'worker-exited', 'pool-scaled-up', 'pool-scaled-down', 'pool-shutdown']) {
    pool.on(name, record(name));
  }

  await within(pool.initialize(), 30000, 'initialize');
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal(got['pool-initialized'].length, 1);
  assert.equal(got['pool-initialized'][0].poolSize, 4);
  assert.equal(typeof got['pool-initialized'][0].config, 'object');

  // pool.submitTask(task): the three default handlers
  for (const type of ['implementation', 'analysis', 'test']) {
    const payload = { type, data: [1, 2, 3] };
    const result = await pool.submitTask({
      type,
      payload,
      priority: 5, // Optional, default 10
      timeout: 60000, // Optional, overrides default
    });
    assert.deepEqual(result, { status: 'completed', result: payload });
  }
  await waitFor(() => (got['task-completed'] || []).length === 3, 5000, { message: '3 task-completed events' });
  for (const e of got['task-completed']) {
    assert.match(e.taskId, /^task-\d+-\d+$/);
    assert.match(e.workerId, /^worker-\d+$/);
    assert.equal(typeof e.duration, 'number');
  }

  // pool.getPoolMetrics()
  const metrics = pool.getPoolMetrics();
  for (const key of ['pool', 'workers', 'tasks', 'performance', 'health', 'queue']) {
    assert.equal(typeof metrics[key], 'object', `metrics.${key}`);
  }
  assert.equal(metrics.pool.size, 4);
  assert.equal(metrics.pool.initialized, true);
  assert.equal(metrics.tasks.submitted, 3);
  assert.equal(metrics.tasks.completed, 3);
  assert.equal(typeof metrics.performance.workerReuseRate, 'string');
  assert.ok(['healthy', 'degraded', 'critical'].includes(metrics.health.status));
  assert.equal(typeof metrics.queue.queueDepth, 'number');
  assert.equal(typeof metrics.queue.avgWaitTimeMs, 'number');

  // pool.getWorkerStatus('worker-0')
  const status = pool.getWorkerStatus('worker-0');
  for (const key of ['id', 'pid', 'state', 'healthy', 'tasksExecuted', 'currentTask', 'uptime', 'lastActivity', 'health']) {
    assert.ok(key in status, `status.${key}`);
  }
  assert.equal(status.id, 'worker-0');

  // pool.getAllWorkersStatus()
  const workers = pool.getAllWorkersStatus();
  assert.equal(workers.length, 4);

  // await pool.scaleUp(10) / scaleDown(5), sized down for a small machine
  await within(pool.scaleUp(2), 30000, 'scaleUp');
  for (const p of pool.getWorkerPids()) seen.add(p);
  assert.equal(pool.getAllWorkersStatus().length, 6);
  await within(pool.scaleDown(5), 30000, 'scaleDown');
  assert.equal(pool.getAllWorkersStatus().length, 1);
  assert.deepEqual(got['pool-scaled-up'], [{ count: 2, newSize: 6 }]);
  assert.deepEqual(got['pool-scaled-down'], [{ count: 5, newSize: 1 }]);

  // Health Metrics
  const health = pool.healthMonitor.getHealthSummary();
  for (const key of ['timestamp', 'monitoring', 'capacity', 'alerts', 'workers', 'status']) {
    assert.ok(key in health, `health.${key}`);
  }
  assert.ok(['healthy', 'degraded', 'critical'].includes(health.status));
  assert.deepEqual(Object.keys(health.workers).sort(), ['healthy', 'total', 'unhealthy']);

  // Dead Letter Queue
  const m2 = pool.getPoolMetrics();
  assert.equal(m2.tasks.dlq, 0, 'Failed tasks in DLQ');
  assert.deepEqual(pool.taskQueue.getDeadLetterQueue(), []);

  // Integration with Cortex: executeTask(task)
  const executeTask = (task) => pool.submitTask({ type: task.type, payload: task.data, priority: task.priority || 10 });
  assert.deepEqual(await executeTask({ type: 'analysis', data: 'x' }), { status: 'completed', result: 'x' });

  // Troubleshooting: a per-task timeout
  assert.deepEqual(await pool.submitTask({ type: 'test', payload: {}, timeout: 900000 }), { status: 'completed', result: {} });

  // await pool.shutdown(true); await pool.shutdown(false);
  const pids = pool.getWorkerPids();
  await within(pool.shutdown(true), 30000, 'shutdown(true)');
  await within(pool.shutdown(false), 30000, 'shutdown(false) after shutdown(true)');
  assert.equal(got['pool-shutdown'].length, 1, 'pool-shutdown emitted once');
  assert.equal(got['task-failed'], undefined);
  assert.equal(got['worker-error'], undefined);
  for (const p of pids) seen.add(p);
});

test('pool.config holds the resolved options under their original names', async (t) => {
  const { pool } = await openPool(t, { poolSize: 1, workerScript: undefined }, { seen });
  const c = pool.config;
  const expected = {
    poolSize: 1,
    minWorkers: 1,
    maxWorkers: 50,
    workerMemoryLimitMB: 512,
    heartbeatInterval: 5000,
    zombieThresholdMs: 30000,
    taskTimeout: 300000,
    maxTaskRetries: 3,
    retryBackoffMs: 1000,
    maxBackoffMs: 30000,
    loadBalancing: 'least-loaded',
    autoRestart: true,
    maxRestartAttempts: 3,
    fifoDir: '/tmp/cortex/workers',
    logWorkerErrors: true,
    logWorkerWarnings: true,
    logWorkerInfo: false,
    logWorkerDebug: false,
  };
  const wrong = [];
  for (const [key, value] of Object.entries(expected)) {
    if (JSON.stringify(c[key]) !== JSON.stringify(value)) wrong.push(`pool.config.${key} = ${JSON.stringify(c[key])}, expected ${JSON.stringify(value)}`);
  }
  if (c.workerScript !== `${ROOT}/worker-process.js`) wrong.push(`pool.config.workerScript = ${c.workerScript}`);
  // The monitor's options come from the pool's (memoryThresholdMB from workerMemoryLimitMB).
  const mo = pool.healthMonitor.options;
  if (mo.memoryThresholdMB !== 512) wrong.push(`healthMonitor.options.memoryThresholdMB = ${mo.memoryThresholdMB}, expected 512`);
  if (mo.heartbeatTimeoutMs !== 15000) wrong.push(`healthMonitor.options.heartbeatTimeoutMs = ${mo.heartbeatTimeoutMs}, expected 15000`);
  if (mo.zombieThresholdMs !== 30000) wrong.push(`healthMonitor.options.zombieThresholdMs = ${mo.zombieThresholdMs}, expected 30000`);
  const qo = pool.taskQueue.options;
  if (qo.maxRetries !== 3 || qo.retryBackoffMs !== 1000 || qo.maxBackoffMs !== 30000 || qo.taskTimeoutMs !== 300000) {
    wrong.push(`taskQueue.options = ${JSON.stringify(qo)}`);
  }
  assert.deepEqual(wrong, []);
});

test('default options: poolSize 20 / minWorkers 5 / maxWorkers 50 without initializing', async (t) => {
  const { createPool } = require(ROOT);
  const made = [];
  t.after(() => Promise.all(made.map((p) => within(p.shutdown(), 10000, 'shutdown of a pool never initialized'))));
  const track = (p) => (made.push(p), p);
  const a = track(createPool({ logLevel: 'silent' }));
  assert.equal(a.config.poolSize, 20);
  assert.equal(a.config.minWorkers, 5);
  assert.equal(a.config.maxWorkers, 50);
  const b = track(createPool({ poolSize: 3, logLevel: 'silent' }));
  assert.equal(b.config.minWorkers, 3, 'explicit poolSize below 5 lowers the minWorkers default');
  const c = track(createPool({ poolSize: 8, logLevel: 'silent' }));
  assert.equal(c.config.minWorkers, 5);
  assert.equal(a.getWorkerPids().length, 0);
});

finalGoneTest(test, seen);
