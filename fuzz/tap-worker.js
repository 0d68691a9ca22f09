'use strict';
// A worker that records every message it sends (one JSON line each, as Node's IPC
// channel writes it) to $TAP_FILE, then runs the worker script $TAP_TARGET.
// Used by record-corpus.js only.
const fs = require('node:fs');

const send = process.send.bind(process);
process.send = (msg, ...rest) => {
  fs.appendFileSync(process.env.TAP_FILE, `${JSON.stringify(msg)}\n`);
  return send(msg, ...rest);
};
require(process.env.TAP_TARGET);
