'use strict';
// Drop-in replacement for Cortex's `require('./lib/worker-pool')`.
const { WorkerPoolManager, createWorkerPool, createPool } = require('./lib/pool');
const { TaskQueue } = require('./lib/task-queue');
const { HealthMonitor } = require('./lib/health-monitor');
const FIFOChannel = require('./fifo-channel');
const { CODES } = require('./lib/errors');

/** A producer for the shared queue (no workers); loads bullmq only when called. */
function createQueueClient(options) {
  return require('./lib/distributed').createQueueClient(options);
}

module.exports = {
  createWorkerPool,
  createPool,
  WorkerPoolManager,
  TaskQueue,
  HealthMonitor,
  FIFOChannel,
  createQueueClient,
  ErrorCodes: CODES,
  default: createWorkerPool,
};
