//! A BullMQ worker in Rust.
//!
//! BullMQ keeps every state change of a job in Lua scripts, and its official ports to
//! other languages run the same scripts with the same arguments. This crate does the
//! same: it loads the scripts from an installed `bullmq` npm package (`scripts`),
//! builds their keys and arguments as BullMQ's `Worker` does (`keys`, `ops`), decodes
//! the job hash (`job`), and runs BullMQ's worker loop (`worker`): the blocking wait on
//! the marker key, fetch-next on completion, lock renewal, the stalled-job check,
//! attempts and backoff. What runs a job is a [`Processor`] given by the user; this
//! crate knows nothing of processes or pools.

pub mod backoff;
pub mod conn;
pub mod error;
pub mod job;
pub mod keys;
mod msgpack;
pub mod ops;
pub mod scripts;
pub mod worker;

pub use conn::{Conn, ConnOptions, RedisConn, Target};
pub use error::{Error, Result};
pub use job::Job;
pub use keys::QueueKeys;
pub use scripts::Scripts;
pub use worker::{Failure, Outcome, Processor, Worker, WorkerEvent, WorkerOptions};
