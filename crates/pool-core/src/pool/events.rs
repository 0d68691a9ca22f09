//! What goes to JavaScript: the outgoing batch of event records (a JSON array built as
//! text under the lock and handed to the `EventSink` by `Pool::after`), and the
//! records themselves: pool events, log lines, task settlements, operation results,
//! the queue's and health monitor's own events, and worker messages passed on.
//!
//! This file is the one encoder of the records; their decoder is `decodeEvents` in
//! lib/wire.js, and the table of kinds and fields is in docs/ARCHITECTURE.md ("Event
//! records").

use super::state::State;
use crate::error::CoreError;
use crate::util::{epoch_ms, json_str};
use serde_json::Value;
use std::fmt::Write as _;

/// The next batch starts with the capacity the last one needed, within these bounds.
const EVENT_BUF_MIN: usize = 256;
const EVENT_BUF_MAX: usize = 64 * 1024;

/// Appends a batch of event records to batches not yet delivered, keeping one JSON
/// array: `[a,b]` + `[c]` = `[a,b,c]`. Both are the JSON array text `take_events`
/// makes, so merging is splicing the text; no record is parsed. `[]` adds nothing.
/// (The binding's queue for the JS thread, `src/jsloop.rs`, merges with this.)
pub fn append_batch(events: &mut String, batch: String) {
    if events.is_empty() {
        *events = batch;
    } else if batch.len() > 2 {
        events.pop();
        events.push(',');
        events.push_str(&batch[1..]);
    }
}

/// The `wm` record: a worker message the core does not consume (`line` is its JSON).
pub(super) fn worker_message_record(worker_id: &str, pid: u32, line: &str) -> String {
    format!("{{\"k\":\"wm\",\"w\":\"{worker_id}\",\"p\":{pid},\"m\":{line}}}")
}

impl State {
    /// Starts the next event in the outgoing batch (a JSON array being built).
    fn ev_sep(&mut self) {
        self.effects.ev.push(if self.effects.ev.is_empty() { '[' } else { ',' });
    }

    pub(super) fn push_ev(&mut self, frag: &str) {
        self.ev_sep();
        self.effects.ev.push_str(frag);
    }

    /// Takes the batch built so far as JSON array text ("" when there is none).
    pub(super) fn take_events(&mut self) -> String {
        if self.effects.ev.is_empty() {
            return String::new();
        }
        self.effects.ev.push(']');
        let cap = self.effects.ev.len().clamp(EVENT_BUF_MIN, EVENT_BUF_MAX);
        std::mem::replace(&mut self.effects.ev, String::with_capacity(cap))
    }

    pub(super) fn emit(&mut self, name: &str, data: Value) {
        let frag = format!("{{\"k\":\"ev\",\"n\":\"{name}\",\"d\":{data}}}");
        self.push_ev(&frag);
    }

    pub(super) fn log(&mut self, level: &str, message: &str) {
        self.log_as("PoolManager", level, message);
    }

    pub(super) fn log_as(&mut self, component: &str, level: &str, message: &str) {
        match level {
            "error" => tracing::error!(target: "worker_pool", "{message}"),
            "warn" => tracing::warn!(target: "worker_pool", "{message}"),
            "debug" => tracing::debug!(target: "worker_pool", "{message}"),
            _ => tracing::info!(target: "worker_pool", "{message}"),
        }
        let mut frag = String::with_capacity(96 + message.len());
        let _ = write!(
            frag,
            "{{\"k\":\"log\",\"level\":\"{level}\",\"component\":\"{component}\",\"timestamp\":{},\"message\":",
            epoch_ms() as u64
        );
        json_str(&mut frag, message);
        frag.push('}');
        self.push_ev(&frag);
    }

    pub(super) fn settle_ok(&mut self, seq: u64, raw: &str) {
        if self.settle_owned(seq, || Ok(raw.to_string())) {
            return;
        }
        self.ev_sep();
        let _ = write!(self.effects.ev, "{{\"k\":\"ok\",\"s\":{seq},\"r\":");
        self.effects.ev.push_str(raw);
        self.effects.ev.push('}');
    }

    pub(super) fn settle_err(&mut self, seq: u64, err: &CoreError) {
        if self.settle_owned(seq, || Err(err.clone())) {
            return;
        }
        let frag = format!("{{\"k\":\"err\",\"s\":{seq},\"e\":{}}}", err.to_json());
        self.push_ev(&frag);
    }

    pub(super) fn op_done(&mut self, op: u64, result: Result<Value, CoreError>) {
        let frag = match result {
            Ok(v) => format!("{{\"k\":\"op\",\"o\":{op},\"ok\":true,\"r\":{v}}}"),
            Err(e) => format!("{{\"k\":\"op\",\"o\":{op},\"ok\":false,\"e\":{}}}", e.to_json()),
        };
        self.push_ev(&frag);
    }

    /// Moves queue and health events into the outgoing buffer.
    pub(super) fn forward_queue_and_health_events(&mut self) {
        if !self.queue.events.is_empty() {
            let evs = std::mem::take(&mut self.queue.events);
            for e in evs {
                if let Ok(s) = serde_json::to_string(&e) {
                    self.push_ev(&format!("{{\"k\":\"q\",\"d\":{s}}}"));
                }
            }
        }
        if !self.health.events.is_empty() {
            let evs = std::mem::take(&mut self.health.events);
            for e in evs {
                self.push_ev(&format!("{{\"k\":\"h\",\"d\":{e}}}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolConfig;
    use crate::error::Code;
    use serde_json::json;

    /// The records as `decodeEvents` in lib/wire.js reads them (the table is in
    /// docs/ARCHITECTURE.md, "Event records").
    #[test]
    fn records_decode_as_the_facade_reads_them() {
        let cfg = PoolConfig::from_json(&Value::Null, "node", "worker.js").unwrap();
        let mut st = State::new(cfg);
        st.settle_ok(7, "{\"a\":[1, 2]}");
        st.settle_err(8, &CoreError::new(Code::TaskTimeout, "late"));
        st.op_done(3, Ok(json!({ "poolSize": 2 })));
        st.op_done(4, Err(CoreError::new(Code::PoolShutdown, "gone")));
        st.emit("drain", json!({}));
        st.log("warn", "careful: \"quoted\"\n");
        let batch: Value = serde_json::from_str(&st.take_events()).unwrap();
        let recs = batch.as_array().unwrap();
        assert_eq!(recs.len(), 6);
        assert_eq!(recs[0], json!({ "k": "ok", "s": 7, "r": { "a": [1, 2] } }));
        assert_eq!(
            (&recs[1]["k"], &recs[1]["s"], &recs[1]["e"]["code"]),
            (&json!("err"), &json!(8), &json!("ERR_TASK_TIMEOUT"))
        );
        assert_eq!(recs[2], json!({ "k": "op", "o": 3, "ok": true, "r": { "poolSize": 2 } }));
        assert_eq!(
            (&recs[3]["ok"], &recs[3]["e"]["code"]),
            (&json!(false), &json!("ERR_POOL_SHUTDOWN"))
        );
        assert_eq!(recs[4], json!({ "k": "ev", "n": "drain", "d": {} }));
        assert_eq!((&recs[5]["k"], &recs[5]["level"]), (&json!("log"), &json!("warn")));
        assert_eq!(recs[5]["message"], "careful: \"quoted\"\n");
        // The batch was taken: the next one starts empty.
        assert_eq!(st.take_events(), "");
    }

    #[test]
    fn batches_merge_into_one_array() {
        let mut events = String::new();
        append_batch(&mut events, r#"[{"k":"ok","s":1,"r":1}]"#.into());
        append_batch(&mut events, "[]".into());
        append_batch(&mut events, r#"[{"k":"ev","n":"x","d":{}},{"k":"ok","s":2,"r":"]"}]"#.into());
        assert_eq!(
            events,
            r#"[{"k":"ok","s":1,"r":1},{"k":"ev","n":"x","d":{}},{"k":"ok","s":2,"r":"]"}]"#
        );
    }
}
