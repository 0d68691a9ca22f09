//! Connections to Redis: one multiplexed connection for commands (shared by every
//! queue of a worker, reconnected by redis-rs' connection manager), and a dedicated
//! connection per blocking wait, as BullMQ keeps one.

use crate::error::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ConnOptions {
    /// A `redis://` URL (user, password and database included).
    pub url: String,
    /// A command that has no answer within this time fails (the connection is then
    /// replaced): a silent connection is noticed within this bound.
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Clone)]
pub struct Conn {
    client: redis::Client,
    manager: ConnectionManager,
    opts: ConnOptions,
}

impl Conn {
    pub async fn connect(opts: ConnOptions) -> Result<Conn> {
        let client = redis::Client::open(opts.url.as_str())?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.command_timeout))
            .set_connection_timeout(Some(opts.connect_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(2000))
            .set_number_of_retries(2);
        let manager = client.get_connection_manager_with_config(cfg).await?;
        Ok(Conn { client, manager, opts })
    }

    /// The multiplexed connection for commands (cheap to clone; commands from many
    /// tasks are pipelined on it).
    pub fn cmd(&self) -> ConnectionManager {
        self.manager.clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn options(&self) -> &ConnOptions {
        &self.opts
    }

    /// A new connection of its own, for a blocking command: its commands have no
    /// response timeout of their own (the caller bounds each one).
    pub async fn dedicated(&self) -> Result<MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.opts.connect_timeout))
            .set_response_timeout(None);
        Ok(self.client.get_multiplexed_async_connection_with_config(&cfg).await?)
    }
}
