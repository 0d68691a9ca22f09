'use strict';
// example-usage.js: every example runs to the end, shuts its pool down and exits 0.
// Run: node --test __test__/examples.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { ROOT, run } = require('./helpers');

const EXAMPLES = path.join(ROOT, 'example-usage.js');
const NAMES = ['basic', 'parallel', 'events', 'scaling', 'health', 'errors', 'custom'];
const env = { ...process.env };
delete env.NODE_OPTIONS;

test('node example-usage.js runs all seven examples and exits 0', { timeout: 120000 }, async () => {
  const r = await run(process.execPath, [EXAMPLES], { env, timeoutMs: 110000 });
  assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  for (const name of NAMES) assert.match(r.stdout, new RegExp(`=== ${name} done`), `example ${name} finished`);
  assert.match(r.stdout, /Result: \{"status":"completed"/);
  assert.match(r.stdout, /200\/200 tasks completed/);
  assert.match(r.stdout, /Timeout -> ERR_TASK_TIMEOUT/);
  assert.match(r.stdout, /uppercase: HELLO, WORKER POOL/);
});

test('node example-usage.js <name> runs one example; an unknown name is a usage error', { timeout: 60000 }, async () => {
  const one = await run(process.execPath, [EXAMPLES, 'scaling'], { env, timeoutMs: 50000 });
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /=== scaling done/);
  assert.doesNotMatch(one.stdout, /=== basic/);
  const bad = await run(process.execPath, [EXAMPLES, 'nope'], { env, timeoutMs: 10000 });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Unknown example "nope"/);
});
