'use strict';
// The two wire formats between JavaScript and the core (lib/wire.js, the tables in
// docs/ARCHITECTURE.md): the encoder against the documented field order, the decoder
// against the documented record kinds, and a round trip of JS-encoded submit lines
// through a real core and real worker processes, read back by the JS decoder.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test, fixture, openPool, waitFor, within, ROOT } = require('./helpers');
const { SUBMIT_FIELDS, encodeSubmitLine, RECORD_KINDS, decodeEvents } = require('../lib/wire');
const { validateTask } = require('../lib/task-validate');

/** The rows of the markdown table under `### <heading>` in docs/ARCHITECTURE.md. */
function docTable(heading) {
  const text = fs.readFileSync(path.join(ROOT, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const at = text.indexOf(`### ${heading}`);
  assert.ok(at >= 0, `docs/ARCHITECTURE.md has "### ${heading}"`);
  const rows = [];
  for (const line of text.slice(at).split('\n').slice(1)) {
    if (line.startsWith('### ') || line.startsWith('## ')) break;
    if (!line.startsWith('|') || /^\|\s*-/.test(line)) continue;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows.slice(1); // without the header row
}

const TRICKY = [
  'ünïcödé-类型-🚀',
  'tab\there',
  'line\nbreak "quoted" \\ back\r\u2028\u2029',
  'plain',
];

test('encodeSubmitLine writes the documented fields in the documented order', () => {
  const documented = docTable('Submit line').map((row) => row[1]);
  assert.deepEqual(documented, SUBMIT_FIELDS);

  const t = validateTask({
    type: TRICKY[1],
    payload: { s: 'a\tb\nc', u: '🚀' },
    priority: -2.5,
    timeout: 1500.5,
    maxRetries: 0,
    requires: ['gpu', 'tab\tcap'],
    metadata: { user: 'é\n' },
  });
  const line = encodeSubmitLine(Number.MAX_SAFE_INTEGER, t);
  assert.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, 'one line, newline-terminated');
  const fields = line.slice(0, -1).split('\t');
  assert.equal(fields.length, SUBMIT_FIELDS.length);
  const got = Object.fromEntries(SUBMIT_FIELDS.map((name, i) => [name, fields[i]]));
  assert.deepEqual(got, {
    seq: '9007199254740991',
    priority: '-2.5',
    timeout: '1500.5',
    maxRetries: '0',
    type: JSON.stringify(TRICKY[1]),
    payload: JSON.stringify({ s: 'a\tb\nc', u: '🚀' }),
    metadata: JSON.stringify({ user: 'é\n' }),
    requires: JSON.stringify(['gpu', 'tab\tcap']),
  });

  // Absent optional fields are empty (the payload defaults to null on this side).
  const bare = encodeSubmitLine(1, validateTask({ type: 'x' })).slice(0, -1).split('\t');
  assert.deepEqual(bare, ['1', '10', '', '', '"x"', 'null', '', '']);
});

test('decodeEvents knows the documented record kinds and hands each to the sink in order', () => {
  const documented = Object.fromEntries(
    docTable('Event records (the events callback)').map(([k, fields]) => [k.replace(/`/g, ''), [...fields.matchAll(/`(\w+)`/g)].map((m) => m[1])]),
  );
  assert.deepEqual(documented, RECORD_KINDS);

  const seen = [];
  const sink = {
    ok: (s, r) => seen.push(['ok', s, r]),
    err: (s, e) => seen.push(['err', s, e.code]),
    op: (o, ok, r, e) => seen.push(['op', o, ok, r, e && e.code]),
    ev: (n, d) => {
      seen.push(['ev', n, d]);
      throw new Error('a listener threw');
    },
    q: (d) => seen.push(['q', d.event]),
    h: (d) => seen.push(['h', d.event]),
    log: (rec) => seen.push(['log', rec.level, rec.message]),
    wm: (w, p, m) => seen.push(['wm', w, p, m.type]),
  };
  const text = JSON.stringify([
    { k: 'ok', s: 9007199254740991, r: { a: '\t' } },
    { k: 'ev', n: 'drain', d: {} },
    { k: 'err', s: 2, e: { code: 'ERR_TASK_TIMEOUT', message: 'late' } },
    { k: 'op', o: 3, ok: false, e: { code: 'ERR_POOL_SHUTDOWN', message: 'gone' } },
    { k: 'q', d: { event: 'task-enqueued' } },
    { k: 'h', d: { event: 'worker-registered' } },
    { k: 'log', level: 'warn', component: 'PoolManager', timestamp: 1, message: 'm' },
    { k: 'wm', w: 'worker-1', p: 42, m: { type: 'custom' } },
    { k: 'from-the-future' },
  ]);
  const thrown = decodeEvents(text, sink);
  assert.equal(thrown && thrown.message, 'a listener threw', 'the first error comes back after the batch');
  assert.deepEqual(seen, [
    ['ok', 9007199254740991, { a: '\t' }],
    ['ev', 'drain', {}],
    ['err', 2, 'ERR_TASK_TIMEOUT'],
    ['op', 3, false, undefined, 'ERR_POOL_SHUTDOWN'],
    ['q', 'task-enqueued'],
    ['h', 'worker-registered'],
    ['log', 'warn', 'm'],
    ['wm', 'worker-1', 42, 'custom'],
  ]);
  assert.equal(decodeEvents('', sink), null);
});

/**
 * A core with one worker, driven through the binding directly: submit lines made by
 * encodeSubmitLine, event records read by decodeEvents, nothing of lib/pool.js between.
 */
async function openCore(t, config) {
  const { NativePool } = require('../lib/native');
  const { DEFAULT_WORKER_SCRIPT } = require('../lib/pool');
  const got = { ok: new Map(), err: new Map(), op: new Map() };
  const sink = {
    ok: (s, r) => got.ok.set(s, r),
    err: (s, e) => got.err.set(s, e),
    op: (o, ok, r, e) => got.op.set(o, { ok, r, e }),
    ev() {},
    q() {},
    h() {},
    log() {},
    wm() {},
  };
  const native = new NativePool(JSON.stringify(config), process.execPath, DEFAULT_WORKER_SCRIPT, (text) => {
    const thrown = decodeEvents(text, sink);
    if (thrown) throw thrown;
  });
  // The binding keeps nothing alive by itself (lib/pool.js does that while work is pending).
  const keepAlive = setInterval(() => {}, 1000);
  t.after(async () => {
    native.shutdown(false, 99);
    await waitFor(() => got.op.has(99), 20000, 'shutdown');
    clearInterval(keepAlive);
  });
  native.initialize(undefined, 1);
  await waitFor(() => got.op.get(1), 30000, 'initialize');
  assert.equal(got.op.get(1).ok, true, JSON.stringify(got.op.get(1)));
  return { native, got };
}

const SEQS = [1, 2 ** 31, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER];
const PAYLOADS = [
  { s: 'a\tb\nc\r\u2028\u2029"\\', emoji: '🚀', nested: [null, 1.5, { '': '' }] },
  '',
  null,
  0,
  ['ü', 'tab\t', []],
];
const CAPS = ['gpu', 'ünï cap\t1'];

/** The test tasks; `shift` moves the sequence numbers (staying within 1..2^53-1). */
function cases(shift, fail) {
  return SEQS.map((seq, i) => {
    const payload = fail ? { fail: true, i } : PAYLOADS[i];
    const task = {
      type: TRICKY[i % TRICKY.length],
      payload,
      priority: [0, -2.5, 1e6, 7, 10][i],
      // Every other task leaves the optional fields out.
      ...(i % 2 === 0 ? {} : { timeout: 1500.5 + i, maxRetries: 0, metadata: { who: 'é\t\n', i }, requires: [CAPS[i % 2]] }),
    };
    return { seq: seq > shift ? seq - shift : seq + shift, task, t: validateTask(task) };
  });
}

test('submit lines encoded in JS reach the core and come back through real tasks with the same fields', async (t) => {
  const { native, got } = await openCore(t, {
    workerScript: fixture('wire-worker.js'),
    workerGroups: [{ size: 1, capabilities: CAPS }],
    env: { WIRE_TYPES: JSON.stringify(TRICKY) },
    taskTimeout: 60000,
    maxTaskRetries: 0,
    logLevel: 'silent',
  });

  // Succeeding tasks: the worker answers the type, payload, timeout and id it was given.
  const ok = cases(0, false);
  assert.equal(native.submitBatch(ok.map((c) => encodeSubmitLine(c.seq, c.t)).join('')), '');
  await within(waitFor(() => ok.every((c) => got.ok.has(c.seq)), 20000, 'all results'), 25000, 'results');
  for (const { seq, task } of ok) {
    const r = got.ok.get(seq);
    assert.deepEqual(r.payload, task.payload, `payload of ${seq}`);
    assert.equal(r.type, task.type, `type of ${seq}`);
    assert.equal(r.timeout, task.timeout === undefined ? 60000 : Math.ceil(task.timeout), `timeout of ${seq}`);
    assert.ok(r.taskId.endsWith(`-${seq}`), `${r.taskId} is task ${seq}`);
  }

  // Failing tasks go to the dead-letter queue whole: the fields the worker never sees.
  const failing = cases(1000, true);
  assert.equal(native.submitBatch(failing.map((c) => encodeSubmitLine(c.seq, c.t)).join('')), '');
  await within(waitFor(() => failing.every((c) => got.err.has(c.seq)), 20000, 'all failures'), 25000, 'failures');
  const dead = JSON.parse(native.call('queue.getDeadLetterQueue', '[]'));
  for (const { seq, task } of failing) {
    assert.equal(got.err.get(seq).code, 'ERR_TASK_FAILED');
    const rec = dead.find((d) => d.id.endsWith(`-${seq}`));
    assert.ok(rec, `dead letter of ${seq}`);
    assert.equal(rec.task.type, task.type);
    assert.deepEqual(rec.task.payload, task.payload);
    assert.deepEqual(rec.task.metadata, task.metadata);
    assert.deepEqual(rec.task.requires, task.requires);
    assert.equal(rec.priority, task.priority);
    assert.equal(rec.maxRetries, task.maxRetries ?? 0);
    assert.equal(rec.timeoutMs, task.timeout === undefined ? 60000 : Math.ceil(task.timeout));
  }
});

test('through pool.submitTask: tricky types and payloads come back unchanged', async (t) => {
  const { pool } = await openPool(t, {
    poolSize: 1,
    workerScript: fixture('wire-worker.js'),
    env: { WIRE_TYPES: JSON.stringify(TRICKY) },
  });
  const results = await Promise.all(
    PAYLOADS.map((payload, i) => pool.submitTask({ type: TRICKY[i % TRICKY.length], payload, metadata: { i, s: '\t' } })),
  );
  results.forEach((r, i) => {
    assert.deepEqual(r.payload, PAYLOADS[i]);
    assert.equal(r.type, TRICKY[i % TRICKY.length]);
  });
});
