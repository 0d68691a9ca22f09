'use strict';
// Task bodies shared by every worker script, so every pool runs identical work.
//   echo(payload)  -> payload             (no-op task; the payload is serialized both ways)
//   fib({ n })     -> fib(n)              (CPU-bound task, naive recursion)
//   whoami()       -> id of this worker   (used to check that every worker of a pool has answered)
const { threadId } = require('worker_threads');

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

const workerIdentity = threadId ? `${process.pid}:${threadId}` : String(process.pid);

module.exports = {
  echo: (payload) => payload,
  fib: (payload) => fib(payload.n),
  whoami: () => workerIdentity,
};
