'use strict';

// The worker's end of a FIFO channel (FIFOChannel.openWorkerSide, used by
// worker-process.js on the FIFO transport).

const EventEmitter = require('events');
const { FrameDecoder, codedError, encodeFrame, feedDecoder, resolveMaxFrameBytes } = require('./fifo-frames');
const {
  DEFAULT_CLOSE_FLUSH_MS, closeFdQuietly, fifoPaths, openFifoFdSync, readerSocket, safeEmitError, waitFlushed,
  writerSocket,
} = require('./fifo-pipes');

/**
 * The worker's end. Opened synchronously (the open never blocks); events:
 * `message` (decoded object), `error`, `close`.
 */
class FIFOWorkerEndpoint extends EventEmitter {
  constructor(opts = {}) {
    super();
    let { inPath, outPath } = opts;
    if (!inPath || !outPath) {
      if (opts.workerId === undefined) {
        throw codedError('ERR_INVALID_ARG_VALUE', 'openWorkerSide needs { inPath, outPath } or { workerId }');
      }
      const paths = fifoPaths(opts.workerId, opts.fifoDir);
      inPath = inPath || paths.inPath;
      outPath = outPath || paths.outPath;
    }
    this.inPath = inPath;
    this.outPath = outPath;
    this.maxFrameBytes = resolveMaxFrameBytes(opts.maxFrameBytes);
    this._decoder = new FrameDecoder({ maxFrameBytes: this.maxFrameBytes });
    this._closed = false;

    let inFd;
    let outFd;
    try {
      inFd = openFifoFdSync(inPath);
      outFd = openFifoFdSync(outPath);
      this._reader = readerSocket(inFd);
      inFd = undefined;
      this._writer = writerSocket(outFd);
      outFd = undefined;
    } catch (err) {
      if (this._reader) this._reader.destroy();
      closeFdQuietly(inFd);
      closeFdQuietly(outFd);
      throw err;
    }

    this._reader.on('data', (chunk) =>
      feedDecoder(
        this._decoder,
        chunk,
        (m) => this.emit('message', m),
        (err) => safeEmitError(this, err)
      )
    );
    const onErr = (err) => {
      if (!this._closed) safeEmitError(this, err);
    };
    this._reader.on('error', onErr);
    this._writer.on('error', onErr);
    this._writer.on('drain', () => this.emit('drain'));
    const lost = () => {
      if (!this._closed) this.close();
    };
    this._reader.on('end', lost);
    this._reader.on('close', lost);
    this._writer.on('close', lost);
  }

  /**
   * Send one frame to the pool. Throws ERR_CHANNEL_CLOSED after close(), and
   * the encodeFrame errors (nothing is written then). Never blocks: what the
   * pipe cannot take yet is queued in memory, in order. `callback(err)`, if
   * given, runs once the frame has been handed to the kernel (or failed).
   * @returns {boolean} false when the in-memory queue is over the high-water mark
   */
  send(message, callback) {
    if (this._closed) throw codedError('ERR_CHANNEL_CLOSED', 'Worker side of the FIFO channel is closed');
    const frame = encodeFrame(message, { maxFrameBytes: this.maxFrameBytes });
    return callback ? this._writer.write(frame, callback) : this._writer.write(frame);
  }

  /** Bytes queued in user space waiting for the pipe to accept them. */
  get writableLength() {
    return this._writer.destroyed ? 0 : this._writer.writableLength;
  }

  isConnected() {
    return !this._closed;
  }

  unref() {
    this._reader.unref();
    this._writer.unref();
    return this;
  }

  ref() {
    this._reader.ref();
    this._writer.ref();
    return this;
  }

  /** Close both descriptors (the pool owns and removes the pipe files). */
  close() {
    if (this._closed) return;
    this._closed = true;
    const w = this._writer;
    if (!w.destroyed) {
      // Let queued frames reach the pipe (bounded), then close. No end():
      // shutdown(2) is meaningless on a FIFO.
      waitFlushed(w, DEFAULT_CLOSE_FLUSH_MS).then(() => w.destroy());
    }
    if (!this._reader.destroyed) this._reader.destroy();
    this.emit('close');
  }
}

module.exports = { FIFOWorkerEndpoint };
