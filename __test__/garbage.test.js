'use strict';
// The daemon's entry points fed garbage: its control socket (random and mutated NDJSON,
// partial lines, 10 MB lines, invalid UTF-8, clients that never finish a line, 1,000
// connections at once) and its dashboard's HTTP server (random methods, paths, headers,
// bodies, tokens). The daemon runs as its own process (scripts/daemon.js, the echo
// fixture worker). For each: the daemon stays up, answers what deserves an answer with
// a coded error, holds no more descriptors or memory after than before, and still
// serves tasks.
//
// The inputs come from fast-check, seeded: the seed is printed, GARBAGE_SEED=<n>
// replays a run (a failure also prints fast-check's own seed and path).
// Run: node --test __test__/garbage.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');
const fc = require('fast-check');
const { request } = require('../lib/control-client');
const { ROOT, fixture, tempDir, daemonEnv, listeningPort, waitFor, assertGone, childrenOf } = require('./helpers');

const SEED = process.env.GARBAGE_SEED !== undefined ? Number(process.env.GARBAGE_SEED) : 20261207;
const TOKEN = 'garbage-test-token-0123456789abcdef';
const WAIT_MS = 30000;
// The daemon's anonymous RSS may end this much above where it started. It is measured
// around a second round, after a warm-up round, so first-use allocations (V8 code, the
// JSON parser's buffers, glibc arenas) are in the baseline; what is left is what the
// collector has not returned yet (V8's young generation alone is up to 32 MB with
// Node's defaults, though it rarely holds much). A leak of what the garbage is made of
// does not fit: 1,000 connections, six 10 MB lines or hundreds of requests per round
// would each retain tens of MB. (Seen: under 3 MB.)
const RSS_TOLERANCE_MB = 32;
const MB = 1024 * 1024;

const ctx = { dir: null, daemon: null, output: '', port: null, socket: null, exited: null, workerPids: new Set() };

// The daemon's own reads of /proc files (its samplers, libuv's load average) hold a
// descriptor for a moment: not a client's, so not counted.
function daemonFds() {
  return fdTargets().filter((t) => !t.startsWith('/proc/')).length;
}

/** What the daemon's descriptors point at (for a failure's message). */
function fdTargets() {
  const dir = `/proc/${ctx.daemon.pid}/fd`;
  return fs.readdirSync(dir).map((f) => {
    try {
      return fs.readlinkSync(`${dir}/${f}`);
    } catch {
      return '?';
    }
  });
}

/**
 * The daemon's anonymous resident memory (RssAnon: its heap, malloc, buffers). The
 * file-backed rest of its RSS is node's and the addon's code, paged in and out by the
 * kernel, which says nothing about what the daemon holds.
 */
function daemonRssMb() {
  const m = /RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${ctx.daemon.pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

function assertDaemonUp() {
  assert.equal(ctx.daemon.exitCode, null, `the daemon exited; its output:\n${ctx.output}`);
  assert.equal(ctx.daemon.signalCode, null, `the daemon was killed; its output:\n${ctx.output}`);
}

/** A task through the control socket, answered by a worker. */
async function assertServes(what) {
  const r = await request(ctx.socket, { cmd: 'submit', task: { type: 'echo', payload: { what } } }, 10000);
  assert.equal(r.ok, true, `${what}: ${JSON.stringify(r)}`);
  assert.deepEqual(r.result, { what });
}

/** Back to two workers (the dashboard's actions may have scaled) and every one ready. */
async function settlePool() {
  await waitFor(async () => {
    const r = await request(ctx.socket, { cmd: 'metrics' });
    const size = r.result.pool.size;
    if (size > 2) await request(ctx.socket, { cmd: 'scale', direction: 'down', count: size - 2 });
    if (size < 2) await request(ctx.socket, { cmd: 'scale', direction: 'up', count: 2 - size });
    const w = (await request(ctx.socket, { cmd: 'workers' })).result;
    for (const x of w) ctx.workerPids.add(x.pid);
    return size === 2 && w.length === 2 && w.every((x) => x.state === 'idle' || x.state === 'ready');
  }, WAIT_MS, { what: 'two idle workers', interval: 200 });
}

/**
 * Resource use around a second round of `fn(round)` (the first is the warm-up): the
 * descriptors must come back to what they were (every connection closed, every
 * worker the same), the anonymous RSS stay within tolerance.
 */
async function holdsNoMore(t, fn) {
  await fn(1); // the warm-up round
  assertDaemonUp();
  await settlePool();
  const fds = daemonFds();
  const rss = daemonRssMb();
  await fn(2);
  assertDaemonUp();
  await settlePool();
  let now = 0;
  await waitFor(() => (now = daemonFds()) <= fds, 10000, {
    message: () => `the daemon's descriptors back to ${fds}, now ${now}: ${fdTargets().join(' ')}`,
  });
  const after = daemonRssMb();
  t.diagnostic(`daemon: ${fds} fds before and ${now} after; anonymous RSS ${rss.toFixed(1)} MB before, ${after.toFixed(1)} MB after`);
  assert.ok(after - rss < RSS_TOLERANCE_MB, `the daemon's anonymous RSS grew from ${rss.toFixed(1)} to ${after.toFixed(1)} MB`);
  await assertServes('after garbage');
}

test.before(async () => {
  ctx.dir = tempDir('wpgarbage-');
  ctx.socket = path.join(ctx.dir, 'pool.sock');
  const env = daemonEnv(ctx.dir, {
    MIN_WORKERS: '1',
    MAX_WORKERS: '4',
    WORKER_SCRIPT: fixture('echo-worker.js'),
    METRICS_PORT: '0',
    METRICS_LOG_INTERVAL_MS: '0',
    DASHBOARD_TOKEN: TOKEN,
    LOG_LEVEL: 'warn',
  });
  delete env.METRICS_HOST;
  ctx.daemon = spawn(process.execPath, [path.join(ROOT, 'scripts', 'daemon.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  ctx.exited = new Promise((resolve) => ctx.daemon.on('close', (code, signal) => resolve({ code, signal })));
  for (const s of [ctx.daemon.stdout, ctx.daemon.stderr]) {
    s.setEncoding('utf8').on('data', (d) => {
      ctx.output = (ctx.output + d).slice(-100000);
    });
  }
  // LOG_LEVEL=warn hides the "Dashboard at" line: the port is read from /proc.
  await waitFor(() => fs.existsSync(ctx.socket), WAIT_MS, { message: () => `the control socket; the daemon said:\n${ctx.output}` });
  await waitFor(async () => (await request(ctx.socket, { cmd: 'ping' })).ok, WAIT_MS, 'a ping');
  ctx.port = await waitFor(() => listeningPort(ctx.daemon.pid), WAIT_MS, 'the HTTP port');
  console.log(`# garbage: seed ${SEED} (replay with GARBAGE_SEED=${SEED})`);
});

test.after(async () => {
  if (!ctx.daemon) return;
  if (ctx.daemon.exitCode === null && ctx.daemon.signalCode === null) {
    for (const c of childrenOf(ctx.daemon.pid)) ctx.workerPids.add(c.pid);
    ctx.daemon.kill('SIGTERM');
    const t = setTimeout(() => ctx.daemon.kill('SIGKILL'), 15000);
    await ctx.exited;
    clearTimeout(t);
  }
  await assertGone([...ctx.workerPids], 10000);
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------
// The control socket

/** What a control request may hold: real commands (never shutdown or scale) and junk. */
const anyValue = fc.anything({ maxDepth: 2, maxKeys: 4, withNullPrototype: false });
const taskArb = fc.record(
  {
    type: fc.oneof(fc.constantFrom('echo', 'implementation', 'throw', 'throw-value', 'no-such-handler'), fc.string({ maxLength: 8 }), anyValue),
    payload: anyValue,
    priority: fc.oneof(fc.double(), fc.integer({ min: -5, max: 50 }), anyValue),
    timeout: fc.oneof(fc.double({ min: -10, max: 1e300 }), fc.integer({ min: -5, max: 5000 }), fc.string({ maxLength: 4 })),
    // Always given, 0 or malformed: a task that throws is retried this often, with
    // backoff (1 s, 2 s, 4 s by default), and the run would wait for it.
    maxRetries: fc.oneof(fc.constantFrom(0, -1, 0.5, '1', true), fc.string({ maxLength: 3 })),
    metadata: anyValue,
    requires: fc.oneof(fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), anyValue),
  },
  { requiredKeys: ['maxRetries'] },
);
const requestArb = fc.record(
  {
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.constant(null), anyValue),
    cmd: fc.oneof(fc.constantFrom('ping', 'metrics', 'workers', 'dlq', 'dlq-requeue', 'dlq-clear', 'prometheus', 'submit', 'submit', 'nope', ''), fc.string({ maxLength: 10 }), anyValue),
    task: fc.oneof(taskArb, anyValue),
    taskId: fc.oneof(fc.string({ maxLength: 20 }), anyValue),
  },
  { requiredKeys: [] },
);
/** A request with some bytes of it replaced, cut or doubled. */
const mutatedArb = fc
  .tuple(requestArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'dup')), { minLength: 1, maxLength: 4 }))
  .map(([req, edits]) => {
    let b = Buffer.from(JSON.stringify(req));
    for (const [at, byte, op] of edits) {
      const i = b.length ? at % b.length : 0;
      if (op === 'set' && b.length) b[i] = byte;
      else if (op === 'cut') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)]);
      else b = Buffer.concat([b.subarray(0, i + 1), b.subarray(i)]);
    }
    return b;
  });
const lineArb = fc.oneof(
  { weight: 4, arbitrary: requestArb.map((r) => Buffer.from(JSON.stringify(r))) },
  { weight: 3, arbitrary: mutatedArb },
  { weight: 1, arbitrary: fc.json({ maxDepth: 2 }).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s)) },
  // Raw bytes: invalid UTF-8, NULs, bare CRs, newlines inside.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)) },
);

/** How many responses the server owes for `bytes`: one per complete, non-blank line. */
function owed(bytes) {
  let n = 0;
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(10, start);
    if (nl === -1) return n;
    let text = bytes.subarray(start, nl).toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() !== '') n++;
    start = nl + 1;
  }
}

/** Connections that had to wait for room in the socket's listen queue (see `connect`). */
let connectRetries = 0;

/**
 * Connects to the control socket. A Unix socket whose listen queue (511) is full
 * refuses at once with EAGAIN, unlike TCP, which waits: with 1,000 connections opened
 * together that is the kernel's answer, not the daemon's, so the client tries again
 * shortly, as any client must.
 */
function connect() {
  return new Promise((resolve, reject) => {
    const attempt = (left) => {
      const sock = net.createConnection(ctx.socket);
      sock.once('connect', () => resolve(sock));
      sock.once('error', (e) => {
        if (e.code !== 'EAGAIN' || left === 0) return reject(e);
        connectRetries++;
        setTimeout(() => attempt(left - 1), 10);
      });
    };
    attempt(500);
  });
}

/**
 * Sends `bytes` in pieces cut at `cuts` (partial lines on the wire), then half-closes;
 * resolves with every response line once the server ended the connection.
 */
async function exchange(bytes, cuts) {
  const sock = await connect();
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no end of the conversation within 20 s; got so far:\n${buf.slice(0, 2000)}`));
    }, 20000);
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      buf += d;
    });
    sock.on('error', () => {}); // a reset after a refusal is an answer too
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(buf.split('\n').filter(Boolean));
    });
    (async () => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let at = 0;
      for (const p of [...points, bytes.length]) {
        if (p > at) sock.write(bytes.subarray(at, p));
        at = Math.max(at, p);
        await new Promise((r) => setImmediate(r));
      }
      sock.end();
    })();
  });
}

function assertCoded(r, context) {
  assert.equal(typeof r.ok, 'boolean', context);
  assert.ok('id' in r, context);
  if (!r.ok) {
    assert.match(r.error.code, /^(ERR_[A-Z_]+|ABORT_ERR)$/, context);
    assert.equal(typeof r.error.message, 'string', context);
    assert.ok(r.error.message.length > 0, context);
    assert.notEqual(r.error.code, 'ERR_INTERNAL', `an internal error is a bug: ${context}`);
  }
}

test('control socket: random and mutated NDJSON in partial lines gets one coded answer per line', { timeout: 180000 }, async (t) => {
  t.diagnostic(`seed ${SEED}`);
  await holdsNoMore(t, async (round) => {
    let lines = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(lineArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), async (ls, cuts) => {
        const bytes = Buffer.concat(ls.flatMap((l) => [l, Buffer.from('\n')]));
        const want = owed(bytes);
        const got = await exchange(bytes, cuts);
        const context = `sent ${JSON.stringify(bytes.toString('latin1'))}, got ${JSON.stringify(got)}`;
        assert.equal(got.length, want, `one answer per non-blank line: ${context}`);
        for (const text of got) assertCoded(JSON.parse(text), context);
        lines += want;
      }),
      { seed: SEED + round, numRuns: 250, endOnFailure: true, includeErrorInReport: true },
    );
    t.diagnostic(`round ${round}: ${lines} request lines answered`);
  });
});

test('control socket: 10 MB lines, clients that never finish a line, 1,000 connections at once', { timeout: 180000 }, async (t) => {
  await holdsNoMore(t, async () => {
    // 10 MB lines: refused with ERR_LINE_TOO_LONG and the connection closed, whether
    // or not the line ever ends, and whatever it is made of.
    const rng = fc.sample(fc.integer({ min: 0, max: 255 }), { seed: SEED, numRuns: 6 });
    for (const [i, byte] of rng.entries()) {
      const big = Buffer.alloc(10 * MB, byte === 10 ? 0x20 : byte);
      const bytes = i % 2 ? Buffer.concat([big, Buffer.from('\n{"id":1,"cmd":"ping"}\n')]) : big;
      const got = await exchange(bytes, [MB, 3 * MB]);
      assert.ok(got.length >= 1, `an answer to a 10 MB line of byte ${byte}`);
      const r = JSON.parse(got[0]);
      assert.equal(r.error.code, 'ERR_LINE_TOO_LONG', got[0]);
      assert.equal(got.length, 1, 'nothing after the refusal: the connection is closed');
    }
    // Clients that never finish a line (and one that never sends anything) do not
    // hold up anyone else; they leave when they like.
    const slow = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const s = await connect();
      s.on('error', () => {});
      if (i % 10) s.write(`{"id":${i},"cmd":"pi`);
      return s;
    }));
    await assertServes('while 50 clients stall');
    for (const s of slow) s.destroy();
    // 1,000 connections at once, each with a ping: every one answered.
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => exchange(Buffer.from(`{"id":${i},"cmd":"ping"}\n`), [])));
    answers.forEach((got, i) => {
      assert.equal(got.length, 1, `connection ${i}: ${got}`);
      const r = JSON.parse(got[0]);
      assert.equal(r.id, i);
      assert.equal(r.result.pong, true);
    });
    t.diagnostic(`1,000 simultaneous connections answered (${connectRetries} connects so far waited for the listen queue)`);
  });
});

// ---------------------------------------------------------------------------------
// The dashboard's HTTP server

const ACTIONS = ['/api/scale', '/api/dlq/requeue', '/api/dlq/clear'];
const KNOWN_PATHS = ['/', '/api/status', '/api/events', '/metrics', '/api', '/api/', '/favicon.ico', ...ACTIONS];
const tokenChars = fc.constantFrom(...'abcdefABCDEF0123456789-_.~+/='.split(''));
const httpArb = fc.record({
  method: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('GET', 'HEAD', 'POST', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH') },
    { weight: 1, arbitrary: fc.stringMatching(/^[A-Z]{1,8}$/) },
  ),
  path: fc.oneof(
    fc.constantFrom(...KNOWN_PATHS, ...ACTIONS),
    fc.tuple(fc.constantFrom(...KNOWN_PATHS), fc.webQueryParameters()).map(([p, q]) => `${p}?${q}`),
    fc.webPath().map((p) => p || '/'),
    fc.tuple(fc.constantFrom(...KNOWN_PATHS), fc.constantFrom('/', '//', '/..', '%2e%2e', '%00', '/%ff')).map(([a, b]) => a + b),
  ),
  auth: fc.oneof(
    fc.constant(null),
    fc.constant(`Bearer ${TOKEN}`),
    fc.string({ unit: tokenChars, maxLength: 40 }).map((s) => `Bearer ${s}`),
    fc.constant(`Bearer ${TOKEN}x`),
    fc.constant(`bearer ${TOKEN.slice(1)}`),
    fc.constant(TOKEN),
    fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
  ),
  headers: fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), fc.stringMatching(/^[\x21-\x7e]{0,40}$/), { maxKeys: 4 }),
  body: fc.oneof(
    fc.constant(''),
    fc.json({ maxDepth: 2 }),
    fc.record({ direction: fc.oneof(fc.constantFrom('up', 'down'), fc.string()), count: fc.oneof(fc.integer({ min: -2, max: 3 }), anyValue), taskId: anyValue }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
    fc.string({ unit: 'binary', maxLength: 100 }),
    fc.integer({ min: 4000, max: 9000 }).map((n) => 'x'.repeat(n)),
  ),
});

function httpExchange(req) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers };
    for (const k of ['host', 'content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade', 'authorization']) delete headers[k];
    if (req.auth !== null) headers.authorization = req.auth;
    const r = http.request({ host: '127.0.0.1', port: ctx.port, method: req.method, path: req.path, headers, agent: false }, (res) => {
      if (res.headers['content-type'] && res.headers['content-type'].startsWith('text/event-stream')) {
        // The event stream never ends: its headers are the answer.
        res.destroy();
        resolve({ status: res.statusCode, headers: res.headers, text: '' });
        return;
      }
      let text = '';
      res.setEncoding('utf8').on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', reject);
    });
    r.setTimeout(10000, () => r.destroy(new Error(`no answer within 10 s to ${req.method} ${req.path}`)));
    r.on('error', (e) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? resolve({ status: 0, headers: {}, text: '' }) : reject(e)));
    r.end(req.method === 'GET' || req.method === 'HEAD' ? undefined : req.body);
  });
}

test('dashboard: random methods, paths, headers, bodies and tokens get coded answers; only the token acts', { timeout: 180000 }, async (t) => {
  await holdsNoMore(t, async (round) => {
    const seen = new Map();
    await fc.assert(
      fc.asyncProperty(httpArb, async (req) => {
        const res = await httpExchange(req);
        const context = `${req.method} ${req.path} (auth ${JSON.stringify(req.auth)}) -> ${res.status} ${res.text.slice(0, 300)}`;
        seen.set(res.status, (seen.get(res.status) || 0) + 1);
        // A reset happens only to an oversized body (answered 413, then cut off).
        if (res.status === 0) {
          assert.ok(req.body.length > 4096, context);
          return;
        }
        assert.ok(res.status >= 200 && res.status < 500 || res.status === 503, `no server error: ${context}`);
        const pathname = req.path.split('?')[0];
        if (!http.METHODS.includes(req.method)) {
          // Node's parser refuses a method it does not know before the dashboard sees it.
          assert.equal(res.status, 400, context);
          return;
        }
        if (pathname.startsWith('/api/') && res.status >= 400 && req.method !== 'HEAD') {
          const body = JSON.parse(res.text);
          assert.match(body.error.code, /^ERR_[A-Z_]+$/, context);
          assert.ok(body.error.message.length > 0, context);
        }
        if (ACTIONS.includes(pathname) && req.method === 'POST' && req.auth !== `Bearer ${TOKEN}`) {
          assert.ok(res.status === 401 || res.status === 413, `a wrong token never acts: ${context}`);
        }
      }),
      { seed: SEED + round, numRuns: 300, endOnFailure: true, includeErrorInReport: true },
    );
    t.diagnostic(`round ${round}: statuses ${JSON.stringify(Object.fromEntries(seen))}`);
    // Raw bytes that are no HTTP at all: the server answers 400 or closes, and goes on.
    const raws = fc.sample(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), fc.string({ unit: 'binary', maxLength: 200 }).map((s) => Buffer.from(`${s}\r\n\r\n`))), { seed: SEED, numRuns: 60 });
    for (const bytes of raws) {
      const answer = await new Promise((resolve, reject) => {
        const s = net.createConnection(ctx.port, '127.0.0.1');
        let text = '';
        const timer = setTimeout(() => reject(new Error(`the server neither answered nor closed after ${JSON.stringify(bytes.toString('latin1'))}`)), 10000);
        s.on('data', (d) => {
          text += d.toString('latin1');
        });
        s.on('error', () => {});
        s.on('close', () => {
          clearTimeout(timer);
          resolve(text);
        });
        s.end(bytes);
      });
      if (answer) assert.match(answer, /^HTTP\/1\.1 \d{3} /, JSON.stringify(answer.slice(0, 200)));
    }
  });
});
