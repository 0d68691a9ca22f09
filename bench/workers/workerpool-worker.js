'use strict';
// workerpool worker (run with workerType: 'process'), methods called via pool.exec(name, [payload]).
const workerpool = require('workerpool');
const tasks = require('./tasks.js');

workerpool.worker({
  echo: tasks.echo,
  fib: tasks.fib,
  whoami: tasks.whoami,
  stamp: tasks.stamp,
  burn: tasks.burn,
});
