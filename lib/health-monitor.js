'use strict';
const { EventEmitter } = require('node:events');
const { callNative, withCode, invalidArgument, CODES } = require('./errors');
const { emitAll } = require('./task-queue');

function notSupported(method) {
  return withCode(CODES.ERR_NOT_SUPPORTED, `healthMonitor.${method}() is not available on a pool's monitor: the pool's core registers workers and records heartbeats itself`);
}

/**
 * Worker health: heartbeats, zombie and memory checks, alerts, restart bookkeeping.
 * Standalone you feed it; as `pool.healthMonitor` it shows the pool's monitor, which
 * runs in the Rust core on its own timer (not on this thread).
 */
class HealthMonitor extends EventEmitter {
  #native = null;
  #pool = null;
  #timer = null;

  constructor(options = {}, internal = undefined) {
    super();
    if (internal && internal.pool) {
      this.#pool = internal.pool;
      this.options = internal.options;
      return;
    }
    if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object', options);
    const { NativeHealthMonitor } = require('./native');
    this.#native = callNative(() => new NativeHealthMonitor(JSON.stringify(options)));
    this.options = {
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 15000,
      healthCheckInterval: options.healthCheckInterval ?? 5000,
      zombieThresholdMs: options.zombieThresholdMs ?? 30000,
      maxRestartAttempts: options.maxRestartAttempts ?? 3,
      restartCooldownMs: options.restartCooldownMs ?? 5000,
      memoryThresholdMB: options.memoryThresholdMB ?? 512,
      cpuThresholdPercent: options.cpuThresholdPercent ?? 90,
    };
  }

  #call(method, args = []) {
    if (this.#pool) return JSON.parse(this.#pool.call(`health.${method}`, args));
    const out = JSON.parse(callNative(() => this.#native.call(method, JSON.stringify(args))));
    emitAll(this, out.e);
    return out.r;
  }

  start() {
    if (this.#pool) return;
    if (this.#timer) return;
    this.#call('start');
    this.#timer = setInterval(() => this.#call('check'), this.options.healthCheckInterval);
    this.#timer.unref();
  }

  stop() {
    if (this.#pool) return;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#call('stop');
  }

  /** Runs one check now (standalone); returns { zombies, missed, highMemory } ids. */
  checkHealth() {
    if (this.#pool) throw notSupported('checkHealth');
    return this.#call('check');
  }

  registerWorker(workerId, info = {}) {
    if (this.#pool) throw notSupported('registerWorker');
    return this.#call('registerWorker', [String(workerId), info]);
  }

  unregisterWorker(workerId) {
    if (this.#pool) throw notSupported('unregisterWorker');
    return this.#call('unregisterWorker', [String(workerId)]);
  }

  recordHeartbeat(workerId, data = {}) {
    if (this.#pool) throw notSupported('recordHeartbeat');
    return this.#call('recordHeartbeat', [String(workerId), data]);
  }

  shouldRestartWorker(workerId) {
    if (this.#pool) throw notSupported('shouldRestartWorker');
    return this.#call('shouldRestartWorker', [String(workerId)]);
  }

  recordRestartAttempt(workerId) {
    if (this.#pool) throw notSupported('recordRestartAttempt');
    return this.#call('recordRestartAttempt', [String(workerId)]);
  }

  resetRestartCounter(workerId) {
    if (this.#pool) throw notSupported('resetRestartCounter');
    return this.#call('resetRestartCounter', [String(workerId)]);
  }

  getWorkerHealth(workerId) {
    return this.#pool ? this.#call('worker', [String(workerId)]) : this.#call('getWorkerHealth', [String(workerId)]);
  }

  getAllWorkersHealth() {
    return this.#pool ? this.#call('all') : this.#call('getAllWorkersHealth');
  }

  getUnhealthyWorkers() {
    return this.#pool ? this.#call('unhealthy') : this.#call('getUnhealthyWorkers');
  }

  getPoolCapacity() {
    return this.#pool ? this.#call('capacity') : this.#call('getPoolCapacity');
  }

  getWorkerMetrics(workerId, limit = 100) {
    return this.#pool ? this.#call('metrics', [String(workerId), limit]) : this.#call('getWorkerMetrics', [String(workerId), limit]);
  }

  getAlerts(limit = 50, severity = undefined) {
    return this.#pool ? this.#call('alerts', [limit, severity ?? null]) : this.#call('getAlerts', [limit, severity ?? null]);
  }

  clearAlerts(olderThanMs = 3600000) {
    return this.#call('clearAlerts', [olderThanMs]);
  }

  getHealthSummary() {
    return this.#pool ? this.#call('summary') : this.#call('getHealthSummary');
  }
}

module.exports = { HealthMonitor };
