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
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A `redis://` (or `rediss://`) URL, user, password and database included.
    Url(String),
    /// Redis behind Sentinel: the sentinels are asked for the current master of
    /// `master`, at the start and again each time the connection is replaced (a
    /// failover, a lost connection, a `READONLY` answer).
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        username: Option<String>,
        password: Option<String>,
        db: i64,
        tls: bool,
    },
    /// Redis Cluster: the seed nodes; the topology is discovered and followed (MOVED,
    /// ASK, failovers) by redis-rs' cluster connection. Every key a script touches must
    /// hash to one slot (a `{hash tag}` in the prefix).
    Cluster {
        nodes: Vec<(String, u16)>,
        username: Option<String>,
        password: Option<String>,
        tls: bool,
    },
}

/// A connection for commands, whatever the deployment.
#[derive(Clone)]
pub enum RedisConn {
    /// One server (or Sentinel's master), reconnected by redis-rs' manager.
    Managed(ConnectionManager),
    /// A dedicated connection to one server (blocking waits).
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisConn::Managed(c) => c.req_packed_command(cmd),
            RedisConn::Plain(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisConn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Managed(c) => c.get_db(),
            RedisConn::Plain(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

fn node_url(host: &str, port: u16, username: &Option<String>, password: &Option<String>, db: i64, tls: bool) -> String {
    let auth = match (username, password) {
        (u, Some(p)) => format!("{}:{}@", enc(u.as_deref().unwrap_or("")), enc(p)),
        (Some(u), None) => format!("{}@", enc(u)),
        (None, None) => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{auth}{host}:{port}/{db}")
}

impl Target {
    /// A client for the server to talk to now: for Sentinel, the master the sentinels
    /// name; for Cluster, the first seed node that answers (for subscriptions: a
    /// cluster delivers every message to every node).
    async fn client(&self, connect_timeout: Duration) -> Result<redis::Client> {
        match self {
            Target::Url(u) => Ok(redis::Client::open(u.as_str())?),
            Target::Sentinel {
                sentinels,
                master,
                username,
                password,
                db,
                tls,
            } => {
                let (host, port) = ask_sentinels(sentinels, master, connect_timeout).await?;
                Ok(redis::Client::open(node_url(&host, port, username, password, *db, *tls).as_str())?)
            }
            Target::Cluster {
                nodes,
                username,
                password,
                tls,
            } => {
                let mut last = None;
                for (host, port) in nodes {
                    let c = redis::Client::open(node_url(host, *port, username, password, 0, *tls).as_str())?;
                    match tokio::time::timeout(connect_timeout, c.get_multiplexed_async_connection()).await {
                        Ok(Ok(_)) => return Ok(c),
                        Ok(Err(e)) => last = Some(Error::Redis(e)),
                        Err(_) => last = Some(Error::Reply(format!("node {host}:{port} did not answer"))),
                    }
                }
                Err(last.unwrap_or_else(|| Error::Reply("no cluster node given".into())))
            }
        }
    }

    /// A cluster connection whose commands time out after `response` (`None`: blocking waits).
    async fn cluster(&self, connect: Duration, response: Option<Duration>) -> Result<Option<ClusterConnection>> {
        let Target::Cluster {
            nodes,
            username,
            password,
            tls,
        } = self
        else {
            return Ok(None);
        };
        let urls: Vec<String> = nodes.iter().map(|(h, p)| node_url(h, *p, &None, &None, 0, *tls)).collect();
        let mut b = ClusterClientBuilder::new(urls)
            .connection_timeout(connect)
            .response_timeout(response.unwrap_or(Duration::from_secs(24 * 3600)));
        if let Some(u) = username {
            b = b.username(u);
        }
        if let Some(p) = password {
            b = b.password(p);
        }
        Ok(Some(b.build()?.get_async_connection().await?))
    }
}

/// The address the first sentinel that answers gives for `master`.
async fn ask_sentinels(sentinels: &[(String, u16)], master: &str, limit: Duration) -> Result<(String, u16)> {
    let mut last = None;
    for (host, port) in sentinels {
        let asked = async {
            let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            let c = redis::Client::open(format!("redis://{host}:{port}").as_str())?;
            let mut con = c.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async::<Option<(String, u16)>>(&mut con)
                .await
        };
        match tokio::time::timeout(limit, asked).await {
            Ok(Ok(Some(addr))) => return Ok(addr),
            Ok(Ok(None)) => last = Some(format!("sentinel {host}:{port} knows no master named {master:?}")),
            Ok(Err(e)) => last = Some(format!("sentinel {host}:{port}: {e}")),
            Err(_) => last = Some(format!("sentinel {host}:{port} did not answer")),
        }
    }
    Err(Error::Reply(last.unwrap_or_else(|| "no sentinel given".into())))
}

/// Percent-encodes `s`, keeping ASCII letters, digits and the bytes in `keep`.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL's user or password, encoded.
fn enc(s: &str) -> String {
    percent_encode(s, b"-_.~")
}

#[derive(Debug, Clone)]
pub struct ConnOptions {
    pub target: Target,
    /// A command that has no answer within this time fails, and its connection is
    /// replaced: a silent connection is noticed within this bound.
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
}

struct Shared {
    opts: ConnOptions,
    /// The server talked to now (replaced with the command connection), and the command connection.
    current: Mutex<(redis::Client, RedisConn)>,
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
        let (client, manager) = open(&opts).await?;
        Ok(Conn {
            shared: Arc::new(Shared {
                opts,
                current: Mutex::new((client, manager)),
                replacing: AtomicBool::new(false),
                down_since: AtomicI64::new(0),
            }),
        })
    }

    /// The multiplexed connection for commands (cheap to clone; commands from many
    /// tasks are pipelined on it).
    pub fn cmd(&self) -> RedisConn {
        self.shared.current.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// A client for the server talked to now.
    pub fn client(&self) -> redis::Client {
        self.shared.current.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
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
                if let Ok(fresh) = open(&shared.opts).await {
                    *shared.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
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
    pub async fn dedicated(&self) -> Result<RedisConn> {
        let opts = &self.shared.opts;
        if let Some(c) = opts.target.cluster(opts.connect_timeout, None).await? {
            return Ok(RedisConn::Cluster(c));
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.shared.opts.connect_timeout))
            .set_response_timeout(None);
        let client = self.client();
        let c = tokio::time::timeout(
            self.shared.opts.connect_timeout + Duration::from_millis(100),
            client.get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        .map_err(|_| Error::Redis(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))))??;
        Ok(RedisConn::Plain(c))
    }
}

/// Finds the server (asking the sentinels, for Sentinel) and opens a command connection to it.
async fn open(opts: &ConnOptions) -> Result<(redis::Client, RedisConn)> {
    let limit = opts.connect_timeout;
    let work = async {
        let client = opts.target.client(limit).await?;
        if let Some(c) = opts.target.cluster(limit, Some(opts.command_timeout)).await? {
            return Ok((client, RedisConn::Cluster(c)));
        }
        let manager = client.get_connection_manager_with_config(manager_config(opts)).await?;
        Ok::<_, Error>((client, RedisConn::Managed(manager)))
    };
    tokio::time::timeout(limit + Duration::from_millis(100), work)
        .await
        .map_err(|_| Error::Redis(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))))?
}
