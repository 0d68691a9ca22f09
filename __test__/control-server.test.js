'use strict';
// The control socket (lib/control-server.js), its client (lib/control-client.js) and
// the HTTP metrics endpoint (lib/metrics-http.js), in-process: a fake pool for the
// protocol's edge cases, and one real pool end to end.
// Run: node --test __test__/control-server.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const http = require('node:http');
const { startControlServer } = require('../lib/control-server');
const { request, call } = require('../lib/control-client');
const { startMetricsServer } = require('../lib/metrics-http');
const { createWorkerPool } = require('..');
const { tempDir, makeStaleSocket, fileMode, sleep, waitFor } = require('./helpers');

const dir = tempDir('wpcs-');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = () => path.join(dir, `s${++n}.sock`);

function coded(code, message, extra = {}) {
  return Object.assign(new Error(message), { code }, extra);
}

/** A stand-in for a pool: enough of the API for every command. */
function fakePool({ prometheus = false } = {}) {
  let size = 2;
  let dlq = [{ id: 'task-1-1', task: { type: 'x', payload: null }, priority: 10 }];
  const pool = {
    submitted: [],
    shutdowns: 0,
    getPoolMetrics: () => ({ pool: { size }, workers: { total: size, ready: size, busy: 0, unhealthy: 0 }, tasks: { completed: 0 } }),
    getAllWorkersStatus: () => Array.from({ length: size }, (_, i) => ({ id: `worker-${i}`, pid: 1000 + i, state: 'ready' })),
    async submitTask(task) {
      pool.submitted.push(task);
      if (task.type === 'fail') throw coded('ERR_TASK_FAILED', 'boom', { handlerCode: 'E_X' });
      if (task.type === 'slow') await sleep(task.payload.ms);
      return { echo: task.payload };
    },
    async scaleUp(count) {
      size += count;
      return { count, newSize: size };
    },
    async scaleDown(count) {
      const c = Math.min(count, size - 1);
      size -= c;
      return { count: c, newSize: size };
    },
    taskQueue: {
      getDeadLetterQueue: () => dlq.slice(),
      requeueDeadLetter(id) {
        const taken = id === undefined ? dlq : dlq.filter((d) => d.id === id);
        dlq = dlq.filter((d) => !taken.includes(d));
        return taken.map(() => Promise.reject(coded('ERR_TASK_FAILED', 'failed again')));
      },
      clearDeadLetterQueue() {
        const c = dlq.length;
        dlq = [];
        return c;
      },
    },
    async shutdown() {
      pool.shutdowns++;
    },
  };
  if (prometheus) pool.getPrometheusMetrics = () => '# HELP worker_pool_workers Workers\nworker_pool_workers 2\n';
  return pool;
}

async function withServer(pool, fn, options) {
  const p = sockPath();
  const srv = startControlServer(pool, p, options);
  await srv.ready;
  try {
    return await fn(p, srv);
  } finally {
    await srv.close();
  }
}

/** Sends raw bytes on a fresh connection; resolves with the parsed response lines once `count` arrived or the socket closed. */
function raw(socketPath, chunks, { count = 1, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    const lines = [];
    let buf = '';
    let closed = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw: got ${lines.length}/${count} lines within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) break;
        s.write(c);
        if (chunks.length > 1) await sleep(5);
      }
    });
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        lines.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
      if (lines.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve({ lines, closed });
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ lines, closed });
    });
  });
}

test('every command answers { id, ok, result } over a 0600 socket', { timeout: 20000 }, async () => {
  const pool = fakePool();
  await withServer(pool, async (p) => {
    assert.equal(fileMode(p), 0o600);
    const ping = await request(p, { id: 'a', cmd: 'ping' });
    assert.equal(ping.id, 'a');
    assert.equal(ping.ok, true);
    assert.equal(ping.result.pid, process.pid);

    assert.deepEqual(await call(p, 'submit', { task: { type: 't', payload: { v: 1 }, priority: 0, timeout: 500, bogus: 1 } }), { echo: { v: 1 } });
    assert.deepEqual(pool.submitted.at(-1), { type: 't', payload: { v: 1 }, priority: 0, timeout: 500 });
    assert.equal((await call(p, 'metrics')).pool.size, 2);
    assert.equal((await call(p, 'workers')).length, 2);
    assert.deepEqual(await call(p, 'scale', { direction: 'up', count: 2 }), { direction: 'up', requested: 2, count: 2, newSize: 4 });
    assert.deepEqual(await call(p, 'scale', { direction: 'down', count: 10 }), { direction: 'down', requested: 10, count: 3, newSize: 1 });
    assert.equal((await call(p, 'dlq')).length, 1);
    await assert.rejects(call(p, 'dlq-requeue', { taskId: 'nope' }), { code: 'ERR_NOT_FOUND' });
    assert.deepEqual(await call(p, 'dlq-requeue', { taskId: 'task-1-1' }), { requeued: 1 });
    assert.deepEqual(await call(p, 'dlq-clear'), { cleared: 0 });
    // A failed task: the pool's code and message, plus details.
    const res = await request(p, { id: 7, cmd: 'submit', task: { type: 'fail' } });
    assert.deepEqual(res, { id: 7, ok: false, error: { code: 'ERR_TASK_FAILED', message: 'boom', handlerCode: 'E_X' } });
    await assert.rejects(call(p, 'prometheus'), { code: 'ERR_NOT_SUPPORTED' });
  });
});

test('prometheus returns the text of getPrometheusMetrics() when the pool has it', { timeout: 10000 }, async () => {
  await withServer(fakePool({ prometheus: true }), async (p) => {
    assert.match(await call(p, 'prometheus'), /^worker_pool_workers 2$/m);
  });
});

test('bad requests get error replies and the connection keeps working', { timeout: 10000 }, async () => {
  await withServer(fakePool(), async (p) => {
    const lines = [
      'this is not json\n',
      '[1,2]\n',
      '{"id":3}\n',
      '{"id":4,"cmd":"frobnicate"}\n',
      '{"id":5,"cmd":"scale","direction":"sideways","count":1}\n',
      '{"id":6,"cmd":"scale","direction":"up","count":-1}\n',
      '{"id":7,"cmd":"submit"}\n',
      '{"id":8,"cmd":"dlq-requeue","taskId":42}\n',
      '\n\r\n',
      '{"id":9,"cmd":"ping"}\r\n',
    ];
    const { lines: out } = await raw(p, [lines.join('')], { count: 9 });
    const byId = new Map(out.map((r) => [r.id, r]));
    assert.equal(out[0].id, null);
    assert.equal(out[0].error.code, 'ERR_BAD_JSON');
    assert.equal(out[1].error.code, 'ERR_BAD_REQUEST');
    assert.equal(byId.get(3).error.code, 'ERR_BAD_REQUEST');
    assert.equal(byId.get(4).error.code, 'ERR_UNKNOWN_COMMAND');
    assert.match(byId.get(4).error.message, /frobnicate/);
    for (const id of [5, 6, 7, 8]) assert.equal(byId.get(id).error.code, 'ERR_BAD_REQUEST', `request ${id}`);
    assert.equal(byId.get(9).ok, true);
  });
});

test('a request split across writes, and several in one write, are all answered', { timeout: 10000 }, async () => {
  await withServer(fakePool(), async (p) => {
    const msg = '{"id":1,"cmd":"submit","task":{"type":"t","payload":"héllo"}}\n';
    const bytes = Buffer.from(msg);
    const pieces = [bytes.subarray(0, 7), bytes.subarray(7, 30), bytes.subarray(30, 31), bytes.subarray(31)];
    const { lines } = await raw(p, pieces, { count: 1 });
    assert.deepEqual(lines[0], { id: 1, ok: true, result: { echo: 'héllo' } });
    const many = Array.from({ length: 20 }, (_, i) => `{"id":${i},"cmd":"submit","task":{"type":"t","payload":${i}}}\n`).join('');
    const { lines: out } = await raw(p, [many], { count: 20 });
    assert.deepEqual(
      out.map((r) => r.id).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i),
    );
    for (const r of out) assert.deepEqual(r.result, { echo: r.id });
  });
});

test('a line over 1 MiB gets an error reply, then the connection is closed; the server goes on', { timeout: 15000 }, async () => {
  await withServer(fakePool(), async (p) => {
    // Without a newline, streamed in pieces.
    const big = Buffer.alloc(256 * 1024, 'a');
    const r1 = await raw(p, [big, big, big, big, big], { count: 1 });
    assert.equal(r1.lines[0].ok, false);
    assert.equal(r1.lines[0].error.code, 'ERR_LINE_TOO_LONG');
    // With a newline, in one write: the reply, then the close.
    const r2 = await raw(p, [`{"id":1,"cmd":"ping","pad":"${'x'.repeat(1024 * 1024)}"}\n`], { count: 2 });
    assert.equal(r2.lines.length, 1);
    assert.equal(r2.lines[0].error.code, 'ERR_LINE_TOO_LONG');
    assert.equal(r2.closed, true);
    // Just under the limit is fine.
    const pad = 1024 * 1024 - 100;
    const ok = await request(p, { id: 'big', cmd: 'ping', pad: 'y'.repeat(pad) });
    assert.equal(ok.ok, true);
  });
});

test('a client that disconnects mid-request does not disturb the server', { timeout: 10000 }, async () => {
  const pool = fakePool();
  await withServer(pool, async (p) => {
    await new Promise((resolve) => {
      const s = net.connect(p, () => {
        s.write('{"id":1,"cmd":"submit","task":{"type":"slow","payload":{"ms":200}}}\n', () => {
          s.destroy();
          resolve();
        });
      });
      s.on('error', () => {});
    });
    await waitFor(() => pool.submitted.length === 1, 2000, 'the submit');
    await sleep(300); // the reply is written to a closed connection
    assert.equal((await request(p, { cmd: 'ping' })).ok, true);
  });
});

test('a client that half-closes after its requests still gets every response, then the close', { timeout: 10000 }, async () => {
  await withServer(fakePool(), async (p) => {
    const out = await new Promise((resolve, reject) => {
      const s = net.connect({ path: p, allowHalfOpen: true });
      let buf = '';
      s.setEncoding('utf8');
      s.on('connect', () => {
        s.write('{"id":1,"cmd":"submit","task":{"type":"slow","payload":{"ms":150}}}\n{"id":2,"cmd":"ping"}\n');
        s.end();
      });
      s.on('data', (d) => {
        buf += d;
      });
      s.on('error', reject);
      s.on('close', () => resolve(buf.split('\n').filter(Boolean).map((l) => JSON.parse(l))));
    });
    assert.deepEqual(out.map((r) => [r.id, r.ok]), [
      [2, true],
      [1, true],
    ]);
    assert.deepEqual(out[1].result, { echo: { ms: 150 } });
  });
});

test('many clients at once', { timeout: 20000 }, async () => {
  await withServer(fakePool(), async (p, srv) => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => call(p, 'submit', { task: { type: 'slow', payload: { ms: i % 20 } } })),
    );
    results.forEach((r, i) => assert.deepEqual(r, { echo: { ms: i % 20 } }));
    await waitFor(() => srv.connections() === 0, 2000, 'connections to close');
  });
});

test('a stale socket file is replaced; a live socket or a non-socket file is refused', { timeout: 20000 }, async () => {
  const p = sockPath();
  await makeStaleSocket(p);
  const a = startControlServer(fakePool(), p);
  await a.ready;
  assert.equal((await request(p, { cmd: 'ping' })).ok, true);
  assert.equal(fileMode(p), 0o600);

  const b = startControlServer(fakePool(), p);
  await assert.rejects(b.ready, { code: 'ERR_SOCKET_IN_USE' });
  await b.close();
  assert.equal((await request(p, { cmd: 'ping' })).ok, true, 'the refused server did not remove the live socket');
  await a.close();
  assert.equal(fs.existsSync(p), false, 'close() removes the socket file');
  await assert.rejects(request(p, { cmd: 'ping' }), {
    code: 'ERR_DAEMON_NOT_RUNNING',
    message: `worker-pool daemon is not running (no socket at ${p})`,
  });

  const f = sockPath();
  fs.writeFileSync(f, 'precious');
  const c = startControlServer(fakePool(), f);
  await assert.rejects(c.ready, { code: 'ERR_SOCKET_IN_USE' });
  await c.close();
  assert.equal(fs.readFileSync(f, 'utf8'), 'precious');
});

test('shutdown answers first, then calls the hook', { timeout: 10000 }, async () => {
  const pool = fakePool();
  let hooked = 0;
  await withServer(
    pool,
    async (p) => {
      assert.deepEqual(await call(p, 'shutdown'), { shuttingDown: true });
      await waitFor(() => hooked === 1, 2000, 'the shutdown hook');
    },
    { onShutdown: () => hooked++ },
  );
  assert.equal(pool.shutdowns, 0);
  // Without a hook, the pool is shut down gracefully.
  await withServer(pool, async (p) => {
    await call(p, 'shutdown');
    await waitFor(() => pool.shutdowns === 1, 2000, 'pool.shutdown');
  });
});

test('the client reports a stale socket and a silent server clearly', { timeout: 10000 }, async () => {
  const stale = sockPath();
  await makeStaleSocket(stale);
  await assert.rejects(request(stale, { cmd: 'ping' }), { code: 'ERR_DAEMON_NOT_RUNNING', message: /not running/ });
  const silent = sockPath();
  const server = net.createServer((s) => s.on('error', () => {}).resume());
  await new Promise((r) => server.listen(silent, r));
  try {
    await assert.rejects(request(silent, { cmd: 'ping' }, 200), { code: 'ERR_TIMEOUT' });
  } finally {
    await new Promise((r) => server.close(r));
  }
});

function httpGet(port, urlPath, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('HTTP metrics: GET /metrics on 127.0.0.1; refused without getPrometheusMetrics()', { timeout: 10000 }, async () => {
  await assert.rejects(startMetricsServer(fakePool(), { port: 0 }), { code: 'ERR_NOT_SUPPORTED' });
  const m = await startMetricsServer(fakePool({ prometheus: true }), { port: 0 });
  try {
    assert.equal(m.host, '127.0.0.1');
    const ok = await httpGet(m.port, '/metrics');
    assert.equal(ok.status, 200);
    assert.match(ok.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    assert.match(ok.body, /^worker_pool_workers 2$/m);
    assert.equal((await httpGet(m.port, '/')).status, 404);
    assert.equal((await httpGet(m.port, '/metrics', 'POST')).status, 405);
  } finally {
    await m.close();
  }
});

test('a real pool behind the control socket', { timeout: 30000 }, async () => {
  const pool = await createWorkerPool({ poolSize: 2, minWorkers: 1, maxWorkers: 3, logLevel: 'silent', maxTaskRetries: 0 });
  try {
    await withServer(pool, async (p) => {
      assert.deepEqual(await call(p, 'submit', { task: { type: 'test', payload: { a: 1 } } }), { status: 'completed', result: { a: 1 } });
      const failed = await request(p, { cmd: 'submit', task: { type: 'missing' } });
      assert.equal(failed.ok, false);
      assert.equal(failed.error.code, 'ERR_NO_HANDLER');
      const bad = await request(p, { cmd: 'submit', task: { type: 'test', priority: 'high' } });
      assert.equal(bad.error.code, 'ERR_INVALID_TASK');
      assert.equal((await call(p, 'dlq')).length, 1);
      assert.deepEqual(await call(p, 'dlq-requeue'), { requeued: 1 });
      await waitFor(async () => (await call(p, 'dlq')).length === 1, 5000, 'the requeued task to fail again');
      assert.deepEqual(await call(p, 'dlq-clear'), { cleared: 1 });
      const up = await call(p, 'scale', { direction: 'up', count: 5 });
      assert.deepEqual(up, { direction: 'up', requested: 5, count: 1, newSize: 3 });
      const workers = await call(p, 'workers');
      assert.deepEqual(workers.map((w) => w.id).sort(), ['worker-0', 'worker-1', 'worker-2']);
      const m = await call(p, 'metrics');
      assert.equal(m.workers.total, 3);
      if (typeof pool.getPrometheusMetrics === 'function') assert.equal(typeof (await call(p, 'prometheus')), 'string');
      else await assert.rejects(call(p, 'prometheus'), { code: 'ERR_NOT_SUPPORTED' });
    });
  } finally {
    await pool.shutdown(true);
  }
});
