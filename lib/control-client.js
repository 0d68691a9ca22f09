'use strict';
// A small client for the daemon's control socket (see lib/control-server.js).

const net = require('node:net');
const path = require('node:path');

const DEFAULT_TIMEOUT_MS = 10000;
let nextId = 1;

/** The socket path used when none is given: $SOCKET_PATH, else beside $PID_FILE, else /tmp/cortex/worker-pool.sock. */
function defaultSocketPath(env = process.env) {
  if (env.SOCKET_PATH) return env.SOCKET_PATH;
  if (env.PID_FILE) return path.join(path.dirname(env.PID_FILE), 'worker-pool.sock');
  return path.join('/tmp', 'cortex', 'worker-pool.sock');
}

function clientError(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

function connectError(socketPath, e) {
  switch (e.code) {
    case 'ENOENT':
      return clientError('ERR_DAEMON_NOT_RUNNING', `worker-pool daemon is not running (no socket at ${socketPath})`);
    case 'ECONNREFUSED':
      return clientError('ERR_DAEMON_NOT_RUNNING', `worker-pool daemon is not running (nothing listens on ${socketPath}; stale socket file)`);
    case 'EACCES':
    case 'EPERM':
      return clientError('ERR_PERMISSION', `Permission denied on ${socketPath} (the socket is readable only by the user running the daemon)`);
    case 'ENOTSOCK':
      return clientError('ERR_DAEMON_NOT_RUNNING', `worker-pool daemon is not running (${socketPath} is not a socket)`);
    default: {
      const err = clientError('ERR_CONNECTION', `Cannot connect to ${socketPath}: ${e.message}`);
      err.cause = e;
      return err;
    }
  }
}

/**
 * Sends one request ({ cmd, ... }; an `id` is added when missing) and resolves with
 * the daemon's response object: { id, ok: true, result } or { id, ok: false, error }.
 * Rejects only when no response arrives: ERR_DAEMON_NOT_RUNNING, ERR_PERMISSION,
 * ERR_CONNECTION, ERR_CONNECTION_CLOSED, ERR_BAD_RESPONSE or ERR_TIMEOUT.
 * timeoutMs (default 10 s): 0 or Infinity waits forever.
 */
function request(socketPath, msg, timeoutMs = DEFAULT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const req = msg && typeof msg === 'object' && !Array.isArray(msg) ? { ...msg } : msg;
    if (!req || typeof req !== 'object' || typeof req.cmd !== 'string') {
      reject(clientError('ERR_INVALID_ARGUMENT', 'request(socketPath, msg): msg must be an object with a "cmd" string'));
      return;
    }
    if (req.id === undefined || req.id === null) req.id = `${process.pid}-${nextId++}`;
    let text;
    try {
      text = `${JSON.stringify(req)}\n`;
    } catch (e) {
      reject(clientError('ERR_INVALID_ARGUMENT', `request: msg is not JSON-serializable (${e.message})`));
      return;
    }

    let done = false;
    let connected = false;
    let buf = '';
    let timer = null;
    const socket = net.connect(socketPath);
    const finish = (err, value) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    if (timeoutMs && Number.isFinite(timeoutMs) && timeoutMs > 0) {
      timer = setTimeout(
        () => finish(clientError('ERR_TIMEOUT', `No response from the worker-pool daemon within ${timeoutMs} ms (${socketPath})`)),
        timeoutMs,
      );
    }
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      connected = true;
      socket.write(text);
    });
    socket.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        let res;
        try {
          res = JSON.parse(line);
        } catch (e) {
          finish(clientError('ERR_BAD_RESPONSE', `The daemon sent something that is not JSON (${e.message})`));
          return;
        }
        // A reply to our id, or a connection-level error (id null) such as ERR_LINE_TOO_LONG.
        if (res && (res.id === req.id || res.id === null)) {
          finish(null, res);
          return;
        }
      }
    });
    socket.on('error', (e) => finish(connected ? clientError('ERR_CONNECTION_CLOSED', `Connection to ${socketPath} failed: ${e.message}`) : connectError(socketPath, e)));
    socket.on('close', () => finish(clientError('ERR_CONNECTION_CLOSED', `The worker-pool daemon closed the connection before answering (${socketPath})`)));
  });
}

/**
 * Like request(), but resolves with `result` and rejects with an Error carrying the
 * daemon's error `code` (and details) when the response is not ok.
 */
async function call(socketPath, cmd, args = {}, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const res = await request(socketPath, { ...args, cmd }, timeoutMs);
  if (res.ok) return res.result;
  const e = res.error || {};
  const err = clientError(e.code || 'ERR_INTERNAL', e.message || 'Unknown error');
  for (const [k, v] of Object.entries(e)) if (k !== 'code' && k !== 'message') err[k] = v;
  return Promise.reject(err);
}

module.exports = { request, call, defaultSocketPath, DEFAULT_TIMEOUT_MS };
