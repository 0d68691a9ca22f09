#!/usr/bin/env node
// Builds the native addon (release) unless the binary on disk was built from exactly the
// current Rust sources. `--force` always builds.
//
// Two flavours of the same binary:
// - zig: `napi build -x`, cargo-zigbuild linking against glibc 2.17, so it loads on old
//   distributions. What ships. Used whenever the Zig tools are in their cache
//   (scripts/zig-tools.js), so the binary the tests run is the one that is packed.
// - plain: `napi build` with the host's linker (needs the host's glibc). Used when the
//   tools were never fetched or the host is not Linux x64.
// `--release` (npm run build:release, and `prepack`) insists on zig: it fetches the tools
// on first use, checks the glibc floor of the result and copies it into the platform
// package npm/linux-x64-gnu/.
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zigTools = require('./zig-tools');
const { maxGlibcNeeded, compareVersions } = require('./elf-glibc');
const { platformName } = require('../lib/addon-loader');

const root = path.resolve(__dirname, '..');
const stampFile = path.join(root, '.build-stamp');
// The one platform with a prebuilt (and a package in npm/); elsewhere the plain build
// makes the host's own binary, named as the loader looks for it.
const PREBUILT = 'linux-x64-gnu';
const host = platformName();
const addonName = `worker-pool.${host}.node`;
const addon = path.join(root, addonName);
const platformPackageAddon = path.join(root, 'npm', PREBUILT, addonName);
const GLIBC_FLOOR = '2.17';
const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR || 'target');

function walk(dir, out) {
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Every input of the addon's build: the workspace files and each crate under crates/. */
function sourceHash() {
  const files = ['Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => path.join(root, f));
  walk(path.join(root, 'src'), files);
  for (const c of fs.readdirSync(path.join(root, 'crates'), { withFileTypes: true })) {
    if (!c.isDirectory()) continue;
    const dir = path.join(root, 'crates', c.name);
    files.push(path.join(dir, 'Cargo.toml'), path.join(dir, 'build.rs'));
    walk(path.join(dir, 'src'), files);
  }
  const h = crypto.createHash('sha256');
  for (const f of files.filter((f) => fs.existsSync(f)).sort()) {
    h.update(path.relative(root, f));
    h.update('\0');
    h.update(fs.readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

/** `{ hash, flavor }` of the binary on disk, or null. */
function readStamp() {
  if (!fs.existsSync(addon) || !fs.existsSync(stampFile)) return null;
  const [hash, flavor = 'plain'] = fs.readFileSync(stampFile, 'utf8').trim().split(/\s+/);
  return { hash, flavor };
}

function napi(args, extraPath) {
  const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
  if (!fs.existsSync(cli)) {
    console.error('[build] @napi-rs/cli is missing: run `npm install` first');
    process.exit(1);
  }
  const env = { ...process.env };
  if (extraPath) env.PATH = [...extraPath, env.PATH].join(path.delimiter);
  // Built into a staging directory and renamed into place: tests running meanwhile may
  // have the old binary mapped, and overwriting it in place would crash them.
  const staging = path.join(targetDir, 'napi-out');
  fs.rmSync(staging, { recursive: true, force: true });
  const common = ['build', '--platform', '--release', '--no-js', '--output-dir', staging, '--dts', 'binding.d.ts'];
  execFileSync(process.execPath, [cli, ...common, ...args], { cwd: root, stdio: 'inherit', env });
  for (const f of [addonName, 'binding.d.ts']) replaceFile(path.join(staging, f), path.join(root, f));
}

/** Copies beside `dest` and renames over it (a rename keeps a mapped old file intact). */
function replaceFile(src, dest) {
  fs.copyFileSync(src, `${dest}.tmp`);
  fs.renameSync(`${dest}.tmp`, dest);
}

function build(flavor, toolDirs) {
  console.log(`[build] compiling the Rust addon (release, ${flavor}); this takes a few minutes on 2 cores`);
  if (flavor === 'zig') {
    // Its own target directory: cargo fingerprints the linker, so the two flavours sharing
    // one would rebuild every dependency at each switch.
    napi(['-x', '--target', `x86_64-unknown-linux-gnu.${GLIBC_FLOOR}`, '--target-dir', path.join(targetDir, 'zig')], toolDirs);
  } else {
    napi([]);
  }
}

function main() {
  const argv = process.argv.slice(2);
  const release = argv.includes('--release');
  const force = argv.includes('--force');
  const hash = sourceHash();
  const stamp = readStamp();
  const fresh = !force && stamp && stamp.hash === hash && (!release || stamp.flavor === 'zig');

  if (!fresh) {
    const hostFits = host === PREBUILT;
    let toolDirs = hostFits ? zigTools.findTools() : null;
    if (release && !toolDirs) {
      if (!hostFits) throw new Error(`the release build makes the ${PREBUILT} binary on a ${PREBUILT} host; this is ${host}`);
      toolDirs = zigTools.fetchTools((m) => console.log(m));
    }
    const flavor = toolDirs ? 'zig' : 'plain';
    build(flavor, toolDirs);
    fs.writeFileSync(stampFile, `${hash} ${flavor}\n`);
  }

  if (release) {
    const needed = maxGlibcNeeded(addon);
    if (needed && compareVersions(needed, GLIBC_FLOOR) > 0) {
      throw new Error(`${addonName} needs GLIBC_${needed}, above the ${GLIBC_FLOOR} floor; rebuild with \`node scripts/build.js --release --force\``);
    }
    replaceFile(addon, platformPackageAddon);
    console.log(`[build] ${addonName} needs glibc >= ${needed}; copied into npm/${PREBUILT}/`);
  }
}

try {
  main();
} catch (e) {
  console.error(`[build] ${e.message}`);
  process.exit(1);
}
