'use strict';
// Splits one-at-a-time round trips into the way out (submit -> the worker runs the task)
// and the way back (the worker's return -> the promise settles), with the `stamp` task:
// the worker returns its process.hrtime.bigint(), the same monotonic clock as ours. Prints
// p50/p99/p99.9 and the count over 300 µs of each leg, per adapter, adapters interleaved.
// With gapMs > 0, each task starts gapMs after the previous one settled (the pool's loop
// and its workers go idle in between, as when tasks arrive one by one from a queue).
// Also prints the benchmark process's CPU time per task (all its threads; with gapMs,
// the timer that makes the gap is included, the same for every adapter).
// Usage: node bench/phase-probe.js [adapters=this,raw] [workers=4] [tasks=10000] [rounds=2] [gapMs=0]
const names = (process.argv[2] || 'this,raw').split(',');
const W = Number(process.argv[3] || 4);
const N = Number(process.argv[4] || 10000);
const R = Number(process.argv[5] || 2);
const GAP_MS = Number(process.argv[6] || 0);
const pause = () => new Promise((resolve) => setTimeout(resolve, GAP_MS));

function summary(a) {
  const s = Array.from(a).sort((x, y) => x - y);
  const p = (q) => s[Math.min(s.length - 1, Math.ceil(s.length * q) - 1)].toFixed(0);
  return `p50 ${p(0.5)} p99 ${p(0.99)} p99.9 ${p(0.999)} >300µs ${s.filter((v) => v > 300).length}`;
}

(async () => {
  for (let r = 0; r < R; r++) {
    for (const name of r % 2 ? [...names].reverse() : names) {
      const h = await require(`./adapters/${name}.js`).create(W);
      try {
        for (let i = 0; i < 1000; i++) await h.run('echo', { i, s: 'x' });
        const total = new Float64Array(N);
        const out = new Float64Array(N);
        const back = new Float64Array(N);
        const cpu0 = process.cpuUsage();
        for (let i = 0; i < N; i++) {
          const t0 = process.hrtime.bigint();
          const tw = BigInt(await h.run('stamp', { i }));
          const t1 = process.hrtime.bigint();
          total[i] = Number(t1 - t0) / 1000;
          out[i] = Number(tw - t0) / 1000;
          back[i] = Number(t1 - tw) / 1000;
          if (GAP_MS > 0) await pause();
        }
        const cpu = process.cpuUsage(cpu0);
        const cpuPerTask = ((cpu.user + cpu.system) / N).toFixed(1);
        console.log(
          `${name.padEnd(12)} ${W} workers${GAP_MS > 0 ? `, ${GAP_MS} ms apart` : ''}  total [${summary(total)}]  out [${summary(out)}]  back [${summary(back)}]  parent CPU ${cpuPerTask} µs/task`,
        );
      } finally {
        await h.close();
      }
    }
  }
})();
