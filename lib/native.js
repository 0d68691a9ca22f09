'use strict';
// Loads the compiled addon through the napi-rs generated loader.
const path = require('node:path');

let binding;
try {
  binding = require(path.join(__dirname, '..', 'binding.js'));
} catch (e) {
  const err = new Error(
    `The native worker-pool addon is not built or failed to load (${e.message}). ` +
      'Run `npm install` (or `npm run build`) in the package directory; it needs a Rust toolchain.',
  );
  err.code = 'ERR_ADDON_NOT_BUILT';
  err.cause = e;
  throw err;
}

module.exports = binding;
