'use strict';
// The serving side of the shared queue: BullMQ Workers that take jobs and run each
// attempt once on this machine's pool. BullMQ owns attempts, backoff, locks and
// stalled-job recovery; the local pool owns the processes.
//
// - One BullMQ Worker per queue this pool can serve: the base queue, and each
//   capability set (announced by producers) that one of its workers satisfies.
// - Fetch only what can run: each Worker's concurrency follows the number of local
//   workers that could start its jobs (unless `concurrency` is fixed), so no job
//   holds a lock while it waits in a local queue.
// - A job this pool cannot finish because it is shutting down goes back to the queue
//   with its attempt count unchanged (moveToWait + WaitingError).
// - Cancellation crosses machines on the registry's control channel and fires the
//   attempt's AbortSignal (BullMQ's own, passed to the local task as is).

const os = require('node:os');
const crypto = require('node:crypto');
const { CODES, abortError } = require('../errors');
const codec = require('./codec');
const { HEARTBEAT_MS, POOL_TTL_MS, keys, connect, bullConnection, closeBull, settlesWithin, quit, isUp } = require('./redis');

// Capability sets announced by producers are re-read this often (the control
// channel usually tells sooner).
const CAPSETS_POLL_MS = 5000;
// A cancel for a job this pool does not hold (yet) is remembered this long.
const CANCEL_MEMORY_MS = 60000;
// How long closing waits for the jobs held to be written back to Redis.
const CLOSE_WAIT_MS = 5000;
const GIVE_BACK_CODES = new Set([CODES.ERR_POOL_SHUTDOWN, CODES.ERR_POOL_SHUTTING_DOWN]);

class SharedQueueServer {
  #opts;
  #pool;
  #keys;
  #id = `${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  #client = null;
  #subscriber = null;
  /** queue name → { worker, caps, active } */
  #workers = new Map();
  /** job id → time a cancel arrived for a job not running here */
  #cancelled = new Map();
  #groups = []; // capability arrays of the local workers that can take a job
  #timers = [];
  #stopping = false;

  /**
   * `opts`: the resolved `queue` option. `pool`: { run(task) → Promise (one attempt on
   * this machine), workers() → [{ capabilities }] of the workers that can take a job,
   * log(level, message) }.
   */
  constructor(opts, pool) {
    this.#opts = opts;
    this.#pool = pool;
    this.#keys = keys(opts.prefix, opts.name);
  }

  get id() {
    return this.#id;
  }

  /** Jobs this pool holds right now. */
  get held() {
    let n = 0;
    for (const w of this.#workers.values()) n += w.active;
    return n;
  }

  async start() {
    this.#client = await connect(this.#opts);
    this.#subscriber = this.#client.duplicate();
    this.#subscriber.on('error', () => {});
    this.#subscriber.on('message', (_channel, text) => this.#onControl(text));
    await this.#subscriber.subscribe(this.#keys.control);
    this.refresh();
    await this.#heartbeat();
    await this.#discover();
    this.#every(HEARTBEAT_MS, () => this.#heartbeat());
    this.#every(CAPSETS_POLL_MS, () => this.#discover());
  }

  #every(ms, fn) {
    const t = setInterval(() => fn().catch((e) => this.#pool.log('warn', `Shared queue: ${e.message}`)), ms);
    t.unref();
    this.#timers.push(t);
  }

  /** Re-reads the local workers (after scaling, exits, restarts) and follows them. */
  refresh() {
    this.#groups = this.#pool.workers().map((w) => w.capabilities || []);
    this.#fitConcurrency();
  }

  #capacityFor(caps) {
    let n = 0;
    for (const g of this.#groups) if (caps.every((c) => g.includes(c))) n++;
    return n;
  }

  #fitConcurrency() {
    if (this.#stopping) return;
    const fixed = this.#opts.concurrency;
    const free = Math.max(0, this.#groups.length - this.held);
    for (const w of this.#workers.values()) {
      const want = fixed ?? w.active + Math.max(0, Math.min(free, this.#capacityFor(w.caps) - w.active));
      const next = Math.max(1, want);
      if (w.worker.concurrency !== next) w.worker.concurrency = next;
    }
  }

  async #heartbeat() {
    if (!this.#client || this.#stopping) return;
    // Workers come and go without an event that says so (a replacement becoming ready).
    this.refresh();
    const capabilitySets = [];
    const seen = new Set();
    for (const g of this.#groups) {
      const key = JSON.stringify([...g].sort());
      if (!seen.has(key)) {
        seen.add(key);
        capabilitySets.push([...g].sort());
      }
    }
    const info = { host: os.hostname(), pid: process.pid, capabilitySets, workers: this.#groups.length, held: this.held };
    await this.#client.multi().zadd(this.#keys.pools, Date.now(), this.#id).set(this.#keys.pool(this.#id), JSON.stringify(info), 'PX', POOL_TTL_MS).exec();
    const now = Date.now();
    for (const [id, at] of this.#cancelled) if (now - at > CANCEL_MEMORY_MS) this.#cancelled.delete(id);
  }

  /** Serves the base queue and every announced capability set some local worker has. */
  async #discover() {
    if (this.#stopping) return;
    this.#serve([]);
    for (const text of await this.#client.smembers(this.#keys.capsets)) {
      let caps;
      try {
        caps = JSON.parse(text);
      } catch {
        continue;
      }
      if (Array.isArray(caps)) this.#serve(caps);
    }
  }

  #serve(caps) {
    if (this.#stopping) return;
    const queueName = codec.queueNameFor(this.#opts.name, caps);
    if (this.#workers.has(queueName)) return;
    if (caps.length && this.#capacityFor(caps) === 0) return;
    const { Worker } = require('bullmq');
    const entry = { worker: null, caps, active: 0 };
    entry.worker = new Worker(queueName, (job, token, signal) => this.#process(entry, job, token, signal), {
      connection: bullConnection(this.#opts),
      prefix: this.#opts.prefix,
      concurrency: 1,
      lockDuration: this.#opts.lockDurationMs,
      stalledInterval: this.#opts.stalledIntervalMs,
      maxStalledCount: 1,
      settings: { backoffStrategy: backoff },
    });
    entry.worker.on('error', (e) => this.#pool.log('warn', `Shared queue worker (${queueName}): ${e.message}`));
    this.#workers.set(queueName, entry);
    this.#fitConcurrency();
  }

  #onControl(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg && typeof msg.cancel === 'string') {
      // A running job's attempt has BullMQ's own AbortSignal (the processor's third
      // argument), which is also the local task's signal: cancelJob fires it.
      let running = false;
      for (const w of this.#workers.values()) if (w.worker.cancelJob(msg.cancel, msg.reason || 'aborted by its producer')) running = true;
      if (!running) this.#cancelled.set(msg.cancel, Date.now());
    } else if (msg && Array.isArray(msg.capset)) {
      this.#serve(msg.capset);
    }
  }

  async #process(entry, job, token, signal) {
    entry.active++;
    this.#fitConcurrency();
    try {
      const task = codec.decodeJob(job);
      if (this.#cancelled.delete(job.id) || (signal && signal.aborted)) throw abortError('The task was aborted by its producer');
      task.signal = signal;
      const result = await this.#pool.run(task);
      // BullMQ stores JSON text: a handler that returns nothing gives null.
      return result === undefined ? null : result;
    } catch (err) {
      if (this.#mustGiveBack(err)) {
        await job.moveToWait(token);
        const { WaitingError } = require('bullmq');
        throw new WaitingError();
      }
      throw codec.jobError(err, { host: os.hostname(), pool: this.#id });
    } finally {
      entry.active--;
      this.#fitConcurrency();
    }
  }

  #mustGiveBack(err) {
    if (!err) return false;
    if (GIVE_BACK_CODES.has(err.code)) return true;
    // Workers killed by an immediate shutdown.
    return this.#stopping && err.code === CODES.ERR_WORKER_CRASHED;
  }

  /**
   * Stops taking jobs (each Worker starts closing: no more fetches). The jobs held
   * finish or are given back as the local pool shuts down; close() waits for that.
   */
  stopFetching() {
    if (!this.#stopping) {
      this.#stopping = true;
      for (const t of this.#timers) clearInterval(t);
      // Paused, not closed yet: close() decides between waiting for the jobs held
      // (Redis up) and a forced close (Redis gone, nothing to wait for).
      for (const w of this.#workers.values()) w.worker.pause(true).catch(() => {});
    }
  }

  /**
   * Closes everything: the Workers (each waits up to CLOSE_WAIT_MS for its jobs to be
   * finished in Redis, then its connections are cut: a job whose outcome could not be
   * written runs again elsewhere once its lock expires), the registry entry, the
   * connections. Never waits for a Redis that does not answer.
   */
  async close() {
    this.stopFetching();
    // The bound starts now, after the local pool has settled every job it held. With
    // Redis gone there is nothing to wait for.
    const up = isUp(this.#client);
    await Promise.all(
      [...this.#workers.values()].map((w) => (up ? closeBull(w.worker, CLOSE_WAIT_MS) : settlesWithin(w.worker.close(true), CLOSE_WAIT_MS))),
    );
    if (isUp(this.#client)) {
      const forget = this.#client.multi().zrem(this.#keys.pools, this.#id).del(this.#keys.pool(this.#id)).exec();
      await settlesWithin(forget, 1000); // else the entry expires by itself
    }
    await Promise.all([quit(this.#subscriber), quit(this.#client)]);
  }
}

/** BullMQ backoff strategy for our jobs: min(base·2^(n−1), maxBackoffMs). */
function backoff(attemptsMade, type, _err, job) {
  const base = (job && job.opts && job.opts.backoff && job.opts.backoff.delay) || 0;
  if (type !== codec.BACKOFF_TYPE) return base;
  const cap = job && job.data && Number.isFinite(job.data.maxBackoffMs) ? job.data.maxBackoffMs : 30000;
  return codec.backoffDelay(attemptsMade, base, cap);
}

module.exports = { SharedQueueServer };
