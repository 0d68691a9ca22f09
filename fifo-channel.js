'use strict';

/**
 * FIFOChannel — a message channel between the pool and one worker over two
 * named pipes (FIFOs):
 *
 *   <fifoDir>/worker-<id>-in.fifo   pool -> worker
 *   <fifoDir>/worker-<id>-out.fifo  worker -> pool
 *
 * Wire format: every frame is a 4-byte big-endian unsigned length followed by
 * that many bytes of UTF-8 JSON.
 *
 * Both ends open each FIFO with O_RDWR. On Linux that never blocks, whether or
 * not the peer has opened its end yet, and the pipe's kernel buffer survives as
 * long as either side holds it open, so frames written before the peer attaches
 * are not lost. The descriptors are then driven by libuv as non-blocking pipe
 * streams (net.Socket), so no read or write ever blocks the event loop or a
 * thread-pool thread. A consequence of O_RDWR: neither side ever sees EOF when
 * its peer goes away; liveness has to be tracked by the application (the pool
 * watches the worker process itself).
 *
 * This file holds FIFOChannel, the pool's end; the framing is in
 * lib/worker/fifo-frames.js, the pipes and their streams in lib/worker/fifo-pipes.js,
 * and the worker's end (openWorkerSide) in lib/worker/fifo-endpoint.js.
 */

const EventEmitter = require('events');
const fs = require('fs');
const net = require('net');
const { FIFOWorkerEndpoint } = require('./lib/worker/fifo-endpoint');
const {
  DEFAULT_MAX_FRAME_BYTES, FrameDecoder, codedError, encodeFrame, feedDecoder, resolveMaxFrameBytes,
} = require('./lib/worker/fifo-frames');
const {
  DEFAULT_CLOSE_FLUSH_MS, DEFAULT_FIFO_DIR, closeFdQuietly, fifoPaths, openFifoFd, readerSocket, runMkfifo,
  safeEmitError, unlinkQuietly, waitFlushed, writerSocket,
} = require('./lib/worker/fifo-pipes');

class FIFOChannel extends EventEmitter {
  /**
   * @param {string|number} workerId
   * @param {string} [fifoDir='/tmp/cortex/workers']
   * @param {{ maxFrameBytes?: number, closeFlushTimeoutMs?: number }} [options]
   */
  constructor(workerId, fifoDir = DEFAULT_FIFO_DIR, options = {}) {
    super();
    const { inPath, outPath } = fifoPaths(workerId, fifoDir);
    this.workerId = typeof workerId === 'number' ? String(workerId) : workerId;
    this.fifoDir = fifoDir || DEFAULT_FIFO_DIR;
    this.inPath = inPath;
    this.outPath = outPath;
    const opts = options || {};
    this.maxFrameBytes = resolveMaxFrameBytes(opts.maxFrameBytes);
    this.closeFlushTimeoutMs =
      Number.isFinite(opts.closeFlushTimeoutMs) && opts.closeFlushTimeoutMs >= 0
        ? opts.closeFlushTimeoutMs
        : DEFAULT_CLOSE_FLUSH_MS;

    this._decoder = new FrameDecoder({ maxFrameBytes: this.maxFrameBytes });
    this._writer = null; // socket on the in-pipe (we write)
    this._reader = null; // socket on the out-pipe (we read)
    this._connected = false;
    this._connecting = null;
    this._closed = false;
    this._closePromise = null;
    this._created = false;
    this._refed = true;
    this.messagesSent = 0;
    this.messagesReceived = 0;
  }

  /** Compute pipe paths without creating a channel. */
  static getPaths(workerId, fifoDir = DEFAULT_FIFO_DIR) {
    return fifoPaths(workerId, fifoDir);
  }

  /**
   * mkdir -p fifoDir (0700), remove stale pipes, create both FIFOs (0600).
   * @returns {Promise<{ inPath: string, outPath: string }>}
   */
  async createChannel() {
    if (this._closed) throw codedError('ERR_CHANNEL_CLOSED', `Channel for ${this.workerId} is closed`);
    await fs.promises.mkdir(this.fifoDir, { recursive: true, mode: 0o700 });
    for (const p of [this.inPath, this.outPath]) {
      await fs.promises.rm(p, { force: true });
      await runMkfifo(p);
      // -m sets the mode regardless of umask; make sure anyway.
      const st = await fs.promises.stat(p);
      if ((st.mode & 0o777) !== 0o600) await fs.promises.chmod(p, 0o600);
    }
    if (this._closed) {
      // close() raced with us: do not leave pipes behind.
      unlinkQuietly(this.inPath);
      unlinkQuietly(this.outPath);
      throw codedError('ERR_CHANNEL_CLOSED', `Channel for ${this.workerId} was closed during creation`);
    }
    this._created = true;
    const info = { workerId: this.workerId, inPath: this.inPath, outPath: this.outPath };
    this.emit('channel-created', info);
    return { inPath: this.inPath, outPath: this.outPath };
  }

  /**
   * Open the in-pipe for writing and the out-pipe for reading. Never waits for
   * the worker to open its ends.
   */
  connect() {
    if (this._closed) {
      return Promise.reject(codedError('ERR_CHANNEL_CLOSED', `Channel for ${this.workerId} is closed`));
    }
    if (this._connected) return Promise.resolve();
    if (!this._connecting) {
      this._connecting = this._doConnect().finally(() => {
        this._connecting = null;
      });
    }
    return this._connecting;
  }

  async _doConnect() {
    let inFd;
    let outFd;
    try {
      inFd = await openFifoFd(this.inPath);
      outFd = await openFifoFd(this.outPath);
    } catch (err) {
      closeFdQuietly(inFd);
      closeFdQuietly(outFd);
      throw err;
    }
    if (this._closed) {
      closeFdQuietly(inFd);
      closeFdQuietly(outFd);
      throw codedError('ERR_CHANNEL_CLOSED', `Channel for ${this.workerId} was closed while connecting`);
    }

    let writer;
    let reader;
    try {
      writer = writerSocket(inFd);
      inFd = undefined;
      reader = readerSocket(outFd);
      outFd = undefined;
    } catch (err) {
      if (writer) writer.destroy();
      closeFdQuietly(inFd);
      closeFdQuietly(outFd);
      throw err;
    }

    this._writer = writer;
    this._reader = reader;
    this._decoder.reset();

    writer.on('error', (err) => this._onIoError(err, 'write'));
    writer.on('drain', () => this.emit('drain'));
    reader.on('error', (err) => this._onIoError(err, 'read'));
    reader.on('data', (chunk) => this._onData(chunk));
    // With O_RDWR these should not happen; if they do the stream is gone.
    reader.on('end', () => this._onStreamLost());
    reader.on('close', () => this._onStreamLost());
    writer.on('close', () => this._onStreamLost());

    if (!this._refed) {
      writer.unref();
      reader.unref();
    }

    this._connected = true;
    this.emit('connected', { workerId: this.workerId, inPath: this.inPath, outPath: this.outPath });
  }

  _onData(chunk) {
    feedDecoder(
      this._decoder,
      chunk,
      (message) => {
        this.messagesReceived++;
        this.emit('message-received', message);
        this.emit('message', message);
      },
      (err) => {
        err.workerId = this.workerId;
        safeEmitError(this, err);
      }
    );
  }

  _onIoError(err, op) {
    if (this._closed) return;
    err.workerId = this.workerId;
    err.operation = op;
    safeEmitError(this, err);
  }

  _onStreamLost() {
    if (this._closed || !this._connected) return;
    this._connected = false;
    this._teardownSockets();
    this.emit('disconnected', { workerId: this.workerId, reason: 'stream-closed' });
  }

  _teardownSockets() {
    const writer = this._writer;
    const reader = this._reader;
    this._writer = null;
    this._reader = null;
    if (writer && !writer.destroyed) writer.destroy();
    if (reader && !reader.destroyed) reader.destroy();
  }

  /**
   * Write one frame to the worker.
   * @returns {boolean} true once the frame is accepted (it may still be queued
   *   in user space; watch `drain` / `writableLength` for backpressure).
   */
  sendToWorker(message) {
    if (this._closed || !this._connected || !this._writer) {
      throw codedError(
        'ERR_CHANNEL_CLOSED',
        this._closed ? `Channel for ${this.workerId} is closed` : `Channel for ${this.workerId} is not connected`
      );
    }
    const frame = encodeFrame(message, { maxFrameBytes: this.maxFrameBytes });
    this._writer.write(frame);
    this.messagesSent++;
    this.emit('message-sent', { workerId: this.workerId, message, bytes: frame.length });
    return true;
  }

  /** Bytes queued in user space waiting for the pipe to accept them. */
  get writableLength() {
    return this._writer ? this._writer.writableLength : 0;
  }

  isConnected() {
    return this._connected && !this._closed;
  }

  isClosed() {
    return this._closed;
  }

  /** Let the process exit even while the channel is open. */
  unref() {
    this._refed = false;
    if (this._writer) this._writer.unref();
    if (this._reader) this._reader.unref();
    return this;
  }

  ref() {
    this._refed = true;
    if (this._writer) this._writer.ref();
    if (this._reader) this._reader.ref();
    return this;
  }

  /**
   * Close the descriptors, remove both pipe files, emit `disconnected` (if it
   * was connected) and `channel-closed`. Idempotent; returns the same promise on
   * every call. Frames still queued in user space get up to
   * closeFlushTimeoutMs to reach the pipe; when nothing is queued all of the
   * work (and the events) happen synchronously within this call.
   */
  close() {
    if (this._closePromise) return this._closePromise;
    this._closed = true;
    const wasConnected = this._connected;
    const writer = this._writer;

    const finish = () => {
      this._connected = false;
      this._teardownSockets();
      unlinkQuietly(this.inPath);
      unlinkQuietly(this.outPath);
      if (wasConnected) this.emit('disconnected', { workerId: this.workerId, reason: 'closed' });
      this.emit('channel-closed', { workerId: this.workerId });
    };

    if (writer && !writer.destroyed && writer.writableLength > 0) {
      this._closePromise = waitFlushed(writer, this.closeFlushTimeoutMs).then(finish);
    } else {
      finish();
      this._closePromise = Promise.resolve();
    }
    return this._closePromise;
  }

  /**
   * Worker-side end of a channel: reads the in-pipe, writes the out-pipe.
   * @param {{ inPath?: string, outPath?: string, workerId?: string, fifoDir?: string,
   *           maxFrameBytes?: number }} opts  either both paths, or workerId (+ fifoDir)
   * @returns {FIFOWorkerEndpoint}
   */
  static openWorkerSide(opts = {}) {
    return new FIFOWorkerEndpoint(opts);
  }
}

module.exports = FIFOChannel;
module.exports.FIFOChannel = FIFOChannel;
module.exports.FIFOWorkerEndpoint = FIFOWorkerEndpoint;
module.exports.FrameDecoder = FrameDecoder;
module.exports.encodeFrame = encodeFrame;
module.exports.fifoPaths = fifoPaths;
module.exports.DEFAULT_FIFO_DIR = DEFAULT_FIFO_DIR;
module.exports.DEFAULT_MAX_FRAME_BYTES = DEFAULT_MAX_FRAME_BYTES;
