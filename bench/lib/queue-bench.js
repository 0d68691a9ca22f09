'use strict';
// What the shared-queue benchmarks (bench/distributed.js, bench/bullmq-processors.js)
// have in common: their options, a private redis-server, consumer processes
// (bench/workers/queue-consumer.js), BullMQ's producer, CPU readings, the rounds with
// the variants interleaved, and the medians of their samples.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { fork, spawn, spawnSync } = require('child_process');
const { freePort } = require('../../__test__/redis-harness');
const { eachFlag, listArg, sleep, median, withTimeout, descendants, procCpuMs, machine } = require('./util');

const ROOT = path.join(__dirname, '..', '..');
const CONSUMER = path.join(__dirname, '..', 'workers', 'queue-consumer.js');
const requireFromRoot = (m) => require(require.resolve(m, { paths: [ROOT] }));
const log = (msg) => process.stderr.write(`${msg}\n`);

// ------------------------------------------------------------------------- options
/** The flags both benchmarks take; `variants` are the known ones, `usage()` the help text. */
function parseArgs(argv, { variants, defaultOnly, usage }) {
  const o = { burst: null, latency: null, rounds: 1, quick: false, conc: [4, 16], only: defaultOnly, json: null };
  const int = (v, what) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${v}`);
    return n;
  };
  eachFlag(argv, (flag, val, a) => {
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
  for (const v of o.only) if (!variants[v]) throw new Error(`unknown variant "${v}" (known: ${Object.keys(variants).join(', ')})`);
  o.burst = o.burst ?? (o.quick ? 1000 : 5000);
  o.latency = o.latency ?? (o.quick ? 200 : 1000);
  // Every process started, JIT warm, connections open (W ≤ warm-up, so each child ran a job).
  o.warmup = Math.min(500, o.burst);
  return o;
}

// -------------------------------------------------------------------- redis-server
function hasRedis() {
  return spawnSync('sh', ['-c', 'command -v redis-server']).status === 0;
}

/** A private redis-server: no persistence (the engine's speed, not the disk's). */
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wp-bench-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
  const exited = new Promise((r) => proc.once('exit', r));
  const Redis = requireFromRoot('ioredis');
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  client.on('error', () => {});
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port}: ${e.message}`);
      client.disconnect();
      await sleep(50);
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid,
    client,
    version: (await client.info('server')).match(/redis_version:(\S+)/)[1],
    async commands() {
      const text = await client.info('commandstats');
      const out = {};
      for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2]);
      return out;
    },
    async stop() {
      client.disconnect();
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ----------------------------------------------------------------------- consumers
/**
 * Starts `pools` consumer processes of `kind` sharing `concurrency` (queue-consumer.js;
 * with `processorFile`, every kind runs that processor file); resolves once all serve.
 */
async function startConsumers(kind, pools, concurrency, url, queueName, processorFile) {
  const per = [];
  for (let i = 0; i < pools; i++) per.push(Math.floor(concurrency / pools) + (i < concurrency % pools ? 1 : 0));
  // BENCH_CONSUMER_EXEC_ARGV (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the consumers.
  const execArgv = (process.env.BENCH_CONSUMER_EXEC_ARGV || '').split(' ').filter(Boolean);
  const args = (c) => [kind, String(c), url, queueName, ...(processorFile ? [processorFile] : [])];
  const children = per.map((c) => fork(CONSUMER, args(c), { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv }));
  const stopOne = async (child) => {
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
  };
  try {
    await withTimeout(
      Promise.all(
        children.map(
          (child) =>
            new Promise((resolve, reject) => {
              child.once('message', (m) => (m && m.ready ? resolve() : reject(new Error(`consumer said ${JSON.stringify(m)}`))));
              child.once('exit', (code) => reject(new Error(`consumer ${kind} exited (${code}) before it was ready`)));
            }),
        ),
      ),
      60000,
      `starting ${pools} ${kind} consumer(s)`,
    );
  } catch (e) {
    await Promise.all(children.map(stopOne));
    throw e;
  }
  return {
    pids: () => children.flatMap((c) => [c.pid, ...descendants(c.pid)]),
    mainPids: () => children.map((c) => c.pid),
    stop: () => Promise.all(children.map(stopOne)),
  };
}

// ------------------------------------------------------------------------ producer
/**
 * BullMQ's producer: `Queue.addBulk` (or `add` for one) of the jobs `spec(item)` gives
 * (`{ name, data, opts }`), and each job's outcome through QueueEvents: its return
 * value, or an Error for a failed job.
 */
async function bullProducer(url, queueName, spec) {
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
  const outcome = (id) =>
    new Promise((resolve) => {
      if (early.has(id)) {
        resolve(early.get(id));
        early.delete(id);
      } else {
        waiting.set(id, resolve);
      }
    });
  return {
    async burst(items) {
      const jobs = await queue.addBulk(items.map(spec));
      return Promise.all(jobs.map((j) => outcome(j.id)));
    },
    async one(item) {
      const j = spec(item);
      const job = await queue.add(j.name, j.data, j.opts);
      return outcome(job.id);
    },
    async close() {
      await events.close();
      await queue.close();
    },
  };
}

// ----------------------------------------------------------------------------- CPU
/** CPU ms of each of `pids` (those still there). */
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

// -------------------------------------------------------------------------- rounds
/**
 * Runs `runCell(variant, concurrency, cellNo)` for every concurrency and variant,
 * `opts.rounds` times, the variants' order rotated each round so that none always runs
 * first. A variant that fails is reported and not run again. Returns `{ samples,
 * failures }`, each by concurrency, then variant.
 */
async function runRounds(opts, label, runCell, describe) {
  const samples = {};
  const failures = {};
  for (const c of opts.conc) {
    samples[c] = Object.fromEntries(opts.only.map((v) => [v, []]));
    failures[c] = {};
  }
  let cellNo = 0;
  for (let round = 0; round < opts.rounds; round++) {
    for (const c of opts.conc) {
      const order = opts.only.map((_, i) => opts.only[(i + round) % opts.only.length]);
      for (const variant of order) {
        if (failures[c][variant]) continue;
        const where = `round ${round + 1}, ${c}, ${label(variant)}`;
        let r;
        try {
          r = await runCell(variant, c, ++cellNo);
        } catch (e) {
          failures[c][variant] = (e && e.message) || String(e);
          log(`  ${where}: FAILED: ${failures[c][variant]}`);
          continue;
        }
        samples[c][variant].push(r);
        log(`  ${where}: ${describe(r)}`);
      }
    }
  }
  return { samples, failures };
}

/** A sample of the same shape whose every number is the median over `list` (arrays: the last one's). */
function medianSample(list) {
  const first = list[0];
  if (typeof first === 'number' || first === null) return median(list);
  if (Array.isArray(first) || typeof first !== 'object') return list[list.length - 1];
  return Object.fromEntries(Object.keys(first).map((k) => [k, medianSample(list.map((x) => x[k]))]));
}

/** The medians of `runRounds`' samples, by concurrency, then variant (none for a failed one). */
function mediansOf(opts, { samples, failures }) {
  const out = {};
  for (const c of opts.conc) {
    out[c] = {};
    for (const v of opts.only) if (samples[c][v].length && !failures[c][v]) out[c][v] = medianSample(samples[c][v]);
  }
  return out;
}

// -------------------------------------------------------------------------- report
const fmtInt = (x) => (x == null ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const fmt2 = (x) => (x == null ? 'n/a' : x.toFixed(2));
const fmt3 = (x) => (x == null ? 'n/a' : x < 1 ? x.toFixed(3) : x.toFixed(2));

/** The report's header lines: the machine and the command that ran. */
function header(script, opts, mach, redisVersion, elapsedS) {
  const args = process.argv.slice(2);
  return [
    `- **Machine:** ${mach.cpu}, ${mach.cores} cores, Node ${mach.node}, redis-server ${redisVersion} (private, no persistence); load average at start ${mach.loadavgAtStart.join(' / ')}; BullMQ ${requireFromRoot('bullmq/package.json').version}`,
    `- **Command:** \`node ${script}${args.length ? ` ${args.join(' ')}` : ''}\`: burst ${opts.burst.toLocaleString('en-US')} jobs (after a ${opts.warmup}-job warm-up), ${opts.latency.toLocaleString('en-US')} jobs one at a time, ${opts.rounds} round(s)${opts.rounds > 1 ? ' (medians)' : ''}, ${Math.round(elapsedS)} s`,
  ];
}

/** Writes the report, and with --json every sample too. */
function writeReport(opts, report, data) {
  process.stdout.write(report);
  if (opts.json) {
    fs.writeFileSync(path.resolve(opts.json), JSON.stringify({ ...data, options: opts, markdown: report }, null, 2));
    log(`wrote ${opts.json}`);
  }
}

// ---------------------------------------------------------------------------- main
function killDescendants() {
  for (const pid of descendants()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/**
 * A benchmark's main, run when its script is the main module: the options, a private
 * redis-server, `runCell(redis, variant, concurrency, opts, cellNo)` over the rounds,
 * and `render(opts, machine, redisVersion, medians, run, elapsedS)` of the medians to
 * stdout (with --json, every sample too). Exit status 1 if a variant failed; its
 * processes are killed on a signal or an error.
 */
function benchMain({ script, name, variants, defaultOnly, usage, runCell, describe, render }) {
  const main = async () => {
    let opts;
    try {
      opts = parseArgs(process.argv.slice(2), { variants, defaultOnly, usage });
    } catch (e) {
      log(e.message);
      process.exit(2);
    }
    if (!hasRedis()) {
      log(`${script}: redis-server is not on PATH (Debian: apt-get install -y redis-server); skipped`);
      return;
    }
    const mach = machine();
    const started = Date.now();
    const redis = await startRedis();
    log(`${name} bench: redis-server ${redis.version} on port ${redis.port}; burst ${opts.burst}, one-at-a-time ${opts.latency}, ${opts.rounds} round(s), concurrency ${opts.conc.join(',')}, variants ${opts.only.join(',')}`);
    let run;
    try {
      run = await runRounds(opts, (v) => variants[v].label, (variant, c, cellNo) => runCell(redis, variant, c, opts, cellNo), describe);
    } finally {
      await redis.stop();
    }
    const medians = mediansOf(opts, run);
    const report = render(opts, mach, redis.version, medians, run, (Date.now() - started) / 1000);
    writeReport(opts, report, { machine: mach, medians, ...run });
    if (Object.values(run.failures).some((f) => Object.keys(f).length)) process.exitCode = 1;
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      killDescendants();
      process.exit(130);
    });
  }
  main().then(
    () => setTimeout(() => process.exit(process.exitCode || 0), 200).unref(),
    (e) => {
      log(`${name} bench failed: ${(e && e.stack) || e}`);
      killDescendants();
      process.exit(1);
    },
  );
}

module.exports = {
  benchMain,
  ROOT,
  requireFromRoot,
  log,
  parseArgs,
  hasRedis,
  startRedis,
  startConsumers,
  bullProducer,
  cpuOf,
  cpuDelta,
  runRounds,
  mediansOf,
  fmtInt,
  fmt2,
  fmt3,
  header,
  writeReport,
};
