'use strict';

// The channel to the pool: Node's IPC channel or the pair of FIFOs, chosen by start();
// sending a message (never throwing), waiting for queued frames to reach the pipe, and
// the channel's own errors. Methods of WorkerProcess (see worker-process.js).

const { MAX_FRAME_LIMIT } = require('./options');
const { describe } = require('./util');

const FEATURES = Object.freeze(['batch', 'cancel']);
const PARENT_POLL_MS = 1000; // FIFO transport: how often process.ppid is checked

/** Methods of WorkerProcess.prototype. */
const methods = {
  start() {
    if (this._started) return this;
    const fifo = this._fifoSettings();
    if (fifo === false) return this; // bad settings: reported, exiting
    if (fifo !== null) return this._startFifo(fifo);
    if (typeof process.send !== 'function') {
      process.stderr.write(
        `worker-process: ${this.workerId} has no IPC channel (process.send is missing).\n` +
        'A worker must be started by the pool (child_process.fork or an equivalent IPC ' +
        'channel named by NODE_CHANNEL_FD); it cannot run on its own.\n');
      process.exit(1);
      return this;
    }
    this._started = true;
    this.transport = 'ipc';

    process.on('message', (msg) => this._onMessage(msg));
    // The parent is gone: nothing can be reported any more.
    process.on('disconnect', () => process.exit(0));
    // Asynchronous IPC write failures (EPIPE while the parent goes away) are
    // emitted on `process`; without a listener they would become fatal.
    // Never answer them over IPC: a failing write would fail again and loop.
    process.on('error', (err) => this._onChannelError(err));
    return this._begin();
  },

  /**
   * The FIFO settings when this worker is to use the FIFO transport, null for
   * IPC, false after reporting unusable settings (the process is exiting).
   */
  _fifoSettings() {
    const env = process.env;
    const kind = this._transportOption !== null ? this._transportOption : (env.WORKER_TRANSPORT || 'ipc');
    if (kind === 'ipc') return null;
    const fail = (problem) => {
      process.stderr.write(`worker-process: ${this.workerId}: ${problem}\n`);
      process.exit(1);
      return false;
    };
    if (kind !== 'fifo') {
      return fail(`WORKER_TRANSPORT must be "ipc" or "fifo", got ${describe(kind)}`);
    }
    const inPath = this._fifoIn || env.WORKER_FIFO_IN;
    const outPath = this._fifoOut || env.WORKER_FIFO_OUT;
    if (!inPath || !outPath) {
      return fail('transport "fifo" needs the pipe paths in WORKER_FIFO_IN and WORKER_FIFO_OUT ' +
        '(or the fifoIn / fifoOut options)');
    }
    let maxFrameBytes = this._fifoMaxFrameBytes;
    if (maxFrameBytes === null && env.WORKER_FIFO_MAX_FRAME_BYTES) {
      const text = env.WORKER_FIFO_MAX_FRAME_BYTES;
      maxFrameBytes = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > MAX_FRAME_LIMIT) {
        return fail(`WORKER_FIFO_MAX_FRAME_BYTES must be a whole number in [1, ${MAX_FRAME_LIMIT}], got ${describe(text)}`);
      }
    }
    return { inPath, outPath, maxFrameBytes };
  },

  _startFifo({ inPath, outPath, maxFrameBytes }) {
    let endpoint;
    try {
      const FIFOChannel = require('../../fifo-channel.js');
      endpoint = FIFOChannel.openWorkerSide(
        maxFrameBytes === null ? { inPath, outPath } : { inPath, outPath, maxFrameBytes });
    } catch (err) {
      process.stderr.write(
        `worker-process: ${this.workerId} cannot open its FIFOs (in: ${inPath}, out: ${outPath}): ` +
        `${err && err.message ? err.message : String(err)}\n`);
      process.exit(1);
      return this;
    }
    this._started = true;
    this.transport = 'fifo';
    this._fifo = endpoint;
    // Processes this worker starts must not take these pipes for their own.
    delete process.env.WORKER_TRANSPORT;
    delete process.env.WORKER_FIFO_IN;
    delete process.env.WORKER_FIFO_OUT;
    delete process.env.WORKER_FIFO_MAX_FRAME_BYTES;

    endpoint.on('message', (msg) => this._onMessage(msg));
    endpoint.on('error', (err) => this._onFifoError(err));
    // The descriptors are gone (not expected with O_RDWR): nothing can be
    // reported any more.
    endpoint.on('close', () => process.exit(this._exitCode !== null ? this._exitCode : 0));
    this._watchParent();
    return this._begin();
  },

  /** Exits 0 once the parent is gone (we were reparented); FIFO transport only. */
  _watchParent() {
    const parent = process.ppid;
    this._parentTimer = setInterval(() => {
      if (process.ppid !== parent) process.exit(0);
    }, PARENT_POLL_MS);
    this._parentTimer.unref();
  },

  /** Common part of start(): signals, error hooks, worker-ready, heartbeats. */
  _begin() {
    process.on('SIGTERM', () => this._onSignal());
    process.on('SIGINT', () => this._onSignal());
    process.on('uncaughtException', (err) => this._onUncaught(err));
    process.on('unhandledRejection', (reason) => this._reportError(reason, 'unhandledRejection', false));

    this.state = 'ready';
    this._send({
      type: 'worker-ready',
      workerId: this.workerId,
      pid: process.pid,
      timestamp: Date.now(),
      capabilities: this.capabilities,
      features: FEATURES,
    });
    this._startHeartbeat();
    this.log('info', 'Worker started');
    return this;
  },

  /** process.send (or a FIFO frame) that never throws; returns the error (or null). */
  _send(msg, callback) {
    if (this._fifo !== null) return this._sendFrame(msg, callback);
    if (!process.connected) return null;
    try {
      if (callback) process.send(msg, callback);
      else process.send(msg);
      return null;
    } catch (err) {
      return err;
    }
  },

  /**
   * FIFO transport: encodes msg as one frame and queues it on the out-pipe.
   * Returns the encoding error (nothing written then), else null.
   */
  _sendFrame(msg, callback) {
    const fifo = this._fifo;
    if (!fifo.isConnected()) return null;
    this._framesPending++;
    try {
      fifo.send(msg, callback
        ? (err) => { this._frameWritten(); callback(err); }
        : this._frameWrittenBound);
      return null;
    } catch (err) {
      this._framesPending--;
      return err;
    }
  },

  _frameWritten() {
    if (--this._framesPending === 0 && this._flushWaiters.length > 0) {
      const waiters = this._flushWaiters;
      this._flushWaiters = [];
      for (const fn of waiters) fn();
    }
  },

  /** Runs fn once every frame queued so far has reached the pipe, or after timeoutMs. */
  _whenFlushed(timeoutMs, fn) {
    if (this._framesPending === 0) {
      fn();
      return;
    }
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(once, timeoutMs);
    this._flushWaiters.push(once);
  },

  _onChannelError(err) {
    const code = err && err.code;
    if (!process.connected || code === 'EPIPE' || code === 'ECONNRESET' ||
        code === 'ERR_IPC_CHANNEL_CLOSED') {
      // The parent's end is gone: nobody is left to report to.
      process.exit(0);
    }
    try {
      process.stderr.write(`worker-process ${this.workerId}: IPC error: ${err && err.stack ? err.stack : String(err)}\n`);
    } catch {
      // stderr may be closed too.
    }
  },

  /** Errors of the FIFO transport; never answered with an I/O-level retry. */
  _onFifoError(err) {
    const code = err && err.code;
    if (code === 'ERR_FRAME_TOO_LARGE' || code === 'ERR_FRAME_INVALID_JSON') {
      // The frame is skipped; the ones around it still arrive.
      this.log('warning', `Ignored a frame from the pool: ${err.message}`, { error: err });
      return;
    }
    try {
      process.stderr.write(`worker-process ${this.workerId}: FIFO error: ${err && err.stack ? err.stack : String(err)}\n`);
    } catch {
      // stderr may be closed too.
    }
  },
};

module.exports = { methods };
