'use strict';
// Loads the compiled addon the way napi-rs's generated loader does: the binary next to
// the package (a source build, or the prebuilt the tarball carries), then the platform
// package named in optionalDependencies. When neither loads, the error says what was
// found, what was tried and why each failed, and the two ways out.
const fs = require('node:fs');
const path = require('node:path');

const PACKAGE = 'cortex-worker-pool';
/** The platforms with a prebuilt binary (each also a package under npm/). */
const PREBUILT = { 'linux-x64-gnu': 'Linux x64 with glibc >= 2.17' };
const root = path.join(__dirname, '..');
const { version } = require('../package.json');

/** 'glibc' or 'musl' (or null off Linux), read from what this Node binary is linked against. */
function libcFamily() {
  if (process.platform !== 'linux') return null;
  // ldd is a script on both (cheap to read); the report is the fallback for images without it.
  try {
    const ldd = fs.readFileSync('/usr/bin/ldd', 'latin1');
    if (ldd.includes('musl')) return 'musl';
    if (/GLIBC|GNU C Library/.test(ldd)) return 'glibc';
  } catch {
    // fall through
  }
  return glibcVersion() ? 'glibc' : 'musl';
}

function glibcVersion() {
  const header = process.report && process.report.getReport().header;
  return (header && header.glibcVersionRuntime) || null;
}

/** napi-rs's platform name: linux-x64-gnu, linux-arm64-musl, darwin-arm64, ... */
function platformName(family = libcFamily()) {
  const base = `${process.platform}-${process.arch}`;
  if (family === 'glibc') return `${base}-gnu`;
  if (family === 'musl') return `${base}-musl`;
  return base;
}

/** The candidates, in order: [description, loader]. */
function candidates(platform) {
  const file = path.join(root, `worker-pool.${platform}.node`);
  const pkg = `${PACKAGE}-${platform}`;
  return [
    [file, () => {
      if (!fs.existsSync(file)) throw new Error('no such file');
      return require(file);
    }],
    [`package ${pkg}`, () => {
      let manifest;
      try {
        manifest = require.resolve(`${pkg}/package.json`);
      } catch {
        throw new Error(`not installed (an optional dependency; prebuilt packages exist for ${Object.keys(PREBUILT).join(', ')})`);
      }
      const found = require(manifest).version;
      if (found !== version) throw new Error(`version ${found} installed, ${version} needed`);
      return require(pkg);
    }],
  ];
}

/** The first line of a load error, without the path dlopen repeats in front of it. */
function reason(what, e) {
  const line = String(e.message).split('\n')[0];
  return line.startsWith(`${what}: `) ? line.slice(what.length + 2) : line;
}

function notBuiltError(platform, family, tried) {
  const libc = family === 'glibc' ? `, glibc ${glibcVersion() || '(version unknown)'}` : family ? `, ${family}` : '';
  const lines = [
    `cortex-worker-pool: no native addon loads on this machine (${process.platform} ${process.arch}${libc}; looked for ${platform}).`,
    'Tried:',
    ...tried.map(([what, e]) => `  - ${what}: ${reason(what, e)}`),
  ];
  lines.push(
    process.platform === 'linux'
      ? 'Either:'
      : 'The core runs on Linux only (it reads /proc and gives each worker a parent-death signal). On Linux, either:',
    '  1. build it from the Rust sources the package carries: put a Rust toolchain on PATH ' +
      '(cargo and a C compiler; on Alpine `apk add cargo build-base`, elsewhere rustup) and run `npm rebuild cortex-worker-pool` ' +
      '(CORTEX_WORKER_POOL_BUILD_FROM_SOURCE=1 forces a source build even where a prebuilt exists); or',
    `  2. run where a prebuilt fits: ${Object.values(PREBUILT).join('; ')} (e.g. node:20-slim, not Alpine), ` +
      'with optional dependencies installed.',
  );
  const err = new Error(lines.join('\n'));
  err.code = 'ERR_ADDON_NOT_BUILT';
  err.platform = platform;
  err.tried = tried.map(([what, e]) => ({ what, error: e }));
  return err;
}

/** Loads the addon; `{ binding, from }` or throws ERR_ADDON_NOT_BUILT. */
function load() {
  const family = libcFamily();
  const platform = platformName(family);
  const tried = [];
  for (const [what, attempt] of candidates(platform)) {
    try {
      return { binding: attempt(), from: what };
    } catch (e) {
      tried.push([what, e]);
    }
  }
  throw notBuiltError(platform, family, tried);
}

module.exports = { load, platformName, libcFamily };
