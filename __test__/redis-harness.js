'use strict';
// A real redis-server for the shared-queue tests: started from PATH on 127.0.0.1, a
// free port and a fresh temporary directory, with the append-only file on (so a
// restart on the same port and directory loses nothing). Tests never use a Redis
// they did not start; each server is stopped (and its directory removed) at the end.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) {
        s.destroy();
        resolve(buf.startsWith('+PONG'));
      }
    });
    s.on('error', () => resolve(false));
  });
}

// redis-server "$@" under a watchdog: it stops Redis (SIGTERM, then waits for it) when
// the process whose pid is $1 is gone, when Redis exits by itself, or on SIGTERM.
const WATCHDOG = `
parent=$1; shift
redis-server "$@" &
r=$!
trap 'kill -TERM $r 2>/dev/null; wait $r; exit 0' TERM
while kill -0 "$parent" 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done
kill -TERM $r 2>/dev/null
wait $r
`;

class RedisServer {
  /** `extra`: more redis-server arguments; `sentinel`: { masterPort, name } runs a sentinel instead. */
  constructor(port, dir, { extra = [], sentinel = null } = {}) {
    this.port = port;
    this.dir = dir;
    this.proc = null;
    this.url = `redis://127.0.0.1:${port}`;
    this.extra = extra;
    this.sentinel = sentinel;
  }

  #args() {
    if (this.sentinel) {
      // A sentinel rewrites its configuration file, so it gets one of its own.
      const conf = path.join(this.dir, 'sentinel.conf');
      const { masterPort, name } = this.sentinel;
      fs.writeFileSync(
        conf,
        [
          `port ${this.port}`,
          'bind 127.0.0.1',
          `dir ${this.dir}`,
          `logfile ${path.join(this.dir, 'redis.log')}`,
          `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      return [conf, '--sentinel'];
    }
    return ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--logfile', path.join(this.dir, 'redis.log'), ...this.extra];
  }

  /** SIGKILLs the redis-server process itself (a machine lost), and waits for it to be gone. */
  async kill() {
    const pid = Number(/process_id:(\d+)/.exec(await command(this.port, 'INFO server'))[1]);
    process.kill(pid, 'SIGKILL');
    await this.exited;
  }

  /**
   * Starts (or restarts) redis-server on this port and directory; resolves when it
   * answers. It runs under a small shell watchdog that stops it when this process is
   * gone, however this process ends (a crashed or killed test file must not leave a
   * Redis behind), and that stops it on SIGTERM.
   */
  async start() {
    const args = this.#args();
    // detached: the watchdog leads a process group of its own, so the last resort
    // (SIGKILL to the group) reaches redis-server too.
    this.proc = spawn('sh', ['-c', WATCHDOG, 'redis-watchdog', String(process.pid), ...args], { stdio: 'ignore', detached: true });
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.exited = exited;
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (await ping(this.port)) return this;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not answer on port ${this.port} within 10 s (see ${this.dir}/redis.log)`);
  }

  /** Stops it (SIGTERM: the append-only file is flushed) and waits for the exit. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, 5000);
    await this.exited;
    clearTimeout(timer);
  }

  async destroy() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Starts a private redis-server; call `destroy()` when done (t.after / after).
 * `opts`: { extra: [more arguments], sentinel: { masterPort, name } for a sentinel }.
 */
async function startRedis(opts = {}) {
  const which = spawnSync('sh', ['-c', 'command -v redis-server']);
  if (which.status !== 0) throw new Error('redis-server is not on PATH: install it (Debian: apt-get install -y redis-server)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wp-redis-'));
  const server = new RedisServer(await freePort(), dir, opts);
  return server.start();
}

/** Sends one inline command to the Redis (or sentinel) on `port`; resolves with the raw reply. */
function command(port, line) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(2000, () => {
      s.destroy();
      reject(new Error(`no answer to ${line} on port ${port}`));
    });
    s.on('connect', () => s.write(`${line}\r\n`));
    s.on('data', (d) => {
      buf += d;
      // A bulk reply: "$<len>\r\n<body>\r\n"; anything else is one line.
      const m = /^\$(\d+)\r\n/.exec(buf);
      if ((m && buf.length >= m[0].length + Number(m[1]) + 2) || (!m && buf.includes('\r\n') && !buf.startsWith('$') && !buf.startsWith('*'))) {
        s.destroy();
        resolve(buf);
      } else if (buf.startsWith('*') && /\r\n$/.test(buf) && buf.split('\r\n').length > 2) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', reject);
  });
}

module.exports = { startRedis, freePort, command };
