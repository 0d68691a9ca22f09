'use strict';
// Raw child_process.fork baseline worker: answers every IPC message with its payload.
// Messages: { id, payload } (echo) or { id, op, payload } for the other task kinds.
const tasks = require('./tasks.js');

process.on('message', (m) => {
  if (m.op === undefined) {
    process.send({ id: m.id, result: m.payload });
  } else {
    process.send({ id: m.id, result: tasks[m.op](m.payload) });
  }
});
