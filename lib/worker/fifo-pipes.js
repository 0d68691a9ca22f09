'use strict';

// The named pipes themselves: their paths, mkfifo, opening them read-write and
// non-blocking (sync and async), the libuv streams over their descriptors, and small
// fs helpers that never throw.

const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFile } = require('child_process');
const { codedError } = require('./fifo-frames');

const DEFAULT_FIFO_DIR = '/tmp/cortex/workers';
// How long close() waits (ms) for queued frames to reach the pipe.
const DEFAULT_CLOSE_FLUSH_MS = 1000;

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

module.exports = {
  DEFAULT_CLOSE_FLUSH_MS, DEFAULT_FIFO_DIR, safeEmitError, fifoPaths, closeFdQuietly, unlinkQuietly, openFifoFd,
  openFifoFdSync, readerSocket, writerSocket, runMkfifo, waitFlushed,
};
