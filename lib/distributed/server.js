'use strict';
// The serving side of the shared queue is the Rust core's (crates/pool-core/src/shared.rs,
// over the `bullmq` crate): it fetches jobs with BullMQ's own Lua scripts, runs each
// attempt on a local worker, renews the locks of the jobs it holds, writes outcomes,
// checks for stalled jobs, keeps the registry of serving pools and hears cancels, all
// on the core's threads. The JS thread does no work per job. This file only starts
// and stops it.

const os = require('node:os');
const crypto = require('node:crypto');
const path = require('node:path');

/**
 * The installed bullmq package whose scripts the core runs. CORTEX_WORKER_POOL_BULLMQ_DIR
 * points elsewhere (a bullmq package directory, the one holding its package.json).
 */
function bullmqDir() {
  return process.env.CORTEX_WORKER_POOL_BULLMQ_DIR || path.dirname(require.resolve('bullmq/package.json'));
}

class SharedQueueServer {
  #opts;
  #native;
  #op;
  #id = `${os.hostname()}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  #started = false;

  /** `opts`: the resolved `queue` option. `hooks`: { native, op(start) } of the pool. */
  constructor(opts, hooks) {
    this.#opts = opts;
    this.#native = hooks.native;
    this.#op = hooks.op;
  }

  /** `{ held, queues, connected, since }` of the core's serving side, or null before it starts. */
  get status() {
    return JSON.parse(this.#native.sharedStatus());
  }

  /** Connects and starts serving; rejects ERR_QUEUE_UNAVAILABLE (Redis unreachable, or a bullmq whose scripts this build does not speak). */
  async start() {
    const o = this.#opts;
    const config = {
      url: o.sentinel || o.cluster ? '' : o.url,
      sentinel: o.sentinel,
      cluster: o.cluster,
      display: o.display,
      name: o.name,
      prefix: o.prefix,
      lockDurationMs: o.lockDurationMs,
      stalledIntervalMs: o.stalledIntervalMs,
      concurrency: o.concurrency ?? null,
      jobTimeoutMs: o.jobTimeoutMs ?? null,
      maxStalledCount: o.maxStalledCount,
      limiter: o.limiter,
      connectTimeoutMs: o.connectTimeoutMs,
      commandTimeoutMs: o.commandTimeoutMs,
      bullmqDir: bullmqDir(),
      poolId: this.#id,
      host: os.hostname(),
    };
    await this.#op((op) => this.#native.serveShared(JSON.stringify(config), op));
    this.#started = true;
  }

  /** The local workers changed (scaling, exits): look for room again. */
  refresh() {
    if (this.#started) this.#native.sharedRefresh();
  }

  /** Stops taking jobs; those held finish or are given back as the pool shuts down. */
  stopFetching() {
    if (this.#started) this.#native.stopServing();
  }

  /** Waits (at most 5 s) for the outcomes of the jobs held to be written, leaves the registry. */
  async close() {
    if (!this.#started) return;
    this.#started = false;
    await this.#op((op) => this.#native.closeShared(op));
  }
}

module.exports = { SharedQueueServer };
