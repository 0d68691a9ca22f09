'use strict';
// Helpers for the operations tests (daemon, control socket, CLI, examples): running
// commands with a time limit, temp dirs with short paths (Unix socket paths are
// limited to 107 bytes), process liveness, and a stale socket file factory.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const ROOT = path.join(__dirname, '..');
const DAEMON_SH = path.join(ROOT, 'scripts', 'worker-pool-daemon.sh');
const CLI = path.join(ROOT, 'bin', 'worker-pool.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a command; resolves { code, signal, stdout, stderr }; SIGKILLs it after timeoutMs. */
function run(cmd, args, { env = process.env, timeoutMs = 30000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    if (input !== undefined) child.stdin.end(input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs the worker-pool CLI. */
function cli(args, opts) {
  return run(process.execPath, [CLI, ...args], opts);
}

/** A fresh temp dir with a short path. */
function tempDir(prefix = 'wpops-') {
  const base = fs.existsSync('/tmp') ? '/tmp' : os.tmpdir();
  return fs.mkdtempSync(path.join(base, prefix));
}

/** True when pid exists and is not a zombie. */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return e.code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls fn until it returns a truthy value (or throws after timeoutMs). */
async function waitFor(fn, timeoutMs = 10000, what = 'condition', interval = 25) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ''}`);
    }
    await sleep(interval);
  }
}

/** Leaves a socket file nobody listens on (its process was SIGKILLed). */
async function makeStaleSocket(socketPath) {
  const code = `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`;
  await run(process.execPath, ['-e', code], { timeoutMs: 10000 });
  if (!fs.lstatSync(socketPath).isSocket()) throw new Error('no stale socket was left');
}

function fileMode(p) {
  return fs.statSync(p).mode & 0o777;
}

module.exports = { ROOT, DAEMON_SH, CLI, sleep, run, cli, tempDir, isAlive, waitFor, makeStaleSocket, fileMode };
