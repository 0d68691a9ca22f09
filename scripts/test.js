#!/usr/bin/env node
// The whole test suite, in the order that fails fastest: Rust style and lints, the
// core's unit tests, the TypeScript typecheck of index.d.ts, the Python runtime's
// unit tests, then the node:test suites against the real addon and real worker
// processes.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

const steps = [
  ['cargo fmt', 'cargo', ['fmt', '--all', '--', '--check']],
  ['cargo clippy', 'cargo', ['clippy', '--workspace', '--release', '--all-targets', '--', '-D', 'warnings']],
  ['cargo test (core, bullmq)', 'cargo', ['test', '--release', '-p', 'pool-core', '-p', 'bullmq']],
  ['typecheck index.d.ts', process.execPath, [tsc, '-p', 'tsconfig.json']],
  ['python unittest (cortex_worker)', 'python3', ['-m', 'unittest', 'discover', '-s', 'python/tests', '-t', 'python']],
  ['node --test', process.execPath, ['--test', '--test-timeout=180000', ...testFiles()]],
];

function testFiles() {
  const dir = path.join(root, '__test__');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join('__test__', f));
}

const only = process.argv.slice(2);
for (const [name, cmd, args] of steps) {
  if (only.length && !only.some((o) => name.includes(o))) continue;
  const t0 = Date.now();
  console.log(`\n=== ${name}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`\n=== ${name} FAILED (${secs}s)`);
    process.exit(r.status || 1);
  }
  console.log(`=== ${name} ok (${secs}s)`);
}
