'use strict';
const { EventEmitter } = require('node:events');
const path = require('node:path');
const errors = require('./errors');
const { TaskQueue } = require('./task-queue');
const { HealthMonitor } = require('./health-monitor');

const { CODES, callNative, fromCore, fromNative, invalidTask, invalidArgument, invalidConfig, abortError, withCode } = errors;

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

  constructor(config = {}) {
    super();
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw invalidConfig('config', 'an options object', config);
    }
    const raw = { ...config };
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
    this.#logLevel = LOG_LEVELS[this.config.logLevel] ?? LOG_LEVELS.info;

    const native = this.#native;
    const poolCalls = {
      call: (method, args = []) => {
        this.#flush();
        return callNative(() => native.call(method, JSON.stringify(args)));
      },
      requeueDeadLetters: (taskId) => this.#requeueDeadLetters(taskId),
    };
    this.taskQueue = new TaskQueue(undefined, {
      pool: poolCalls,
      options: {
        maxRetries: this.config.maxTaskRetries,
        retryBackoffMs: this.config.retryBackoffMs,
        maxBackoffMs: this.config.maxBackoffMs,
        taskTimeoutMs: this.config.taskTimeout,
      },
    });
    this.healthMonitor = new HealthMonitor(undefined, {
      pool: poolCalls,
      options: {
        heartbeatTimeoutMs: this.config.heartbeatInterval * 3,
        healthCheckInterval: this.config.healthCheckInterval,
        zombieThresholdMs: this.config.zombieThresholdMs,
        maxRestartAttempts: this.config.maxRestartAttempts,
        restartCooldownMs: this.config.restartCooldownMs,
        memoryThresholdMB: this.config.workerMemoryLimitMB,
      },
    });
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
    const busy = this.#pending.size + this.#ops.size > 0;
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
    const events = JSON.parse(text);
    let thrown = null;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      try {
        switch (e.k) {
          case 'ok': {
            const p = this.#pending.get(e.s);
            if (p) {
              this.#pending.delete(e.s);
              if (p.cleanup) p.cleanup();
              p.resolve(e.r);
            }
            break;
          }
          case 'err': {
            const p = this.#pending.get(e.s);
            if (p) {
              this.#pending.delete(e.s);
              if (p.cleanup) p.cleanup();
              const err = fromCore(e.e);
              if (err.code === CODES.ABORT_ERR && p.signal) err.cause = p.signal.reason;
              p.reject(err);
            }
            break;
          }
          case 'ev':
            this.emit(e.n, e.d);
            break;
          case 'q': {
            const { event, ...data } = e.d;
            this.taskQueue.emit(event, data);
            break;
          }
          case 'h': {
            const { event, ...data } = e.d;
            this.healthMonitor.emit(event, data);
            break;
          }
          case 'op': {
            const p = this.#ops.get(e.o);
            if (p) {
              this.#ops.delete(e.o);
              if (e.ok) p.resolve(e.r);
              else p.reject(fromCore(e.e));
            }
            break;
          }
          case 'log':
            this.#log(e);
            break;
          case 'wm':
            this.#workerMessage(e.w, e.p, e.m);
            break;
          default:
            break;
        }
      } catch (err) {
        // A listener threw: finish the batch (no settlement may be lost), then rethrow.
        if (!thrown) thrown = err;
      }
    }
    this.#refresh();
    if (thrown) throw thrown;
  }

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
    return this.#op((op) => this.#native.initialize(poolSize ?? undefined, op)).then(() => this);
  }

  /**
   * Submits a task; resolves with the handler's result, rejects with a coded Error.
   * `options.signal` (an AbortSignal) cancels it.
   */
  submitTask(task, options = undefined) {
    if (task === null || typeof task !== 'object' || Array.isArray(task)) {
      return Promise.reject(invalidTask('task', 'an object like { type, payload }', task));
    }
    if (typeof task.type !== 'string' || task.type.length === 0) {
      return Promise.reject(invalidTask('type', 'a non-empty string', task.type));
    }
    let payloadJson;
    try {
      payloadJson = task.payload === undefined ? 'null' : JSON.stringify(task.payload);
    } catch (e) {
      return Promise.reject(withCode(CODES.ERR_INVALID_TASK, `Invalid task: "payload" must be a JSON-serializable value (${e.message})`));
    }
    if (payloadJson === undefined) {
      return Promise.reject(invalidTask('payload', 'a JSON-serializable value', task.payload));
    }
    const priority = task.priority ?? 10;
    if (typeof priority !== 'number' || !Number.isFinite(priority)) {
      return Promise.reject(invalidTask('priority', 'a finite number (lower runs first; 0 is the highest)', task.priority));
    }
    const timeout = task.timeout ?? undefined;
    if (timeout !== undefined && !(typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0)) {
      return Promise.reject(invalidTask('timeout', 'a positive number of milliseconds', task.timeout));
    }
    const maxRetries = task.maxRetries ?? undefined;
    if (maxRetries !== undefined && !(Number.isInteger(maxRetries) && maxRetries >= 0)) {
      return Promise.reject(invalidTask('maxRetries', 'an integer >= 0', task.maxRetries));
    }
    const requires = task.requires ?? undefined;
    if (requires !== undefined && !(Array.isArray(requires) && requires.every((r) => typeof r === 'string'))) {
      return Promise.reject(invalidTask('requires', 'an array of capability strings', task.requires));
    }
    let metadataJson;
    if (task.metadata !== undefined) {
      try {
        metadataJson = JSON.stringify(task.metadata);
      } catch (e) {
        return Promise.reject(withCode(CODES.ERR_INVALID_TASK, `Invalid task: "metadata" must be JSON-serializable (${e.message})`));
      }
    }
    const signal = options && options.signal;
    if (signal !== undefined && signal !== null) {
      if (typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
        return Promise.reject(invalidArgument('options.signal', 'an AbortSignal', signal));
      }
      if (signal.aborted) {
        return Promise.reject(abortError('The task was aborted before it was submitted', signal.reason));
      }
    }
    let requiresJson = '';
    if (requires !== undefined) requiresJson = JSON.stringify(requires);
    const seq = ++this.#seq;
    // One line per task; JSON text never contains a raw tab or newline.
    this.#batch += `${seq}\t${priority}\t${timeout ?? ''}\t${maxRetries ?? ''}\t${JSON.stringify(task.type)}\t${payloadJson}\t${metadataJson ?? ''}\t${requiresJson}\n`;
    const promise = this.#track(seq, signal);
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
    return JSON.parse(this.#native.metrics());
  }

  /** Adds up to `count` workers (never above maxWorkers); resolves when they are ready. */
  scaleUp(count = 1) {
    if (!isPositiveInt(count)) return Promise.reject(invalidArgument('count', 'a positive integer', count));
    return this.#op((op) => this.#native.scaleUp(count, op));
  }

  /**
   * Removes up to `count` workers (never below minWorkers): idle ones first; busy ones
   * finish their task first. Resolves when they have exited.
   */
  scaleDown(count = 1) {
    if (!isPositiveInt(count)) return Promise.reject(invalidArgument('count', 'a positive integer', count));
    return this.#op((op) => this.#native.scaleDown(count, op));
  }

  /**
   * graceful (default): stop taking tasks, finish what was accepted (up to
   * shutdownTimeoutMs), then stop the workers. Immediate: reject everything now
   * with ERR_POOL_SHUTDOWN and kill the workers. Either way every promise settles.
   */
  shutdown(graceful = true) {
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
    return this.#native.prometheus();
  }

  /** Pids of the current worker processes (for diagnostics and tests). */
  getWorkerPids() {
    return this.#native.workerPids();
  }
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
