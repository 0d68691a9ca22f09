'use strict';
// The daemon's control socket: a Unix socket speaking newline-delimited JSON.
//
//   request  {"id": 1, "cmd": "submit", "task": {"type": "test", "payload": {}}}\n
//   response {"id": 1, "ok": true, "result": ...}\n
//         or {"id": 1, "ok": false, "error": {"code": "ERR_...", "message": "..."}}\n
//
// Requests on one connection run concurrently; each response carries its request's
// id, so responses may come back in a different order than the requests.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;
const SOCKET_MODE = 0o600;
// Longest path a Unix socket address can hold on Linux (sun_path is 108 bytes).
const MAX_SOCKET_PATH_BYTES = 107;
// Stop reading from a client that does not read its responses past this much output.
const HIGH_WATER_BYTES = 4 * 1024 * 1024;

const COMMANDS = ['submit', 'metrics', 'workers', 'scale', 'dlq', 'dlq-requeue', 'dlq-clear', 'shutdown', 'ping', 'prometheus'];
const TASK_FIELDS = ['type', 'payload', 'priority', 'timeout', 'maxRetries', 'metadata', 'requires'];
const ERROR_DETAILS = ['handlerCode', 'exitCode', 'signal', 'workerId'];

class ControlError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function errorBody(err) {
  if (!err || typeof err !== 'object') {
    return { code: 'ERR_INTERNAL', message: String(err) };
  }
  const body = { code: typeof err.code === 'string' ? err.code : 'ERR_INTERNAL', message: String(err.message ?? err) };
  for (const k of ERROR_DETAILS) {
    if (err[k] !== undefined && err[k] !== null) body[k] = err[k];
  }
  return body;
}

function badRequest(message) {
  return new ControlError('ERR_BAD_REQUEST', message);
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Runs one parsed request against the pool; resolves with its result or rejects. */
async function execute(pool, req, ctx) {
  switch (req.cmd) {
    case 'ping':
      return { pong: true, pid: process.pid, uptimeMs: Math.round(process.uptime() * 1000) };

    case 'submit': {
      if (!isPlainObject(req.task)) throw badRequest('"submit" needs "task": { type, payload, priority?, timeout? }');
      const task = {};
      for (const k of TASK_FIELDS) if (req.task[k] !== undefined) task[k] = req.task[k];
      return pool.submitTask(task);
    }

    case 'metrics':
      return pool.getPoolMetrics();

    case 'workers':
      return pool.getAllWorkersStatus();

    case 'scale': {
      const { direction } = req;
      if (direction !== 'up' && direction !== 'down') {
        throw badRequest(`"scale" needs "direction": "up" or "down", got ${JSON.stringify(direction)}`);
      }
      const count = req.count ?? 1;
      if (!Number.isInteger(count) || count <= 0) {
        throw badRequest(`"scale" needs "count": a positive integer, got ${JSON.stringify(req.count)}`);
      }
      const before = pool.getPoolMetrics().pool.size;
      const out = direction === 'up' ? await pool.scaleUp(count) : await pool.scaleDown(count);
      const newSize = out && typeof out.newSize === 'number' ? out.newSize : pool.getPoolMetrics().pool.size;
      const changed = out && typeof out.count === 'number' ? out.count : Math.abs(newSize - before);
      return { direction, requested: count, count: changed, newSize };
    }

    case 'dlq':
      // A pool on a shared queue answers with promises (the failed set is in Redis).
      return await pool.taskQueue.getDeadLetterQueue();

    case 'dlq-requeue': {
      const { taskId } = req;
      if (taskId !== undefined && taskId !== null && typeof taskId !== 'string') {
        throw badRequest(`"dlq-requeue" takes an optional "taskId" string, got ${JSON.stringify(taskId)}`);
      }
      const promises = await pool.taskQueue.requeueDeadLetter(taskId ?? undefined);
      // Nobody waits for these; a failure lands in the dead-letter queue again.
      for (const p of promises) if (p && typeof p.catch === 'function') p.catch(() => {});
      if (taskId && promises.length === 0) {
        throw new ControlError('ERR_NOT_FOUND', `No dead-letter task with id ${JSON.stringify(taskId)}`);
      }
      return { requeued: promises.length };
    }

    case 'dlq-clear':
      return { cleared: await pool.taskQueue.clearDeadLetterQueue() };

    case 'prometheus':
      if (typeof pool.getPrometheusMetrics !== 'function') {
        throw new ControlError('ERR_NOT_SUPPORTED', 'Prometheus metrics are not available: this pool has no getPrometheusMetrics()');
      }
      return String(await pool.getPrometheusMetrics());

    case 'shutdown':
      // Answer first, then shut down (the daemon's hook also closes this server).
      ctx.afterReply = () => {
        if (typeof ctx.onShutdown === 'function') ctx.onShutdown();
        else Promise.resolve(pool.shutdown(true)).catch(() => {});
      };
      return { shuttingDown: true };

    default:
      throw new ControlError('ERR_UNKNOWN_COMMAND', `Unknown command ${JSON.stringify(req.cmd)}; known commands: ${COMMANDS.join(', ')}`);
  }
}

/** Resolves true when something accepts connections on socketPath. */
function isListening(socketPath) {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts the control server for `pool` on the Unix socket `socketPath`.
 *
 * options:
 *   maxLineBytes  longest request line (default 1 MiB); a longer one gets an error
 *                 reply and its connection is closed
 *   onShutdown    called after replying to `shutdown` (default: pool.shutdown(true))
 *   log(level, message)  diagnostics (optional)
 *
 * Returns { ready, close(), stopAccepting(), socketPath, connections() } at once:
 * `ready` resolves when the socket accepts connections (a stale socket file is
 * replaced; a live one is an ERR_SOCKET_IN_USE error); close() stops listening, ends
 * every connection, removes the socket file and resolves when done.
 */
function startControlServer(pool, socketPath, options = {}) {
  if (!pool || typeof pool.getPoolMetrics !== 'function') {
    throw new TypeError('startControlServer(pool, socketPath, options): pool must be a worker pool');
  }
  if (typeof socketPath !== 'string' || socketPath.length === 0) {
    throw new TypeError('startControlServer(pool, socketPath, options): socketPath must be a non-empty string');
  }
  socketPath = path.resolve(socketPath);
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const log = typeof options.log === 'function' ? options.log : () => {};
  const sockets = new Set();
  let closed = false;
  let closing = null;
  let boundId = null; // { dev, ino } of the socket file we created

  // Half-open allowed: a client may send its requests, shut down its side
  // (`socat`, `nc -N`) and still receive every response; we end after the last one.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    handleConnection(socket);
  });
  server.on('error', (e) => log('error', `control socket error: ${e.message}`));

  function handleConnection(socket) {
    let chunks = [];
    let buffered = 0;
    let dropping = false; // over the line limit: everything until close is ignored
    let inFlight = 0;
    let clientEnded = false;
    const endIfIdle = () => {
      if (clientEnded && inFlight === 0 && !socket.destroyed && !socket.writableEnded) socket.end();
    };
    socket.on('end', () => {
      clientEnded = true;
      endIfIdle();
    });

    socket.on('error', () => {}); // ECONNRESET / EPIPE from a client that went away
    socket.on('close', () => sockets.delete(socket));
    socket.on('drain', () => {
      if (!dropping && !socket.destroyed) socket.resume();
    });

    const write = (obj) => {
      if (socket.destroyed || !socket.writable) return false;
      let text;
      try {
        text = JSON.stringify(obj);
      } catch (e) {
        text = JSON.stringify({ id: obj.id ?? null, ok: false, error: { code: 'ERR_INTERNAL', message: `Result is not JSON-serializable (${e.message})` } });
      }
      const more = socket.write(`${text}\n`);
      if (!more && socket.writableLength > HIGH_WATER_BYTES) socket.pause();
      return true;
    };

    const handleLine = (buf) => {
      let text = buf.toString('utf8');
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (text.trim() === '') return;
      let req;
      try {
        req = JSON.parse(text);
      } catch (e) {
        write({ id: null, ok: false, error: { code: 'ERR_BAD_JSON', message: `Request is not valid JSON (${e.message})` } });
        return;
      }
      if (!isPlainObject(req)) {
        write({ id: null, ok: false, error: { code: 'ERR_BAD_REQUEST', message: 'A request must be a JSON object like {"id": 1, "cmd": "ping"}' } });
        return;
      }
      const id = req.id === undefined ? null : req.id;
      if (typeof req.cmd !== 'string') {
        write({ id, ok: false, error: { code: 'ERR_BAD_REQUEST', message: `A request needs "cmd": one of ${COMMANDS.join(', ')}` } });
        return;
      }
      const ctx = { onShutdown: options.onShutdown, afterReply: null };
      inFlight++;
      let p;
      try {
        p = Promise.resolve(execute(pool, req, ctx));
      } catch (e) {
        p = Promise.reject(e);
      }
      p.then(
        (result) => write({ id, ok: true, result: result === undefined ? null : result }),
        (err) => write({ id, ok: false, error: errorBody(err) }),
      ).finally(() => {
        inFlight--;
        endIfIdle();
        if (ctx.afterReply) {
          try {
            ctx.afterReply();
          } catch (e) {
            log('error', `shutdown hook failed: ${e.message}`);
          }
        }
      });
    };

    socket.on('data', (data) => {
      if (dropping) return;
      let start = 0;
      for (;;) {
        const nl = data.indexOf(10, start);
        if (nl === -1) break;
        const piece = data.subarray(start, nl);
        if (buffered + piece.length > maxLineBytes) {
          tooLong();
          return;
        }
        if (chunks.length) {
          chunks.push(piece);
          const line = Buffer.concat(chunks);
          chunks = [];
          buffered = 0;
          handleLine(line);
        } else {
          handleLine(piece);
        }
        start = nl + 1;
        if (dropping || socket.destroyed) return;
      }
      if (start < data.length) {
        const rest = data.subarray(start);
        if (buffered + rest.length > maxLineBytes) {
          tooLong();
          return;
        }
        chunks.push(Buffer.from(rest)); // copy: `data` may be a slice of a larger pool
        buffered += rest.length;
      }
    });

    function tooLong() {
      dropping = true;
      chunks = [];
      buffered = 0;
      write({ id: null, ok: false, error: { code: 'ERR_LINE_TOO_LONG', message: `Request line longer than ${maxLineBytes} bytes; closing the connection` } });
      socket.end();
      socket.resume(); // keep draining what the client still sends, so end() can complete
      const t = setTimeout(() => socket.destroy(), 2000);
      t.unref();
      socket.once('close', () => clearTimeout(t));
    }
  }

  function removeOwnSocketFile() {
    if (!boundId) return;
    try {
      const st = fs.lstatSync(socketPath);
      if (st.isSocket() && st.dev === boundId.dev && st.ino === boundId.ino) fs.unlinkSync(socketPath);
    } catch {
      /* already gone */
    }
  }

  function listenOnce() {
    return new Promise((resolve, reject) => {
      const onError = (e) => {
        server.removeListener('listening', onListening);
        reject(e);
      };
      const onListening = () => {
        server.removeListener('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      // Created with mode 0600 (no window where another user could connect).
      const oldMask = process.umask(0o177);
      try {
        server.listen(socketPath);
      } finally {
        process.umask(oldMask);
      }
    });
  }

  async function start() {
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new ControlError('ERR_SOCKET_PATH_TOO_LONG', `Socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${socketPath}`);
    }
    fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    let st = null;
    try {
      st = fs.lstatSync(socketPath);
    } catch {
      /* free */
    }
    if (st) {
      if (!st.isSocket()) {
        throw new ControlError('ERR_SOCKET_IN_USE', `${socketPath} exists and is not a socket; refusing to replace it`);
      }
      if (await isListening(socketPath)) {
        throw new ControlError('ERR_SOCKET_IN_USE', `Another process is listening on ${socketPath} (is a daemon already running?)`);
      }
      log('info', `Replacing stale socket ${socketPath}`);
      fs.unlinkSync(socketPath);
    }
    if (closed) throw new ControlError('ERR_CLOSED', 'Control server was closed before it started');
    await listenOnce();
    fs.chmodSync(socketPath, SOCKET_MODE);
    const after = fs.lstatSync(socketPath);
    boundId = { dev: after.dev, ino: after.ino };
    if (closed) {
      server.close();
      removeOwnSocketFile();
      throw new ControlError('ERR_CLOSED', 'Control server was closed before it started');
    }
  }

  const ready = start();
  ready.catch(() => {}); // the caller sees it through `ready`; never unhandled

  /** Stops accepting connections; open connections keep being served. */
  function stopAccepting() {
    if (!server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      removeOwnSocketFile();
    });
  }

  /**
   * Stops listening, ends every connection (responses already written are flushed;
   * connections still open after graceMs are destroyed), removes the socket file.
   */
  function close({ graceMs = 1000 } = {}) {
    if (closing) return closing;
    closed = true;
    closing = (async () => {
      const ended = [...sockets].map(
        (s) =>
          new Promise((resolve) => {
            if (s.destroyed) return resolve();
            s.once('close', resolve);
            s.end();
            const t = setTimeout(() => s.destroy(), graceMs);
            t.unref();
            s.once('close', () => clearTimeout(t));
          }),
      );
      await Promise.all([stopAccepting(), ...ended]);
      sockets.clear();
      removeOwnSocketFile();
    })();
    return closing;
  }

  return {
    ready,
    close,
    stopAccepting,
    socketPath,
    server,
    connections: () => sockets.size,
  };
}

module.exports = { startControlServer, ControlError, COMMANDS, DEFAULT_MAX_LINE_BYTES, MAX_SOCKET_PATH_BYTES };
