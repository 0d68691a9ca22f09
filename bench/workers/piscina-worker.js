'use strict';
// piscina worker (worker_threads): default export is echo, named exports selected with run(task, { name }).
const tasks = require('./tasks.js');

function echo(payload) {
  return tasks.echo(payload);
}
echo.echo = echo;
echo.fib = tasks.fib;
echo.whoami = tasks.whoami;
echo.stamp = tasks.stamp;
echo.burn = tasks.burn;

module.exports = echo;
