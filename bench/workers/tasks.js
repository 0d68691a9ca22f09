'use strict';
// Task bodies shared by every worker script, so every pool runs identical work.
//   echo(payload)  -> payload             (no-op task; the payload is serialized both ways)
//   fib({ n })     -> fib(n)              (CPU-bound task, naive recursion)
//   whoami()       -> id of this worker   (used to check that every worker of a pool has answered)
//   stamp()        -> the worker's process.hrtime.bigint() as a string (splits a round trip)
//   burn({ ms })   -> true after ms of busy CPU (background load of the mixed scenario)
const { threadId } = require('worker_threads');

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

const workerIdentity = threadId ? `${process.pid}:${threadId}` : String(process.pid);

module.exports = {
  echo: (payload) => payload,
  fib: (payload) => fib(payload.n),
  whoami: () => workerIdentity,
  // The worker's monotonic clock (shared by all processes on the machine): splits a
  // round trip into its way out and its way back.
  stamp: () => String(process.hrtime.bigint()),
  // CPU-bound for `ms` milliseconds (busy loop): the background load of the mixed scenario.
  burn: (payload) => {
    const end = performance.now() + payload.ms;
    let n = 0;
    while (performance.now() < end) n++;
    return n > 0;
  },
};
