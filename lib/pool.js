'use strict';
const { EventEmitter } = require('node:events');
const path = require('node:path');
const errors = require('./errors');
const { PoolTaskQueueView } = require('./task-queue');
const { PoolHealthMonitorView } = require('./health-monitor');
const { PoolBackend } = require('./call-backend');
const { submitValidated } = require('./task-validate');
const { encodeSubmitLine, decodeEvents } = require('./wire');

const { CODES, callNative, fromCore, fromNative, invalidArgument, invalidConfig, withCode } = errors;

const DEFAULT_WORKER_SCRIPT = path.join(__dirname, '..', 'worker-process.js');
// A submit batch crosses N-API at the end of the microtask, or once it holds this much
// (under V8's 128 KiB large-object size; measured best from 32 KiB to 128 KiB).
const FLUSH_AT_CHARS = 64 * 1024;
const LOG_LEVELS = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };
const WORKER_LOG_OPTION = { error: 'logWorkerErrors', warning: 'logWorkerWarnings', warn: 'logWorkerWarnings', info: 'logWorkerInfo', debug: 'logWorkerDebug' };

// Pools whose workers must die with this process even if nobody calls shutdown().
// (The core also sets a parent-death signal in every worker; this is the polite path.)
const livePools = new Set();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const native of livePools) native.killAll();
  });
}

function noop() {}

function isPositiveInt(n) {
  return Number.isInteger(n) && n > 0;
}

/**
 * The pool. A facade over the Rust core, which owns the workers, the queue, timers
 * and health checks; this class validates input, keeps the promises, and re-emits
 * the core's events (delivered in batches through one threadsafe function).
 */
class WorkerPoolManager extends EventEmitter {
  #native;
  #pending = new Map();
  #ops = new Map();
  #opSeq = 0;
  #keepAlive = null;
  #logLevel;
  // Tasks cross N-API in batches: submitTask appends a line, one call per microtask.
  #seq = 0;
  #batch = '';
  #flushQueued = false;
  #flushBound = () => this.#flush();
  // The shared queue (the `queue` option), or null for a pool of this machine only.
  #shared = null;
  #producerOnly = false;

  constructor(config = {}) {
    super();
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw invalidConfig('config', 'an options object', config);
    }
    const raw = { ...config };
    let queueOpts = null;
    if (raw.queue !== undefined) {
      queueOpts = require('./distributed/config').resolveQueueOption(raw.queue);
      delete raw.queue;
      // A producer runs no workers: the core is built (for its metrics and views) but
      // never initialized, so any poolSize, 0 included, is accepted.
      if (!queueOpts.serve) {
        this.#producerOnly = true;
        delete raw.poolSize;
        delete raw.minWorkers;
      }
    }
    const processor = raw.processor === undefined ? undefined : processorOption(raw);
    if (typeof raw.workerScript === 'string') raw.workerScript = path.resolve(raw.workerScript);
    if (Array.isArray(raw.workerGroups)) {
      raw.workerGroups = raw.workerGroups.map((g) =>
        g && typeof g === 'object' && typeof g.workerScript === 'string' ? { ...g, workerScript: path.resolve(g.workerScript) } : g,
      );
    }
    let json;
    try {
      json = JSON.stringify(raw, (k, v) => (typeof v === 'bigint' ? Number(v) : v));
    } catch (e) {
      throw invalidConfig('config', 'options JSON can represent', e.message);
    }
    const { NativePool } = require('./native');
    this.#native = callNative(() => new NativePool(json, process.execPath, DEFAULT_WORKER_SCRIPT, (batch) => this.#onEvents(batch)));
    /** The resolved options. */
    this.config = JSON.parse(this.#native.config());
    if (processor !== undefined) this.config.processor = processor;
    if (queueOpts) this.#openShared(queueOpts, config);
    this.#logLevel = LOG_LEVELS[this.config.logLevel] ?? LOG_LEVELS.info;

    const native = this.#native;
    const poolCall = (method, args) => {
      this.#flush();
      return callNative(() => native.call(method, JSON.stringify(args)));
    };
    // The views' options are the core's own (`options` verb): it maps the pool's options.
    const queueBackend = new PoolBackend(poolCall, 'queue.');
    const requeue = (taskId) => this.#requeueDeadLetters(taskId);
    this.taskQueue = this.#shared
      ? new (require('./distributed').SharedTaskQueueView)(this.#shared.producer, queueBackend, requeue)
      : new PoolTaskQueueView(queueBackend, requeue);
    this.healthMonitor = new PoolHealthMonitorView(new PoolBackend(poolCall, 'health.'));
    // Per-task events cost the hot path; the core sends them only while someone listens.
    const track = (emitter) => {
      emitter.on('newListener', (name) => this.#updateInterest(emitter, name));
      emitter.on('removeListener', () => this.#updateInterest());
    };
    track(this);
    track(this.taskQueue);
    track(this.healthMonitor);
    installExitHook();
    livePools.add(native);
  }

  #openShared(queueOpts, userConfig) {
    const { SharedQueueMode } = require('./distributed');
    this.#shared = new SharedQueueMode(queueOpts, this.config, {
      native: this.#native,
      op: (start) => this.#op(start),
      onIdleChange: () => this.#refresh(),
    });
    const { url, redis, display, sentinel, cluster, ...shown } = queueOpts;
    this.config.queue = { url: display, ...shown };
    if (this.#producerOnly) this.config.poolSize = userConfig.poolSize ?? 0;
    // Every task of a serving pool is a job the core runs for the shared queue: the core
    // reads the replies itself, so the JS thread does no work per job.
    else this.#native.setCoreReads(true);
    // The server's concurrency follows the workers that can take a job.
    const follow = () => this.#shared.refresh();
    for (const ev of ['pool-initialized', 'pool-scaled-up', 'pool-scaled-down', 'worker-exited']) this.on(ev, follow);
  }

  #updateInterest(adding, name) {
    const count = (em, ev) => em.listenerCount(ev) + (em === adding && ev === name ? 1 : 0);
    const userCount = (em) =>
      em.eventNames().filter((n) => n !== 'newListener' && n !== 'removeListener').reduce((s, n) => s + count(em, n), 0) +
      (em === adding && name !== 'newListener' && name !== 'removeListener' && em.listenerCount(name) === 0 ? 1 : 0);
    const task = count(this, 'task-assigned') + count(this, 'task-completed') > 0;
    this.#native.setInterest(task, userCount(this.taskQueue) > 0, userCount(this.healthMonitor) > 0);
  }

  // ------------------------------------------------------------ keeping alive

  #refresh() {
    const busy = this.#pending.size + this.#ops.size + (this.#shared ? this.#shared.pendingCount : 0) > 0;
    if (busy && !this.#keepAlive) {
      this.#keepAlive = setInterval(noop, 1 << 30);
    } else if (!busy && this.#keepAlive) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = null;
    }
  }

  #op(start) {
    this.#flush();
    const op = ++this.#opSeq;
    return new Promise((resolve, reject) => {
      this.#ops.set(op, { resolve, reject });
      this.#refresh();
      try {
        start(op);
      } catch (e) {
        this.#ops.delete(op);
        this.#refresh();
        reject(fromNative(e));
      }
    });
  }

  // ------------------------------------------------------------ core events

  #onEvents(text) {
    // "" = a wake-up whose events a JS-thread read already delivered.
    if (text === '') return;
    const thrown = decodeEvents(text, this.#sink);
    this.#refresh();
    // A listener threw: the whole batch was applied (no settlement lost); rethrow now.
    if (thrown) throw thrown;
  }

  /** What each event record does (the record kinds of lib/wire.js). */
  #sink = {
    ok: (seq, result) => {
      const p = this.#pending.get(seq);
      if (!p) return;
      this.#pending.delete(seq);
      if (p.cleanup) p.cleanup();
      p.resolve(result);
    },
    err: (seq, info) => {
      const p = this.#pending.get(seq);
      if (!p) return;
      this.#pending.delete(seq);
      if (p.cleanup) p.cleanup();
      const err = fromCore(info);
      if (err.code === CODES.ABORT_ERR && p.signal) err.cause = p.signal.reason;
      p.reject(err);
    },
    op: (op, ok, result, info) => {
      const p = this.#ops.get(op);
      if (!p) return;
      this.#ops.delete(op);
      if (ok) p.resolve(result);
      else p.reject(fromCore(info));
    },
    ev: (name, data) => this.emit(name, data),
    q: ({ event, ...data }) => this.taskQueue.emit(event, data),
    h: ({ event, ...data }) => this.healthMonitor.emit(event, data),
    log: (record) => this.#log(record),
    wm: (workerId, pid, message) => this.#workerMessage(workerId, pid, message),
  };

  #log(e) {
    const { k, ...entry } = e;
    const level = LOG_LEVELS[entry.level] ?? LOG_LEVELS.info;
    if (level <= this.#logLevel) {
      const line = `[PoolManager] ${entry.message}`;
      if (entry.level === 'error') console.error(line);
      else if (entry.level === 'warn') console.warn(line);
      else console.log(line);
    }
    this.emit('log', entry);
  }

  #workerMessage(workerId, pid, m) {
    switch (m.type) {
      case 'worker-log': {
        const { type, ...rest } = m;
        const entry = { ...rest, workerId: rest.workerId ?? workerId };
        const option = WORKER_LOG_OPTION[entry.level];
        if (option && this.config[option] && this.#logLevel > 0) {
          const line = `[Worker ${entry.workerId}] ${entry.message}`;
          if (entry.level === 'error') console.error(line, entry.error ?? '');
          else if (entry.level === 'warning' || entry.level === 'warn') console.warn(line);
          else console.log(line);
        }
        this.emit('worker-log', entry);
        break;
      }
      case 'high-memory-warning':
        this.emit('worker-high-memory', { workerId, pid, memoryMB: m.memoryMB, threshold: m.threshold });
        break;
      case 'worker-error':
        // Already emitted as 'worker-error' by the core; nothing more to do.
        break;
      default:
        this.emit('worker-message', { workerId, pid, message: m });
    }
  }

  // ------------------------------------------------------------------ API

  /** Spawns the workers and waits until each is ready. */
  initialize(poolSize = undefined) {
    if (poolSize !== undefined && poolSize !== null && !isPositiveInt(poolSize)) {
      return Promise.reject(invalidArgument('poolSize', 'a positive integer', poolSize));
    }
    if (this.#shared) return this.#initializeShared(poolSize);
    return this.#op((op) => this.#native.initialize(poolSize ?? undefined, op)).then(() => this);
  }

  /** Connects first (an unreachable Redis fails before any worker starts), then serves. */
  async #initializeShared(poolSize) {
    if (this.#sharedStarted) {
      throw withCode(CODES.ERR_POOL_ALREADY_INITIALIZED, 'Pool already initialized');
    }
    this.#sharedStarted = true;
    try {
      await this.#shared.start();
      if (this.#producerOnly) return this;
      await this.#op((op) => this.#native.initialize(poolSize ?? undefined, op));
      await this.#shared.serve();
    } catch (e) {
      await this.#shared.close(false, 0).catch(() => {});
      if (!this.#producerOnly) await this.#op((op) => this.#native.shutdown(false, op)).catch(() => {});
      livePools.delete(this.#native);
      throw e;
    }
    return this;
  }

  #sharedStarted = false;

  /**
   * Submits a task; resolves with the handler's result, rejects with a coded Error.
   * `options.signal` (an AbortSignal) cancels it.
   */
  submitTask(task, options = undefined) {
    return submitValidated(task, options, this.#submitBound);
  }

  #submitBound = (t) => (this.#shared ? this.#shared.submit(t) : this.#submitLocal(t));

  /** Queues a validated task (see lib/task-validate.js) in this machine's pool. */
  #submitLocal(task) {
    const seq = ++this.#seq;
    this.#batch += encodeSubmitLine(seq, task);
    const promise = this.#track(seq, task.signal);
    if (this.#batch.length >= FLUSH_AT_CHARS) {
      // Large payloads go at once: a burst of them must not become one huge string
      // (and the workers can start while the rest is being submitted).
      this.#flush();
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushBound);
    }
    return promise;
  }

  #track(seq, signal) {
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, signal: null, cleanup: null };
      if (signal) {
        const onAbort = () => {
          this.#flush();
          const reason = signal.reason instanceof Error ? signal.reason.message : signal.reason === undefined ? '' : String(signal.reason);
          this.#native.cancel(seq, reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        entry.signal = signal;
        entry.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#pending.set(seq, entry);
      if (!this.#keepAlive) this.#refresh();
    });
  }

  /** Hands the tasks submitted so far to the core; refusals reject their promises. */
  #flush() {
    this.#flushQueued = false;
    if (this.#batch === '') return;
    const batch = this.#batch;
    this.#batch = '';
    const refused = this.#native.submitBatch(batch);
    if (refused === '') return;
    for (const [seq, info] of JSON.parse(refused)) {
      const p = this.#pending.get(seq);
      if (!p) continue;
      this.#pending.delete(seq);
      if (p.cleanup) p.cleanup();
      p.reject(fromCore(info));
    }
    this.#refresh();
  }

  #requeueDeadLetters(taskId) {
    this.#flush();
    const seqs = callNative(() => this.#native.requeueDeadLetters(taskId ?? undefined, this.#seq + 1));
    if (seqs.length) this.#seq = seqs[seqs.length - 1];
    return seqs.map((s) => this.#track(s, null));
  }

  getWorkerStatus(workerId) {
    this.#flush();
    return JSON.parse(this.#native.workerStatus(String(workerId)));
  }

  getAllWorkersStatus() {
    this.#flush();
    return JSON.parse(this.#native.allWorkers());
  }

  getPoolMetrics() {
    this.#flush();
    const m = JSON.parse(this.#native.metrics());
    if (this.#shared) m.queue.shared = { ...this.#shared.counts };
    return m;
  }

  /** Adds up to `count` workers (never above maxWorkers); resolves when they are ready. */
  scaleUp(count = 1) {
    if (!isPositiveInt(count)) return Promise.reject(invalidArgument('count', 'a positive integer', count));
    if (this.#producerOnly) return Promise.reject(producerOnlyError('scaleUp'));
    return this.#op((op) => this.#native.scaleUp(count, op));
  }

  /**
   * Removes up to `count` workers (never below minWorkers): idle ones first; busy ones
   * finish their task first. Resolves when they have exited.
   */
  scaleDown(count = 1) {
    if (!isPositiveInt(count)) return Promise.reject(invalidArgument('count', 'a positive integer', count));
    if (this.#producerOnly) return Promise.reject(producerOnlyError('scaleDown'));
    return this.#op((op) => this.#native.scaleDown(count, op));
  }

  /**
   * graceful (default): stop taking tasks, finish what was accepted (up to
   * shutdownTimeoutMs), then stop the workers. Immediate: reject everything now
   * with ERR_POOL_SHUTDOWN and kill the workers. Either way every promise settles.
   */
  shutdown(graceful = true) {
    if (this.#shared) return this.#shutdownShared(graceful !== false);
    return this.#shutdownLocal(graceful);
  }

  /**
   * Stops fetching jobs, then shuts the local pool down (graceful: what runs finishes;
   * immediate or past shutdownTimeoutMs: the jobs held go back to the queue without
   * using an attempt), then closes the queue connections. Tasks this pool submitted
   * and still waits for: graceful waits for them as long as shutdownTimeoutMs allows,
   * then they reject with ERR_POOL_SHUTDOWN (their jobs stay queued and still run).
   */
  #shutdownShared(graceful) {
    const shared = this.#shared;
    if (this.#sharedShutdown) {
      // shutdown(false) after shutdown(true) (a second SIGTERM): stop now.
      if (!graceful) {
        shared.hurry();
        this.#shutdownLocal(false).catch(() => {});
      }
      return this.#sharedShutdown;
    }
    shared.stopServing();
    const deadline = Date.now() + (graceful ? this.config.shutdownTimeoutMs : 0);
    this.#sharedShutdown = (async () => {
      await this.#shutdownLocal(graceful);
      await shared.close(graceful, Math.max(0, deadline - Date.now()));
      this.#refresh();
    })();
    return this.#sharedShutdown;
  }

  #sharedShutdown = null;

  #shutdownLocal(graceful) {
    const run = this.#op((op) => this.#native.shutdown(graceful !== false, op)).then(() => {
      livePools.delete(this.#native);
      // Nothing may stay pending; the core settles everything, this is a safety net.
      const err = withCode(CODES.ERR_POOL_SHUTDOWN, 'Pool was shut down before the task finished');
      for (const [seq, p] of this.#pending) {
        this.#pending.delete(seq);
        if (p.cleanup) p.cleanup();
        p.reject(err);
      }
      this.#refresh();
    });
    return run;
  }

  /** The pool's metrics in the Prometheus text exposition format. */
  getPrometheusMetrics() {
    this.#flush();
    const text = this.#native.prometheus();
    return this.#shared ? text + this.#shared.prometheus() : text;
  }

  /** Pids of the current worker processes (for diagnostics and tests). */
  getWorkerPids() {
    return this.#native.workerPids();
  }
}

const PROCESSOR_WORKER = path.join(__dirname, 'worker', 'processor.js');

/**
 * The `processor` option (a BullMQ processor file): checked, then turned into what the
 * core knows, the workers' script (lib/worker/processor.js) and the file's path in
 * their environment. Returns the file's absolute path.
 */
function processorOption(raw) {
  const p = raw.processor;
  const allowed = 'the path of a processor file (.js, .cjs or .mjs) exporting async (job) => result';
  if (typeof p !== 'string' || p.trim() === '') throw invalidConfig('processor', allowed, p);
  for (const other of ['workerScript', 'workerCommand']) {
    if (raw[other] !== undefined) {
      throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "processor": it cannot be combined with "${other}" (the processor file is what the workers run)`);
    }
  }
  const file = path.resolve(p);
  if (!/\.(c|m)?js$/.test(file)) throw invalidConfig('processor', allowed, p);
  let stat = null;
  try {
    stat = require('node:fs').statSync(file);
  } catch {
    // reported below
  }
  if (stat === null || !stat.isFile()) {
    throw withCode(CODES.ERR_INVALID_CONFIG, `Invalid option "processor": no file at ${file} (from "${p}")`);
  }
  if (raw.env === undefined || (raw.env !== null && typeof raw.env === 'object' && !Array.isArray(raw.env))) {
    raw.env = { ...raw.env, CORTEX_WORKER_PROCESSOR: file };
  } // else the core refuses the env option itself
  raw.workerScript = PROCESSOR_WORKER;
  delete raw.processor;
  return file;
}

function producerOnlyError(method) {
  return withCode(CODES.ERR_NOT_SUPPORTED, `${method}() is not available: this pool only submits to the shared queue (queue.serve is false) and runs no workers`);
}

async function createWorkerPool(config = {}) {
  const pool = new WorkerPoolManager(config);
  await pool.initialize();
  return pool;
}

function createPool(config = {}) {
  return new WorkerPoolManager(config);
}

module.exports = { WorkerPoolManager, createWorkerPool, createPool, DEFAULT_WORKER_SCRIPT };
