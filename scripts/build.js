#!/usr/bin/env node
// Builds the native addon (cargo, release) unless the binary on disk was built from
// exactly the current Rust sources. `--force` always builds.
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const stampFile = path.join(root, '.build-stamp');
const addon = path.join(root, 'worker-pool.linux-x64-gnu.node');

function walk(dir, out) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

function sourceHash() {
  const files = ['Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => path.join(root, f)).filter((f) => fs.existsSync(f));
  files.push(...walk(path.join(root, 'src'), []));
  // Every crate of the workspace (its manifest and sources; not its tests).
  for (const c of fs.readdirSync(path.join(root, 'crates'))) {
    files.push(path.join(root, 'crates', c, 'Cargo.toml'), ...walk(path.join(root, 'crates', c, 'src'), []));
  }
  const h = crypto.createHash('sha256');
  for (const f of files.sort()) {
    h.update(path.relative(root, f));
    h.update('\0');
    h.update(fs.readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

const force = process.argv.includes('--force');
const hash = sourceHash();
const fresh = !force && fs.existsSync(addon) && fs.existsSync(stampFile) &&
  fs.readFileSync(stampFile, 'utf8').trim() === hash;
if (fresh) process.exit(0);

console.log('[build] compiling the Rust addon (release); this takes a few minutes on 2 cores');
const napi = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
if (!fs.existsSync(napi)) {
  console.error('[build] @napi-rs/cli is missing: run `npm install` first');
  process.exit(1);
}
execFileSync(process.execPath, [napi, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts'], {
  cwd: root,
  stdio: 'inherit',
});
fs.writeFileSync(stampFile, hash + '\n');
