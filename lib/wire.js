'use strict';
// The two text formats between lib/pool.js and the core, with the one encoder or
// decoder of each on this side (the tables are in docs/ARCHITECTURE.md, "Formats
// between JavaScript and the core"):
//   submit line    encodeSubmitLine here; decode_submit_line in pool-core's pool/tasks.rs
//   event records  encoded in pool-core's pool/events.rs; decodeEvents here
// Both are on the hot path: one string concatenation per task, one switch per record,
// and nothing allocated beyond that.

/** The fields of a submit line, in their order (tab-separated). */
const SUBMIT_FIELDS = Object.freeze(['seq', 'priority', 'timeout', 'maxRetries', 'type', 'payload', 'metadata', 'requires']);

/**
 * One task as a submit line, newline-terminated. `t` is a task validated by
 * lib/task-validate.js: payload and metadata are JSON text already. JSON text never
 * contains a raw tab or newline, so nothing needs escaping; an absent optional field
 * is empty.
 */
function encodeSubmitLine(seq, t) {
  const requires = t.requires === undefined ? '' : JSON.stringify(t.requires);
  return `${seq}\t${t.priority}\t${t.timeout ?? ''}\t${t.maxRetries ?? ''}\t${JSON.stringify(t.type)}\t${t.payloadJson}\t${t.metadataJson ?? ''}\t${requires}\n`;
}

/**
 * The record kinds (`k`) and their fields. `decodeEvents` hands each record to the
 * sink's method of the same name: `ok(s, r)`, `err(s, e)`, `op(o, ok, r, e)`,
 * `ev(n, d)`, `q(d)`, `h(d)`, `log(record)`, `wm(w, p, m)`.
 */
const RECORD_KINDS = Object.freeze({
  ok: ['s', 'r'],
  err: ['s', 'e'],
  op: ['o', 'ok', 'r', 'e'],
  ev: ['n', 'd'],
  q: ['d'],
  h: ['d'],
  log: ['level', 'component', 'timestamp', 'message'],
  wm: ['w', 'p', 'm'],
});

function applyRecord(e, sink) {
  switch (e.k) {
    case 'ok':
      sink.ok(e.s, e.r);
      break;
    case 'err':
      sink.err(e.s, e.e);
      break;
    case 'op':
      sink.op(e.o, e.ok, e.r, e.e);
      break;
    case 'ev':
      sink.ev(e.n, e.d);
      break;
    case 'q':
      sink.q(e.d);
      break;
    case 'h':
      sink.h(e.d);
      break;
    case 'log':
      sink.log(e);
      break;
    case 'wm':
      sink.wm(e.w, e.p, e.m);
      break;
    default:
      // A kind this side does not know: ignored.
      break;
  }
}

/**
 * Decodes a batch of event records (JSON array text; "" is a wake-up with nothing in
 * it) and hands each to `sink`, in order. A sink method that throws (a listener) does
 * not stop the batch, since no settlement may be lost: returns the first error thrown,
 * or null, for the caller to rethrow once it has finished its own bookkeeping.
 */
function decodeEvents(text, sink) {
  if (text === '') return null;
  const records = JSON.parse(text);
  let thrown = null;
  for (let i = 0; i < records.length; i++) {
    try {
      applyRecord(records[i], sink);
    } catch (err) {
      if (!thrown) thrown = err;
    }
  }
  return thrown;
}

module.exports = { SUBMIT_FIELDS, encodeSubmitLine, RECORD_KINDS, decodeEvents };
