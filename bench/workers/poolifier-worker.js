'use strict';
// poolifier ClusterWorker exposing the benchmark task functions (selected by name in pool.execute()).
const { ClusterWorker } = require('poolifier');
const tasks = require('./tasks.js');

module.exports = new ClusterWorker({
  echo: tasks.echo,
  fib: tasks.fib,
  whoami: tasks.whoami,
  stamp: tasks.stamp,
  burn: tasks.burn,
});
