//! Events to JavaScript, and workers' replies read on the JS thread.
//!
//! Left to the core's thread, a reply costs two thread wakes: the core's thread (epoll)
//! and then the JS thread (a threadsafe-function call, i.e. `uv_async_send`). Instead,
//! each worker channel is polled by the JS thread's own event loop (a libuv poll
//! handle), and the core's reader stops watching it (`Channel::attach_poller`): a reply
//! wakes the JS thread directly, which reads and handles it in the core (`Pool::pump`)
//! and settles it in the same turn, as Node's own IPC does. The core stays the
//! backstop: a check handle counts the loop's iterations, and when data waits in a
//! channel while they stand still (a long callback, a blocked thread) the core reads
//! the channel itself until the loop moves again; it also reads before judging
//! deadlines and health, so supervision never depends on JavaScript. Just before the
//! loop sleeps (the prepare handle), it may spin for a reply due within `spinWaitUs`.
//!
//! All events go through one queue (`Shared`), appended under the core's lock, drained
//! only on the JS thread: directly after a JS-thread read, otherwise by the
//! threadsafe function. So JavaScript sees them in the order the core made them.

use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use pool_core::{append_batch, Channel, EventSink, PollerState, Pool, Pumped};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::rc::{Rc, Weak as RcWeak};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

// libuv, exported by the node binary (like the N-API functions).
extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(lp: *mut sys::uv_loop_s, handle: *mut c_void, fd: c_int) -> c_int;
    fn uv_poll_start(handle: *mut c_void, events: c_int, cb: unsafe extern "C" fn(*mut c_void, c_int, c_int)) -> c_int;
    fn uv_poll_stop(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void));
    fn uv_unref(handle: *mut c_void);
    fn uv_prepare_init(lp: *mut sys::uv_loop_s, handle: *mut c_void) -> c_int;
    fn uv_prepare_start(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void)) -> c_int;
    fn uv_check_init(lp: *mut sys::uv_loop_s, handle: *mut c_void) -> c_int;
    fn uv_check_start(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void)) -> c_int;
    fn uv_prepare_stop(handle: *mut c_void) -> c_int;
    fn uv_check_stop(handle: *mut c_void) -> c_int;
    fn uv_backend_timeout(lp: *const sys::uv_loop_s) -> c_int;
    fn uv_backend_fd(lp: *const sys::uv_loop_s) -> c_int;
}
const UV_CHECK: c_int = 2;
const UV_POLL: c_int = 8;
const UV_PREPARE: c_int = 9;
const UV_READABLE: c_int = 1;

/// Wakes the JS thread to drain the queue. Weak: the pending-work timer in
/// lib/pool.js decides when the process may exit.
pub type WakeFn = ThreadsafeFunction<(), (), String, napi::Status, false, true>;

/// The queue between the core (any thread) and the JS thread.
#[derive(Default)]
pub struct Shared {
    pending: Mutex<Pending>,
    pub wake: OnceLock<WakeFn>,
}

#[derive(Default)]
struct Pending {
    /// One JSON array: the batches appended so far.
    events: String,
    watch: Vec<(Pool, Arc<Channel>)>,
    closed: bool,
    /// A threadsafe-function call is queued and has not drained yet.
    woken: bool,
}

impl Shared {
    fn push(&self, f: impl FnOnce(&mut Pending)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p);
        // On the JS thread inside a read, `drain_now` follows at once: no wake needed.
        if p.woken || IN_PUMP.with(|c| c.get()) {
            return;
        }
        p.woken = true;
        drop(p);
        if let Some(w) = self.wake.get() {
            w.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    fn take(&self, from_wake: bool) -> Pending {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let woken = p.woken && !from_wake;
        let out = std::mem::take(&mut *p);
        p.woken = woken;
        out
    }
}

pub struct JsSink(pub Arc<Shared>);

impl EventSink for JsSink {
    fn deliver(&self, batch: String) {
        self.0.push(|p| append_batch(&mut p.events, batch));
    }

    fn watch(&self, pool: &Pool, ch: Arc<Channel>) {
        let pool = pool.clone();
        self.0.push(|p| p.watch.push((pool, ch)));
    }

    fn channel_closed(&self, _ch: &Arc<Channel>) {
        self.0.push(|p| p.closed = true);
    }
}

/// The JS-thread side of one pool. Lives on the JS thread only.
pub struct JsSide {
    env: sys::napi_env,
    uv_loop: *mut sys::uv_loop_s,
    /// Weak reference to the events callback (the threadsafe function holds it).
    func: sys::napi_ref,
    async_ctx: sys::napi_async_context,
    shared: Weak<Shared>,
    me: RcWeak<JsSide>,
}

impl JsSide {
    /// # Safety
    /// `env` and `func` are the current call's; this runs on the JS thread.
    pub unsafe fn new(env: sys::napi_env, func: sys::napi_value, shared: &Arc<Shared>) -> napi::Result<Rc<JsSide>> {
        let mut uv_loop = ptr::null_mut();
        check(sys::napi_get_uv_event_loop(env, &mut uv_loop))?;
        let mut fref = ptr::null_mut();
        check(sys::napi_create_reference(env, func, 0, &mut fref))?;
        let name = "WorkerPoolEvents";
        let mut name_v = ptr::null_mut();
        check(sys::napi_create_string_utf8(
            env,
            name.as_ptr().cast(),
            name.len() as isize,
            &mut name_v,
        ))?;
        let mut async_ctx = ptr::null_mut();
        check(sys::napi_async_init(env, ptr::null_mut(), name_v, &mut async_ctx))?;
        Ok(Rc::new_cyclic(|me| JsSide {
            env,
            uv_loop,
            func: fref,
            async_ctx,
            shared: Arc::downgrade(shared),
            me: me.clone(),
        }))
    }

    /// The threadsafe function's turn: apply what is queued, return the events
    /// ("" when a JS-thread read already delivered them).
    pub fn on_wake(&self) -> String {
        let Some(shared) = self.shared.upgrade() else {
            return String::new();
        };
        let p = shared.take(true);
        self.apply(p.watch, p.closed);
        p.events
    }

    /// After a JS-thread read: deliver what is queued now, by calling the events
    /// callback directly (inside a callback scope, so promises settle right after).
    fn drain_now(&self) {
        let Some(shared) = self.shared.upgrade() else { return };
        let p = shared.take(false);
        self.apply(p.watch, p.closed);
        if !p.events.is_empty() {
            // SAFETY: on the JS thread, from a libuv callback (no JS on the stack).
            unsafe { self.call_js(&p.events) };
        }
    }

    fn apply(&self, watch: Vec<(Pool, Arc<Channel>)>, closed: bool) {
        let Some(me) = self.me.upgrade() else { return };
        for (pool, ch) in watch {
            start_poll(&me, pool, ch);
        }
        if closed {
            close_finished();
        }
    }

    unsafe fn call_js(&self, text: &str) {
        let env = self.env;
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let mut func = ptr::null_mut();
        let mut arg = ptr::null_mut();
        let mut recv = ptr::null_mut();
        if sys::napi_get_reference_value(env, self.func, &mut func) == sys::Status::napi_ok
            && !func.is_null()
            && sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut arg) == sys::Status::napi_ok
            && sys::napi_get_global(env, &mut recv) == sys::Status::napi_ok
        {
            let mut result = ptr::null_mut();
            let st = sys::napi_make_callback(env, self.async_ctx, recv, func, 1, &arg, &mut result);
            if st == sys::Status::napi_pending_exception {
                // As for a threadsafe-function call: the process's uncaughtException.
                let mut err = ptr::null_mut();
                sys::napi_get_and_clear_last_exception(env, &mut err);
                sys::napi_fatal_exception(env, err);
            }
        }
        sys::napi_close_handle_scope(env, scope);
    }
}

impl Drop for JsSide {
    fn drop(&mut self) {
        if TEARING_DOWN.with(|t| t.get()) {
            return;
        }
        // SAFETY: dropped on the JS thread while the environment lives.
        unsafe {
            sys::napi_async_destroy(self.env, self.async_ctx);
            sys::napi_delete_reference(self.env, self.func);
        }
    }
}

fn check(st: sys::napi_status) -> napi::Result<()> {
    if st == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::GenericFailure, format!("N-API call failed ({st})")))
    }
}

// ------------------------------------------------------------------- poll handles

/// Memory for one libuv handle of the given type, 8-byte aligned, zeroed. libuv
/// writes into it behind Rust's back (hence the cells); its first field is `data`.
struct UvHandle(Box<[Cell<u64>]>);

impl UvHandle {
    fn new(kind: c_int) -> UvHandle {
        // SAFETY: uv_handle_size only reads its argument.
        let words = unsafe { uv_handle_size(kind) }.div_ceil(8);
        UvHandle(vec![Cell::new(0u64); words].into_boxed_slice())
    }

    fn ptr(&self) -> *mut c_void {
        self.0.as_ptr() as *mut c_void
    }
}

/// One libuv poll handle on one worker channel.
struct PollCtx {
    /// The `uv_poll_t` (its first field, `data`, points back here). libuv writes into
    /// it behind Rust's back, hence the cells.
    handle: UvHandle,
    pool: Pool,
    ch: Arc<Channel>,
    side: Rc<JsSide>,
    closing: Cell<bool>,
}

thread_local! {
    /// The poll handles open on this thread (one JS environment per thread).
    static POLLS: RefCell<Vec<*mut PollCtx>> = const { RefCell::new(Vec::new()) };
    static CLEANUP: Cell<sys::napi_async_cleanup_hook_handle> = const { Cell::new(ptr::null_mut()) };
    static TEARING_DOWN: Cell<bool> = const { Cell::new(false) };
    /// Inside `Pool::pump` on this (JS) thread.
    static IN_PUMP: Cell<bool> = const { Cell::new(false) };
    static LOOP_WATCH: RefCell<Option<Box<LoopWatch>>> = const { RefCell::new(None) };
    /// The channels `spin_for_replies` polls (kept to avoid an allocation per loop turn).
    static SPIN_FDS: RefCell<(Vec<c_int>, Vec<libc::pollfd>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Counts this thread's event-loop iterations for the core (which takes a channel
/// over while the count stands still, see `Channel::check_stalled`), and spins for
/// replies just before the loop sleeps.
struct LoopWatch {
    state: Arc<PollerState>,
    uv_loop: *mut sys::uv_loop_s,
    /// CPUs this process may use (a spinning JS thread must leave one to the worker).
    cpus: usize,
    prepare: UvHandle,
    check: UvHandle,
    open: Cell<u8>,
    /// Started while this thread polls any channel; stopped when it polls none.
    running: Cell<bool>,
}

impl LoopWatch {
    /// # Safety
    /// On this thread, with both handles initialized (`open == 2`).
    unsafe fn set_running(&self, on: bool) {
        if self.running.replace(on) == on {
            return;
        }
        let p = self.prepare.ptr();
        let c = self.check.ptr();
        if on {
            uv_prepare_start(p, on_prepare);
            uv_check_start(c, on_check);
        } else {
            uv_prepare_stop(p);
            uv_check_stop(c);
        }
    }
}

unsafe extern "C" fn on_prepare(h: *mut c_void) {
    spin_for_replies(&*(*(h as *mut *const LoopWatch)));
}

/// Just before the loop sleeps: if a reply is due within the pool's spin budget (see
/// `Pool::spin_budget`) and the loop has nothing else to run, poll the channels for
/// it instead of sleeping, so its arrival costs no wake-up. Anything else the loop
/// watches becoming ready ends the spin as well. The spin yields the CPU between polls
/// (see the loop), so it never stands between a worker and the CPU it was woken on.
fn spin_for_replies(lw: &LoopWatch) {
    if lw.cpus < 2 {
        return;
    }
    SPIN_FDS.with(|cell| {
        let (busy_fds, fds) = &mut *cell.borrow_mut();
        busy_fds.clear();
        fds.clear();
        let budget = POLLS.with(|p| {
            let p = p.borrow();
            let mut busy = 0;
            let mut budget: Option<std::time::Duration> = None;
            for (i, &c) in p.iter().enumerate() {
                // SAFETY: contexts in POLLS are live until their close callback.
                let pool = unsafe { &(*c).pool };
                if p[..i].iter().any(|&o| unsafe { (*o).pool.same(pool) }) {
                    continue;
                }
                let (b, spin) = pool.spin_budget(busy_fds);
                busy += b;
                match spin {
                    Some(d) => budget = Some(budget.map_or(d, |x| x.max(d))),
                    None if b > 0 => return None, // a busy worker whose reply is not due soon
                    None => {}
                }
            }
            // Nothing expected, or no CPU left for the spinner besides the busy workers.
            if busy == 0 || busy >= lw.cpus {
                return None;
            }
            budget
        });
        let Some(budget) = budget else { return };
        // SAFETY: this thread's own loop.
        if unsafe { uv_backend_timeout(lw.uv_loop) } == 0 {
            return; // immediates, idle handles or due timers are waiting
        }
        if !cpu_to_spare(lw.cpus) {
            return;
        }
        // The busy channels, and the loop's own epoll descriptor: it turns readable
        // when anything else the loop watches is ready (sockets, threadsafe-function
        // wake-ups), which ends the spin too.
        // SAFETY: this thread's own loop.
        let backend = unsafe { uv_backend_fd(lw.uv_loop) };
        fds.extend(
            busy_fds
                .iter()
                .copied()
                .chain((backend >= 0).then_some(backend))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }),
        );
        let deadline = std::time::Instant::now() + budget;
        loop {
            // SAFETY: a valid pollfd array; a zero timeout never blocks.
            if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) } != 0 {
                return;
            }
            if std::time::Instant::now() >= deadline {
                return;
            }
            // Yield rather than spin in place: the worker the reply comes from is often
            // woken on this very CPU (the kernel places a woken task near its waker),
            // and a spinner that never yields keeps it off the CPU until the budget runs
            // out; the reply then comes just after the spin gave up and costs a wake-up
            // on top (a bump at 100-200 us in the one-at-a-time histogram, and the spin's
            // CPU spent for nothing). With nothing else runnable here it returns at once.
            // SAFETY: no arguments.
            unsafe { libc::sched_yield() };
        }
    })
}

/// Whether no more threads are runnable on the machine right now than this process has
/// CPUs (the kernel's instantaneous count, the `4/233` in `/proc/loadavg`: this thread
/// and the worker it waits for are usually two of them). The spin pays only when a CPU
/// would otherwise go idle (waking an idle vCPU is what it saves). When other processes
/// want the CPUs, it saves no wake-up, takes CPU time from them and from the workers,
/// and the scheduler then serves this thread later when it does sleep: measured on 2
/// shared cores, the one-at-a-time tail grew (p99 366 vs 211 us) with no gain at p50.
/// Without `/proc` (or on a read error) it answers yes, as before this check.
fn cpu_to_spare(cpus: usize) -> bool {
    use std::os::unix::fs::FileExt;
    thread_local! {
        static LOADAVG: Option<std::fs::File> = std::fs::File::open("/proc/loadavg").ok();
    }
    LOADAVG.with(|f| {
        let Some(f) = f else { return true };
        let mut buf = [0u8; 128];
        let Ok(n) = f.read_at(&mut buf, 0) else { return true };
        pool_core::util::runnable_in_loadavg(&buf[..n]).is_none_or(|running| running <= cpus)
    })
}

unsafe extern "C" fn on_check(h: *mut c_void) {
    let state = &*(*(h as *mut *const PollerState));
    state.iterations.fetch_add(1, Ordering::Release);
    if state.overridden.swap(false, Ordering::AcqRel) {
        // Back from a long callback: take the channels the core read meanwhile back.
        POLLS.with(|p| {
            for &c in p.borrow().iter() {
                (*c).ch.release_override();
            }
        });
    }
}

/// This thread's loop state, starting the prepare and check handles on first use.
fn loop_state(uv_loop: *mut sys::uv_loop_s) -> Option<Arc<PollerState>> {
    LOOP_WATCH.with(|lw| {
        let mut lw = lw.borrow_mut();
        if let Some(w) = lw.as_ref() {
            if w.open.get() != 2 {
                return None;
            }
            // SAFETY: this thread's handles, initialized.
            unsafe { w.set_running(true) };
            return Some(w.state.clone());
        }
        // SAFETY: libuv calls on this thread's loop; the handles live in the boxed
        // LoopWatch, kept in this thread-local until their close callbacks ran.
        unsafe {
            let w = Box::new(LoopWatch {
                state: Arc::new(PollerState::default()),
                uv_loop,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                prepare: UvHandle::new(UV_PREPARE),
                check: UvHandle::new(UV_CHECK),
                open: Cell::new(0),
                running: Cell::new(false),
            });
            let flag = Arc::as_ptr(&w.state);
            let p = w.prepare.ptr();
            let c = w.check.ptr();
            if uv_prepare_init(uv_loop, p) != 0 {
                return None;
            }
            w.open.set(1);
            if uv_check_init(uv_loop, c) != 0 {
                uv_close(p, on_loop_handle_closed);
                *lw = Some(w);
                return None;
            }
            w.open.set(2);
            *(p as *mut *const LoopWatch) = &*w;
            *(c as *mut *const PollerState) = flag;
            uv_unref(p);
            uv_unref(c);
            w.set_running(true);
            let state = w.state.clone();
            *lw = Some(w);
            Some(state)
        }
    })
}

unsafe extern "C" fn on_loop_handle_closed(_h: *mut c_void) {
    LOOP_WATCH.with(|lw| {
        if let Some(w) = lw.borrow().as_ref() {
            w.open.set(w.open.get().saturating_sub(1));
        }
    });
    maybe_finish_teardown();
}

fn start_poll(side: &Rc<JsSide>, pool: Pool, ch: Arc<Channel>) {
    if ch.is_done() || TEARING_DOWN.with(|t| t.get()) {
        return;
    }
    let Some(state) = loop_state(side.uv_loop) else { return };
    // SAFETY: libuv calls on the JS thread's own loop; the handle memory lives in the
    // boxed context until libuv's close callback frees it.
    unsafe {
        let fd = ch.fd();
        let ctx = Box::into_raw(Box::new(PollCtx {
            handle: UvHandle::new(UV_POLL),
            pool,
            ch,
            side: side.clone(),
            closing: Cell::new(false),
        }));
        let h = (*ctx).handle.ptr();
        if uv_poll_init(side.uv_loop, h, fd) != 0 {
            drop(Box::from_raw(ctx));
            return;
        }
        *(h as *mut *mut PollCtx) = ctx;
        uv_unref(h);
        (*ctx).ch.attach_poller(state);
        POLLS.with(|p| p.borrow_mut().push(ctx));
        ensure_cleanup_hook(side.env);
        if uv_poll_start(h, UV_READABLE, on_readable) != 0 {
            close_poll(ctx);
        }
    }
}

unsafe extern "C" fn on_readable(h: *mut c_void, status: c_int, _events: c_int) {
    let ctx = *(h as *mut *mut PollCtx);
    if (*ctx).closing.get() {
        return;
    }
    let side = (*ctx).side.clone();
    IN_PUMP.with(|c| c.set(true));
    let r = if status < 0 { Pumped::Closed } else { (*ctx).pool.pump(&(*ctx).ch) };
    IN_PUMP.with(|c| c.set(false));
    if r == Pumped::Closed {
        close_poll(ctx);
    }
    side.drain_now();
}

unsafe fn close_poll(ctx: *mut PollCtx) {
    if (*ctx).closing.replace(true) {
        return;
    }
    (*ctx).ch.detach_poller();
    let h = (*ctx).handle.ptr();
    uv_poll_stop(h);
    uv_close(h, on_closed);
}

unsafe extern "C" fn on_closed(h: *mut c_void) {
    let ctx = *(h as *mut *mut PollCtx);
    let left = POLLS.with(|p| {
        let mut p = p.borrow_mut();
        p.retain(|&c| c != ctx);
        p.len()
    });
    drop(Box::from_raw(ctx));
    if left == 0 && !TEARING_DOWN.with(|t| t.get()) {
        // No channel left to poll: no per-iteration callbacks either.
        LOOP_WATCH.with(|lw| {
            if let Some(w) = lw.borrow().as_ref().filter(|w| w.open.get() == 2) {
                w.set_running(false);
            }
        });
    }
    maybe_finish_teardown();
}

/// During environment teardown: once every handle is closed, tell Node we are done.
fn maybe_finish_teardown() {
    if !TEARING_DOWN.with(|t| t.get()) || POLLS.with(|p| !p.borrow().is_empty()) {
        return;
    }
    if LOOP_WATCH.with(|lw| lw.borrow().as_ref().is_some_and(|w| w.open.get() > 0)) {
        return;
    }
    let hook = CLEANUP.with(|c| c.replace(ptr::null_mut()));
    if !hook.is_null() {
        // SAFETY: the handle came from napi_add_async_cleanup_hook and is removed once.
        unsafe { sys::napi_remove_async_cleanup_hook(hook) };
    }
}

/// Closes the polls whose channel the core has finished with (a FIFO never reports
/// EOF to the poll itself).
fn close_finished() {
    let done: Vec<*mut PollCtx> = POLLS.with(|p| p.borrow().iter().copied().filter(|&c| unsafe { (*c).ch.is_done() }).collect());
    for c in done {
        // SAFETY: contexts in POLLS are live until their close callback.
        unsafe { close_poll(c) };
    }
}

/// The environment is going away (process exit, or a worker thread ending): close
/// every poll handle so the loop can close; Node waits for the close callbacks.
fn ensure_cleanup_hook(env: sys::napi_env) {
    if !CLEANUP.with(|c| c.get()).is_null() {
        return;
    }
    let mut handle = ptr::null_mut();
    // SAFETY: on the JS thread with a live environment.
    let st = unsafe { sys::napi_add_async_cleanup_hook(env, Some(on_env_cleanup), ptr::null_mut(), &mut handle) };
    if st == sys::Status::napi_ok {
        CLEANUP.with(|c| c.set(handle));
    }
}

unsafe extern "C" fn on_env_cleanup(_handle: sys::napi_async_cleanup_hook_handle, _arg: *mut c_void) {
    TEARING_DOWN.with(|t| t.set(true));
    let all: Vec<*mut PollCtx> = POLLS.with(|p| p.borrow().clone());
    for c in all {
        close_poll(c);
    }
    LOOP_WATCH.with(|lw| {
        if let Some(w) = lw.borrow_mut().as_mut() {
            if w.open.get() == 2 {
                uv_close(w.prepare.ptr(), on_loop_handle_closed);
                uv_close(w.check.ptr(), on_loop_handle_closed);
            }
        }
    });
    maybe_finish_teardown();
}
