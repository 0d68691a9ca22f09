//! The shared queue's job decoder (`pool_core::shared::decode_job`): what a serving
//! pool makes of a job read from Redis, which anyone with access to the queue can
//! write. Input: the job's name and its data field, split at the first 0 byte (no 0
//! byte: the name is "n"); not UTF-8: skipped (Redis returns them as strings).
//!
//! Properties:
//! - it never panics;
//! - a refusal carries ERR_INVALID_TASK and names the job: data that is not JSON, or
//!   data that claims this package's format (an object with a `cortex` field) and is
//!   not a valid task of it;
//! - data without a `cortex` field is a plain BullMQ job: its task type is the job's
//!   name, its payload the data itself (the same JSON value), its job fields (`job`)
//!   are JSON, and it uses the queue's timeout for plain jobs;
//! - data of this package's format is accepted only with `cortex: 1` and a non-empty
//!   string `type`; its payload is the data's `payload` (`null` when absent), its
//!   timeout at least 1 ms when given, its requires the data's strings, its priority
//!   never negative;
//! - whatever is sent to a worker (type, payload, job fields) is JSON on one line.
#![no_main]

use bullmq::Job;
use libfuzzer_sys::fuzz_target;
use pool_core::shared::decode_job;
use pool_core::Code;
use serde_json::value::RawValue;
use serde_json::Value;

const PLAIN_TIMEOUT: Option<u64> = Some(1234);

fn one_line_json(text: &str) -> bool {
    !text.contains(['\n', '\r']) && serde_json::from_str::<&RawValue>(text).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let (name, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"n"[..], data),
    };
    let (Ok(name), Ok(text)) = (std::str::from_utf8(name), std::str::from_utf8(body)) else { return };
    let job = Job {
        id: "7".into(),
        name: name.to_string(),
        data: text.to_string(),
        priority: data.first().map(|b| *b as i64 - 64).unwrap_or(0),
        ..Job::default()
    };
    let value: Option<Value> = serde_json::from_str(text).ok();
    let claims_ours = text.trim_start().starts_with('{') && value.as_ref().map_or(true, |v| v.get("cortex").is_some());
    match decode_job(&job, "q", PLAIN_TIMEOUT) {
        Err(e) => {
            assert_eq!(e.code, Code::InvalidTask);
            let not_json = serde_json::from_str::<&RawValue>(text).is_err();
            if not_json {
                assert!(e.message.starts_with("Job 7 of queue q has data that is not JSON"), "{}", e.message);
            } else {
                assert!(claims_ours, "plain data refused: {}", e.message);
                assert!(e.message.starts_with("Job 7 is not a valid Cortex task: "), "{}", e.message);
            }
        }
        Ok(d) => {
            assert!(one_line_json(&d.task.type_json) && one_line_json(&d.task.payload_json));
            if let Some(m) = &d.task.metadata_json {
                assert!(one_line_json(m));
            }
            if d.plain {
                assert!(!claims_ours || value.is_none(), "a job with a cortex field ran as plain");
                assert_eq!(d.task.type_json, Value::String(name.to_string()).to_string());
                if let Some(v) = &value {
                    let payload: Value = serde_json::from_str(&d.task.payload_json).expect("the payload is the data");
                    assert_eq!(&payload, v);
                }
                let info: Value = serde_json::from_str(d.task.job_json.as_deref().expect("a plain job's fields")).expect("job fields are JSON");
                assert!(one_line_json(d.task.job_json.as_deref().unwrap_or("")));
                assert_eq!(info["id"], "7");
                assert_eq!(d.timeout_ms, PLAIN_TIMEOUT);
                assert!(d.task.requires.is_empty());
            } else {
                assert!(d.task.job_json.is_none());
                // Valid JSON that serde_json's Value refuses (a number beyond f64, such
                // as 1e2230): passed on raw, as JSON text; nothing more to compare.
                let Some(v) = value else {
                    assert!(serde_json::from_str::<&RawValue>(text).is_ok());
                    return;
                };
                assert_eq!(v.get("cortex").and_then(Value::as_i64), Some(1));
                let kind = v.get("type").and_then(Value::as_str).expect("a string type");
                assert!(!kind.is_empty());
                assert_eq!(d.task.type_json, Value::String(kind.to_string()).to_string());
                let payload: Value = serde_json::from_str(&d.task.payload_json).expect("the payload is JSON");
                assert_eq!(payload, v.get("payload").cloned().unwrap_or(Value::Null));
                if let Some(t) = d.timeout_ms {
                    assert!(t >= 1);
                }
                let want: Vec<String> = v
                    .get("requires")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                assert_eq!(d.task.requires, want);
                assert!(d.priority >= 0.0);
            }
        }
    }
});
