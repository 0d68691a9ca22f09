'use strict';
// This package as built in another checkout: the directory in BENCH_OTHER_ROOT (or
// `node bench/run.js --other-root DIR`), e.g. a worktree of an older commit, built
// there with `npm run build`. Same options as adapters/this.js (least-loaded, named,
// since older builds defaulted to round-robin) and the same worker script
// (bench/workers/this-worker.js of this tree), which loads that checkout's
// worker-process.js, so the other build runs entirely on its own code: run
// `--only this,this-at` to compare two builds interleaved in one run.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const base = require('./this.js');

function otherRoot() {
  const dir = process.env.BENCH_OTHER_ROOT;
  if (!dir) throw new Error('this-at needs BENCH_OTHER_ROOT=DIR or --other-root DIR (a built checkout of this package)');
  const root = path.resolve(dir);
  if (!fs.existsSync(path.join(root, 'worker-process.js'))) throw new Error(`${root} is not a checkout of this package`);
  return root;
}

/** The checkout's commit, when it is a git checkout. */
function commitOf(root) {
  try {
    return execFileSync('git', ['-C', root, 'log', '-1', '--format=%h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

module.exports = {
  ...base,
  name: 'this-at',
  get label() {
    const dir = process.env.BENCH_OTHER_ROOT;
    return dir ? `this package at ${path.resolve(dir)}` : 'this package at BENCH_OTHER_ROOT (unset)';
  },
  version: () => {
    const root = otherRoot();
    const { version } = require(path.join(root, 'package.json'));
    const commit = commitOf(root);
    return commit ? `${version} (${commit})` : version;
  },
  create: (size) => {
    const root = otherRoot();
    // least-loaded by name: older builds defaulted to round-robin.
    return base.createAt(root, size, 'least-loaded', { env: { BENCH_PACKAGE_ROOT: root } });
  },
};
