'use strict';
// Serves pool.getPrometheusMetrics() at GET /metrics (Prometheus text format) and,
// when asked, the live dashboard (lib/dashboard) on the same port.

const http = require('node:http');
const { createDashboard } = require('./dashboard');

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * GET /healthz, for an orchestrator's readiness probe: 200 while the pool can serve,
 * 503 while it cannot (not running, no live worker, or disconnected from its shared
 * queue: `queue.shared.connected` false). The body says why, as JSON.
 */
function serveHealth(pool, req, res) {
  let body;
  try {
    const m = pool.getPoolMetrics();
    const shared = m.queue && m.queue.shared;
    const why = [];
    const running = Boolean(m.pool && m.pool.initialized && !m.pool.shuttingDown);
    if (!running) why.push('the pool is not running');
    if (running && m.workers.total === 0 && m.pool.size > 0) why.push('no worker');
    if (shared && shared.connected === false) why.push(`disconnected from the shared queue since ${new Date(shared.since).toISOString()}`);
    body = { ok: why.length === 0, why, running, workers: m.workers.total };
    if (shared) Object.assign(body, { sharedQueue: { connected: shared.connected !== false, since: shared.since ?? null, held: shared.held ?? 0 } });
  } catch (e) {
    body = { ok: false, why: [`metrics unavailable: ${e.message}`] };
  }
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : text);
}

/**
 * Starts the HTTP metrics endpoint. Resolves with { server, port, host, close() }
 * once listening; rejects when the pool has no getPrometheusMetrics() (code
 * ERR_NOT_SUPPORTED), a bad port or dashboard token (ERR_INVALID_ARGUMENT), or the
 * address cannot be bound. `dashboard`: false (default), true, or { token, log } to
 * serve the dashboard at / and /api/* as well.
 */
function startMetricsServer(pool, { port, host = '127.0.0.1', dashboard = false } = {}) {
  if (typeof pool.getPrometheusMetrics !== 'function') {
    const err = new Error('This pool has no getPrometheusMetrics(); the HTTP metrics endpoint is not available');
    err.code = 'ERR_NOT_SUPPORTED';
    return Promise.reject(err);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    const err = new Error(`METRICS_PORT must be an integer from 0 to 65535, got ${JSON.stringify(port)}`);
    err.code = 'ERR_INVALID_ARGUMENT';
    return Promise.reject(err);
  }
  let dash = null;
  if (dashboard) {
    try {
      dash = createDashboard(pool, dashboard === true ? {} : dashboard);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  const server = http.createServer(async (req, res) => {
    const url = (req.url || '/').split('?')[0];
    if (url === '/healthz') {
      serveHealth(pool, req, res);
      return;
    }
    if (url !== '/metrics') {
      if (dash && dash.handle(req, res, url)) return;
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(dash ? 'Not found: the dashboard is at /, the metrics at /metrics\n' : 'Not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('Method not allowed\n');
      return;
    }
    try {
      const text = String(await pool.getPrometheusMetrics());
      res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`Error collecting metrics: ${e.message}\n`);
    }
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', (e) => {
      if (dash) dash.close();
      reject(e);
    });
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      server.on('error', () => {});
      const addr = server.address();
      resolve({
        server,
        port: addr.port,
        host: addr.address,
        dashboard: dash,
        close: () =>
          new Promise((r) => {
            if (dash) dash.close();
            server.close(() => r());
            if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
          }),
      });
    });
  });
}

module.exports = { startMetricsServer, CONTENT_TYPE };
