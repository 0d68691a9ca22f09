'use strict';
// Serves pool.getPrometheusMetrics() at GET /metrics (Prometheus text format).

const http = require('node:http');

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Starts the HTTP metrics endpoint. Resolves with { server, port, host, close() }
 * once listening; rejects when the pool has no getPrometheusMetrics() (code
 * ERR_NOT_SUPPORTED) or the address cannot be bound.
 */
function startMetricsServer(pool, { port, host = '127.0.0.1' } = {}) {
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
  const server = http.createServer(async (req, res) => {
    const url = (req.url || '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Not found: the metrics are at /metrics\n');
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
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      server.on('error', () => {});
      const addr = server.address();
      resolve({
        server,
        port: addr.port,
        host: addr.address,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
          }),
      });
    });
  });
}

module.exports = { startMetricsServer, CONTENT_TYPE };
