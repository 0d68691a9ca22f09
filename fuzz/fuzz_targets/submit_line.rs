//! The submit-line decoder (`decode_submit_line`, the counterpart of
//! `encodeSubmitLine` in lib/wire.js). Input: one line (not UTF-8: skipped, a JS
//! string always is).
//!
//! Properties:
//! - a line is ignored exactly when it does not start with a decimal u64 sequence
//!   number; otherwise the number is the one written;
//! - a refused task carries ERR_INVALID_TASK and names the malformed field;
//! - an accepted task has a finite priority, a timeout of at least 1 ms when one is
//!   given, a non-empty type, and no field holding a tab;
//! - re-encoding an accepted task as lib/wire.js does and decoding it again gives the
//!   same fields (the round trip is the identity).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::pool::fuzzing::{decode_submit_line, SubmitFields};
use pool_core::Code;

/// `encodeSubmitLine` of lib/wire.js, from decoded fields (without the newline).
fn encode(seq: u64, f: &SubmitFields) -> String {
    let opt = |o: Option<String>| o.unwrap_or_default();
    let requires = if f.requires.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&f.requires).unwrap()
    };
    format!(
        "{seq}\t{}\t{}\t{}\t{}\t{}\t{}\t{requires}",
        f.priority,
        opt(f.timeout_ms.map(|t| t.to_string())),
        opt(f.max_retries.map(|r| r.to_string())),
        f.type_json,
        f.payload_json,
        opt(f.metadata_json.clone()),
    )
}

fn same(a: &SubmitFields, b: &SubmitFields) -> bool {
    a.priority.to_bits() == b.priority.to_bits()
        && a.timeout_ms == b.timeout_ms
        && a.max_retries == b.max_retries
        && a.type_json == b.type_json
        && a.payload_json == b.payload_json
        && a.metadata_json == b.metadata_json
        && a.requires == b.requires
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if line.contains('\n') {
        return; // the batch is split on newlines before a line is decoded
    }
    let first = line.split('\t').next().unwrap_or("");
    let Some((seq, task)) = decode_submit_line(line) else {
        assert!(first.parse::<u64>().is_err(), "a line with a sequence number is answered");
        return;
    };
    assert_eq!(Ok(seq), first.parse::<u64>());
    match task {
        Err(e) => {
            assert_eq!(e.code, Code::InvalidTask);
            let named = ["priority", "timeout", "maxRetries", "type", "requires"];
            assert!(named.iter().any(|f| e.message.contains(f)), "the field is named: {}", e.message);
        }
        Ok(f) => {
            assert!(f.priority.is_finite());
            assert!(f.timeout_ms.is_none_or(|t| t >= 1));
            assert!(!f.type_json.is_empty() && !f.payload_json.is_empty());
            for s in [&f.type_json, &f.payload_json] {
                assert!(!s.contains('\t'));
            }
            let again = encode(seq, &f);
            let (seq2, f2) = decode_submit_line(&again).expect("a re-encoded line has its sequence number");
            assert_eq!(seq2, seq);
            let f2 = f2.unwrap_or_else(|e| panic!("re-encoded {again:?} refused: {}", e.message));
            assert!(same(&f, &f2), "round trip: {f:?} became {f2:?}");
        }
    }
});
