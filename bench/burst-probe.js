'use strict';
// Steady-state burst: rounds of 20,000 no-op tasks on 4 workers after 3 warm-up rounds;
// prints tasks/s and the parent's CPU per task (process.cpuUsage: all its threads).
// Usage: node bench/burst-probe.js [rounds=20]   (for perf: node --perf-basic-prof ...)
const { createWorkerPool } = require('..');
(async () => {
  const pool = await createWorkerPool({
    poolSize: 4, minWorkers: 1, loadBalancing: 'least-loaded',
    workerScript: require.resolve('./workers/this-worker.js'), logLevel: 'silent',
  });
  const burst = async () => {
    const ps = new Array(20000);
    for (let i = 0; i < 20000; i++) ps[i] = pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
    await Promise.all(ps);
  };
  for (let r = 0; r < 3; r++) await burst();
  const R = Number(process.argv[2] || 20);
  const c0 = process.cpuUsage();
  const t = process.hrtime.bigint();
  for (let r = 0; r < R; r++) await burst();
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  const c = process.cpuUsage(c0);
  const n = R * 20000;
  console.log(`tasks/s ${Math.round(n / s)}  parent CPU µs/task ${((c.user + c.system) / n).toFixed(2)} (user ${(c.user / n).toFixed(2)}, sys ${(c.system / n).toFixed(2)})`);
  await pool.shutdown();
})();
