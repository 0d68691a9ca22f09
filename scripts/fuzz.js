#!/usr/bin/env node
'use strict';
// Runs every fuzz target of fuzz/ (cargo fuzz, libFuzzer) for N seconds, one after the
// other, and prints per target the executions, the coverage reached and whether it
// found anything. Not part of `npm test`.
//
//   npm run fuzz -- --seconds 600            every target, 10 minutes each
//   npm run fuzz -- --seconds 60 --target submit_line
//
// Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each target
// starts from its committed seeds (fuzz/corpus/<target>/seed-*) and the inputs earlier
// runs added there (not committed). A finding is written to fuzz/artifacts/<target>/;
// replay it with `cargo +nightly fuzz run <target> <file>` in fuzz/.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const FUZZ = path.join(__dirname, '..', 'fuzz');
const TARGETS = ['worker_messages', 'submit_line', 'event_records', 'config', 'call_verbs', 'job_data'];

function parseArgs(argv) {
  const out = { seconds: 60, targets: TARGETS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--seconds') out.seconds = Number(argv[++i]);
    else if (a === '--target') out.targets = argv[++i].split(',');
    else throw new Error(`unknown argument ${a} (use --seconds N, --target name[,name])`);
  }
  if (!Number.isInteger(out.seconds) || out.seconds < 1) throw new Error('--seconds must be an integer >= 1');
  for (const t of out.targets) if (!TARGETS.includes(t)) throw new Error(`no fuzz target ${t} (${TARGETS.join(', ')})`);
  return out;
}

/** Runs one target; resolves with its libFuzzer statistics. */
function run(target, seconds) {
  const corpus = path.join(FUZZ, 'corpus', target);
  fs.mkdirSync(corpus, { recursive: true });
  // cargo fuzz's default build: optimized, with debug assertions and overflow checks
  // (an arithmetic overflow is a finding too; `-O` would turn them off).
  const args = ['+nightly', 'fuzz', 'run', target, corpus, '--',
    `-max_total_time=${seconds}`, '-print_final_stats=1', '-max_len=65536', '-rss_limit_mb=2048'];
  return new Promise((resolve, reject) => {
    const child = spawn('cargo', args, { cwd: FUZZ, stdio: ['ignore', 'inherit', 'pipe'] });
    let tail = '';
    // The last `cov: ft: corp:` status line, followed as the output streams (the final
    // statistics can be preceded by a long recommended dictionary).
    let last = null;
    child.stderr.on('data', (d) => {
      process.stderr.write(d);
      tail = (tail + d).slice(-20000);
      const seen = [...tail.slice(-(d.length + 200)).matchAll(/cov: (\d+) ft: (\d+) corp: (\d+)/g)].pop();
      if (seen) last = seen;
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const stat = (name) => Number((tail.match(new RegExp(`stat::${name}:\\s+(\\d+)`)) || [])[1]);
      resolve({
        target,
        ok: code === 0,
        exit: signal || code,
        execs: stat('number_of_executed_units'),
        perSec: stat('average_exec_per_sec'),
        cov: last ? Number(last[1]) : NaN,
        ft: last ? Number(last[2]) : NaN,
        corpus: last ? Number(last[3]) : NaN,
      });
    });
  });
}

async function main() {
  const { seconds, targets } = parseArgs(process.argv.slice(2));
  const probe = spawnSync('cargo', ['+nightly', 'fuzz', '--version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(`cargo fuzz is not available (${(probe.stderr || probe.error || '').toString().trim()}): install the nightly toolchain and run \`cargo install cargo-fuzz\``);
  }
  const results = [];
  for (const t of targets) {
    console.log(`\n=== ${t}: ${seconds} s`);
    results.push(await run(t, seconds));
  }
  console.log('\n| target | seconds | executions | exec/s | coverage (edges) | features | corpus | result |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---|');
  for (const r of results) {
    const result = r.ok ? 'nothing found' : `FAILED (${r.exit}; see fuzz/artifacts/${r.target}/)`;
    console.log(`| ${r.target} | ${seconds} | ${r.execs} | ${r.perSec} | ${r.cov} | ${r.ft} | ${r.corpus} | ${result} |`);
  }
  process.exitCode = results.every((r) => r.ok) ? 0 : 1;
}

main().catch((e) => {
  console.error(`fuzz: ${e.message}`);
  process.exitCode = 2;
});
