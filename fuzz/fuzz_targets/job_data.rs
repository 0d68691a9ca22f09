//! The shared queue's job decoder (`pool_core::shared::decode_job`): what a serving
//! pool makes of a job's `data` read from Redis, which anyone with access to the queue
//! can write. Input: the data field (not UTF-8: skipped; Redis returns it as a string
//! and the worker reads it as text).
//!
//! Properties:
//! - it never panics;
//! - a refused job carries ERR_INVALID_TASK and says it is not a Cortex task;
//! - an accepted job is a JSON object with `cortex: 1` and a non-empty string `type`;
//!   the task's type is that string as JSON, its payload is the data's `payload`
//!   (`null` when absent), its timeout is at least 1 ms when given, its requires are
//!   the data's strings, and its priority is never negative.
#![no_main]

use bullmq::Job;
use libfuzzer_sys::fuzz_target;
use pool_core::shared::decode_job;
use pool_core::Code;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let job = Job {
        id: "7".into(),
        data: text.to_string(),
        priority: data.first().map(|b| *b as i64 - 64).unwrap_or(0),
        ..Job::default()
    };
    match decode_job(&job) {
        Err(e) => {
            assert_eq!(e.code, Code::InvalidTask);
            assert!(e.message.starts_with("Job 7 is not a Cortex task: "), "{}", e.message);
        }
        Ok(d) => {
            let v: Value = serde_json::from_str(text).expect("an accepted job's data is JSON");
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
});
