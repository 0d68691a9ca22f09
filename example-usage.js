#!/usr/bin/env node
// Examples of the worker pool, one function each:
//
//   node example-usage.js            run them all
//   node example-usage.js <name>     run one: basic, parallel, events, scaling,
//                                    health, errors, custom
//
// Each uses a small pool and always shuts it down.
'use strict';

const path = require('node:path');
const { createWorkerPool, createPool } = require('.'); // in Cortex: require('./lib/worker-pool')

const CUSTOM_WORKER = path.join(__dirname, 'examples', 'custom-worker.js');
const SMALL = { poolSize: 2, minWorkers: 1, logLevel: 'warn' };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs fn(pool) and shuts the pool down whatever happens. */
async function withPool(config, fn) {
  const pool = await createWorkerPool(config);
  try {
    return await fn(pool);
  } finally {
    await pool.shutdown(true);
  }
}

// 1. Basic usage: create a pool, submit a task, shut down.
async function basic() {
  const pool = await createWorkerPool({ ...SMALL, heartbeatInterval: 5000, taskTimeout: 300000 });
  try {
    const result = await pool.submitTask({
      type: 'implementation', // the default worker handles implementation, analysis and test
      payload: { feature: 'user-auth', requirements: ['JWT', 'bcrypt'] },
      priority: 5, // lower runs first; 0 is the highest, 10 the default
    });
    console.log('Result:', JSON.stringify(result));
  } finally {
    await pool.shutdown(true);
  }
}

// 2. Multiple tasks in parallel: submit many at once; the pool queues them by priority.
async function parallel() {
  await withPool({ ...SMALL, poolSize: 4 }, async (pool) => {
    const t0 = Date.now();
    const tasks = Array.from({ length: 200 }, (_, i) =>
      pool.submitTask({ type: i % 2 ? 'analysis' : 'test', payload: { index: i }, priority: i % 3 }),
    );
    const results = await Promise.all(tasks);
    const ok = results.filter((r) => r.status === 'completed').length;
    console.log(`${ok}/${results.length} tasks completed in ${Date.now() - t0} ms on ${pool.getPoolMetrics().workers.total} workers`);
    console.log('Worker reuse rate:', pool.getPoolMetrics().performance.workerReuseRate);
  });
}

// 3. Event monitoring: the pool is an EventEmitter.
async function events() {
  const pool = await createWorkerPool({ ...SMALL, maxTaskRetries: 0 });
  const counts = {};
  const count = (name) => {
    counts[name] = (counts[name] || 0) + 1;
  };
  pool.on('task-assigned', ({ taskId, workerId }) => {
    count('task-assigned');
    if (counts['task-assigned'] <= 2) console.log(`  task-assigned  ${taskId} -> ${workerId}`);
  });
  pool.on('task-completed', ({ taskId, duration }) => {
    count('task-completed');
    if (counts['task-completed'] <= 2) console.log(`  task-completed ${taskId} in ${duration} ms`);
  });
  pool.on('task-failed', ({ taskId, error, retried }) => console.log(`  task-failed    ${taskId}: ${error} (retried: ${retried})`));
  pool.on('worker-exited', ({ workerId, code, signal }) => console.log(`  worker-exited  ${workerId} (code ${code}, signal ${signal})`));
  pool.on('pool-scaled-up', ({ count: n, newSize }) => console.log(`  pool-scaled-up by ${n} to ${newSize}`));
  pool.on('pool-shutdown', () => console.log('  pool-shutdown'));
  pool.taskQueue.on('task-failed', ({ taskId, dlqSize }) => console.log(`  queue task-failed ${taskId} (dead-letter queue: ${dlqSize})`));
  try {
    await Promise.all(Array.from({ length: 10 }, (_, i) => pool.submitTask({ type: 'test', payload: { i } })));
    await pool.submitTask({ type: 'no-such-type', payload: {} }).catch(() => {});
    await pool.scaleUp(1);
    await sleep(50); // events arrive asynchronously, in batches
  } finally {
    await pool.shutdown(true);
  }
  console.log('Event counts:', JSON.stringify(counts));
}

// 4. Dynamic scaling: grow for a burst, shrink afterwards (within min/max workers).
async function scaling() {
  await withPool({ ...SMALL, maxWorkers: 4 }, async (pool) => {
    const size = () => pool.getPoolMetrics().pool.size;
    console.log('Initial size:', size());
    const up = await pool.scaleUp(2);
    console.log(`Scaled up by ${up.count}: size ${size()}`);
    await Promise.all(Array.from({ length: 50 }, (_, i) => pool.submitTask({ type: 'test', payload: { i } })));
    const tooMuch = await pool.scaleUp(10); // capped at maxWorkers
    console.log(`Asked for 10 more, got ${tooMuch.count}: size ${size()} (maxWorkers ${pool.config.maxWorkers})`);
    const down = await pool.scaleDown(10); // never below minWorkers
    console.log(`Scaled down by ${down.count}: size ${size()} (minWorkers ${pool.config.minWorkers})`);
  });
}

// 5. Health monitoring: health summary, capacity, per-worker status, and automatic
//    replacement of a worker that dies.
async function health() {
  await withPool({ ...SMALL, heartbeatInterval: 1000, healthCheckInterval: 500 }, async (pool) => {
    pool.on('zombie-detected', ({ workerId }) => console.log(`  zombie detected: ${workerId}`));
    const onExit = ({ workerId, signal }) => console.log(`  ${workerId} exited (signal ${signal}); the pool replaces it`);
    pool.on('worker-exited', onExit);
    await pool.submitTask({ type: 'test', payload: {} });
    const summary = pool.healthMonitor.getHealthSummary();
    console.log('Health:', summary.status, JSON.stringify(summary.workers));
    console.log('Capacity:', JSON.stringify(pool.healthMonitor.getPoolCapacity()));
    for (const w of pool.getAllWorkersStatus()) {
      console.log(`  ${w.id} pid ${w.pid} ${w.state}, ${w.tasksExecuted} task(s), healthy ${w.healthy}`);
    }
    // Kill one worker the hard way and watch the pool bring the count back.
    const victim = pool.getAllWorkersStatus()[0];
    process.kill(victim.pid, 'SIGKILL');
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const ws = pool.getAllWorkersStatus();
      if (ws.length === 2 && ws.every((w) => w.pid !== victim.pid && w.state === 'ready')) break;
      await sleep(50);
    }
    const m = pool.getPoolMetrics();
    console.log(`After the kill: ${m.workers.ready} ready workers, ${m.performance.workersRestarted} restarted`);
    pool.off('worker-exited', onExit); // the exits at shutdown are expected
    const result = await pool.submitTask({ type: 'test', payload: { stillWorks: true } });
    console.log('Still serving:', JSON.stringify(result));
  });
}

// 6. Error handling: every rejection is an Error with a stable `code`.
async function errors() {
  try {
    createPool({ poolSize: 0 });
  } catch (e) {
    console.log(`Invalid config -> ${e.code}: ${e.message}`);
  }
  await withPool({ ...SMALL, workerScript: CUSTOM_WORKER, maxTaskRetries: 1, retryBackoffMs: 50 }, async (pool) => {
    const attempt = async (label, task) => {
      try {
        await pool.submitTask(task);
        console.log(`${label} -> ok`);
      } catch (e) {
        console.log(`${label} -> ${e.code}: ${e.message}${e.handlerCode ? ` (handler code ${e.handlerCode})` : ''}`);
      }
    };
    await attempt('Invalid task (no type)', { payload: {} });
    await attempt('Unknown task type', { type: 'no-such-type', payload: {} });
    await attempt('Handler throws (retried once, then dead-lettered)', { type: 'fail', payload: { message: 'disk full' } });
    await attempt('Timeout', { type: 'sleep', payload: { ms: 5000 }, timeout: 200, maxRetries: 0 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    try {
      await pool.submitTask({ type: 'sleep', payload: { ms: 5000 } }, { signal: ac.signal });
    } catch (e) {
      console.log(`Cancelled with an AbortSignal -> ${e.name} ${e.code}`);
    }
    const dlq = pool.taskQueue.getDeadLetterQueue();
    console.log(`Dead-letter queue: ${dlq.length} task(s):`, dlq.map((d) => `${d.task.type} (${d.finalError && d.finalError.code})`).join(', '));
    console.log('Cleared from the dead-letter queue:', pool.taskQueue.clearDeadLetterQueue());
  });
}

// 7. Custom worker scripts: your own handlers in examples/custom-worker.js.
async function custom() {
  await withPool({ ...SMALL, workerScript: CUSTOM_WORKER }, async (pool) => {
    const [upper, words, fib, who] = await Promise.all([
      pool.submitTask({ type: 'uppercase', payload: { text: 'hello, worker pool' } }),
      pool.submitTask({ type: 'word-count', payload: { text: 'the cat and the hat' } }),
      pool.submitTask({ type: 'fibonacci', payload: { n: 90 } }),
      pool.submitTask({ type: 'whoami', payload: null }),
    ]);
    console.log('uppercase:', upper);
    console.log('word-count:', JSON.stringify(words));
    console.log('fibonacci(90):', fib);
    console.log('whoami:', JSON.stringify(who));
    const slept = await pool.submitTask({ type: 'sleep', payload: { ms: 50 } });
    console.log('sleep:', JSON.stringify(slept));
  });
}

const EXAMPLES = { basic, parallel, events, scaling, health, errors, custom };

async function main() {
  const names = process.argv.slice(2);
  for (const n of names) {
    if (!EXAMPLES[n]) {
      console.error(`Unknown example "${n}". Examples: ${Object.keys(EXAMPLES).join(', ')}`);
      process.exit(2);
    }
  }
  for (const name of names.length ? names : Object.keys(EXAMPLES)) {
    console.log(`\n=== ${name}`);
    const t0 = Date.now();
    await EXAMPLES[name]();
    console.log(`=== ${name} done (${Date.now() - t0} ms)`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
