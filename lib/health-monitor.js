'use strict';
const { EventEmitter } = require('node:events');
const { withCode, invalidArgument, CODES } = require('./errors');
const { StandaloneBackend } = require('./call-backend');

function notSupported(method) {
  return withCode(CODES.ERR_NOT_SUPPORTED, `healthMonitor.${method}() is not available on a pool's monitor: the pool's core registers workers and records heartbeats itself`);
}

// Lets PoolHealthMonitorView give an instance its backend (set in HealthMonitor's static block).
let attach;

/**
 * Worker health: heartbeats, zombie and memory checks, alerts, restart bookkeeping.
 * Standalone you feed it; as `pool.healthMonitor` (a `PoolHealthMonitorView`) it shows
 * the pool's monitor, which runs in the Rust core on its own timer (not on this
 * thread). Every method is one call verb of its backend.
 */
class HealthMonitor extends EventEmitter {
  #backend = null;
  #timer = null;

  static {
    attach = (monitor, backend) => {
      monitor.#backend = backend;
      /** The resolved options, as the core applies them. */
      monitor.options = backend.call('options');
    };
  }

  constructor(options = {}) {
    super();
    // A pool's view is given the pool's backend by its own constructor.
    if (new.target.isPoolView) return;
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    attach(this, new StandaloneBackend('NativeHealthMonitor', options, this));
  }

  #call(verb, args) {
    return this.#backend.call(verb, args);
  }

  start() {
    if (this.#timer) return;
    this.#call('start');
    this.#timer = setInterval(() => this.#call('checkHealth'), this.options.healthCheckInterval);
    this.#timer.unref();
  }

  stop() {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#call('stop');
  }

  /** Runs one check now (standalone); returns { zombies, missed, highMemory } ids. */
  checkHealth() {
    return this.#call('checkHealth');
  }

  registerWorker(workerId, info = {}) {
    return this.#call('registerWorker', [String(workerId), info]);
  }

  unregisterWorker(workerId) {
    return this.#call('unregisterWorker', [String(workerId)]);
  }

  recordHeartbeat(workerId, data = {}) {
    return this.#call('recordHeartbeat', [String(workerId), data]);
  }

  shouldRestartWorker(workerId) {
    return this.#call('shouldRestartWorker', [String(workerId)]);
  }

  recordRestartAttempt(workerId) {
    return this.#call('recordRestartAttempt', [String(workerId)]);
  }

  resetRestartCounter(workerId) {
    return this.#call('resetRestartCounter', [String(workerId)]);
  }

  getWorkerHealth(workerId) {
    return this.#call('getWorkerHealth', [String(workerId)]);
  }

  getAllWorkersHealth() {
    return this.#call('getAllWorkersHealth');
  }

  getUnhealthyWorkers() {
    return this.#call('getUnhealthyWorkers');
  }

  getPoolCapacity() {
    return this.#call('getPoolCapacity');
  }

  getWorkerMetrics(workerId, limit = 100) {
    return this.#call('getWorkerMetrics', [String(workerId), limit]);
  }

  getAlerts(limit = 50, severity = undefined) {
    return this.#call('getAlerts', [limit, severity ?? null]);
  }

  clearAlerts(olderThanMs = 3600000) {
    return this.#call('clearAlerts', [olderThanMs]);
  }

  getHealthSummary() {
    return this.#call('getHealthSummary');
  }
}

/**
 * `pool.healthMonitor`: the pool's monitor, through the pool's `call` (a PoolBackend).
 * The core runs it on its own timer, so start and stop do nothing, and the methods
 * that feed a monitor throw ERR_NOT_SUPPORTED.
 */
class PoolHealthMonitorView extends HealthMonitor {
  static isPoolView = true;

  constructor(backend) {
    super();
    attach(this, backend);
  }

  start() {}

  stop() {}
}

// The methods that feed a monitor: the pool's core registers workers, records
// heartbeats and decides restarts itself.
for (const method of ['checkHealth', 'registerWorker', 'unregisterWorker', 'recordHeartbeat', 'shouldRestartWorker', 'recordRestartAttempt', 'resetRestartCounter']) {
  Object.defineProperty(PoolHealthMonitorView.prototype, method, {
    value() {
      throw notSupported(method);
    },
    writable: true,
    configurable: true,
  });
}

module.exports = { HealthMonitor, PoolHealthMonitorView };
