//! The N-API binding: thin `#[napi]` types that convert arguments and delegate to
//! the core. All errors cross through `to_napi_error`, the one conversion point.

mod jsloop;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pool_core::shared::{SharedConfig, SharedServer};
use pool_core::standalone::{StandaloneHealth, StandaloneQueue};
use pool_core::{CoreError, Pool, PoolConfig};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Errors reach JS as `Error` objects whose message is the core error as JSON;
/// index.js turns that into an `Error` with `code` and the details.
fn to_napi_error(e: CoreError) -> Error {
    Error::new(Status::GenericFailure, format!("\u{0}{}", e.to_json()))
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        to_napi_error(CoreError::new(
            pool_core::Code::InvalidArgument,
            format!("{what} is not valid JSON: {e}"),
        ))
    })
}

/// The core's error codes (`Code::ALL`), for the test that lib/errors.js lists the same.
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    pool_core::Code::ALL.iter().map(|c| c.as_str()).collect()
}

/// The `call` verbs (`pool_core::verbs`) by class: `{ queue, queueStandalone, health,
/// healthStandalone }`, for the test that docs/ARCHITECTURE.md's verb table and the
/// JS classes use the same ones.
#[napi]
pub fn call_verbs() -> String {
    use pool_core::verbs::*;
    serde_json::json!({
        "queue": QUEUE_VERBS,
        "queueStandalone": QUEUE_STANDALONE_VERBS,
        "health": HEALTH_VERBS,
        "healthStandalone": HEALTH_STANDALONE_VERBS,
    })
    .to_string()
}

#[napi]
pub struct NativePool {
    pool: Pool,
    /// The shared queue's serving side, once `serveShared` has connected.
    shared: Arc<Mutex<Option<SharedServer>>>,
}

#[napi]
impl NativePool {
    #[napi(constructor)]
    pub fn new(
        env: Env,
        config_json: String,
        exec_path: String,
        default_script: String,
        on_events: Function<'_, String, ()>,
    ) -> Result<Self> {
        let raw = parse_json(&config_json, "options")?;
        let cfg = PoolConfig::from_json(&raw, &exec_path, &default_script).map_err(to_napi_error)?;
        let shared = Arc::new(jsloop::Shared::default());
        // SAFETY: the constructor runs on the JS thread with this call's env and value.
        let side = unsafe { jsloop::JsSide::new(env.raw(), on_events.raw(), &shared)? };
        let wake: jsloop::WakeFn = on_events
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_ctx| Ok(side.on_wake()))?;
        let _ = shared.wake.set(wake);
        let pool = Pool::new(cfg, Box::new(jsloop::JsSink(shared))).map_err(to_napi_error)?;
        Ok(NativePool {
            pool,
            shared: Arc::default(),
        })
    }

    /// Starts serving the shared queue (config: `pool_core::shared::SharedConfig` as
    /// JSON); operation `op` ends once connected, or with ERR_QUEUE_UNAVAILABLE.
    #[napi]
    pub fn serve_shared(&self, config_json: String, op: u32) -> Result<()> {
        let cfg: SharedConfig = serde_json::from_str(&config_json)
            .map_err(|e| to_napi_error(CoreError::new(pool_core::Code::InvalidConfig, format!("shared queue config: {e}"))))?;
        let (pool, slot) = (self.pool.clone(), self.shared.clone());
        pool_core::runtime::handle().spawn(async move {
            let result = SharedServer::start(pool.clone(), cfg).await.map(|server| {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
                Value::Null
            });
            pool.finish_op(op as u64, result);
        });
        Ok(())
    }

    /// Worker replies are read by the core's threads only (a pool that serves the shared
    /// queue: its tasks are the core's own). Call before `initialize`.
    #[napi]
    pub fn set_core_reads(&self, on: bool) {
        self.pool.set_core_reads(on);
    }

    /// The pool's workers changed: the shared queue's serving side looks for room again.
    #[napi]
    pub fn shared_refresh(&self) {
        if let Some(s) = self.shared_server() {
            s.refresh();
        }
    }

    /// Stops taking jobs from the shared queue.
    #[napi]
    pub fn stop_serving(&self) {
        if let Some(s) = self.shared_server() {
            s.stop();
        }
    }

    /// Stops serving, waits for the outcomes of the jobs held to be written, leaves the
    /// registry; operation `op` ends then.
    #[napi]
    pub fn close_shared(&self, op: u32) {
        let server = self.shared.lock().unwrap_or_else(|e| e.into_inner()).take();
        let pool = self.pool.clone();
        pool_core::runtime::handle().spawn(async move {
            if let Some(s) = server {
                s.close().await;
            }
            pool.finish_op(op as u64, Ok(Value::Null));
        });
    }

    /// `{ held, queues, connected }` of the serving side, or `null`.
    #[napi]
    pub fn shared_status(&self) -> String {
        self.shared_server()
            .map(|s| s.status().to_string())
            .unwrap_or_else(|| "null".into())
    }

    fn shared_server(&self) -> Option<SharedServer> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[napi]
    pub fn config(&self) -> String {
        self.pool.config_json()
    }

    #[napi]
    pub fn set_interest(&self, task_events: bool, queue_events: bool, health_events: bool) {
        self.pool.set_interest(task_events, queue_events, health_events);
    }

    #[napi]
    pub fn initialize(&self, size: Option<u32>, op: u32) -> Result<()> {
        self.pool.initialize(size, op as u64).map_err(to_napi_error)
    }

    /// Many tasks in one call (see `Pool::submit_batch` for the line format). Returns
    /// "" or a JSON array of `[seq, error]` for the tasks refused at once.
    #[napi]
    pub fn submit_batch(&self, batch: String) -> String {
        let refused = self.pool.submit_batch(&batch);
        if refused.is_empty() {
            return String::new();
        }
        let items: Vec<String> = refused.iter().map(|(seq, e)| format!("[{seq},{}]", e.to_json())).collect();
        format!("[{}]", items.join(","))
    }

    #[napi]
    pub fn cancel(&self, seq: f64, reason: String) -> bool {
        self.pool.cancel(seq as u64, &reason)
    }

    #[napi]
    pub fn scale_up(&self, count: u32, op: u32) -> Result<()> {
        self.pool.scale_up(count, op as u64).map_err(to_napi_error)
    }

    #[napi]
    pub fn scale_down(&self, count: u32, op: u32) -> Result<()> {
        self.pool.scale_down(count, op as u64).map_err(to_napi_error)
    }

    #[napi]
    pub fn shutdown(&self, graceful: bool, op: u32) {
        self.pool.shutdown(graceful, op as u64);
    }

    #[napi]
    pub fn kill_all(&self) {
        self.pool.kill_all();
    }

    #[napi]
    pub fn worker_status(&self, id: String) -> String {
        self.pool.worker_status_json(&id)
    }

    #[napi]
    pub fn all_workers(&self) -> String {
        self.pool.all_workers_json()
    }

    #[napi]
    pub fn metrics(&self) -> String {
        self.pool.metrics_json()
    }

    #[napi]
    pub fn prometheus(&self) -> String {
        self.pool.prometheus()
    }

    #[napi]
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.worker_pids()
    }

    #[napi]
    pub fn call(&self, method: String, args_json: String) -> Result<String> {
        let args = parse_json(&args_json, "arguments")?;
        self.pool.call(&method, &args).map_err(to_napi_error)
    }

    /// Returns the new sequence numbers of the resubmitted tasks.
    #[napi]
    pub fn requeue_dead_letters(&self, id: Option<String>, first_seq: f64) -> Result<Vec<f64>> {
        self.pool
            .requeue_dead_letters(id.as_deref(), first_seq as u64)
            .map(|v| v.into_iter().map(|(s, _)| s as f64).collect())
            .map_err(to_napi_error)
    }
}

impl Drop for NativePool {
    fn drop(&mut self) {
        // The JS object is gone (GC or process teardown): no worker may outlive it.
        self.pool.kill_all();
    }
}

#[napi]
pub struct NativeTaskQueue {
    inner: Mutex<StandaloneQueue>,
}

#[napi]
impl NativeTaskQueue {
    #[napi(constructor)]
    pub fn new(options_json: String) -> Result<Self> {
        let opts = parse_json(&options_json, "options")?;
        Ok(NativeTaskQueue {
            inner: Mutex::new(StandaloneQueue::new(&opts).map_err(to_napi_error)?),
        })
    }

    #[napi]
    pub fn call(&self, method: String, args_json: String) -> Result<String> {
        let args = parse_json(&args_json, "arguments")?;
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.call(&method, &args).map_err(to_napi_error)
    }
}

#[napi]
pub struct NativeHealthMonitor {
    inner: Mutex<StandaloneHealth>,
}

#[napi]
impl NativeHealthMonitor {
    #[napi(constructor)]
    pub fn new(options_json: String) -> Result<Self> {
        let opts = parse_json(&options_json, "options")?;
        Ok(NativeHealthMonitor {
            inner: Mutex::new(StandaloneHealth::new(&opts).map_err(to_napi_error)?),
        })
    }

    #[napi]
    pub fn call(&self, method: String, args_json: String) -> Result<String> {
        let args = parse_json(&args_json, "arguments")?;
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        h.call(&method, &args).map_err(to_napi_error)
    }
}
