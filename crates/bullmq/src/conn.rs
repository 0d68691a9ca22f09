//! Connections to Redis: one multiplexed connection for commands (shared by every
//! queue of a worker), and a dedicated connection per blocking wait, as BullMQ keeps one.
//!
//! A connection can stop carrying bytes without closing (the peer vanished, a NAT
//! entry expired, the endpoint moved to a new primary). Every command has a deadline
//! (`command_timeout`), and a command that misses it, or that the server refuses as a
//! replica would (`READONLY`), makes the command connection be replaced by a new one:
//! redis-rs' manager reconnects by itself only when the socket reports an error, which a
//! silent connection never does.

use crate::error::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// A `redis://` (or `rediss://`) URL, user, password and database included.
    pub url: String,
    /// A command that has no answer within this time fails, and its connection is
    /// replaced: a silent connection is noticed within this bound.
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
}

struct Shared {
    client: redis::Client,
    opts: ConnOptions,
    current: Mutex<ConnectionManager>,
    replacing: AtomicBool,
    /// Since when (ms since the epoch) commands fail; 0 while they succeed.
    down_since: AtomicI64,
}

#[derive(Clone)]
pub struct Conn {
    shared: Arc<Shared>,
}

fn manager_config(opts: &ConnOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(opts.command_timeout))
        .set_connection_timeout(Some(opts.connect_timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(2000))
        .set_number_of_retries(2)
}

impl Conn {
    pub async fn connect(opts: ConnOptions) -> Result<Conn> {
        let client = redis::Client::open(opts.url.as_str())?;
        let manager = client.get_connection_manager_with_config(manager_config(&opts)).await?;
        Ok(Conn {
            shared: Arc::new(Shared {
                client,
                opts,
                current: Mutex::new(manager),
                replacing: AtomicBool::new(false),
                down_since: AtomicI64::new(0),
            }),
        })
    }

    /// The multiplexed connection for commands (cheap to clone; commands from many
    /// tasks are pipelined on it).
    pub fn cmd(&self) -> ConnectionManager {
        self.shared.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.shared.client
    }

    pub fn options(&self) -> &ConnOptions {
        &self.shared.opts
    }

    /// A command succeeded: the connection works.
    pub fn succeeded(&self) {
        self.shared.down_since.store(0, Ordering::Relaxed);
    }

    /// A command failed with `e`. A missed deadline, a lost connection or a server that
    /// is now a replica (`READONLY`) replaces the command connection (in the
    /// background; commands go on on the old one meanwhile, and fail fast).
    pub fn failed(&self, e: &Error) {
        if !e.is_connection() {
            return;
        }
        let _ = self
            .shared
            .down_since
            .compare_exchange(0, crate::ops::now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        if self.shared.replacing.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                let fresh = tokio::time::timeout(
                    shared.opts.connect_timeout,
                    shared.client.get_connection_manager_with_config(manager_config(&shared.opts)),
                )
                .await;
                if let Ok(Ok(m)) = fresh {
                    *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = m;
                    break;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            shared.replacing.store(false, Ordering::SeqCst);
        });
    }

    /// Since when (ms since the epoch) commands have been failing, if they are.
    pub fn down_since(&self) -> Option<i64> {
        match self.shared.down_since.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// A new connection of its own, for a blocking command: its commands have no
    /// response timeout of their own (the caller bounds each one).
    pub async fn dedicated(&self) -> Result<MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.shared.opts.connect_timeout))
            .set_response_timeout(None);
        let c = tokio::time::timeout(
            self.shared.opts.connect_timeout + Duration::from_millis(100),
            self.shared.client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        .map_err(|_| Error::Redis(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))))??;
        Ok(c)
    }
}
