'use strict';
// Drop-in replacement for Cortex's `require('./lib/worker-pool')`.
const { WorkerPoolManager, createWorkerPool, createPool } = require('./lib/pool');
const { TaskQueue } = require('./lib/task-queue');
const { HealthMonitor } = require('./lib/health-monitor');
const FIFOChannel = require('./fifo-channel');
const { CODES } = require('./lib/errors');

module.exports = {
  createWorkerPool,
  createPool,
  WorkerPoolManager,
  TaskQueue,
  HealthMonitor,
  FIFOChannel,
  ErrorCodes: CODES,
  default: createWorkerPool,
};
