'use strict';
// Many machines, one queue: the pool's `queue` option and createQueueClient().
// Loaded only when one of them is used, so a local pool never loads bullmq/ioredis.

const { PoolTaskQueueView } = require('../task-queue');
const { submitValidated } = require('../task-validate');
const { resolveClientOptions } = require('./config');
const { SharedQueueProducer, DEFAULT_RETRY } = require('./producer');
const { SharedQueueServer } = require('./server');
const { sharedPrometheus } = require('./codec');

// getPoolMetrics() stays synchronous: it reports the latest snapshot of the shared
// counts, which is read this often while the pool runs.
const SNAPSHOT_MS = 1000;
const EMPTY_COUNTS = Object.freeze({ waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, prioritized: 0, servingPools: 0 });

/**
 * A pool's side of the shared queue: a producer for its submitTask(), and, when it
 * serves, a server that feeds jobs to its workers. The pool calls start() before it
 * spawns workers (an unreachable Redis fails fast), serve() once they are ready, and
 * close() from shutdown().
 */
class SharedQueueMode {
  #opts;
  #producer;
  #server = null;
  #snapshot = { ...EMPTY_COUNTS, updatedAt: null };
  #snapshotTimer = null;

  /** `hooks`: { native, op(start) } of the pool (the core serves), and onIdleChange(busy). */
  constructor(opts, poolConfig, hooks) {
    this.#opts = opts;
    this.#producer = new SharedQueueProducer(
      opts,
      { maxRetries: poolConfig.maxTaskRetries, retryBackoffMs: poolConfig.retryBackoffMs, maxBackoffMs: poolConfig.maxBackoffMs },
      hooks.onIdleChange,
    );
    if (opts.serve) this.#server = new SharedQueueServer(opts, hooks);
  }

  get pendingCount() {
    return this.#producer.pendingCount;
  }

  get serving() {
    return this.#server !== null;
  }

  async start() {
    await this.#producer.ready();
    await this.#readCounts();
    this.#snapshotTimer = setInterval(() => this.#readCounts().catch(() => {}), SNAPSHOT_MS);
    this.#snapshotTimer.unref();
  }

  async serve() {
    if (!this.#server) return;
    await this.#server.start();
    await this.#readCounts();
  }

  /** The local workers changed (scaling, exits): the server follows them. */
  refresh() {
    if (this.#server) this.#server.refresh();
  }

  async #readCounts() {
    this.#snapshot = { ...(await this.#producer.counts()), updatedAt: Date.now() };
  }

  submit(t) {
    return this.#producer.submit(t);
  }

  /**
   * The latest shared counts (see SNAPSHOT_MS), and this pool's connection to the queue:
   * `connected` (false while the serving side's commands fail, or the producer's
   * connection is not ready), `since` (when it went down, ms since the epoch) and `held`
   * (jobs this pool holds).
   */
  get counts() {
    const serving = this.#server ? this.#server.status : null;
    const producerUp = this.#producer.connected;
    const connected = (serving ? serving.connected : true) && producerUp;
    if (connected) this.#downSince = null;
    else this.#downSince ??= (serving && serving.since) || Date.now();
    return { ...this.#snapshot, connected, since: this.#downSince, held: serving ? serving.held : 0 };
  }

  #downSince = null;

  /** Prometheus lines for the shared counts. */
  prometheus() {
    return sharedPrometheus(this.#opts.name, this.counts);
  }

  get producer() {
    return this.#producer;
  }

  /** Stops fetching jobs (the pool's shutdown then finishes or gives back what it holds). */
  stopServing() {
    if (this.#server) this.#server.stopFetching();
  }

  /** An immediate shutdown after a graceful one: stop waiting for submitted tasks. */
  hurry() {
    this.#producer.hurry();
  }

  async close(graceful, timeoutMs) {
    clearInterval(this.#snapshotTimer);
    await Promise.all([this.#server ? this.#server.close() : null, this.#producer.close(graceful, timeoutMs)]);
  }
}

/**
 * `pool.taskQueue` in shared mode: the dead-letter queue is BullMQ's failed set, so its
 * three methods return promises (Redis is remote); the rest is the local queue's view.
 */
class SharedTaskQueueView extends PoolTaskQueueView {
  #producer;

  constructor(producer, backend, requeue) {
    super(backend, requeue);
    this.#producer = producer;
  }

  /** Resolves with the failed jobs of the shared queue as dead-letter records. */
  getDeadLetterQueue() {
    return this.#producer.deadLetters();
  }

  /** Empties the shared failed set; resolves with the count. */
  clearDeadLetterQueue() {
    return this.#producer.clearDeadLetters();
  }

  /** Runs failed jobs again; resolves with one promise of a result per job. */
  requeueDeadLetter(taskId) {
    return this.#producer.requeueDeadLetters(taskId);
  }
}

/**
 * A producer with no workers: submits tasks to the shared queue and reads it.
 * Connects on its first call (which rejects ERR_QUEUE_UNAVAILABLE if Redis cannot be
 * reached within connectTimeoutMs).
 */
class QueueClient {
  #producer;
  #closed = false;

  constructor(options) {
    const opts = resolveClientOptions(options);
    this.#producer = new SharedQueueProducer(opts, DEFAULT_RETRY);
    this.options = { url: opts.display, name: opts.name, prefix: opts.prefix, connectTimeoutMs: opts.connectTimeoutMs, commandTimeoutMs: opts.commandTimeoutMs };
  }

  /** Same task shape, validation and error codes as pool.submitTask(). */
  submitTask(task, options = undefined) {
    return submitValidated(task, options, (t) => this.#producer.submit(t));
  }

  /** `{ waiting, active, delayed, completed, failed, prioritized, servingPools }`. */
  getQueueMetrics() {
    return this.#producer.counts();
  }

  getDeadLetterQueue() {
    return this.#producer.deadLetters();
  }

  requeueDeadLetter(taskId) {
    return this.#producer.requeueDeadLetters(taskId);
  }

  clearDeadLetterQueue() {
    return this.#producer.clearDeadLetters();
  }

  /**
   * Closes the connections. Tasks still pending reject with ERR_POOL_SHUTDOWN (their
   * jobs stay in the queue and still run); pass a timeout to wait for them first.
   */
  close(timeoutMs = 0) {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#producer.close(timeoutMs > 0, timeoutMs);
  }
}

function createQueueClient(options) {
  return new QueueClient(options);
}

module.exports = { SharedQueueMode, SharedTaskQueueView, QueueClient, createQueueClient };
