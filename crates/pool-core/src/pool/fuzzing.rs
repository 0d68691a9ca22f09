//! The pool's private parsers and encoders, reachable from the fuzz targets in
//! `fuzz/` (a separate crate). Each function here is a thin call of the code the pool
//! runs; none adds behaviour. Not part of the API: hidden from the docs and free to
//! change with the fuzz targets.

use super::events;
use super::io;
use super::state::State;
use super::tasks;
use crate::config::PoolConfig;
use crate::error::{CoreError, CoreResult};
use serde_json::Value;

/// `split_messages` of the worker channel reader: the byte ranges of the complete
/// messages in `buf` and how many bytes they use, or why the stream is a protocol
/// error. `scanned` is the reader's resume point, as `Pool::pump` keeps it.
pub fn split_messages(buf: &[u8], scanned: &mut usize, max: usize, framed: bool) -> Result<(Vec<(usize, usize)>, usize), String> {
    io::split_messages(buf, scanned, max, framed)
}

/// What the FIFO transport's writer sends for newline-delimited messages: each one as
/// a 4-byte big-endian length and its bytes.
pub fn frame_lines(bytes: &[u8]) -> Vec<u8> {
    io::frame_lines(bytes)
}

/// What `Pool::pump` keeps of its read buffer after a round that found `consumed`
/// bytes of complete messages (see `io::after_split`).
pub fn keep_after_split(buf: &mut Vec<u8>, scanned: &mut usize, consumed: usize) {
    io::after_split(buf, scanned, consumed)
}

/// A decoded submit line, field by field.
#[derive(Debug)]
pub struct SubmitFields {
    pub priority: f64,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub type_json: String,
    pub payload_json: String,
    pub metadata_json: Option<String>,
    pub requires: Vec<String>,
}

/// `decode_submit_line` of `Pool::submit_batch`.
pub fn decode_submit_line(line: &str) -> Option<(u64, CoreResult<SubmitFields>)> {
    tasks::decode_submit_line(line).map(|(seq, r)| {
        (
            seq,
            r.map(|l| SubmitFields {
                priority: l.priority,
                timeout_ms: l.timeout_ms,
                max_retries: l.max_retries,
                type_json: l.task.type_json,
                payload_json: l.task.payload_json,
                metadata_json: l.task.metadata_json,
                requires: l.task.requires,
            }),
        )
    })
}

/// One event record, as the pool writes it.
#[derive(Debug, Clone)]
pub enum Record {
    /// `settle_ok(seq, raw)`; `raw` must be JSON text (a worker's result is).
    Ok(u64, String),
    Err(u64, CoreError),
    Op(u64, Result<Value, CoreError>),
    Event(String, Value),
    Log(String, String),
    /// A worker message passed on: worker id, pid, the message's JSON text.
    WorkerMessage(String, u32, String),
}

/// A pool state with default options and no workers, for the encoders that need one.
fn state() -> State {
    let cfg = PoolConfig::from_json(&Value::Null, "node", "worker.js").expect("the default options are valid");
    State::new(cfg)
}

/// Writes `batches` of records as the pool does (one batch per lock, `take_events`)
/// and merges the batches as the binding does (`append_batch`): the text JavaScript
/// receives.
pub fn encode_batches(batches: &[Vec<Record>]) -> String {
    let mut st = state();
    let mut merged = String::new();
    for batch in batches {
        for r in batch {
            match r {
                Record::Ok(seq, raw) => st.settle_ok(*seq, raw),
                Record::Err(seq, e) => st.settle_err(*seq, e),
                Record::Op(op, res) => st.op_done(*op, res.clone()),
                Record::Event(name, data) => st.emit(name, data.clone()),
                Record::Log(level, msg) => st.log(level, msg),
                Record::WorkerMessage(w, pid, line) => st.push_ev(&events::worker_message_record(w, *pid, line)),
            }
        }
        events::append_batch(&mut merged, st.take_events());
    }
    merged
}

/// `call` of a pool's `taskQueue` / `healthMonitor` view, on a pool with no workers.
pub fn pool_call(method: &str, args: &Value) -> CoreResult<String> {
    state().call(method, args)
}
