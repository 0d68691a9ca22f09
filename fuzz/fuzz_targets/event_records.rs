//! The event-record writer (pool/events.rs) and the batch merge (`append_batch`):
//! decode what was encoded and compare.
//!
//! Input: byte 0 = how many records go into each batch (1..=8), then a JSON array of
//! records as JavaScript receives them (the seeds are recorded batches). Each record
//! whose content comes from outside the core (a worker's result, an error's message
//! and stack, a worker message, an operation's result) is written again by the
//! pool's own encoder, in batches merged as the binding merges them.
//!
//! Properties: the merged text is one JSON array; it decodes to exactly the records
//! written, field by field and byte for byte (a worker's raw result, a worker message,
//! event data and operation results are the JSON text given, not a re-encoding;
//! strings with any code point come back as they were); an empty batch adds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::pool::fuzzing::{encode_batches, Record};
use pool_core::{Code, CoreError};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Names and levels are the core's own constants, never outside text.
const EVENT_NAMES: &[&str] = &["worker-ready", "task-failed", "drain", "scale-up", "worker-exit"];
const LEVELS: &[&str] = &["error", "warn", "info", "debug"];

fn code_of(v: &Value) -> Code {
    let s = v.as_str().unwrap_or("");
    Code::ALL.iter().copied().find(|c| c.as_str() == s).unwrap_or(Code::TaskFailed)
}

fn error_of(e: &Value) -> CoreError {
    let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let mut err = CoreError::new(code_of(&e["code"]), text("message").unwrap_or_default());
    err.extra.stack = text("stack");
    err.extra.worker_id = text("workerId");
    err.extra.stderr = text("stderr");
    err.extra.handler_code = text("handlerCode");
    err
}

/// The record to write for a decoded one, and the record JavaScript must then read.
fn record_of(i: usize, r: &Value) -> Option<(Record, Value)> {
    let seq = r.get("s").or_else(|| r.get("o")).and_then(Value::as_u64).unwrap_or(i as u64);
    match r.get("k")?.as_str()? {
        "ok" => {
            let raw = r.get("r")?.to_string();
            Some((Record::Ok(seq, raw), json!({ "k": "ok", "s": seq, "r": r["r"] })))
        }
        "err" => {
            let e = error_of(r.get("e")?);
            let want = json!({ "k": "err", "s": seq, "e": serde_json::to_value(&e).unwrap() });
            Some((Record::Err(seq, e), want))
        }
        "op" => {
            if r.get("ok") == Some(&Value::Bool(true)) {
                let v = r.get("r").cloned().unwrap_or(Value::Null);
                Some((Record::Op(seq, Ok(v.clone())), json!({ "k": "op", "o": seq, "ok": true, "r": v })))
            } else {
                let e = error_of(r.get("e").unwrap_or(&Value::Null));
                let want = json!({ "k": "op", "o": seq, "ok": false, "e": serde_json::to_value(&e).unwrap() });
                Some((Record::Op(seq, Err(e)), want))
            }
        }
        "ev" => {
            let name = EVENT_NAMES[i % EVENT_NAMES.len()];
            let d = r.get("d").cloned().unwrap_or(Value::Null);
            Some((Record::Event(name.into(), d.clone()), json!({ "k": "ev", "n": name, "d": d })))
        }
        "log" => {
            let level = LEVELS[i % LEVELS.len()];
            let msg = match r.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let want = json!({ "k": "log", "level": level, "component": "PoolManager", "message": msg });
            Some((Record::Log(level.into(), msg), want))
        }
        "wm" => {
            let m = r.get("m")?;
            let (w, p) = (format!("worker-{}", i % 7), (i * 31) as u32);
            Some((
                Record::WorkerMessage(w.clone(), p, m.to_string()),
                json!({ "k": "wm", "w": w, "p": p, "m": m }),
            ))
        }
        _ => None,
    }
}

/// A record as field -> JSON text, as the writer wrote it.
fn fields(v: &Value) -> BTreeMap<String, String> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&per, text)) = data.split_first() else { return };
    let per = 1 + (per % 8) as usize;
    let Ok(Value::Array(recs)) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    let (records, want): (Vec<Record>, Vec<Value>) = recs.iter().enumerate().filter_map(|(i, r)| record_of(i, r)).unzip();
    let mut batches: Vec<Vec<Record>> = records.chunks(per).map(<[Record]>::to_vec).collect();
    // Empty batches (a lock that produced nothing) in between add nothing.
    batches.insert(batches.len() / 2, Vec::new());
    let merged = encode_batches(&batches);
    if want.is_empty() {
        assert!(merged.is_empty(), "no records, no text: {merged:?}");
        return;
    }
    // Compared as text: serde_json's float parsing is not exact (no `float_roundtrip`),
    // so a Value parsed twice may differ in the last digit; the core never re-encodes
    // what it passes on, so the text must be the same bytes.
    let got: Vec<BTreeMap<String, &RawValue>> =
        serde_json::from_str(&merged).unwrap_or_else(|e| panic!("not one JSON array of records ({e}): {merged}"));
    assert_eq!(got.len(), want.len(), "every record once: {merged}");
    for ((g, w), r) in got.iter().zip(&want).zip(&records) {
        let mut g: BTreeMap<String, String> = g.iter().map(|(k, v)| (k.clone(), v.get().to_string())).collect();
        if w["k"] == "log" {
            assert!(
                g.remove("timestamp").is_some_and(|t| t.parse::<u64>().is_ok()),
                "a log record has its time"
            );
        }
        let mut w = fields(w);
        // The raw texts, exactly as given to the writer.
        match r {
            Record::Ok(_, raw) => {
                w.insert("r".into(), raw.clone());
            }
            Record::WorkerMessage(_, _, line) => {
                w.insert("m".into(), line.clone());
            }
            // An error's fields in the order the core writes them (a Value sorts them).
            Record::Err(_, e) | Record::Op(_, Err(e)) => {
                w.insert("e".into(), e.to_json());
            }
            _ => {}
        }
        assert_eq!(g, w);
    }
});
