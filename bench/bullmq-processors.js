#!/usr/bin/env node
'use strict';
// BullMQ sandboxed processors against this package serving the same queue with the same
// processor file (issue 25: "a drop-in for BullMQ's sandboxed processors"). One
// redis-server on this machine (bench/distributed.js's: started here, a free port, no
// persistence, stopped at the end), one producer (this process: BullMQ's Queue.addBulk
// of plain jobs, name 'work', data { n }, outcomes through QueueEvents), one processor
// file (bench/fixtures/increment-processor.js: async (job) => job.data.n + 1), and these
// consumers, each in processes of its own (bench/workers/processor-consumer.js):
//
//   sandboxed  BullMQ Worker with the processor file, useWorkerThreads: false: BullMQ's
//              own child processes, W of them (the peer)
//   this       this package: createWorkerPool({ poolSize: W, processor, queue }), W
//              worker processes running the same file
//   inline     BullMQ Worker with the same function inline (no processes: the engine's
//              ceiling, for reference)
//
// at W (BullMQ concurrency = worker processes) of 4 and 16. Per cell: a burst (N jobs
// added at once, time until every one completed) in jobs/s; add → completed one job at
// a time (p50/p99); CPU per job of every process involved (producer, consumer and its
// children, redis-server, from /proc). The report gives this package against sandboxed;
// the targets of issue 25 are a burst ≥ 1.5× sandboxed's and a one-at-a-time p50 no
// higher than sandboxed's.
//
//   node bench/bullmq-processors.js [--burst N] [--latency N] [--rounds N] [--quick]
//                                   [--concurrency 4,16] [--only sandboxed,this,inline]
//                                   [--json file]
//
// Progress to stderr, a markdown report to stdout. A variant that fails (e.g. this
// package built without the `processor` option) is reported as failed; the others run.

const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');
const { startRedis, hasRedis } = require('./distributed');
const { eachFlag, listArg, now, median, percentileSorted, withTimeout, descendants, procCpuMs, machine } = require('./lib/util');

const ROOT = path.join(__dirname, '..');
const CONSUMER = path.join(__dirname, 'workers', 'processor-consumer.js');
const PROCESSOR = path.join(__dirname, 'fixtures', 'increment-processor.js');
const requireFromRoot = (m) => require(require.resolve(m, { paths: [ROOT] }));

const VARIANTS = {
  sandboxed: { label: 'BullMQ sandboxed (processor file, child processes)' },
  this: { label: 'this package (processor file, pool)' },
  inline: { label: 'BullMQ inline (async fn, reference)' },
};
const DEFAULT_ONLY = ['sandboxed', 'this', 'inline'];
const TARGET_BURST_RATIO = 1.5;

function usage() {
  return `Usage: node bench/bullmq-processors.js [options]

  --burst N          jobs per burst (default 5000; 1000 with --quick)
  --latency N        jobs one at a time (default 1000; 200 with --quick)
  --rounds N         rounds, variants interleaved, medians reported (default 1)
  --concurrency L    W, the worker processes / BullMQ concurrency (default 4,16)
  --only L           variants: ${Object.keys(VARIANTS).join(', ')} (default ${DEFAULT_ONLY.join(',')})
  --quick            small counts (a smoke run)
  --json file        also write every sample as JSON
  -h, --help         this text
`;
}

function parseArgs(argv) {
  const o = { burst: null, latency: null, rounds: 1, quick: false, conc: [4, 16], only: DEFAULT_ONLY, json: null };
  eachFlag(argv, (flag, val, a) => {
    const int = (v, what) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${v}`);
      return n;
    };
    switch (flag) {
      case '--burst': o.burst = int(val(), '--burst'); break;
      case '--latency': o.latency = int(val(), '--latency'); break;
      case '--rounds': o.rounds = int(val(), '--rounds'); break;
      case '--concurrency': o.conc = listArg(val()).map((c) => int(c, '--concurrency')); break;
      case '--only': o.only = listArg(val()); break;
      case '--quick': o.quick = true; break;
      case '--json': o.json = val(); break;
      case '-h': case '--help': process.stdout.write(usage()); process.exit(0); break;
      default: throw new Error(`unknown argument ${a}\n\n${usage()}`);
    }
  });
  for (const v of o.only) if (!VARIANTS[v]) throw new Error(`unknown variant "${v}" (known: ${Object.keys(VARIANTS).join(', ')})`);
  o.burst = o.burst ?? (o.quick ? 1000 : 5000);
  o.latency = o.latency ?? (o.quick ? 200 : 1000);
  // Every process started, JIT warm, connections open (W ≤ warm-up, so each child ran a job).
  o.warmup = Math.min(500, o.burst);
  return o;
}

const log = (msg) => process.stderr.write(`${msg}\n`);

// -------------------------------------------------------------------------- consumer
/** Starts one consumer process of `kind` with W workers; resolves once it serves. */
async function startConsumer(kind, workers, url, queueName) {
  const child = fork(CONSUMER, [kind, String(workers), url, queueName, PROCESSOR], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await withTimeout(
    new Promise((resolve, reject) => {
      child.once('message', (m) => (m && m.ready ? resolve() : reject(new Error(`consumer said ${JSON.stringify(m)}`))));
      child.once('exit', (code) => reject(new Error(`consumer ${kind} exited (${code}) before it was ready`)));
    }),
    60000,
    `starting the ${kind} consumer`,
  );
  return {
    pids: () => [child.pid, ...descendants(child.pid)],
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send('stop');
      const t = setTimeout(() => {
        for (const pid of descendants(child.pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        child.kill('SIGKILL');
      }, 15000);
      await exited;
      clearTimeout(t);
    },
  };
}

// -------------------------------------------------------------------------- producer
/** BullMQ's producer: addBulk of plain jobs, and each job's outcome through QueueEvents. */
async function producer(url, queueName) {
  const { Queue, QueueEvents } = requireFromRoot('bullmq');
  const u = new URL(url);
  const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  const queue = new Queue(queueName, { connection });
  const events = new QueueEvents(queueName, { connection, lastEventId: '$' });
  queue.on('error', () => {});
  events.on('error', () => {});
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const waiting = new Map(); // job id → resolve
  const early = new Map(); // outcomes seen before the add returned the id
  const settle = (jobId, value) => {
    const r = waiting.get(jobId);
    if (r) {
      waiting.delete(jobId);
      r(value);
    } else {
      early.set(jobId, value);
    }
  };
  events.on('completed', ({ jobId, returnvalue }) => settle(jobId, returnvalue));
  events.on('failed', ({ jobId, failedReason }) => settle(jobId, new Error(`job ${jobId} failed: ${failedReason}`)));
  const opts = { removeOnComplete: { age: 3600, count: 100000 } };
  const outcome = (id) =>
    new Promise((resolve) => {
      if (early.has(id)) {
        resolve(early.get(id));
        early.delete(id);
      } else {
        waiting.set(id, resolve);
      }
    });
  const check = (value, n) => {
    if (value instanceof Error) throw value;
    if (value !== n + 1) throw new Error(`wrong result for n = ${n}: ${JSON.stringify(value)}`);
  };
  return {
    /** Adds every n at once; resolves when all completed (rejects on a failure or a wrong value). */
    async burst(ns) {
      const jobs = await queue.addBulk(ns.map((n) => ({ name: 'work', data: { n }, opts })));
      const values = await Promise.all(jobs.map((j) => outcome(j.id)));
      values.forEach((v, i) => check(v, ns[i]));
    },
    async one(n) {
      const job = await queue.add('work', { n }, opts);
      check(await outcome(job.id), n);
    },
    async close() {
      await events.close();
      await queue.close();
    },
  };
}

// ------------------------------------------------------------------------------ a cell
function cpuOf(pids) {
  const out = new Map();
  for (const pid of pids) {
    const ms = procCpuMs(pid);
    if (ms !== null) out.set(pid, ms);
  }
  return out;
}

function cpuDelta(before, after) {
  let sum = 0;
  for (const [pid, ms] of after) sum += ms - (before.get(pid) ?? 0);
  return sum;
}

async function runCell(redis, variant, workers, opts, cellNo) {
  const queueName = `procs-${cellNo}`;
  await redis.client.flushall();
  const consumer = await startConsumer(variant, workers, redis.url, queueName);
  let prod = null;
  try {
    prod = await producer(redis.url, queueName);
    const ns = (count, base) => Array.from({ length: count }, (_, i) => base + i);

    await withTimeout(prod.burst(ns(opts.warmup, 0)), 120000, 'warm-up burst');

    // Burst: CPU of the consumer's process tree (its children: sandboxed processors or
    // pool workers, spawned during the warm-up) and redis-server, read around it.
    const pids = [...consumer.pids(), redis.pid];
    const cpu0 = cpuOf(pids);
    const self0 = process.cpuUsage();
    const t0 = now();
    await withTimeout(prod.burst(ns(opts.burst, 1e6)), 300000, 'burst');
    const ms = now() - t0;
    const self = process.cpuUsage(self0);
    const cpu1 = cpuOf([...consumer.pids(), redis.pid]);
    const producerCpu = (self.user + self.system) / 1000;
    const redisCpu = (cpu1.get(redis.pid) ?? 0) - (cpu0.get(redis.pid) ?? 0);
    const consumerCpu = cpuDelta(cpu0, cpu1) - redisCpu;

    // One at a time: add, wait for 'completed', add the next.
    const lat = [];
    for (const n of ns(opts.latency, 2e6)) {
      const s = now();
      await withTimeout(prod.one(n), 30000, 'one job');
      lat.push(now() - s);
    }
    lat.sort((a, b) => a - b);

    return {
      variant,
      workers,
      jobsPerSec: (opts.burst / ms) * 1000,
      p50Ms: percentileSorted(lat, 50),
      p99Ms: percentileSorted(lat, 99),
      cpuMsPerJob: { total: (producerCpu + consumerCpu + redisCpu) / opts.burst, producer: producerCpu / opts.burst, consumer: consumerCpu / opts.burst, redis: redisCpu / opts.burst },
    };
  } finally {
    if (prod) await prod.close().catch(() => {});
    await consumer.stop();
  }
}

// ------------------------------------------------------------------------------ report
const fmtInt = (x) => (x == null ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const fmt2 = (x) => (x == null ? 'n/a' : x.toFixed(2));
const fmt3 = (x) => (x == null ? 'n/a' : x < 1 ? x.toFixed(3) : x.toFixed(2));

function render(opts, mach, redisVersion, medians, failures, elapsedS) {
  const L = [];
  L.push('## BullMQ sandboxed processors and this package: one processor file, one Redis');
  L.push('');
  L.push(`- **Machine:** ${mach.cpu}, ${mach.cores} cores, Node ${mach.node}, redis-server ${redisVersion} (private, no persistence); load average at start ${mach.loadavgAtStart.join(' / ')}; BullMQ ${requireFromRoot('bullmq/package.json').version}`);
  L.push(`- **Command:** \`node bench/bullmq-processors.js${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\`: burst ${opts.burst.toLocaleString('en-US')} jobs (after a ${opts.warmup}-job warm-up), ${opts.latency.toLocaleString('en-US')} jobs one at a time, ${opts.rounds} round(s)${opts.rounds > 1 ? ' (medians)' : ''}, ${Math.round(elapsedS)} s`);
  L.push('- **Jobs:** plain BullMQ jobs (`Queue.addBulk`, name `work`, data `{ n }`), run by `bench/fixtures/increment-processor.js` (`async (job) => job.data.n + 1`); outcomes through `QueueEvents`. **W** is BullMQ\'s `concurrency` or this package\'s `poolSize`.');
  L.push('- **CPU ms/job**: CPU time (from `/proc`, 10 ms ticks; `process.cpuUsage()` for the producer) of the producer, the consumer process with its children (sandboxed processors or pool workers) and redis-server during the burst, ÷ jobs.');
  L.push('');
  L.push('| W | Consumer | burst jobs/s ↑ | vs sandboxed | p50 ms ↓ | p99 ms ↓ | CPU ms/job ↓ | producer | consumer + children | redis-server |');
  L.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const w of opts.conc) {
    const base = medians[w] || {};
    for (const variant of opts.only) {
      const m = base[variant];
      if (!m) {
        if (failures[w] && failures[w][variant]) L.push(`| ${w} | ${VARIANTS[variant].label} | failed: ${failures[w][variant].replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 160)} | | | | | | | |`);
        continue;
      }
      const vs = base.sandboxed && variant !== 'sandboxed' ? `${(m.jobsPerSec / base.sandboxed.jobsPerSec).toFixed(2)}×` : '';
      L.push(
        `| ${w} | ${VARIANTS[variant].label} | ${fmtInt(m.jobsPerSec)} | ${vs} | ${fmt2(m.p50Ms)} | ${fmt2(m.p99Ms)} | ` +
          `${fmt3(m.cpu.total)} | ${fmt3(m.cpu.producer)} | ${fmt3(m.cpu.consumer)} | ${fmt3(m.cpu.redis)} |`,
      );
    }
  }
  L.push('');
  L.push(`This package against sandboxed (targets: burst ≥ ${TARGET_BURST_RATIO}×, one-at-a-time p50 ≤ sandboxed's):`);
  L.push('');
  for (const w of opts.conc) {
    const ours = medians[w] && medians[w].this;
    const peer = medians[w] && medians[w].sandboxed;
    if (!ours || !peer) {
      L.push(`- W = ${w}: n/a (${!ours ? 'this package' : 'sandboxed'} has no result)`);
      continue;
    }
    const burst = ours.jobsPerSec / peer.jobsPerSec;
    const p50 = ours.p50Ms / peer.p50Ms;
    L.push(
      `- W = ${w}: burst ${burst.toFixed(2)}× (${burst >= TARGET_BURST_RATIO ? 'met' : 'NOT met'}); ` +
        `p50 ${fmt2(ours.p50Ms)} ms against ${fmt2(peer.p50Ms)} ms, ${p50.toFixed(2)}× (${ours.p50Ms <= peer.p50Ms ? 'met' : 'NOT met'}); ` +
        `p99 ${fmt2(ours.p99Ms)} ms against ${fmt2(peer.p99Ms)} ms; CPU/job ${(ours.cpu.total / peer.cpu.total).toFixed(2)}×`,
    );
  }
  return `${L.join('\n')}\n`;
}

// -------------------------------------------------------------------------------- main
async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    log(e.message);
    process.exit(2);
  }
  if (!hasRedis()) {
    log('bench/bullmq-processors.js: redis-server is not on PATH (Debian: apt-get install -y redis-server); skipped');
    return;
  }
  const mach = machine();
  const started = Date.now();
  const redis = await startRedis();
  log(`bullmq-processors bench: redis-server ${redis.version} on port ${redis.port}; burst ${opts.burst}, one-at-a-time ${opts.latency}, ${opts.rounds} round(s), W ${opts.conc.join(',')}, variants ${opts.only.join(',')}`);
  const samples = {};
  const failures = {};
  for (const w of opts.conc) {
    samples[w] = Object.fromEntries(opts.only.map((v) => [v, []]));
    failures[w] = {};
  }
  let cellNo = 0;
  try {
    for (let round = 0; round < opts.rounds; round++) {
      for (const w of opts.conc) {
        // Rotate the order every round so no variant always runs first (or last).
        const order = opts.only.map((_, i) => opts.only[(i + round) % opts.only.length]);
        for (const variant of order) {
          if (failures[w][variant]) continue;
          let r;
          try {
            r = await runCell(redis, variant, w, opts, ++cellNo);
          } catch (e) {
            failures[w][variant] = (e && e.message) || String(e);
            log(`  round ${round + 1}, W ${w}, ${VARIANTS[variant].label}: FAILED: ${failures[w][variant]}`);
            continue;
          }
          samples[w][variant].push(r);
          log(`  round ${round + 1}, W ${w}, ${VARIANTS[variant].label}: ${fmtInt(r.jobsPerSec)} jobs/s, p50 ${fmt2(r.p50Ms)} ms, p99 ${fmt2(r.p99Ms)} ms, CPU ${fmt3(r.cpuMsPerJob.total)} ms/job`);
        }
      }
    }
  } finally {
    await redis.stop();
  }
  const medians = {};
  for (const w of opts.conc) {
    medians[w] = {};
    for (const v of opts.only) {
      const s = samples[w][v];
      if (!s.length || failures[w][v]) continue;
      const med = (f) => median(s.map(f));
      medians[w][v] = {
        jobsPerSec: med((x) => x.jobsPerSec),
        p50Ms: med((x) => x.p50Ms),
        p99Ms: med((x) => x.p99Ms),
        cpu: { total: med((x) => x.cpuMsPerJob.total), producer: med((x) => x.cpuMsPerJob.producer), consumer: med((x) => x.cpuMsPerJob.consumer), redis: med((x) => x.cpuMsPerJob.redis) },
      };
    }
  }
  const report = render(opts, mach, redis.version, medians, failures, (Date.now() - started) / 1000);
  process.stdout.write(report);
  if (opts.json) {
    fs.writeFileSync(path.resolve(opts.json), JSON.stringify({ machine: mach, options: opts, medians, failures, samples, markdown: report }, null, 2));
    log(`wrote ${opts.json}`);
  }
  if (Object.values(failures).some((f) => Object.keys(f).length)) process.exitCode = 1;
}

module.exports = { main };

if (require.main === module) {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      for (const pid of descendants()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      process.exit(130);
    });
  }
  main().then(
    () => setTimeout(() => process.exit(process.exitCode || 0), 200).unref(),
    (e) => {
      log(`bullmq-processors bench failed: ${(e && e.stack) || e}`);
      for (const pid of descendants()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      process.exit(1);
    },
  );
}
