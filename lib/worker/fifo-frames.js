'use strict';

// The FIFO transport's framing: each message is a 4-byte big-endian length, then that
// many bytes of UTF-8 JSON. encodeFrame and the incremental FrameDecoder are used by
// both ends (fifo-channel.js, fifo-endpoint.js).

const DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024;

const MAX_LENGTH_PREFIX = 0xffffffff;

const HEADER_BYTES = 4;

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

module.exports = { DEFAULT_MAX_FRAME_BYTES, codedError, resolveMaxFrameBytes, encodeFrame, FrameDecoder, feedDecoder };
