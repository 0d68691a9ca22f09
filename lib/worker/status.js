'use strict';

// What a worker tells about itself: worker-log messages, heartbeats (with memory and
// CPU figures), health-status and worker-metrics answers. Methods of WorkerProcess
// (see worker-process.js).

const v8 = require('v8');
const { serializeError } = require('./errors');
const { BYTES_PER_MB, now } = require('./util');

const LOG_LEVELS = new Set(['error', 'warning', 'info', 'debug']);

/** Methods of WorkerProcess.prototype. */
const methods = {
  /** Sends a worker-log message: level is error, warning, info or debug. */
  log(level, message, extra) {
    const msg = {
      type: 'worker-log',
      level: LOG_LEVELS.has(level) ? level : (level === 'warn' ? 'warning' : 'info'),
      workerId: this.workerId,
      pid: process.pid,
      message: String(message),
      timestamp: Date.now(),
    };
    if (extra !== null && typeof extra === 'object') {
      Object.assign(msg, extra);
      msg.type = 'worker-log';
      if (extra.error instanceof Error) msg.error = serializeError(extra.error);
    }
    this._send(msg);
  },

  stopHeartbeat() {
    if (this._heartbeatTimer !== null) {
      clearInterval(this._heartbeatTimer);
      this._heartbeatTimer = null;
    }
  },

  _startHeartbeat() {
    this.stopHeartbeat();
    this._heartbeatTimer = setInterval(() => this._heartbeat(), this.heartbeatInterval);
    this._heartbeatTimer.unref();
  },

  _heartbeat() {
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    this._send({
      type: 'heartbeat',
      workerId: this.workerId,
      pid: process.pid,
      state: this.state,
      tasksExecuted: this.tasksExecuted,
      uptime: Date.now() - this.startTime,
      memoryUsage: { heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, rss: mem.rss, external: mem.external },
      cpuUsage: { user: cpu.user, system: cpu.system },
      currentTask: this.currentTask,
      timestamp: Date.now(),
    });
    if (!this._idleLogged && this.state === 'ready' && this._isIdle()) {
      const idleMs = now() - this._lastActivity;
      if (idleMs >= this.idleTimeoutMs) {
        this._idleLogged = true;
        this.log('debug', `Worker idle for ${Math.round(idleMs)}ms`);
      }
    }
  },

  _healthStatus() {
    const mem = process.memoryUsage();
    const memoryMB = Math.round(mem.heapUsed / BYTES_PER_MB);
    return {
      type: 'health-status',
      workerId: this.workerId,
      pid: process.pid,
      state: this.state,
      healthy: !this._shuttingDown && memoryMB < this.memoryThresholdMB,
      memoryMB,
      memoryTotalMB: Math.round(mem.heapTotal / BYTES_PER_MB),
      tasksExecuted: this.tasksExecuted,
      uptime: Date.now() - this.startTime,
      lastTaskAge: Math.round(now() - this._lastActivity),
      timestamp: Date.now(),
    };
  },

  _metrics() {
    return {
      type: 'worker-metrics',
      metrics: {
        workerId: this.workerId,
        pid: process.pid,
        tasksExecuted: this.tasksExecuted,
        uptime: Date.now() - this.startTime,
        memory: process.memoryUsage(),
        cpu: process.cpuUsage(),
        heap: v8.getHeapStatistics(),
        loadAverage: require('os').loadavg(),
      },
      timestamp: Date.now(),
    };
  },
};

module.exports = { methods };
