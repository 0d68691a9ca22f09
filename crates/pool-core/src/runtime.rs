//! The core's own threads. Process spawning, channel I/O, timers and reaping all run
//! here, never on the JS thread, so a busy JS thread cannot delay a heartbeat.

use std::sync::OnceLock;
use tokio::runtime::{Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process-wide runtime. Its threads live as long as the process: workers'
/// parent-death signal is tied to the thread that forked them, so they must not be
/// threads that come and go (tokio's blocking pool threads would).
pub fn handle() -> Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .thread_name("worker-pool-core")
                .enable_all()
                .build()
                .expect("the worker-pool runtime starts")
        })
        .handle()
        .clone()
}
