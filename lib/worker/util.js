'use strict';

// Small helpers shared by the worker runtime's modules.

const BYTES_PER_MB = 1024 * 1024;

const now = () => performance.now();

function describe(value) {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    return typeof value;
  }
}

module.exports = { BYTES_PER_MB, now, describe };
