'use strict';
// Parent CPU per task for large payloads, this package or a peer adapter.
// Usage: node bench/payload-probe.js [bytes=1048576] [tasks=200] [adapter=this]
//   e.g. node bench/payload-probe.js 1048576 200 raw
const bytes = Number(process.argv[2] || 1048576);
const N = Number(process.argv[3] || 200);
const name = process.argv[4] || 'this';
(async () => {
  const pool = await require(`./adapters/${name}.js`).create(4);
  const s = 'x'.repeat(bytes);
  const burst = async (n) => {
    const ps = new Array(n);
    for (let i = 0; i < n; i++) ps[i] = pool.run('echo', { i, s });
    const r = await Promise.all(ps);
    if (r[n - 1].s.length !== bytes) throw new Error('payload came back truncated');
  };
  await burst(Math.min(N, 500));
  const c0 = process.cpuUsage();
  const t = process.hrtime.bigint();
  await burst(N);
  const sec = Number(process.hrtime.bigint() - t) / 1e9;
  const c = process.cpuUsage(c0);
  console.log(`${name} ${bytes} B: tasks/s ${Math.round(N / sec)}  parent CPU µs/task ${((c.user + c.system) / N).toFixed(1)}`);
  await pool.close();
})();
