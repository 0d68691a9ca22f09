'use strict';
// Baseline: n × child_process.fork(), round-robin dispatch, one IPC message per task,
// a Map of id -> resolver. No queueing, no back-pressure, no fault handling beyond
// rejecting in-flight tasks when a child dies. This is the floor a process pool is measured against.
const { fork } = require('child_process');
const path = require('path');

const WORKER = path.join(__dirname, '..', 'workers', 'raw-worker.js');

module.exports = {
  name: 'raw',
  label: 'raw fork',
  kind: 'process',
  version: () => process.version,
  readySignal: 'none (fork() returns at once); see "all workers served"',

  async create(size) {
    const children = [];
    const pending = new Map();
    let nextId = 0;
    let rr = 0;
    let closing = false;

    for (let i = 0; i < size; i++) {
      const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m) => {
        const p = pending.get(m.id);
        if (p === undefined) return;
        pending.delete(m.id);
        p.resolve(m.result);
      });
      child.on('exit', (code, signal) => {
        if (closing) return;
        const err = new Error(`raw worker ${child.pid} exited (code ${code}, signal ${signal})`);
        for (const p of pending.values()) p.reject(err);
        pending.clear();
      });
      child.on('error', () => {});
      children.push(child);
    }

    return {
      nativeReady: false,
      run(op, payload) {
        return new Promise((resolve, reject) => {
          const id = nextId++;
          pending.set(id, { resolve, reject });
          const child = children[rr];
          rr = rr + 1 === children.length ? 0 : rr + 1;
          child.send(op === 'echo' ? { id, payload } : { id, op, payload });
        });
      },
      async close() {
        closing = true;
        await Promise.all(children.map((child) => new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          child.once('exit', () => { clearTimeout(t); resolve(); });
          // Closing the IPC channel lets the child's event loop drain and exit normally.
          if (child.connected) child.disconnect(); else child.kill('SIGTERM');
        })));
      },
    };
  },
};
