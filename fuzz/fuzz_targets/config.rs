//! The configuration parser (`PoolConfig::from_json`) and the options of the
//! standalone `TaskQueue` and `HealthMonitor`, from JSON. Input: JSON text (what
//! JavaScript hands over after `JSON.stringify` of the options).
//!
//! Properties:
//! - a refusal carries ERR_INVALID_CONFIG and names the option ("Invalid option
//!   \"x\"" or "Invalid options" for a non-object);
//! - accepted options are within their limits: 1 <= minWorkers <= maxWorkers,
//!   poolSize >= 1, maxMessageBytes >= 1 KiB, prefetch in 1..=1024, spinWaitUs <= 1000,
//!   a known transport, strategy and log level, every worker group of size >= 1;
//! - the resolved options (`pool.config`, `to_json`) read back as options resolve to
//!   themselves: resolving is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::standalone::{StandaloneHealth, StandaloneQueue};
use pool_core::{Code, CoreError, PoolConfig};
use serde_json::Value;

fn refused_well(e: &CoreError) {
    assert_eq!(e.code, Code::InvalidConfig, "{}", e.message);
    assert!(
        e.message.starts_with("Invalid option \"") || e.message.starts_with("Invalid options"),
        "the option is named: {}",
        e.message
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = serde_json::from_slice::<Value>(data) else { return };
    match PoolConfig::from_json(&raw, "/usr/bin/node", "/pkg/worker-process.js") {
        Err(e) => refused_well(&e),
        Ok(c) => {
            assert!(c.pool_size >= 1 && c.min_workers >= 1 && c.min_workers <= c.max_workers);
            assert!(c.max_message_bytes >= 1024);
            assert!((1..=1024).contains(&c.prefetch) && c.spin_wait_us <= 1000);
            assert!(c.transport == "ipc" || c.transport == "fifo");
            assert!(["silent", "error", "warn", "info", "debug"].contains(&c.log_level.as_str()));
            assert!(c.worker_groups.iter().all(|g| g.size >= 1));
            assert!(c.heartbeat_interval >= 1 && c.task_timeout >= 1);
            let text = c.to_json();
            let back: Value = serde_json::from_str(&text).expect("pool.config is JSON");
            let again = PoolConfig::from_json(&back, "/usr/bin/node", "/pkg/worker-process.js")
                .unwrap_or_else(|e| panic!("resolved options refused: {} ({text})", e.message));
            assert_eq!(again.to_json(), text, "resolving is idempotent");
        }
    }
    if let Err(e) = StandaloneQueue::new(&raw) {
        refused_well(&e);
    }
    if let Err(e) = StandaloneHealth::new(&raw) {
        refused_well(&e);
    }
});
