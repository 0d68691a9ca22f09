'use strict';
// The live dashboard on the daemon's HTTP server:
//
//   GET  /                  the page (one document; its CSS and JS are inline)
//   GET  /api/status        a JSON snapshot of the pool
//   GET  /api/events        Server-Sent Events: `history` once, then every second
//                           `pool` (the pool events since the last tick) and `status`
//   POST /api/scale         { direction: 'up' | 'down', count? }          (token)
//   POST /api/dlq/requeue   { taskId? }                                    (token)
//   POST /api/dlq/clear                                                    (token)
//
// Nothing here runs per task while no page is open: the pool listeners and the
// one-second timer exist only while at least one event stream is connected.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { StatusSource } = require('./status');

const TICK_MS = 1000;
const HISTORY_POINTS = 600; // 10 minutes of one-second points
const MAX_STREAMS = 32;
const MAX_EVENTS_PER_TICK = 100;
const MAX_BODY_BYTES = 4096;
const MAX_SCALE_COUNT = 1000;
// A stream whose reader stopped reading is cut off beyond this much unsent output.
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const MIN_TOKEN_CHARS = 16;

// Pool events the page lists. None of them is produced per successful task:
// task-assigned / task-completed would make the core report every task (see
// WorkerPoolManager's interest tracking), so the charts use counters instead.
const FORWARDED_EVENTS = [
  'worker-exited',
  'worker-error',
  'zombie-detected',
  'high-memory',
  'pool-scaled-up',
  'pool-scaled-down',
  'autoscale',
  'task-failed',
  'log',
  'drain',
  'pool-shutdown',
];

class DashboardError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** DASHBOARD_TOKEN's rules; throws ERR_INVALID_ARGUMENT. */
function checkToken(token) {
  if (token === undefined || token === null) return;
  // It travels in an HTTP header, which carries printable ASCII reliably and nothing else.
  if (typeof token !== 'string' || token.length < MIN_TOKEN_CHARS || !/^[\x21-\x7e]+$/.test(token)) {
    const err = new Error(
      `DASHBOARD_TOKEN must be at least ${MIN_TOKEN_CHARS} printable ASCII characters without spaces (e.g. the output of: openssl rand -hex 32)`,
    );
    err.code = 'ERR_INVALID_ARGUMENT';
    throw err;
  }
}

/** The page with its CSS and JS inlined, and a CSP that allows exactly those. */
function buildPage() {
  const dir = path.join(__dirname, 'page');
  const css = fs.readFileSync(path.join(dir, 'dashboard.css'), 'utf8');
  const js = fs.readFileSync(path.join(dir, 'dashboard.js'), 'utf8');
  const html = fs
    .readFileSync(path.join(dir, 'index.html'), 'utf8')
    .replace('/*@STYLE@*/', () => css)
    .replace('/*@SCRIPT@*/', () => js);
  const hash = (s) => `'sha256-${crypto.createHash('sha256').update(s).digest('base64')}'`;
  // Nothing can be loaded from elsewhere, and the page cannot be framed.
  const csp = [
    "default-src 'none'",
    `style-src ${hash(css)}`,
    `script-src ${hash(js)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { body: Buffer.from(html), csp };
}

function sendJson(res, status, value, headers = {}) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(res.req && res.req.method === 'HEAD' ? undefined : body);
}

function sendError(res, err, headers) {
  sendJson(res, err.status || 500, { error: { code: err.code || 'ERR_INTERNAL', message: err.message } }, headers);
}

function readJsonBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const onData = (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        // Answer now and let the rest of the upload drain unread (the reply closes the connection).
        req.removeListener('data', onData);
        req.resume();
        reject(new DashboardError(413, 'ERR_BODY_TOO_LARGE', `Request body over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve({});
      let v;
      try {
        v = JSON.parse(text);
      } catch (e) {
        return reject(new DashboardError(400, 'ERR_BAD_JSON', `The request body is not valid JSON: ${e.message}`));
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        return reject(new DashboardError(400, 'ERR_BAD_REQUEST', 'The request body must be a JSON object'));
      }
      resolve(v);
    });
  });
}

/** The HTTP status for a pool error during an action. */
function statusForPoolError(code) {
  if (code === 'ERR_INVALID_ARGUMENT') return 400;
  if (code === 'ERR_NOT_FOUND') return 404;
  if (code === 'ERR_POOL_SHUTTING_DOWN' || code === 'ERR_POOL_SHUTDOWN' || code === 'ERR_POOL_NOT_INITIALIZED') return 503;
  return 500;
}

/**
 * The event streams of all open pages, fed by one timer: each tick takes one snapshot
 * and writes the same text to every stream, so a page gets at most one per second.
 */
class Hub {
  constructor(pool, source) {
    this.pool = pool;
    this.source = source;
    this.streams = new Set();
    this.timer = null;
    this.events = [];
    this.dropped = 0;
    this.history = [];
    this.listeners = null;
  }

  push(type, data) {
    // Nobody to tell (an action from curl with no page open): nothing to keep.
    if (this.streams.size === 0) return;
    if (this.events.length >= MAX_EVENTS_PER_TICK) {
      this.dropped++;
      return;
    }
    this.events.push({ type, time: Date.now(), data });
  }

  #attach() {
    this.listeners = FORWARDED_EVENTS.map((name) => {
      const fn = (data) => {
        if (name === 'worker-exited') this.source.noteExit(data);
        // The pool's debug log is chatty and says nothing an operator acts on.
        if (name === 'log' && data && data.level === 'debug') return;
        this.push(name, data === undefined ? null : data);
      };
      this.pool.on(name, fn);
      return [name, fn];
    });
  }

  #detach() {
    for (const [name, fn] of this.listeners || []) this.pool.removeListener(name, fn);
    this.listeners = null;
  }

  add(res) {
    this.streams.add(res);
    res.on('close', () => this.remove(res));
    if (this.streams.size === 1) {
      this.#attach();
      this.tick();
      this.timer = setInterval(() => this.tick(), TICK_MS);
      // The daemon's life is the pool's, not this page's.
      this.timer.unref();
    }
  }

  remove(res) {
    if (!this.streams.delete(res)) return;
    if (this.streams.size === 0) {
      clearInterval(this.timer);
      this.timer = null;
      this.#detach();
      this.events = [];
      this.dropped = 0;
    }
  }

  tick() {
    let s;
    try {
      s = this.source.sample();
    } catch {
      // The pool is gone (shutting down): the streams end with the server.
      return;
    }
    const iv = s.interval;
    const point = {
      t: s.time,
      completed: iv ? iv.rates.completed : null,
      failed: iv ? iv.rates.failed : null,
      queue: s.queue.depth,
      waitP50: iv ? iv.latency.wait.p50 : null,
      waitP99: iv ? iv.latency.wait.p99 : null,
      runP50: iv ? iv.latency.run.p50 : null,
      runP99: iv ? iv.latency.run.p99 : null,
    };
    this.history.push(point);
    if (this.history.length > HISTORY_POINTS) this.history.splice(0, this.history.length - HISTORY_POINTS);
    let frame = '';
    if (this.events.length || this.dropped) {
      frame += `event: pool\ndata: ${JSON.stringify({ events: this.events, dropped: this.dropped })}\n\n`;
      this.events = [];
      this.dropped = 0;
    }
    frame += `event: status\ndata: ${JSON.stringify({ status: s, point })}\n\n`;
    for (const res of this.streams) this.#write(res, frame);
  }

  #write(res, text) {
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy();
      return;
    }
    // A reader that is behind skips frames instead of piling them up.
    if (res.writableNeedDrain) return;
    res.write(text);
  }

  open(req, res) {
    if (this.streams.size >= MAX_STREAMS) {
      sendError(res, new DashboardError(503, 'ERR_TOO_MANY_STREAMS', `At most ${MAX_STREAMS} dashboard event streams at once`));
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    if (req.socket) {
      req.socket.setNoDelay(true);
      // The server's request timeouts are not meant for a stream that never ends.
      req.socket.setTimeout(0);
    }
    res.write(`retry: 2000\nevent: history\ndata: ${JSON.stringify({ points: this.history, tickMs: TICK_MS })}\n\n`);
    this.add(res);
  }

  close() {
    for (const res of this.streams) res.destroy();
    this.streams.clear();
    clearInterval(this.timer);
    this.timer = null;
    this.#detach();
  }
}

/**
 * The dashboard of `pool`. `token`: DASHBOARD_TOKEN (actions allowed only with it);
 * `log(level, message)`: where actions are recorded. Returns { handle(req, res, path)
 * → true when the path was the dashboard's, close(), streams() }.
 */
function createDashboard(pool, { token, log = () => {} } = {}) {
  checkToken(token);
  const page = buildPage();
  const source = new StatusSource(pool, { actionsEnabled: Boolean(token) });
  const hub = new Hub(pool, source);
  // Digests have equal length whatever was sent, so the comparison's time says nothing.
  const digest = (s) => crypto.createHash('sha256').update(String(s)).digest();
  const expected = token ? digest(token) : null;

  function authorize(req) {
    if (!expected) {
      throw new DashboardError(403, 'ERR_READ_ONLY', 'The dashboard is read-only: set DASHBOARD_TOKEN on the daemon to allow actions');
    }
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization || '');
    const ok = crypto.timingSafeEqual(digest(m ? m[1] : ''), expected);
    if (!m || !ok) {
      throw new DashboardError(401, 'ERR_UNAUTHORIZED', 'Missing or wrong token: send "Authorization: Bearer <DASHBOARD_TOKEN>"');
    }
  }

  const actions = {
    async scale(body) {
      const { direction } = body;
      if (direction !== 'up' && direction !== 'down') {
        throw new DashboardError(400, 'ERR_BAD_REQUEST', `"direction" must be "up" or "down", got ${JSON.stringify(direction)}`);
      }
      const count = body.count ?? 1;
      if (!Number.isInteger(count) || count < 1 || count > MAX_SCALE_COUNT) {
        throw new DashboardError(400, 'ERR_BAD_REQUEST', `"count" must be an integer from 1 to ${MAX_SCALE_COUNT}, got ${JSON.stringify(body.count)}`);
      }
      const out = direction === 'up' ? await pool.scaleUp(count) : await pool.scaleDown(count);
      return { direction, requested: count, count: out.count, newSize: out.newSize };
    },
    async 'dlq/requeue'(body) {
      const { taskId } = body;
      if (taskId !== undefined && taskId !== null && typeof taskId !== 'string') {
        throw new DashboardError(400, 'ERR_BAD_REQUEST', `"taskId" must be a string when given, got ${JSON.stringify(taskId)}`);
      }
      // A pool on a shared queue answers with a promise (the failed set is in Redis).
      const promises = await pool.taskQueue.requeueDeadLetter(taskId ?? undefined);
      // Nobody waits for these; a task that fails again returns to the dead-letter queue.
      for (const p of promises) if (p && typeof p.catch === 'function') p.catch(() => {});
      if (taskId && promises.length === 0) {
        throw new DashboardError(404, 'ERR_NOT_FOUND', `No dead-letter task with id ${JSON.stringify(taskId)}`);
      }
      return { requeued: promises.length };
    },
    async 'dlq/clear'() {
      return { cleared: await pool.taskQueue.clearDeadLetterQueue() };
    },
  };

  async function runAction(name, req, res) {
    try {
      authorize(req);
      const body = await readJsonBody(req);
      let result;
      try {
        result = await actions[name](body);
      } catch (e) {
        if (e instanceof DashboardError) throw e;
        throw new DashboardError(statusForPoolError(e && e.code), (e && e.code) || 'ERR_INTERNAL', String((e && e.message) || e));
      }
      const who = req.socket && req.socket.remoteAddress;
      log('info', `Dashboard action ${name} from ${who}: ${JSON.stringify(result)}`);
      hub.push('dashboard-action', { action: name, ...result });
      sendJson(res, 200, result);
    } catch (e) {
      const err = e instanceof DashboardError ? e : new DashboardError(500, 'ERR_INTERNAL', String((e && e.message) || e));
      const headers = {};
      if (err.status === 401) headers['www-authenticate'] = 'Bearer realm="worker-pool dashboard"';
      if (err.status === 413) headers.connection = 'close';
      sendError(res, err, headers);
    }
  }

  function handle(req, res, pathname) {
    const method = req.method;
    const isGet = method === 'GET' || method === 'HEAD';
    if (pathname === '/' || pathname === '/index.html') {
      if (!isGet) return methodNotAllowed(res, 'GET, HEAD');
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': page.body.length,
        'content-security-policy': page.csp,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cache-control': 'no-store',
      });
      res.end(method === 'HEAD' ? undefined : page.body);
      return true;
    }
    if (pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return true;
    }
    if (pathname === '/api/status') {
      if (!isGet) return methodNotAllowed(res, 'GET, HEAD');
      try {
        sendJson(res, 200, source.status());
      } catch (e) {
        sendError(res, new DashboardError(503, (e && e.code) || 'ERR_INTERNAL', `Cannot read the pool: ${e && e.message}`));
      }
      return true;
    }
    if (pathname === '/api/events') {
      if (method !== 'GET') return methodNotAllowed(res, 'GET');
      hub.open(req, res);
      return true;
    }
    const action = pathname.startsWith('/api/') ? pathname.slice(5) : null;
    if (action !== null && Object.hasOwn(actions, action)) {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      runAction(action, req, res);
      return true;
    }
    if (action !== null) {
      sendError(res, new DashboardError(404, 'ERR_NOT_FOUND', `No API endpoint ${pathname}`));
      return true;
    }
    return false;
  }

  function methodNotAllowed(res, allow) {
    sendError(res, new DashboardError(405, 'ERR_METHOD_NOT_ALLOWED', `Method not allowed; use ${allow}`), { allow });
    return true;
  }

  return {
    handle,
    close: () => hub.close(),
    streams: () => hub.streams.size,
  };
}

module.exports = { createDashboard, checkToken, FORWARDED_EVENTS, TICK_MS, MIN_TOKEN_CHARS };
