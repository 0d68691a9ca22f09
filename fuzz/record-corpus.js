'use strict';
// Records the seed corpora of the fuzz targets from real traffic: a pool of real
// workers runs a mixed load (every outcome, batches, timeouts, crashes, scaling,
// dead letters, the queue and monitor views, the standalone classes) while this
// script taps each parser's input on its way in:
//   worker_messages  what the workers send (fuzz/tap-worker.js wraps process.send),
//                    as the IPC stream and as the FIFO transport's frames
//   submit_line      encodeSubmitLine's lines (lib/wire.js)
//   event_records    the batches decodeEvents receives (lib/wire.js)
//   call_verbs       every `call` of the binding's three classes
//   config           the options given and the resolved `pool.config`
// Usage: node fuzz/record-corpus.js   (rewrites fuzz/corpus/*/seed-*)

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const CORPUS = path.join(__dirname, 'corpus');
/** Most bytes of one seed file and of one target's seeds: the corpus stays small. */
const MAX_SEED = 4096;
const MAX_SEEDS = 40;

const taps = { submit: [], events: [], calls: [], configs: [] };

// Tap the wire codec before lib/pool.js takes its functions.
const wire = require(path.join(ROOT, 'lib', 'wire.js'));
const { encodeSubmitLine, decodeEvents } = wire;
wire.encodeSubmitLine = (seq, t) => {
  const line = encodeSubmitLine(seq, t);
  taps.submit.push(line.replace(/\n$/, ''));
  return line;
};
wire.decodeEvents = (batch, sink) => {
  taps.events.push(batch);
  return decodeEvents(batch, sink);
};
const native = require(path.join(ROOT, 'lib', 'native.js'));
for (const [cls, target] of [['NativePool', 0], ['NativeTaskQueue', 1], ['NativeHealthMonitor', 2]]) {
  const call = native[cls].prototype.call;
  native[cls].prototype.call = function (verb, argsJson) {
    taps.calls.push([target, verb, JSON.parse(argsJson)]);
    return call.call(this, verb, argsJson);
  };
}

const { createWorkerPool, TaskQueue, HealthMonitor } = require(ROOT);

const settle = (p) => p.then((r) => ({ ok: true, r }), (e) => ({ ok: false, e }));

async function traffic(tapFile) {
  const options = {
    poolSize: 2,
    minWorkers: 1,
    maxWorkers: 4,
    workerScript: path.join(__dirname, 'tap-worker.js'),
    env: { TAP_FILE: tapFile, TAP_TARGET: path.join(ROOT, '__test__', 'fixtures', 'echo-worker.js') },
    heartbeatInterval: 200,
    maxTaskRetries: 1,
    retryBackoffMs: 10,
    logLevel: 'silent',
    loadBalancing: 'least-loaded',
  };
  taps.configs.push(options);
  const pool = await createWorkerPool(options);
  taps.configs.push(pool.config);
  pool.on('error', () => {});
  const submit = (type, payload, extra = {}) => settle(pool.submitTask({ type, payload, ...extra }));
  await Promise.all([
    submit('echo', { text: 'héllo ✓ \u{1F600}', nested: { a: [1, 2.5, -3e-7, null, true] } }),
    submit('echo', 'a "quoted"\tline\\with escapes', { priority: 0, metadata: { user: 'u1' } }),
    submit('echo', Array.from({ length: 40 }, (_, i) => i * i), { priority: 3.5, timeout: 2000 }),
    submit('implementation', { file: 'x.js' }),
    submit('throw', { message: 'boom', code: 'E_BOOM' }, { maxRetries: 0 }),
    submit('throw-value', { value: 42 }, { maxRetries: 0 }),
    submit('unserializable', null, { maxRetries: 0 }),
    submit('sleep', { ms: 500 }, { timeout: 50, maxRetries: 0 }),
    submit('pid', null, { requires: [] }),
    submit('no-such-handler', 1, { maxRetries: 0 }),
  ]);
  await Promise.all(Array.from({ length: 30 }, (_, i) => submit('echo', { i })));
  await submit('crash', { code: 3 }, { maxRetries: 0 });
  await new Promise((r) => setTimeout(r, 600)); // heartbeats, the replacement's worker-ready
  await pool.scaleUp(1);
  await pool.scaleDown(1);
  pool.taskQueue.getStats();
  pool.taskQueue.getDeadLetterQueue();
  pool.taskQueue.getQueueDepth();
  pool.taskQueue.peek();
  pool.healthMonitor.getAllWorkersHealth();
  pool.healthMonitor.getHealthSummary();
  pool.healthMonitor.getAlerts(10);
  pool.healthMonitor.getPoolCapacity();
  await Promise.all(await pool.taskQueue.requeueDeadLetter()).catch(() => {});
  await pool.shutdown();

  const qOptions = { maxRetries: 1, retryBackoffMs: 0, maxDeadLetters: 3 };
  taps.configs.push(qOptions);
  const q = new TaskQueue(qOptions);
  const id = q.enqueue({ type: 'echo', payload: { a: 1 }, timeout: 100 }, 2);
  q.enqueue({ type: 'echo', payload: 'b' });
  q.getTaskById(id);
  q.peek();
  q.dequeue();
  q.failTask(id, { message: 'no', code: 'E1' });
  q.dequeue();
  q.failTask(id, new Error('again'));
  q.getDeadLetterQueue();
  q.requeueDeadLetter(id);
  q.completeTask(id);
  q.getStats();
  q.clear();
  const hOptions = { heartbeatTimeoutMs: 1000, memoryThresholdMB: 64, cpuThresholdPercent: 90 };
  taps.configs.push(hOptions);
  const h = new HealthMonitor(hOptions);
  h.registerWorker('worker-0', { pid: 123, state: 'idle' });
  h.recordHeartbeat('worker-0', { memoryUsage: { heapUsed: 1e8, heapTotal: 2e8, rss: 3e8 }, cpuUsage: { user: 10, system: 2 }, state: 'busy', tasksExecuted: 4 });
  h.checkHealth();
  h.getWorkerHealth('worker-0');
  h.getWorkerMetrics('worker-0', 5);
  h.shouldRestartWorker('worker-0');
  h.recordRestartAttempt('worker-0');
  h.getAlerts();
  h.clearAlerts(0);
  h.unregisterWorker('worker-0');
}

/** Groups items into seeds of at most MAX_SEED bytes, at most MAX_SEEDS of them. */
function pack(items, join, maxItems = Infinity) {
  const seeds = [];
  let cur = [];
  let size = 0;
  for (const it of items) {
    if (cur.length && (size + it.length > MAX_SEED || cur.length >= maxItems)) {
      seeds.push(join(cur));
      cur = [];
      size = 0;
    }
    if (it.length > MAX_SEED) continue;
    cur.push(it);
    size += it.length;
  }
  if (cur.length) seeds.push(join(cur));
  return seeds.slice(0, MAX_SEEDS);
}

function write(target, seeds) {
  const dir = path.join(CORPUS, target);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (f.startsWith('seed-')) fs.unlinkSync(path.join(dir, f));
  seeds.forEach((s, i) => fs.writeFileSync(path.join(dir, `seed-${String(i).padStart(3, '0')}`), s));
  console.log(`${target}: ${seeds.length} seeds, ${seeds.reduce((n, s) => n + s.length, 0)} bytes`);
}

function frame(lines) {
  return Buffer.concat(lines.map((l) => {
    const b = Buffer.from(l);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  }));
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wp-corpus-'));
  const tapFile = path.join(tmp, 'worker-messages.ndjson');
  fs.writeFileSync(tapFile, '');
  try {
    await traffic(tapFile);
    const lines = fs.readFileSync(tapFile, 'utf8').split('\n').filter(Boolean);
    // worker_messages: header (framed?, limit 64 << 10 = 64 KiB, read size), stream.
    const ipc = pack(lines, (ls) => Buffer.concat([Buffer.from([0, 10, 63]), Buffer.from(`${ls.join('\n')}\n`)]), 8);
    const fifo = pack(lines, (ls) => Buffer.concat([Buffer.from([1, 10, 200]), frame(ls)]), 8).slice(0, 10);
    write('worker_messages', [...ipc.slice(0, 30), ...fifo]);
    write('submit_line', [...new Set(taps.submit)].slice(0, MAX_SEEDS));
    // event_records: a batch per seed, with the batch size byte in front.
    write('event_records', pack(taps.events.filter((b) => b.length <= MAX_SEED), (bs) => `\u0003${JSON.stringify(bs.flatMap((b) => JSON.parse(b)))}`, 4));
    write('call_verbs', pack(taps.calls.map((c) => JSON.stringify(c)), (cs) => `[${cs.join(',')}]`, 12));
    write('config', taps.configs.map((c) => JSON.stringify(c)));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
