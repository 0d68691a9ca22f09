//! The worker-process pool core: processes, queue, health, balancing, metrics.
//! Plain Rust with no N-API, so all of it is tested with `cargo test`.

pub mod balance;
pub mod config;
pub mod error;
pub mod fdio;
pub mod fifo;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod process;
pub mod protocol;
pub mod queue;
pub mod runtime;
pub mod shared;
pub mod standalone;
pub mod util;
pub mod verbs;

pub use config::PoolConfig;
pub use error::{Code, CoreError, CoreResult};
pub use fdio::{Channel, PollerState};
pub use pool::{append_batch, EventSink, Pool, PoolTask, Pumped};
