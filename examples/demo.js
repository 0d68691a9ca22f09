#!/usr/bin/env node
// `npm run demo`: start a pool with the default worker, run a batch of
// tasks with a progress line, print the metrics, shut down.
'use strict';
const { createWorkerPool } = require('..');

async function main() {
  const total = Number(process.env.DEMO_TASKS || 10000);
  const poolSize = Number(process.env.POOL_SIZE || 4);
  const t0 = Date.now();
  const pool = await createWorkerPool({ poolSize, logLevel: 'warn' });
  console.log(`pool ready: ${poolSize} workers in ${Date.now() - t0} ms`);
  let done = 0;
  const tty = process.stdout.isTTY;
  const progress = () => {
    const line = `progress: ${done}/${total} tasks (${Math.round((done / total) * 100)}%)`;
    if (tty) process.stdout.write(`\r${line}`);
    else if (done === total || done % Math.ceil(total / 10) === 0) console.log(line);
  };
  const t1 = Date.now();
  await Promise.all(
    Array.from({ length: total }, (_, i) =>
      pool.submitTask({ type: 'implementation', payload: { i }, priority: i % 3 }).then(() => {
        done++;
        if (done % 500 === 0 || done === total) progress();
      }),
    ),
  );
  if (tty) process.stdout.write('\n');
  const secs = (Date.now() - t1) / 1000;
  console.log(`ran ${total} tasks in ${secs.toFixed(2)} s (${Math.round(total / secs)} tasks/s)`);
  console.log(JSON.stringify(pool.getPoolMetrics(), null, 2));
  await pool.shutdown(true);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
