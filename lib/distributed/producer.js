'use strict';
// The submitting side of the shared queue: turns validated tasks into BullMQ jobs,
// and each job's outcome back into the settlement of its promise. Used by a pool with
// the `queue` option and by createQueueClient().
//
// Outcomes arrive through BullMQ's QueueEvents (a Redis stream every producer reads).
// The stream is trimmed (~10,000 events) and a producer may be disconnected for a
// while, so a sweep also reads the state of jobs that have waited long: no promise
// depends on one event being seen.

const crypto = require('node:crypto');
const { CODES, withCode, abortError, invalidArgument } = require('../errors');
const codec = require('./codec');
const { keys, connect, bullConnection, reconnectIfSilent, closeBull, settlesWithin, quit, isUp, livePools } = require('./redis');

// The sweep runs every SWEEP_MS and looks up a job first when it has been pending for
// SWEEP_AFTER_MS, then again each time its age has doubled (at most every
// SWEEP_MAX_GAP_MS): a long burst costs a few lookups per job, not one per sweep.
const SWEEP_MS = 2000;
const SWEEP_AFTER_MS = 3000;
const SWEEP_MAX_GAP_MS = 60000;
const SWEEP_BATCH = 500;
// The capability sets live pools can serve are re-read at most this often.
const CAPS_CACHE_MS = 1000;
const DEFAULT_RETRY = Object.freeze({ maxRetries: 3, retryBackoffMs: 1000, maxBackoffMs: 30000 });

class SharedQueueProducer {
  #opts;
  #defaults;
  #keys;
  #id = crypto.randomBytes(6).toString('hex');
  #seq = 0;
  #ready = null;
  #client = null;
  /** queue name → { queue, events, ready } */
  #queues = new Map();
  /** job id → { resolve, reject, queueName, since, cleanup, signal } */
  #pending = new Map();
  /** queue name → [job specs] submitted in this microtask */
  #batch = new Map();
  #flushQueued = false;
  #sweepTimer = null;
  #closed = false;
  #caps = { at: 0, sets: null, pools: 0 };
  #onIdleChange;

  /**
   * `opts`: resolved client options (config.js); `defaults`: { maxRetries,
   * retryBackoffMs, maxBackoffMs } for tasks that do not say; `onIdleChange(busy)` is
   * told when the first job becomes pending and when the last one settles (the pool
   * keeps the process alive meanwhile).
   */
  constructor(opts, defaults = DEFAULT_RETRY, onIdleChange = () => {}) {
    this.#opts = opts;
    this.#defaults = { ...DEFAULT_RETRY, ...defaults };
    this.#keys = keys(opts.prefix, opts.name);
    this.#onIdleChange = onIdleChange;
  }

  get pendingCount() {
    return this.#pending.size;
  }

  /** Whether this producer's own connection to Redis is up (true before it first connects). */
  get connected() {
    return this.#client === null || isUp(this.#client);
  }

  /** Connects (once); rejects ERR_QUEUE_UNAVAILABLE when Redis cannot be reached. */
  ready() {
    if (!this.#ready) {
      this.#ready = (async () => {
        this.#client = await connect(this.#opts);
        this.#sweepTimer = setInterval(() => this.#sweep().catch((e) => reconnectIfSilent(this.#client, e)), SWEEP_MS);
        this.#sweepTimer.unref();
      })();
      // A failed connection is not cached: the next call tries again.
      this.#ready.catch(() => {
        this.#ready = null;
      });
    }
    return this.#ready;
  }

  /** The BullMQ Queue `queueName` (opened once; no reader of its events). */
  #queue(queueName) {
    let q = this.#queues.get(queueName);
    if (!q) {
      const { Queue } = require('bullmq');
      q = { queue: new Queue(queueName, { connection: this.#own(bullConnection(this.#opts)), prefix: this.#opts.prefix }), events: null, watching: null };
      q.queue.on('error', () => {});
      this.#queues.set(queueName, q);
    }
    return q;
  }

  /**
   * Starts reading the outcomes of `queueName` (a QueueEvents), once: only when this
   * producer waits for an outcome there. Every reader reads every event of the queue,
   * which a pool that only serves would otherwise pay for each job of every machine.
   */
  #watch(queueName) {
    const q = this.#queue(queueName);
    if (q.watching) return q.watching;
    const { QueueEvents } = require('bullmq');
    const prefix = this.#opts.prefix;
    q.watching = (async () => {
      // Read the stream from its current end, fixed before any job of ours is added,
      // so that no outcome falls between "now" and the reader's first XREAD.
      const last = await this.#client.xrevrange(`${prefix}:${queueName}:events`, '+', '-', 'COUNT', 1);
      const lastEventId = last.length ? last[0][0] : '0-0';
      q.events = new QueueEvents(queueName, { connection: this.#own(bullConnection(this.#opts, { blocking: true })), prefix, lastEventId, blockingTimeout: 5000 });
      q.events.on('error', () => {});
      q.events.on('completed', ({ jobId, returnvalue }) => this.#settle(jobId, true, returnvalue));
      q.events.on('failed', ({ jobId, failedReason }) => this.#settle(jobId, false, codec.errorFromReason(failedReason)));
      q.events.on('removed', ({ jobId }) => this.#onRemoved(jobId));
      await q.events.waitUntilReady();
    })();
    q.watching.catch(() => {
      q.watching = null;
    });
    return q.watching;
  }

  /** Connections made here for BullMQ (a cluster's clients): BullMQ does not close what it did not make. */
  #owned = [];

  #own(connection) {
    if (typeof connection.quit === 'function') {
      connection.on('error', () => {});
      this.#owned.push(connection);
    }
    return connection;
  }

  /** Submits a validated task (lib/task-validate.js); a promise of its result. */
  submit(t) {
    if (this.#closed) return Promise.reject(closedError());
    const jobId = `${this.#id}-${++this.#seq}`;
    let spec;
    try {
      spec = codec.encodeJob(t, jobId, this.#defaults);
    } catch (e) {
      return Promise.reject(e);
    }
    const caps = codec.capabilitySet(t.requires);
    const queueName = codec.queueNameFor(this.#opts.name, caps);
    const promise = this.#track(jobId, queueName, t.signal);
    this.#enqueue(queueName, caps, spec).catch((e) => this.#settle(jobId, false, e));
    return promise;
  }

  async #enqueue(queueName, caps, spec) {
    await this.ready();
    if (caps.length) await this.#checkServable(caps);
    await this.#watch(queueName);
    if (caps.length) await this.#announceCapset(caps);
    if (!this.#pending.has(spec.opts.jobId)) return; // aborted meanwhile
    let list = this.#batch.get(queueName);
    if (!list) this.#batch.set(queueName, (list = []));
    list.push(spec);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /**
   * Adds the jobs of one microtask with one round trip per queue: addBulk for several
   * (a MULTI of the add scripts), add for a lone job (one script call: addBulk's
   * MULTI/EXEC costs a lone job ~0.07 ms more, measured one at a time).
   */
  #flush() {
    this.#flushQueued = false;
    const batches = this.#batch;
    this.#batch = new Map();
    for (const [queueName, specs] of batches) {
      // A task aborted between its validation and this flush is not added at all.
      const live = specs.filter((spec) => this.#pending.has(spec.opts.jobId));
      if (live.length) this.#add(this.#queues.get(queueName).queue, live, 0);
    }
  }

  /**
   * add / addBulk, again after a lost connection (Redis restarting): the jobs carry
   * their own ids, so adding one that did get in before the connection broke is a no-op.
   */
  #add(queue, specs, tries) {
    const added = specs.length === 1 ? queue.add(specs[0].name, specs[0].data, specs[0].opts) : queue.addBulk(specs);
    added.then(
      () => {
        for (const s of specs) {
          const p = this.#pending.get(s.opts.jobId);
          if (p) p.added = true;
        }
      },
      (e) => {
        if (!this.#closed && isConnectionError(e)) {
          // BullMQ 6 keeps the Queue's ioredis client behind its backend.
          Promise.resolve(queue.backend && queue.backend.queue.client).then((c) => reconnectIfSilent(c, e), () => {});
          const t = setTimeout(() => this.#add(queue, specs, tries + 1), Math.min(100 * 2 ** tries, 2000));
          t.unref();
          return;
        }
        for (const s of specs) this.#settle(s.opts.jobId, false, withCode(CODES.ERR_QUEUE_UNAVAILABLE, `Could not add the task to the shared queue: ${e.message}`));
      },
    );
  }

  /** Refuses a capability set no live serving pool has (ERR_NO_CAPABLE_WORKER). */
  async #checkServable(caps) {
    const now = Date.now();
    if (!this.#caps.sets || now - this.#caps.at > CAPS_CACHE_MS) {
      const pools = await livePools(this.#client, this.#keys);
      this.#caps = { at: now, sets: pools.flatMap((p) => p.capabilitySets || []), pools: pools.length };
    }
    // With no pool serving at all we cannot know what will come: the task waits.
    if (this.#caps.pools === 0) return;
    if (this.#caps.sets.some((set) => caps.every((c) => set.includes(c)))) return;
    throw withCode(
      CODES.ERR_NO_CAPABLE_WORKER,
      `No serving pool has a worker with every required capability (${caps.join(', ')}); ${this.#caps.pools} pool(s) serve the queue "${this.#opts.name}"`,
    );
  }

  #announced = new Set();
  async #announceCapset(caps) {
    const key = JSON.stringify(caps);
    if (this.#announced.has(key)) return;
    if ((await this.#client.sadd(this.#keys.capsets, key)) === 1) {
      await this.#client.publish(this.#keys.control, JSON.stringify({ capset: caps }));
    }
    this.#announced.add(key);
  }

  #track(jobId, queueName, signal) {
    return new Promise((resolve, reject) => {
      const now = Date.now();
      const entry = { resolve, reject, queueName, since: now, checkAt: now + SWEEP_AFTER_MS, cleanup: null, signal: null };
      if (signal) {
        const onAbort = () => this.#abort(jobId, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        entry.signal = signal;
        entry.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#pending.set(jobId, entry);
      if (this.#pending.size === 1) this.#onIdleChange(true);
    });
  }

  #settle(jobId, ok, value) {
    const p = this.#pending.get(jobId);
    if (!p) return;
    this.#pending.delete(jobId);
    if (p.cleanup) p.cleanup();
    if (ok) {
      p.resolve(value);
    } else {
      if (value && value.code === CODES.ABORT_ERR && p.signal) value.cause = p.signal.reason;
      p.reject(value);
    }
    if (this.#pending.size === 0) this.#onIdleChange(false);
  }

  #onRemoved(jobId) {
    const p = this.#pending.get(jobId);
    if (!p) return;
    if (p.aborting) this.#settle(jobId, false, abortError('The task was aborted while it waited in the shared queue', p.signal && p.signal.reason));
    else this.#settle(jobId, false, removedError(jobId));
  }

  /**
   * An aborted signal: tell every serving pool (the one running it cancels it there),
   * then remove the job if it is still waiting. Removed → rejected here at once;
   * running → its pool fails it with ABORT_ERR, which settles it like any failure.
   */
  async #abort(jobId, reason) {
    const p = this.#pending.get(jobId);
    if (!p) return;
    p.aborting = true;
    const why = reason instanceof Error ? reason.message : reason === undefined ? '' : String(reason);
    if (!this.#client || !this.#queues.get(p.queueName)) {
      this.#settle(jobId, false, abortError('The task was aborted', reason));
      return;
    }
    try {
      await this.#client.publish(this.#keys.control, JSON.stringify({ cancel: jobId, reason: why }));
      const removed = await this.#queues.get(p.queueName).queue.remove(jobId);
      if (removed === 1) this.#settle(jobId, false, abortError('The task was aborted while it waited in the shared queue', reason));
    } catch {
      // A locked (running) job cannot be removed: its pool got the cancel message.
    }
  }

  /** Reads the state of jobs whose outcome event has not been seen for a while. */
  async #sweep() {
    if (this.#closed || !this.#client || this.#client.status !== 'ready') return;
    const now = Date.now();
    const due = [];
    for (const [jobId, p] of this.#pending) {
      if (p.checkAt > now) continue;
      p.checkAt = now + Math.min(now - p.since, SWEEP_MAX_GAP_MS);
      due.push([jobId, p.queueName]);
      if (due.length >= SWEEP_BATCH) break;
    }
    if (due.length === 0) return;
    const prefix = this.#opts.prefix;
    const pipe = this.#client.pipeline();
    for (const [jobId, queueName] of due) {
      pipe.zscore(`${prefix}:${queueName}:completed`, jobId);
      pipe.zscore(`${prefix}:${queueName}:failed`, jobId);
      pipe.hmget(`${prefix}:${queueName}:${jobId}`, 'returnvalue', 'failedReason', 'timestamp');
    }
    const res = await pipe.exec();
    for (let i = 0; i < due.length; i++) {
      const [jobId] = due[i];
      const [completed, failed, fields] = [res[3 * i][1], res[3 * i + 1][1], res[3 * i + 2][1]];
      const p = this.#pending.get(jobId);
      if (!p || !fields) continue;
      if (completed !== null) {
        this.#settle(jobId, true, parseReturnValue(fields[0]));
      } else if (failed !== null) {
        this.#settle(jobId, false, codec.errorFromReason(fields[1]));
      } else if (fields[2] === null && p.added) {
        this.#settle(jobId, false, removedError(jobId));
      } else if (fields[2] !== null) {
        p.added = true;
      }
    }
  }

  /**
   * Job counts of every queue of this name (base and capability sets) and the number
   * of live serving pools, read in one round trip from BullMQ's keys.
   */
  counts() {
    return this.#read(() => this.#counts());
  }

  async #counts() {
    await this.ready();
    const names = await this.#queueNames();
    const prefix = this.#opts.prefix;
    const pipe = this.#client.pipeline();
    for (const n of names) {
      pipe.llen(`${prefix}:${n}:wait`);
      pipe.llen(`${prefix}:${n}:active`);
      pipe.zcard(`${prefix}:${n}:delayed`);
      pipe.zcard(`${prefix}:${n}:completed`);
      pipe.zcard(`${prefix}:${n}:failed`);
      pipe.zcard(`${prefix}:${n}:prioritized`);
    }
    const res = await pipe.exec();
    const fields = ['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized'];
    const totals = { waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, prioritized: 0, servingPools: 0 };
    res.forEach(([err, n], i) => {
      if (!err) totals[fields[i % fields.length]] += Number(n) || 0;
    });
    totals.servingPools = (await livePools(this.#client, this.#keys)).length;
    return totals;
  }

  async #queueNames() {
    const sets = await this.#client.smembers(this.#keys.capsets);
    const names = new Set([this.#opts.name, ...this.#queues.keys()]);
    for (const s of sets) {
      try {
        names.add(codec.queueNameFor(this.#opts.name, JSON.parse(s)));
      } catch {
        /* not ours */
      }
    }
    return [...names];
  }

  async #withQueues(fn) {
    await this.ready();
    const names = await this.#queueNames();
    return Promise.all(names.map((n) => fn(this.#queue(n).queue)));
  }

  /** The shared failed set (every queue of this name) as dead-letter records, oldest first. */
  deadLetters() {
    return this.#read(() => this.#deadLetters());
  }

  async #deadLetters() {
    const lists = await this.#withQueues((queue) => queue.getFailed(0, -1));
    return lists.flat().filter(Boolean).map(codec.deadLetterRecord).sort((a, b) => (a.failedAt ?? 0) - (b.failedAt ?? 0));
  }

  /** Empties the shared failed set; resolves with the number of jobs removed. */
  clearDeadLetters() {
    return this.#read(() => this.#clearDeadLetters());
  }

  async #clearDeadLetters() {
    const removed = await this.#withQueues((queue) => queue.clean(0, 0, 'failed'));
    return removed.reduce((n, ids) => n + ids.length, 0);
  }

  /**
   * Runs failed jobs again (all, or the one with `jobId`), with their attempts reset;
   * resolves with a promise per requeued job, settled like a submitted task's.
   */
  requeueDeadLetters(jobId) {
    if (jobId !== undefined && typeof jobId !== 'string') return Promise.reject(invalidArgument('taskId', 'a task id string', jobId));
    return this.#read(() => this.#requeueDeadLetters(jobId));
  }

  async #requeueDeadLetters(jobId) {
    const failed = (await this.#withQueues((queue) => queue.getFailed(0, -1).then((jobs) => jobs.map((j) => [queue, j])))).flat();
    const promises = [];
    for (const [queue, j] of failed) {
      if (!j || (jobId !== undefined && j.id !== jobId)) continue;
      await this.#watch(queue.name);
      const promise = this.#track(j.id, queue.name, undefined);
      const job = await queue.getJob(j.id);
      try {
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      } catch (e) {
        this.#settle(j.id, false, withCode(CODES.ERR_QUEUE_UNAVAILABLE, `Could not requeue job ${j.id}: ${e.message}`));
      }
      promises.push(promise);
    }
    return promises;
  }

  /**
   * Stops: graceful waits up to `timeoutMs` for pending outcomes (hurry() ends the
   * wait); the rest reject with ERR_POOL_SHUTDOWN (their jobs stay in the queue and
   * still run). Never waits for a Redis that does not answer.
   */
  async close(graceful = true, timeoutMs = 0) {
    if (this.#closed) return;
    if (graceful && this.#pending.size > 0 && timeoutMs > 0) {
      const deadline = Date.now() + timeoutMs;
      // No outcome can arrive while Redis is gone: stop waiting then.
      while (this.#pending.size > 0 && Date.now() < deadline && isUp(this.#client) && !this.#hurried) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    for (const jobId of [...this.#pending.keys()]) this.#settle(jobId, false, closedError());
    if (this.#ready) await this.#ready.catch(() => {});
    const wait = isUp(this.#client) ? 1000 : 0;
    await Promise.all(
      [...this.#queues.values()].map(async (q) => {
        if (q.watching) await settlesWithin(q.watching, wait);
        if (q.events) await closeBull(q.events, wait);
        await closeBull(q.queue, wait);
      }),
    );
    await Promise.all([quit(this.#client), ...this.#owned.map(quit)]);
  }

  #hurried = false;

  /**
   * Runs a read or an edit of the queue. Once close() is past its graceful wait this
   * rejects with ERR_POOL_SHUTDOWN, also when close() cut it off midway, instead of
   * with whatever ioredis says about its closed connection.
   */
  async #read(fn) {
    if (this.#closed) throw closedReadError();
    try {
      return await fn();
    } catch (e) {
      if (this.#closed) throw closedReadError();
      reconnectIfSilent(this.#client, e);
      throw e;
    }
  }

  /** Ends a graceful close()'s wait for pending outcomes (an immediate shutdown follows a graceful one). */
  hurry() {
    this.#hurried = true;
  }
}

// ioredis' words for a command cut off by a lost connection.
const CONNECTION_ERROR = /connection|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|writeable|LOADING|Connection is closed|timed out|READONLY/i;

function isConnectionError(e) {
  return Boolean(e) && CONNECTION_ERROR.test(String(e.message));
}

function parseReturnValue(text) {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function closedError() {
  return withCode(CODES.ERR_POOL_SHUTDOWN, 'The shared-queue producer was closed before the task finished (its job stays in the shared queue)');
}

function closedReadError() {
  return withCode(CODES.ERR_POOL_SHUTDOWN, 'The shared-queue connection is closed: the queue can no longer be read or changed from here');
}

function removedError(jobId) {
  return withCode(CODES.ERR_QUEUE_CLEARED, `Job ${jobId} was removed from the shared queue before it finished`);
}

module.exports = { SharedQueueProducer, DEFAULT_RETRY };
