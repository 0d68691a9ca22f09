'use strict';
// Preloaded into the daemon by bench/soak.js (`node --expose-gc --require <this>
// scripts/daemon.js`): what /proc cannot tell from outside, the live JS heap and the
// event loop's delay, appended as one JSON line every SOAK_PROBE_MS to SOAK_PROBE_FILE.
// The heap is read right after a full collection (gc(), hence --expose-gc), so a
// sample is what is live, not where the young generation's sawtooth happened to be;
// that costs the daemon one full GC per sample (a few ms every 10 s).
const fs = require('node:fs');
const { monitorEventLoopDelay } = require('node:perf_hooks');

const file = process.env.SOAK_PROBE_FILE;
const every = Number(process.env.SOAK_PROBE_MS) || 10000;
if (file) {
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const timer = setInterval(() => {
    if (typeof global.gc === 'function') global.gc();
    const m = process.memoryUsage();
    const line = {
      t: Date.now(),
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      eldP50Ms: eld.percentile(50) / 1e6,
      eldP99Ms: eld.percentile(99) / 1e6,
      eldMaxMs: eld.max / 1e6,
    };
    eld.reset();
    fs.appendFileSync(file, `${JSON.stringify(line)}\n`);
  }, every);
  timer.unref();
}
