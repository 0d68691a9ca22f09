'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const FIFOChannel = require('../fifo-channel.js');
const { encodeFrame, FrameDecoder } = FIFOChannel;

const FIXTURE = path.join(__dirname, 'fixtures', 'fifo-echo-worker.js');
const WAIT_MS = 5000;

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fifo-channel-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolve with the first `count` messages from `emitter`'s `event` matching `filter`.
function collect(emitter, event, count, filter = () => true, label = event) {
  const got = [];
  let handler;
  const p = new Promise((resolve) => {
    handler = (m) => {
      if (!filter(m)) return;
      got.push(m);
      if (got.length === count) resolve(got);
    };
    emitter.on(event, handler);
  });
  return withTimeout(p, WAIT_MS, `${count} x ${label} (got ${got.length})`).finally(() =>
    emitter.removeListener(event, handler)
  );
}

function spawnEcho(t, channel) {
  const child = spawn(process.execPath, [FIXTURE, channel.inPath, channel.outPath], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function newChannel(t, id = 'worker-1', options) {
  const dir = tempDir(t);
  const ch = new FIFOChannel(id, dir, options);
  ch.on('error', () => {}); // tests that care attach their own listener
  t.after(() => ch.close());
  await ch.createChannel();
  return { ch, dir };
}

// ---------------------------------------------------------------- framing

test('encodeFrame: 4-byte big-endian length + UTF-8 JSON', () => {
  const obj = { a: 1, s: 'héllo ✓' };
  const frame = encodeFrame(obj);
  const json = JSON.stringify(obj);
  assert.strictEqual(frame.readUInt32BE(0), Buffer.byteLength(json));
  assert.strictEqual(frame.length, 4 + Buffer.byteLength(json));
  assert.strictEqual(frame.subarray(4).toString('utf8'), json);
  assert.throws(() => encodeFrame(undefined), { code: 'ERR_INVALID_MESSAGE' });
  assert.throws(() => encodeFrame({ x: 'y'.repeat(100) }, { maxFrameBytes: 50 }), {
    code: 'ERR_FRAME_TOO_LARGE',
  });
});

test('FrameDecoder: round trip of a single frame', () => {
  const dec = new FrameDecoder();
  const msg = { type: 'task', payload: { n: [1, 2, 3], u: '日本語' }, nil: null };
  assert.deepStrictEqual(dec.push(encodeFrame(msg)), [msg]);
  assert.strictEqual(dec.bufferedBytes, 0);
});

test('FrameDecoder: frames split into single bytes and odd chunks', () => {
  const msgs = [{ a: 1 }, { b: 'two' }, [3, 'three'], 'four', 5, { big: 'z'.repeat(10000) }];
  const all = Buffer.concat(msgs.map((m) => encodeFrame(m)));

  const byteDec = new FrameDecoder();
  const out1 = [];
  for (let i = 0; i < all.length; i++) out1.push(...byteDec.push(all.subarray(i, i + 1)));
  assert.deepStrictEqual(out1, msgs);

  for (const size of [2, 3, 5, 7, 1000, 4099]) {
    const dec = new FrameDecoder();
    const out = [];
    for (let i = 0; i < all.length; i += size) out.push(...dec.push(all.subarray(i, i + size)));
    assert.deepStrictEqual(out, msgs, `chunk size ${size}`);
    assert.strictEqual(dec.bufferedBytes, 0);
  }
});

test('FrameDecoder: many frames in one chunk, plus a trailing partial frame', () => {
  const msgs = Array.from({ length: 500 }, (_, i) => ({ i, s: `m${i}` }));
  const extra = encodeFrame({ tail: true });
  const chunk = Buffer.concat([...msgs.map((m) => encodeFrame(m)), extra.subarray(0, 6)]);
  const dec = new FrameDecoder();
  assert.deepStrictEqual(dec.push(chunk), msgs);
  assert.strictEqual(dec.bufferedBytes, 6 - 4); // header consumed, 2 payload bytes held
  assert.deepStrictEqual(dec.push(extra.subarray(6)), [{ tail: true }]);
});

test('FrameDecoder: oversize frame throws ERR_FRAME_TOO_LARGE and the stream resyncs', () => {
  const dec = new FrameDecoder({ maxFrameBytes: 64 });
  const before = encodeFrame({ ok: 'before' });
  const big = encodeFrame({ data: 'x'.repeat(200) });
  const after = encodeFrame({ ok: 'after' });
  const chunk = Buffer.concat([before, big, after]);

  let err;
  try {
    dec.push(chunk);
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'expected a throw');
  assert.strictEqual(err.code, 'ERR_FRAME_TOO_LARGE');
  assert.strictEqual(err.frameBytes, big.length - 4);
  assert.strictEqual(err.maxFrameBytes, 64);
  assert.deepStrictEqual(err.decoded, [{ ok: 'before' }]);
  // The oversize payload is skipped; decoding resumes after it.
  assert.deepStrictEqual(dec.push(), [{ ok: 'after' }]);

  // Announced length alone triggers the error (the payload need not arrive).
  const dec2 = new FrameDecoder({ maxFrameBytes: 1024 });
  const header = Buffer.alloc(4);
  header.writeUInt32BE(8 * 1024 * 1024 + 1, 0);
  assert.throws(() => dec2.push(header), { code: 'ERR_FRAME_TOO_LARGE' });

  // Default limit is 8 MiB.
  assert.strictEqual(new FrameDecoder().maxFrameBytes, 8 * 1024 * 1024);
  const dec3 = new FrameDecoder();
  assert.throws(() => dec3.push(header), { code: 'ERR_FRAME_TOO_LARGE' });
});

test('FrameDecoder: invalid JSON payload is a coded error', () => {
  const dec = new FrameDecoder();
  const bad = Buffer.from('{nope');
  const frame = Buffer.alloc(4 + bad.length);
  frame.writeUInt32BE(bad.length, 0);
  bad.copy(frame, 4);
  assert.throws(() => dec.push(Buffer.concat([frame, encodeFrame(1)])), { code: 'ERR_FRAME_INVALID_JSON' });
  assert.deepStrictEqual(dec.push(), [1]);
});

// ---------------------------------------------------------------- paths

test('pipe names: worker-<id>-in/out.fifo without doubling the prefix', () => {
  const a = new FIFOChannel('worker-3', '/x');
  assert.strictEqual(a.inPath, '/x/worker-3-in.fifo');
  assert.strictEqual(a.outPath, '/x/worker-3-out.fifo');
  const b = new FIFOChannel('7', '/x');
  assert.strictEqual(b.inPath, '/x/worker-7-in.fifo');
  const c = new FIFOChannel(0, '/x');
  assert.strictEqual(c.outPath, '/x/worker-0-out.fifo');
  const d = new FIFOChannel('worker-1');
  assert.strictEqual(d.inPath, '/tmp/cortex/workers/worker-1-in.fifo');
  assert.throws(() => new FIFOChannel('../evil', '/x'), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => new FIFOChannel('', '/x'), { code: 'ERR_INVALID_ARG_TYPE' });
});

// ---------------------------------------------------------------- createChannel

test('createChannel creates two FIFOs with mode 0600 and emits channel-created', async (t) => {
  const dir = tempDir(t);
  const sub = path.join(dir, 'nested', 'workers');
  const ch = new FIFOChannel('worker-2', sub);
  t.after(() => ch.close());

  // A stale regular file with the same name is replaced.
  fs.mkdirSync(sub, { recursive: true });
  fs.writeFileSync(path.join(sub, 'worker-2-in.fifo'), 'stale');

  const created = [];
  ch.on('channel-created', (e) => created.push(e));
  const paths = await ch.createChannel();

  assert.deepStrictEqual(paths, { inPath: ch.inPath, outPath: ch.outPath });
  assert.deepStrictEqual(created, [{ workerId: 'worker-2', inPath: ch.inPath, outPath: ch.outPath }]);
  for (const p of [ch.inPath, ch.outPath]) {
    const st = fs.statSync(p);
    assert.ok(st.isFIFO(), `${p} is a FIFO`);
    assert.strictEqual(st.mode & 0o777, 0o600, `${p} mode`);
  }
  assert.deepStrictEqual(fs.readdirSync(sub).sort(), ['worker-2-in.fifo', 'worker-2-out.fifo']);

  // Creating again (stale pipes) works.
  await ch.createChannel();
  assert.ok(fs.statSync(ch.inPath).isFIFO());
});

test('connect does not block when the worker is absent; close removes pipes', async (t) => {
  const { ch } = await newChannel(t, 'worker-5');
  const events = [];
  for (const e of ['connected', 'disconnected', 'channel-closed']) ch.on(e, () => events.push(e));
  await withTimeout(ch.connect(), WAIT_MS, 'connect without peer');
  assert.strictEqual(ch.isConnected(), true);
  // Writes with no reader are buffered in the pipe, not an error.
  assert.strictEqual(ch.sendToWorker({ hello: 'nobody' }), true);
  await ch.close();
  assert.strictEqual(ch.isConnected(), false);
  assert.deepStrictEqual(events, ['connected', 'disconnected', 'channel-closed']);
  assert.ok(!fs.existsSync(ch.inPath));
  assert.ok(!fs.existsSync(ch.outPath));
});

test('connect before createChannel rejects with a coded error', async (t) => {
  const dir = tempDir(t);
  const ch = new FIFOChannel('worker-9', dir);
  t.after(() => ch.close());
  await assert.rejects(ch.connect(), { code: 'ERR_FIFO_MISSING' });
  assert.strictEqual(ch.isConnected(), false);
  assert.throws(() => ch.sendToWorker({}), { code: 'ERR_CHANNEL_CLOSED' });
});

// ---------------------------------------------------------------- round trip

test('round trip with a child process; close is idempotent; send after close throws', async (t) => {
  const { ch } = await newChannel(t, 'worker-1');
  const sent = [];
  const events = [];
  ch.on('message-sent', (e) => sent.push(e));
  for (const e of ['connected', 'disconnected', 'channel-closed']) ch.on(e, () => events.push(e));

  await withTimeout(ch.connect(), WAIT_MS, 'connect');
  const hello = collect(ch, 'message-received', 1, (m) => m.type === 'hello', 'hello');
  const child = spawnEcho(t, ch);
  const [h] = await hello;
  assert.strictEqual(h.pid, child.pid);

  // Pool -> worker -> pool, many messages, order preserved.
  const N = 200;
  const echoes = collect(ch, 'message-received', N, (m) => m.echoed === true, 'echo');
  const aliasEchoes = collect(ch, 'message', N, (m) => m.echoed === true, 'message alias');
  for (let i = 0; i < N; i++) assert.strictEqual(ch.sendToWorker({ type: 'ping', i, text: `ü-${i}` }), true);
  const got = await echoes;
  await aliasEchoes;
  assert.deepStrictEqual(
    got.map((m) => m.i),
    Array.from({ length: N }, (_, i) => i)
  );
  assert.strictEqual(got[7].text, 'ü-7');
  assert.strictEqual(got[7].pid, child.pid);
  assert.strictEqual(sent.length, N);
  assert.deepStrictEqual(sent[0].message, { type: 'ping', i: 0, text: 'ü-0' });
  assert.strictEqual(sent[0].workerId, 'worker-1');

  // Frames larger than the pipe buffer, both directions.
  const bigOut = collect(ch, 'message-received', 1, (m) => m.echoed && m.type === 'blob', 'blob echo');
  ch.sendToWorker({ type: 'blob', data: 'b'.repeat(1024 * 1024) });
  const [blob] = await bigOut;
  assert.strictEqual(blob.data.length, 1024 * 1024);
  const bigIn = collect(ch, 'message-received', 1, (m) => m.type === 'big-reply', 'big reply');
  ch.sendToWorker({ type: 'big', bytes: 3 * 1024 * 1024 });
  const [reply] = await bigIn;
  assert.strictEqual(reply.data.length, 3 * 1024 * 1024);

  // close(): pipes gone, events once, idempotent.
  const p1 = ch.close();
  const p2 = ch.close();
  assert.strictEqual(p1, p2);
  await withTimeout(p1, WAIT_MS, 'close');
  await ch.close();
  assert.deepStrictEqual(events, ['connected', 'disconnected', 'channel-closed']);
  assert.ok(!fs.existsSync(ch.inPath), 'in pipe removed');
  assert.ok(!fs.existsSync(ch.outPath), 'out pipe removed');
  assert.strictEqual(ch.isConnected(), false);
  assert.throws(() => ch.sendToWorker({ late: true }), { code: 'ERR_CHANNEL_CLOSED' });
  await assert.rejects(ch.connect(), { code: 'ERR_CHANNEL_CLOSED' });

  child.kill('SIGKILL');
  await withTimeout(new Promise((r) => (child.exitCode !== null || child.signalCode ? r() : child.once('exit', r))), WAIT_MS, 'child exit');
});

test('worker started before the pool connects: buffered frames are delivered', async (t) => {
  const { ch } = await newChannel(t, '4');
  const child = spawnEcho(t, ch);
  // Give the worker time to open its ends and write its hello with nobody reading.
  await new Promise((r) => setTimeout(r, 300));
  const hello = collect(ch, 'message-received', 1, (m) => m.type === 'hello', 'hello');
  await withTimeout(ch.connect(), WAIT_MS, 'connect');
  const [h] = await hello;
  assert.strictEqual(h.pid, child.pid);
  const echo = collect(ch, 'message-received', 1, (m) => m.echoed, 'echo');
  ch.sendToWorker({ q: 1 });
  assert.deepStrictEqual((await echo)[0].q, 1);

  // Worker exits on request; the channel stays usable until closed.
  const exited = new Promise((r) => child.once('exit', r));
  ch.sendToWorker({ type: 'exit' });
  await withTimeout(exited, WAIT_MS, 'child exit');
  await ch.close();
  assert.ok(!fs.existsSync(ch.inPath));
});

test('oversize incoming frame emits a coded error event and later frames still arrive', async (t) => {
  const { ch } = await newChannel(t, 'worker-6', { maxFrameBytes: 64 * 1024 });
  const errors = [];
  ch.on('error', (e) => errors.push(e));
  await withTimeout(ch.connect(), WAIT_MS, 'connect');
  const child = spawnEcho(t, ch);
  await collect(ch, 'message-received', 1, (m) => m.type === 'hello', 'hello');

  // Outgoing frames over the limit are refused up front.
  assert.throws(() => ch.sendToWorker({ data: 'x'.repeat(70 * 1024) }), { code: 'ERR_FRAME_TOO_LARGE' });

  const after = collect(ch, 'message-received', 1, (m) => m.echoed && m.after, 'after');
  ch.sendToWorker({ type: 'big', bytes: 200 * 1024 }); // reply exceeds our limit
  ch.sendToWorker({ after: true });
  await after;
  assert.strictEqual(errors.length, 1);
  assert.strictEqual(errors[0].code, 'ERR_FRAME_TOO_LARGE');
  assert.strictEqual(errors[0].workerId, 'worker-6');
  child.kill('SIGKILL');
});

test('openWorkerSide: send/on(message)/close in-process', async (t) => {
  const { ch } = await newChannel(t, 'worker-8');
  await ch.connect();
  const side = FIFOChannel.openWorkerSide({ workerId: 'worker-8', fifoDir: ch.fifoDir });
  t.after(() => side.close());
  assert.strictEqual(side.inPath, ch.inPath);
  const toWorker = collect(side, 'message', 2, undefined, 'worker message');
  ch.sendToWorker({ n: 1 });
  ch.sendToWorker({ n: 2 });
  assert.deepStrictEqual(await toWorker, [{ n: 1 }, { n: 2 }]);
  const toPool = collect(ch, 'message-received', 1, undefined, 'pool message');
  side.send({ back: true });
  assert.deepStrictEqual(await toPool, [{ back: true }]);
  side.close();
  side.close();
  assert.throws(() => side.send({}), { code: 'ERR_CHANNEL_CLOSED' });
  await ch.close();
});
