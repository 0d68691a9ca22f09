#!/usr/bin/env node
// The package's `install` script (npm runs it on install and on `npm rebuild`). Where a
// prebuilt addon loads it does nothing, so no compiler runs. Otherwise, or with
// CORTEX_WORKER_POOL_BUILD_FROM_SOURCE=1, it compiles the addon from the Rust sources
// the tarball carries when cargo is on PATH. Without cargo it leaves the install alone:
// requiring the package then throws ERR_ADDON_NOT_BUILT, which says what failed.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const log = (m) => console.error(`[cortex-worker-pool] ${m}`);

function rustHost() {
  const r = spawnSync('rustc', ['-vV'], { encoding: 'utf8' });
  const m = r.status === 0 && /^host: (\S+)$/m.exec(r.stdout);
  return m ? m[1] : '';
}

/** `cargo build` of the addon's crate for the host; returns the built shared object. */
function cargoBuild() {
  // A CARGO_TARGET_DIR from the environment is kept (and reused by the next build);
  // the default one inside the package is removed afterwards, as it holds hundreds of MB.
  const ownTarget = !process.env.CARGO_TARGET_DIR;
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  const env = { ...process.env, CARGO_TARGET_DIR: targetDir };
  // rustup's musl targets link statically by default, which cannot produce a cdylib.
  if (rustHost().includes('musl') && !/crt-static/.test(env.RUSTFLAGS || '')) {
    env.RUSTFLAGS = `${env.RUSTFLAGS || ''} -C target-feature=-crt-static`.trim();
  }
  // No --target: the host build lands in <target>/release, where a shared target dir's
  // `cargo test --release` units are found and reused.
  const args = ['build', '--release', '--locked', '--lib', '-p', 'cortex-worker-pool'];
  log(`compiling the addon from source: cargo ${args.join(' ')} (a few minutes)`);
  const t0 = Date.now();
  const r = spawnSync('cargo', args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`cargo build failed (${r.error ? r.error.message : `exit ${r.status}`}); its output is above`);
  log(`compiled in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  const built = path.join(targetDir, 'release', 'libcortex_worker_pool.so');
  if (!fs.existsSync(built)) throw new Error(`cargo build succeeded but left no ${built} (is a build target set in CARGO_BUILD_TARGET or a cargo config?)`);
  return { built, cleanup: ownTarget ? () => fs.rmSync(targetDir, { recursive: true, force: true }) : () => {} };
}

/** Loads the addon in a fresh process (this one may hold the old binary) and says from where. */
function verify() {
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(require(${JSON.stringify(path.join(root, 'lib', 'addon-loader.js'))}).load().from)`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`the built addon does not load:\n${r.stderr}`);
  return r.stdout;
}

function main() {
  // A clone of the repository: `prepare` (scripts/build.js) builds there, with the dev tools.
  if (fs.existsSync(path.join(root, '.git'))) return 0;
  const { load, platformName } = require('../lib/addon-loader');
  const forced = /^(1|true|yes)$/i.test(process.env.CORTEX_WORKER_POOL_BUILD_FROM_SOURCE || '');
  let notBuilt = null;
  if (!forced) {
    try {
      log(`using the prebuilt addon (${load().from}); nothing to compile`);
      return 0;
    } catch (e) {
      if (e.code !== 'ERR_ADDON_NOT_BUILT') throw e;
      notBuilt = e;
    }
  }
  const why = forced ? 'CORTEX_WORKER_POOL_BUILD_FROM_SOURCE is set' : 'no prebuilt addon loads here';
  if (process.platform !== 'linux') {
    log(`${why}, and the core runs on Linux only; not building.`);
    return forced ? 1 : 0;
  }
  if (!fs.existsSync(path.join(root, 'Cargo.toml'))) {
    log(`${why}, and this copy carries no Rust sources to build from.`);
    return forced ? 1 : 0;
  }
  if (spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status !== 0) {
    if (forced) {
      log(`${why}, but cargo is not on PATH: install a Rust toolchain and a C compiler (Alpine: apk add cargo build-base) and run npm rebuild cortex-worker-pool.`);
      return 1;
    }
    log(`${why} and cargo is not on PATH, so nothing was built. Creating a pool will fail with:\n${notBuilt.message}`);
    return 0;
  }
  log(`${why}; building from source`);
  const { built, cleanup } = cargoBuild();
  const dest = path.join(root, `worker-pool.${platformName()}.node`);
  // Written beside and renamed over, so a process still mapping the old file keeps it intact.
  fs.copyFileSync(built, `${dest}.tmp`);
  fs.renameSync(`${dest}.tmp`, dest);
  cleanup();
  log(`built ${path.basename(dest)}; it loads (${verify()})`);
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  log(e.message);
  process.exitCode = 1;
}
