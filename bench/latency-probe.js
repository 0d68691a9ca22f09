'use strict';
// One-at-a-time round-trip latency of a 1-worker pool (p50/p99 µs). With a second
// argument it also prints the pids, for tracing one round trip with strace -f -tt.
const { createWorkerPool } = require('..');
(async () => {
  const pool = await createWorkerPool({ poolSize: 1, minWorkers: 1, workerScript: require.resolve('./workers/this-worker.js'), logLevel: 'silent' });
  for (let i = 0; i < 2000; i++) await pool.submitTask({ type: 'echo', payload: { i, s: 'x' } });
  const N = Number(process.argv[2] || 3000); const ts = [];
  for (let i = 0; i < N; i++) { const t = process.hrtime.bigint(); await pool.submitTask({ type: 'echo', payload: { i, s: 'x' } }); ts.push(Number(process.hrtime.bigint() - t) / 1000); }
  ts.sort((a, b) => a - b); console.log('p50', ts[N >> 1].toFixed(1), 'p99', ts[Math.floor(N * 0.99)].toFixed(1));
  if (process.argv[3]) { console.log('PID', process.pid, pool.getWorkerPids()); await new Promise(r => setTimeout(r, 100)); 
    for (let i = 0; i < 3; i++) { await pool.submitTask({ type: 'echo', payload: { i, s: 'MARK' } }); } }
  await pool.shutdown();
})();
