#!/usr/bin/env node
// Zig and cargo-zigbuild, which link the release addon against glibc 2.17 so that it
// loads on old distributions. Both come from PyPI as wheels (`ziglang` ships the Zig
// toolchain, `cargo-zigbuild` a static binary), installed with `pip --target` into a
// per-user cache shared by every clone. Pinned, so every release links the same way.
//
// `node scripts/zig-tools.js` fetches them unless cached and prints the directory.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ZIGLANG = '0.17.1';
const CARGO_ZIGBUILD = '0.24.1';

function cacheDir() {
  if (process.env.CORTEX_WORKER_POOL_TOOLS_DIR) return process.env.CORTEX_WORKER_POOL_TOOLS_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'cortex-worker-pool', `zig-${ZIGLANG}-cargo-zigbuild-${CARGO_ZIGBUILD}`);
}

/** The PATH entries holding `zig` and `cargo-zigbuild`, or null when not fetched yet. */
function findTools() {
  const dir = cacheDir();
  const dirs = [path.join(dir, 'bin'), path.join(dir, 'ziglang')];
  const complete = fs.existsSync(path.join(dirs[0], 'cargo-zigbuild')) && fs.existsSync(path.join(dirs[1], 'zig'));
  return complete ? dirs : null;
}

/** Fetches both wheels unless cached; returns their PATH entries. Throws with pip's reason. */
function fetchTools(log = console.log) {
  const found = findTools();
  if (found) return found;
  const dir = cacheDir();
  // pip writes into a scratch directory renamed into place at the end, so an interrupted
  // fetch never looks complete. `--target` also sidesteps Debian's externally-managed
  // Python, whose pip refuses installs into the system site-packages.
  const scratch = `${dir}.partial-${process.pid}`;
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  log(`[zig-tools] fetching ziglang ${ZIGLANG} and cargo-zigbuild ${CARGO_ZIGBUILD} from PyPI into ${dir}`);
  const python = process.env.PYTHON || 'python3';
  const r = spawnSync(
    python,
    ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet', '--target', scratch,
      `ziglang==${ZIGLANG}`, `cargo-zigbuild==${CARGO_ZIGBUILD}`],
    { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' },
  );
  if (r.status !== 0) {
    fs.rmSync(scratch, { recursive: true, force: true });
    const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-3).join(' | ');
    throw new Error(
      `could not fetch Zig and cargo-zigbuild with \`${python} -m pip\` (${why}); ` +
        'install pip (Debian: apt-get install -y python3-pip) or put them in CORTEX_WORKER_POOL_TOOLS_DIR',
    );
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(scratch, dir);
  const dirs = findTools();
  if (!dirs) throw new Error(`pip installed ziglang and cargo-zigbuild, but ${dir} lacks bin/cargo-zigbuild or ziglang/zig`);
  return dirs;
}

module.exports = { findTools, fetchTools, cacheDir };

if (require.main === module) {
  try {
    fetchTools();
    console.log(cacheDir());
  } catch (e) {
    console.error(`[zig-tools] ${e.message}`);
    process.exit(1);
  }
}
