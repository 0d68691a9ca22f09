'use strict';
// Parent RSS after 10k ... 1M no-op tasks (windows of 5,000). Run with and without
// --max-semi-space-size=1 to separate V8's young generation from the pool.
const { createWorkerPool } = require('..');
(async () => {
  const pool = await createWorkerPool({ poolSize: 4, minWorkers: 1, workerScript: require.resolve('./workers/this-worker.js'), logLevel: 'silent' });
  let done = 0; const marks = [10000, 100000, 250000, 500000, 1000000]; const out = [];
  const W = 5000;
  while (done < 1000000) {
    await Promise.all(Array.from({ length: W }, (_, i) => pool.submitTask({ type: 'echo', payload: { i, s: 'x' } })));
    done += W;
    if (marks.includes(done)) out.push(`${done}:${(process.memoryUsage().rss / 1048576).toFixed(1)}`);
  }
  console.log(process.execArgv.join(' ') || 'default', out.join(' '));
  await pool.shutdown();
})();
