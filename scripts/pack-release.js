#!/usr/bin/env node
// `npm run release:pack`: the release build (zig, glibc 2.17), then the two tarballs a
// release publishes, into dist/: the platform package npm/linux-x64-gnu/ (the binary
// alone) and the main package (JS, the same binary, the Rust sources for source builds).
// Publishing is `npm publish` of each tarball, the platform package first (README, Installing).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const npmCli = process.env.npm_execpath;

function npm(args, cwd) {
  // Inside `npm run` the running npm's own CLI script is in npm_execpath; standalone, PATH's npm.
  const [cmd, pre] = npmCli && npmCli.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
  execFileSync(cmd, [...pre, ...args], { cwd, stdio: 'inherit' });
}

execFileSync(process.execPath, [path.join(__dirname, 'build.js'), '--release'], { cwd: root, stdio: 'inherit' });
fs.mkdirSync(dist, { recursive: true });
const tarballs = [path.join(root, 'npm', 'linux-x64-gnu'), root].map((dir) => {
  npm(['pack', '--pack-destination', dist], dir);
  const { name, version } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  return path.join(dist, `${name}-${version}.tgz`);
});
for (const t of tarballs) console.log(`${path.relative(root, t)}  ${(fs.statSync(t).size / 1e6).toFixed(2)} MB`);
