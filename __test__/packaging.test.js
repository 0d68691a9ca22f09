'use strict';
// The package as a user gets it: `npm pack` (whose prepack makes the release binary),
// installed from the tarball into a fresh project whose PATH holds no cargo or rustc,
// then used from a fresh node process; the platform package as the fallback; a source
// build with `npm rebuild` where no binary is left; ERR_ADDON_NOT_BUILT where nothing can
// be had. Linux x64 with glibc only (the one platform with a prebuilt).
// Run: node --test __test__/packaging.test.js
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { test, before, after } = require('node:test');
const { ROOT, run, assertGone } = require('./helpers');
const { glibcVersionsNeeded, maxGlibcNeeded, compareVersions } = require('../scripts/elf-glibc');
const { platformName } = require('../lib/addon-loader');

const PLATFORM = 'linux-x64-gnu';
const ADDON = `worker-pool.${PLATFORM}.node`;
const PLATFORM_PKG = `cortex-worker-pool-${PLATFORM}`;
const skip = platformName() === PLATFORM ? false : `prebuilt binaries are for ${PLATFORM}; this is ${platformName()}`;

// One directory per checkout (several may run this at once on one machine), the same on
// every run, so that the source build's units in the shared target dir are reused.
const work = path.join(os.tmpdir(), `cwp-packaging-${crypto.createHash('sha1').update(ROOT).digest('hex').slice(0, 10)}`);
const dist = path.join(work, 'dist');
const extracted = path.join(work, 'extracted');
const app = path.join(work, 'app');
const installed = path.join(app, 'node_modules', 'cortex-worker-pool');
const { version } = require('../package.json');
const mainTgz = path.join(dist, `cortex-worker-pool-${version}.tgz`);
const platformTgz = path.join(dist, `${PLATFORM_PKG}-${version}.tgz`);

function which(name, pathVar) {
  for (const d of pathVar.split(path.delimiter)) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

// npm's own script, run with this node: the PATH below may have lost npm's directory.
const npmCli = fs.realpathSync(which('npm', process.env.PATH) || 'npm');
// PATH without cargo or rustc: every entry holding either is dropped, and a directory
// with only `node` (install scripts run `node ...`) goes first.
const nodeBin = path.join(work, 'bin');
const noCargoPath = [
  nodeBin,
  ...process.env.PATH.split(path.delimiter).filter((d) => d && !['cargo', 'rustc'].some((b) => fs.existsSync(path.join(d, b)))),
].join(path.delimiter);

function env(extra = {}) {
  const e = { ...process.env, NODE_OPTIONS: '' };
  for (const k of Object.keys(e)) if (/^npm_(package|lifecycle)_/.test(k)) delete e[k];
  delete e.CORTEX_WORKER_POOL_BUILD_FROM_SOURCE;
  return { ...e, ...extra };
}

async function npm(args, { cwd = app, pathVar = noCargoPath, timeoutMs = 120000, extraEnv = {} } = {}) {
  const t0 = Date.now();
  const r = await run(process.execPath, [npmCli, ...args], { cwd, timeoutMs, env: env({ PATH: pathVar, ...extraEnv }) });
  r.secs = (Date.now() - t0) / 1000;
  return r;
}

// In the project: creates a pool with the default worker, runs one task, prints what
// happened as JSON (or the error's code and message) and which binary it loaded.
const USE = `
const { createWorkerPool } = require('cortex-worker-pool');
(async () => {
  const pool = await createWorkerPool({ poolSize: 1, logLevel: 'silent' });
  const pids = pool.getWorkerPids();
  const result = await pool.submitTask({ type: 'implementation', payload: { feature: 'packaged' } });
  await pool.shutdown(true);
  const from = require('cortex-worker-pool/lib/addon-loader').load().from;
  console.log(JSON.stringify({ result, pids, from }));
})().catch((e) => {
  console.log(JSON.stringify({ code: e.code, message: e.message }));
  process.exitCode = 3;
});
`;

async function use(pathVar = noCargoPath) {
  const r = await run(process.execPath, ['-e', USE], { cwd: app, timeoutMs: 60000, env: env({ PATH: pathVar }) });
  let out = {};
  try {
    out = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    // asserted on below, with the output
  }
  if (out.pids) await assertGone(out.pids);
  return { ...r, out };
}

function assertRanTask(r, from) {
  assert.equal(r.code, 0, `the task did not run: ${r.stdout}\n${r.stderr}`);
  assert.deepEqual(r.out.result, { status: 'completed', result: { feature: 'packaged' } });
  assert.equal(r.out.from, from);
}

const noTargetDir = () => assert.ok(!fs.existsSync(path.join(installed, 'target')), 'a target/ directory appeared in the installed package');

before(async () => {
  if (skip) return;
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(dist, { recursive: true });
  fs.mkdirSync(extracted, { recursive: true });
  fs.mkdirSync(app, { recursive: true });
  fs.mkdirSync(nodeBin, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(nodeBin, 'node'));
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'packaging-test-app', version: '1.0.0', private: true }));
  // prepack: the release build, a no-op when the binary on disk is the zig build of these sources.
  for (const dir of [ROOT, path.join(ROOT, 'npm', PLATFORM)]) {
    const r = await npm(['pack', '--pack-destination', dist], { cwd: dir, pathVar: process.env.PATH, timeoutMs: 900000 });
    assert.equal(r.code, 0, `npm pack in ${dir} failed:\n${r.stdout}\n${r.stderr}`);
  }
});

after(() => {
  if (!skip) fs.rmSync(work, { recursive: true, force: true });
});

async function listTarball(tgz) {
  const r = await run('tar', ['-tzf', tgz]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n');
}

test('the tarballs: the main one carries the prebuilt and the Rust sources, no build output; a few MB', { skip }, async () => {
  const files = await listTarball(mainTgz);
  // Every workspace crate, whole: its manifest and every source file.
  const crateFiles = [];
  for (const c of fs.readdirSync(path.join(ROOT, 'crates'))) {
    if (!fs.existsSync(path.join(ROOT, 'crates', c, 'Cargo.toml'))) continue;
    crateFiles.push(`crates/${c}/Cargo.toml`);
    for (const f of fs.readdirSync(path.join(ROOT, 'crates', c, 'src'), { recursive: true })) {
      if (fs.statSync(path.join(ROOT, 'crates', c, 'src', f)).isFile()) crateFiles.push(`crates/${c}/src/${f}`);
    }
  }
  assert.ok(crateFiles.length > 1);
  for (const f of ['Cargo.toml', 'Cargo.lock', 'build.rs', 'rustfmt.toml', 'src/lib.rs', ADDON, 'scripts/install.js', ...crateFiles]) {
    assert.ok(files.includes(`package/${f}`), `the tarball lacks ${f}`);
  }
  const stray = files.filter((f) => /(^|\/)target\/|\.build-stamp$|binding\.js$/.test(f));
  assert.deepEqual(stray, [], 'build output in the tarball');
  // The example images in deploy/docker/ start files the tarball must carry.
  const dockerDir = path.join(ROOT, 'deploy', 'docker');
  for (const f of fs.readdirSync(dockerDir).filter((n) => n.startsWith('Dockerfile'))) {
    const used = [...fs.readFileSync(path.join(dockerDir, f), 'utf8').matchAll(/node_modules\/cortex-worker-pool\/([\w./-]+)/g)];
    assert.ok(used.length > 0, `${f} starts something from the package`);
    for (const [, p] of used) assert.ok(files.includes(`package/${p}`), `${f} uses ${p}, which the tarball lacks`);
  }
  const mb = fs.statSync(mainTgz).size / 1e6;
  assert.ok(mb < 5, `the tarball is ${mb.toFixed(2)} MB`);

  assert.deepEqual((await listTarball(platformTgz)).sort(), ['package/README.md', `package/${ADDON}`, 'package/package.json'].sort());
  const main = require('../package.json');
  const platformManifest = require(`../npm/${PLATFORM}/package.json`);
  assert.equal(main.optionalDependencies[PLATFORM_PKG], main.version, 'optionalDependencies pins the platform package at the same version');
  assert.equal(platformManifest.version, main.version);
  assert.deepEqual([platformManifest.os, platformManifest.cpu, platformManifest.libc], [['linux'], ['x64'], ['glibc']]);
});

test('the packed binary needs glibc 2.17 at most, in both tarballs', { skip }, async () => {
  const digests = [];
  for (const tgz of [mainTgz, platformTgz]) {
    const dir = path.join(extracted, path.basename(tgz, '.tgz'));
    fs.mkdirSync(dir, { recursive: true });
    assert.equal((await run('tar', ['-xzf', tgz, '-C', dir])).code, 0);
    const bin = path.join(dir, 'package', ADDON);
    const needed = maxGlibcNeeded(bin);
    assert.ok(needed && compareVersions(needed, '2.17') <= 0, `${path.basename(tgz)}: ${ADDON} needs GLIBC_${needed}`);
    // The reader agrees with binutils where they are installed.
    const objdump = await run('objdump', ['-T', bin]).catch(() => null);
    if (objdump && objdump.code === 0) {
      const fromObjdump = [...new Set(objdump.stdout.match(/GLIBC_[0-9.]+/g).map((v) => v.slice(6)))].sort(compareVersions);
      assert.deepEqual(glibcVersionsNeeded(bin), fromObjdump);
    }
    digests.push(crypto.createHash('sha256').update(fs.readFileSync(bin)).digest('hex'));
  }
  assert.equal(digests[0], digests[1], 'both tarballs carry the same binary');
});

test('installs into a fresh project with no cargo or rustc on PATH and runs a task; no compiler ran', { skip, timeout: 300000 }, async (t) => {
  assert.equal(which('cargo', noCargoPath), null);
  assert.equal(which('rustc', noCargoPath), null);
  const r = await npm(['install', '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund', mainTgz], { timeoutMs: 240000 });
  assert.equal(r.code, 0, `npm install failed:\n${r.stdout}\n${r.stderr}`);
  t.diagnostic(`npm install of the tarball took ${r.secs.toFixed(1)} s`);
  assert.match(r.stdout + r.stderr, /using the prebuilt addon .*nothing to compile/);
  assert.doesNotMatch(r.stdout + r.stderr, /compiling|cargo build/i);
  noTargetDir();
  assertRanTask(await use(), path.join(installed, ADDON));
});

test('without the binary next to it, the loader takes the platform package', { skip, timeout: 300000 }, async () => {
  const r = await npm(['install', '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund', platformTgz], { timeoutMs: 240000 });
  assert.equal(r.code, 0, `npm install failed:\n${r.stdout}\n${r.stderr}`);
  fs.rmSync(path.join(installed, ADDON));
  assertRanTask(await use(), `package ${PLATFORM_PKG}`);
  fs.rmSync(path.join(app, 'node_modules', PLATFORM_PKG), { recursive: true });
});

test('no binary and no cargo: npm rebuild builds nothing, and using the package fails with ERR_ADDON_NOT_BUILT', { skip, timeout: 300000 }, async () => {
  assert.ok(!fs.existsSync(path.join(installed, ADDON)));
  const rebuild = await npm(['rebuild', '--foreground-scripts', 'cortex-worker-pool']);
  assert.equal(rebuild.code, 0, `npm rebuild failed:\n${rebuild.stdout}\n${rebuild.stderr}`);
  assert.match(rebuild.stderr, /cargo is not on PATH, so nothing was built/);
  noTargetDir();

  const r = await use();
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.equal(r.out.code, 'ERR_ADDON_NOT_BUILT');
  const m = r.out.message;
  const glibc = process.report.getReport().header.glibcVersionRuntime;
  assert.match(m, new RegExp(`linux x64, glibc ${glibc.replace('.', '\\.')}; looked for ${PLATFORM}`));
  assert.ok(m.includes(`${path.join(installed, ADDON)}: no such file`), m);
  assert.ok(m.includes(`package ${PLATFORM_PKG}: not installed`), m);
  assert.ok(m.includes('npm rebuild cortex-worker-pool') && m.includes('apk add cargo'), `remedy 1 (source build) missing:\n${m}`);
  assert.ok(m.includes('glibc >= 2.17'), `remedy 2 (a platform with a prebuilt) missing:\n${m}`);

  // A binary that is there but does not load is reported with its own loader error.
  fs.writeFileSync(path.join(installed, ADDON), 'not an ELF file');
  const bad = await use();
  assert.equal(bad.out.code, 'ERR_ADDON_NOT_BUILT');
  assert.match(bad.out.message, new RegExp(`${ADDON.replace(/\./g, '\\.')}: (invalid ELF header|file too short)`));
  fs.rmSync(path.join(installed, ADDON));

  // Asking for a source build without cargo fails the install script, saying why.
  const forced = await npm(['rebuild', '--foreground-scripts', 'cortex-worker-pool'], { extraEnv: { CORTEX_WORKER_POOL_BUILD_FROM_SOURCE: '1' } });
  assert.notEqual(forced.code, 0);
  assert.match(forced.stderr, /CORTEX_WORKER_POOL_BUILD_FROM_SOURCE is set, but cargo is not on PATH/);
});

test('with cargo on PATH, npm rebuild keeps a prebuilt that loads, and builds from the shipped sources when none is left', { skip, timeout: 900000 }, async (t) => {
  const cargoPath = [nodeBin, process.env.PATH].join(path.delimiter);
  assert.ok(which('cargo', cargoPath), 'cargo is on PATH for this test');
  fs.copyFileSync(path.join(extracted, `cortex-worker-pool-${version}`, 'package', ADDON), path.join(installed, ADDON));
  const kept = await npm(['rebuild', '--foreground-scripts', 'cortex-worker-pool'], { pathVar: cargoPath });
  assert.equal(kept.code, 0, kept.stderr);
  assert.match(kept.stderr, /using the prebuilt addon .*nothing to compile/);
  t.diagnostic(`npm rebuild with a fitting prebuilt and cargo on PATH took ${kept.secs.toFixed(1)} s`);
  noTargetDir();

  fs.rmSync(path.join(installed, ADDON));
  // The repository's own target dir: the plain build's dependencies are reused there,
  // so only this copy's two crates compile (a full build of every dependency otherwise).
  const built = await npm(['rebuild', '--foreground-scripts', 'cortex-worker-pool'], {
    pathVar: cargoPath,
    timeoutMs: 840000,
    extraEnv: { CARGO_TARGET_DIR: path.join(ROOT, 'target') },
  });
  assert.equal(built.code, 0, `the source build failed:\n${built.stderr.slice(-4000)}`);
  t.diagnostic(`npm rebuild compiling from source took ${built.secs.toFixed(1)} s`);
  assert.match(built.stderr, /no prebuilt addon loads here; building from source/);
  assert.match(built.stderr, new RegExp(`built ${ADDON.replace(/\./g, '\\.')}; it loads`));
  noTargetDir();
  assertRanTask(await use(cargoPath), path.join(installed, ADDON));
});
