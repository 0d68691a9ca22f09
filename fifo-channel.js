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
 */

const EventEmitter = require('events');
const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFile } = require('child_process');

const DEFAULT_FIFO_DIR = '/tmp/cortex/workers';
const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;
const MAX_LENGTH_PREFIX = 0xffffffff;
const HEADER_BYTES = 4;
const DEFAULT_CLOSE_FLUSH_MS = 1000;

function codedError(code, message, extra) {
  const err = new Error(message);
  err.code = code;
  if (extra) Object.assign(err, extra);
  return err;
}

function resolveMaxFrameBytes(value) {
  if (value === undefined || value === null) return DEFAULT_MAX_FRAME_BYTES;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_LENGTH_PREFIX) {
    throw codedError(
      'ERR_INVALID_ARG_VALUE',
      `maxFrameBytes must be an integer in [1, ${MAX_LENGTH_PREFIX}], got ${String(value)}`
    );
  }
  return value;
}

/**
 * Encode one JSON-serialisable value as a frame.
 * @param {*} obj
 * @param {{ maxFrameBytes?: number }} [options]
 * @returns {Buffer}
 */
function encodeFrame(obj, options = {}) {
  const max = resolveMaxFrameBytes(options.maxFrameBytes);
  const json = JSON.stringify(obj);
  if (typeof json !== 'string') {
    throw codedError('ERR_INVALID_MESSAGE', `Message is not JSON-serialisable (got ${typeof obj})`);
  }
  const length = Buffer.byteLength(json, 'utf8');
  if (length > max) {
    throw codedError('ERR_FRAME_TOO_LARGE', `Frame of ${length} bytes exceeds maxFrameBytes (${max})`, {
      frameBytes: length,
      maxFrameBytes: max,
    });
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + length);
  frame.writeUInt32BE(length, 0);
  frame.write(json, HEADER_BYTES, length, 'utf8');
  return frame;
}

/**
 * Incremental frame decoder.
 *
 * push(chunk) returns every value completed by the chunk. On a frame whose
 * announced length exceeds maxFrameBytes it throws an error with code
 * 'ERR_FRAME_TOO_LARGE'; on a payload that is not valid JSON it throws
 * 'ERR_FRAME_INVALID_JSON'. In both cases the error's `decoded` property holds
 * the values decoded earlier in the same call, the offending frame is skipped
 * (its bytes are discarded as they arrive), and calling push() again with no
 * argument resumes decoding of the remaining buffered bytes.
 */
class FrameDecoder {
  constructor(options = {}) {
    this.maxFrameBytes = resolveMaxFrameBytes(options.maxFrameBytes);
    this.reset();
  }

  reset() {
    this._chunks = [];
    this._buffered = 0;
    this._expected = -1; // payload length of the frame in progress, -1 = awaiting header
    this._skip = 0; // bytes still to discard from an oversize frame
  }

  /** Bytes held that do not yet form a complete frame. */
  get bufferedBytes() {
    return this._buffered;
  }

  push(chunk) {
    if (chunk !== undefined && chunk !== null && chunk.length > 0) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      this._chunks.push(buf);
      this._buffered += buf.length;
    }
    const out = [];
    for (;;) {
      if (this._skip > 0) {
        const n = Math.min(this._skip, this._buffered);
        this._discard(n);
        this._skip -= n;
        if (this._skip > 0) break;
        continue;
      }
      if (this._expected < 0) {
        if (this._buffered < HEADER_BYTES) break;
        const length = this._take(HEADER_BYTES).readUInt32BE(0);
        if (length > this.maxFrameBytes) {
          this._skip = length;
          throw codedError(
            'ERR_FRAME_TOO_LARGE',
            `Incoming frame of ${length} bytes exceeds maxFrameBytes (${this.maxFrameBytes})`,
            { frameBytes: length, maxFrameBytes: this.maxFrameBytes, decoded: out }
          );
        }
        this._expected = length;
      }
      if (this._buffered < this._expected) break;
      const payload = this._take(this._expected);
      this._expected = -1;
      let value;
      try {
        value = JSON.parse(payload.toString('utf8'));
      } catch (cause) {
        throw codedError('ERR_FRAME_INVALID_JSON', `Incoming frame is not valid JSON: ${cause.message}`, {
          cause,
          decoded: out,
        });
      }
      out.push(value);
    }
    return out;
  }

  // Remove and return the first n buffered bytes (n <= this._buffered).
  _take(n) {
    if (n === 0) return Buffer.alloc(0);
    const first = this._chunks[0];
    if (first.length >= n) {
      if (first.length === n) this._chunks.shift();
      else this._chunks[0] = first.subarray(n);
      this._buffered -= n;
      return first.subarray(0, n);
    }
    const result = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this._chunks[0];
      const want = n - filled;
      if (head.length <= want) {
        head.copy(result, filled);
        filled += head.length;
        this._chunks.shift();
      } else {
        head.copy(result, filled, 0, want);
        this._chunks[0] = head.subarray(want);
        filled += want;
      }
    }
    this._buffered -= n;
    return result;
  }

  _discard(n) {
    let left = n;
    while (left > 0) {
      const head = this._chunks[0];
      if (head.length <= left) {
        left -= head.length;
        this._chunks.shift();
      } else {
        this._chunks[0] = head.subarray(left);
        left = 0;
      }
    }
    this._buffered -= n;
  }
}

// Feed a chunk to a decoder, delivering values and errors through callbacks
// (a bad frame does not lose the frames around it).
function feedDecoder(decoder, chunk, onValue, onError) {
  let input = chunk;
  for (;;) {
    let values;
    try {
      values = decoder.push(input);
    } catch (err) {
      const before = err.decoded || [];
      delete err.decoded;
      for (const v of before) onValue(v);
      onError(err);
      input = undefined;
      continue;
    }
    for (const v of values) onValue(v);
    return;
  }
}

// Emit 'error' if someone listens; otherwise report it as a process warning
// rather than throwing from inside an I/O callback.
function safeEmitError(emitter, err) {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', err);
  else process.emitWarning(err);
}

function validateWorkerId(workerId) {
  if (typeof workerId === 'number' && Number.isFinite(workerId)) return String(workerId);
  if (typeof workerId !== 'string' || workerId.length === 0) {
    throw codedError('ERR_INVALID_ARG_TYPE', 'workerId must be a non-empty string or a number');
  }
  if (workerId.includes('/') || workerId.includes('\0') || workerId === '.' || workerId === '..') {
    throw codedError('ERR_INVALID_ARG_VALUE', `workerId must not contain path separators: ${workerId}`);
  }
  return workerId;
}

/** The pipe paths for a worker id ('3' and 'worker-3' both give worker-3-*.fifo). */
function fifoPaths(workerId, fifoDir = DEFAULT_FIFO_DIR) {
  const id = validateWorkerId(workerId);
  const base = id.startsWith('worker-') ? id : `worker-${id}`;
  const dir = fifoDir || DEFAULT_FIFO_DIR;
  return {
    inPath: path.join(dir, `${base}-in.fifo`),
    outPath: path.join(dir, `${base}-out.fifo`),
  };
}

function openFd(p, flags) {
  return new Promise((resolve, reject) => {
    fs.open(p, flags, (err, fd) => (err ? reject(err) : resolve(fd)));
  });
}

function fstatAsync(fd) {
  return new Promise((resolve, reject) => {
    fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st)));
  });
}

function closeFdQuietly(fd) {
  if (typeof fd !== 'number') return;
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

function unlinkQuietly(p) {
  try {
    fs.unlinkSync(p);
  } catch {
    // absent or not ours to remove
  }
}

// O_RDWR on a FIFO never blocks on Linux; O_NONBLOCK makes the open safe on
// platforms where it might. libuv adds O_CLOEXEC, so children do not inherit.
const FIFO_OPEN_FLAGS = fs.constants.O_RDWR | (fs.constants.O_NONBLOCK || 0);

async function openFifoFd(p) {
  let fd;
  try {
    fd = await openFd(p, FIFO_OPEN_FLAGS);
  } catch (err) {
    if (err.code === 'ENOENT') {
      throw codedError('ERR_FIFO_MISSING', `FIFO does not exist: ${p} (call createChannel() first)`, {
        path: p,
        cause: err,
      });
    }
    throw err;
  }
  try {
    const st = await fstatAsync(fd);
    if (!st.isFIFO()) throw codedError('ERR_NOT_FIFO', `Not a FIFO: ${p}`, { path: p });
  } catch (err) {
    closeFdQuietly(fd);
    throw err;
  }
  return fd;
}

function openFifoFdSync(p) {
  const fd = fs.openSync(p, FIFO_OPEN_FLAGS);
  let st;
  try {
    st = fs.fstatSync(fd);
  } catch (err) {
    closeFdQuietly(fd);
    throw err;
  }
  if (!st.isFIFO()) {
    closeFdQuietly(fd);
    throw codedError('ERR_NOT_FIFO', `Not a FIFO: ${p}`, { path: p });
  }
  return fd;
}

// Wrap a FIFO fd as a non-blocking libuv pipe stream. The socket owns the fd.
function readerSocket(fd) {
  return new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
}

function writerSocket(fd) {
  // readable: false — we hold the FIFO O_RDWR, and must never consume the
  // bytes meant for the peer.
  return new net.Socket({ fd, readable: false, writable: true, allowHalfOpen: true });
}

function runMkfifo(p) {
  return new Promise((resolve, reject) => {
    execFile('mkfifo', ['-m', '600', p], (err, _stdout, stderr) => {
      if (err) {
        const msg = (stderr && String(stderr).trim()) || err.message;
        reject(codedError('ERR_FIFO_CREATE', `mkfifo failed for ${p}: ${msg}`, { path: p, cause: err }));
      } else {
        resolve();
      }
    });
  });
}

// Wait until a writable socket has flushed its user-space queue, bounded.
function waitFlushed(socket, timeoutMs) {
  if (!socket || socket.destroyed || socket.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.removeListener('drain', done);
      socket.removeListener('close', done);
      socket.removeListener('error', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.once('drain', done);
    socket.once('close', done);
    socket.once('error', done);
  });
}

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

module.exports = FIFOChannel;
module.exports.FIFOChannel = FIFOChannel;
module.exports.FIFOWorkerEndpoint = FIFOWorkerEndpoint;
module.exports.FrameDecoder = FrameDecoder;
module.exports.encodeFrame = encodeFrame;
module.exports.fifoPaths = fifoPaths;
module.exports.DEFAULT_FIFO_DIR = DEFAULT_FIFO_DIR;
module.exports.DEFAULT_MAX_FRAME_BYTES = DEFAULT_MAX_FRAME_BYTES;
