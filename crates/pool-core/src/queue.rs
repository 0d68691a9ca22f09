//! The priority queue with retries, backoff and a dead-letter queue.
//!
//! Shared by the pool and the standalone `TaskQueue`. Lower priority numbers run
//! first; ties go by sequence number (FIFO), never by a millisecond timestamp.
//! Finished tasks are forgotten at once: statistics are running aggregates, so memory
//! stays flat however many tasks pass through.

use crate::config::backoff_ms;
use crate::util::{epoch_ms, json_str, FastMap, FastSet};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What a record holds besides the bookkeeping; rendered as the record's `task`.
pub trait TaskData {
    fn write_task_json(&self, out: &mut String);
}

/// Plain JSON text: the standalone queue stores the user's task object as-is.
#[derive(Debug, Clone)]
pub struct JsonTask(pub String);

impl TaskData for JsonTask {
    fn write_task_json(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Queued,
    Dequeued,
    RetryPending,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Dequeued => "dequeued",
            Status::RetryPending => "retry-pending",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub timestamp: f64,
    pub error: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(rename = "workerId", skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

#[derive(Debug)]
pub struct Record<T> {
    pub seq: u64,
    pub id: String,
    pub data: T,
    pub priority: f64,
    pub retries: u32,
    pub max_retries: u32,
    pub timeout_ms: u64,
    pub enqueued_at: f64,
    pub enqueued_instant: Instant,
    pub status: Status,
    pub dequeued_at: Option<f64>,
    pub dequeued_instant: Option<Instant>,
    pub next_retry_at: Option<f64>,
    retry_at: Option<Instant>,
    pub attempts: Vec<Attempt>,
}

/// A dead-lettered task, kept as rendered JSON plus what requeueing needs.
#[derive(Debug)]
pub struct DeadLetter<T> {
    pub id: String,
    pub data: T,
    pub priority: f64,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub json: String,
}

#[derive(Debug, Clone, Copy)]
struct HeapKey {
    priority: f64,
    seq: u64,
}

impl PartialEq for HeapKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for HeapKey {}
impl PartialOrd for HeapKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapKey {
    // BinaryHeap is a max-heap: the "greatest" key is the lowest priority number,
    // then the lowest sequence number.
    fn cmp(&self, o: &Self) -> Ordering {
        o.priority.total_cmp(&self.priority).then(o.seq.cmp(&self.seq))
    }
}

/// The queue's settings; serialized (`to_json`) as `taskQueue.options`, which has
/// never shown the dead-letter capacity.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueOptions {
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub task_timeout_ms: u64,
    #[serde(skip)]
    pub dlq_capacity: usize,
}

impl QueueOptions {
    /// The options as JavaScript shows them (`taskQueue.options`).
    pub fn to_json(&self) -> String {
        crate::util::options_json(self)
    }
}

// The defaults are the original TaskQueue's, so that a queue built without options
// behaves as it did.

/// Retries after a task's first failed attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The first retry's delay; each further retry doubles it (backoff_ms).
pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
/// The longest delay the doubling reaches, so a late retry still comes within 30 s.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 30_000;
/// A task's time limit when it sets none: 5 minutes, for long-running work.
pub const DEFAULT_TASK_TIMEOUT_MS: u64 = 300_000;
/// Most tasks the dead-letter queue keeps (the oldest go first): bounds memory when
/// every task fails, with room for a long outage's worth to inspect and requeue.
pub const DEFAULT_DLQ_CAPACITY: usize = 10_000;

/// First capacity of a record's JSON text: most records fit, a bigger one grows it.
const RECORD_JSON_CAPACITY: usize = 256;

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_retries: DEFAULT_MAX_RETRIES,
            retry_backoff_ms: DEFAULT_RETRY_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            task_timeout_ms: DEFAULT_TASK_TIMEOUT_MS,
            dlq_capacity: DEFAULT_DLQ_CAPACITY,
        }
    }
}

/// Events in the shape of the original TaskQueue's, as JSON objects with an `event` key.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event")]
pub enum QueueEvent {
    #[serde(rename = "task-enqueued", rename_all = "camelCase")]
    Enqueued { task_id: String, priority: f64, queue_depth: u64 },
    #[serde(rename = "task-dequeued", rename_all = "camelCase")]
    Dequeued {
        task_id: String,
        priority: f64,
        wait_time_ms: f64,
        queue_depth: u64,
    },
    #[serde(rename = "task-completed", rename_all = "camelCase")]
    Completed { task_id: String, duration_ms: f64, retries: u32 },
    #[serde(rename = "task-retry-scheduled", rename_all = "camelCase")]
    RetryScheduled {
        task_id: String,
        retries: u32,
        max_retries: u32,
        backoff_ms: u64,
        error: String,
    },
    #[serde(rename = "task-retried", rename_all = "camelCase")]
    Retried { task_id: String, retries: u32, queue_depth: u64 },
    #[serde(rename = "task-failed", rename_all = "camelCase")]
    Failed {
        task_id: String,
        retries: u32,
        error: String,
        dlq_size: u64,
    },
    #[serde(rename = "task-timeout", rename_all = "camelCase")]
    Timeout { task_id: String, elapsed_ms: f64, timeout_ms: u64 },
    #[serde(rename = "dlq-cleared")]
    DlqCleared { count: u64 },
    #[serde(rename = "queue-cleared")]
    QueueCleared { count: u64 },
    #[serde(rename = "warning", rename_all = "camelCase")]
    Warning { message: String, task_id: Option<String> },
}

pub enum FailOutcome {
    Retry { backoff_ms: u64 },
    Dead,
}

/// The time, read once (both clocks) for everything done at that moment.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub epoch_ms: f64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            instant: Instant::now(),
            epoch_ms: epoch_ms(),
        }
    }
}

pub struct TaskQueue<T> {
    pub opts: QueueOptions,
    records: FastMap<u64, Record<T>>,
    heap: BinaryHeap<HeapKey>,
    queued: FastSet<u64>,
    retry_pending: BTreeMap<(Instant, u64), ()>,
    dlq: VecDeque<DeadLetter<T>>,
    by_priority: BTreeMap<u64, (f64, u64)>,
    next_seq: u64,
    /// Whether events are collected at all (the owner says when someone listens).
    pub emit: bool,
    pub events: Vec<QueueEvent>,
    total: u64,
    completed: u64,
    failed: u64,
    retried: u64,
    wait_sum_ms: f64,
    wait_n: u64,
    dur_sum_ms: f64,
    dur_n: u64,
}

fn prio_key(p: f64) -> u64 {
    p.to_bits()
}

impl<T: TaskData> TaskQueue<T> {
    pub fn new(opts: QueueOptions) -> Self {
        TaskQueue {
            opts,
            records: FastMap::default(),
            heap: BinaryHeap::new(),
            queued: FastSet::default(),
            retry_pending: BTreeMap::new(),
            dlq: VecDeque::new(),
            by_priority: BTreeMap::new(),
            next_seq: 1,
            emit: false,
            events: Vec::new(),
            total: 0,
            completed: 0,
            failed: 0,
            retried: 0,
            wait_sum_ms: 0.0,
            wait_n: 0,
            dur_sum_ms: 0.0,
            dur_n: 0,
        }
    }

    /// Task ids look like `task-<epoch ms>-<seq>`; the sequence number is the key.
    pub fn seq_of(id: &str) -> Option<u64> {
        id.strip_prefix("task-")?.rsplit('-').next()?.parse().ok()
    }

    /// Tasks waiting to run (queued or waiting for a retry).
    pub fn waiting(&self) -> Vec<u64> {
        self.records
            .values()
            .filter(|r| r.status != Status::Dequeued)
            .map(|r| r.seq)
            .collect()
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.records.contains_key(&seq)
    }

    pub fn depth(&self) -> u64 {
        self.queued.len() as u64
    }

    pub fn live(&self) -> usize {
        self.records.len()
    }

    pub fn dlq_len(&self) -> u64 {
        self.dlq.len() as u64
    }

    pub fn get(&self, seq: u64) -> Option<&Record<T>> {
        self.records.get(&seq)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Record<T>> {
        self.records.get_mut(&seq)
    }

    pub fn enqueue(&mut self, data: T, priority: f64, timeout_ms: Option<u64>, max_retries: Option<u32>) -> (u64, String) {
        let seq = self.next_seq;
        self.enqueue_as(seq, data, priority, timeout_ms, max_retries, Now::read())
    }

    /// Enqueues under a sequence number the caller chose (the pool's JS side numbers
    /// its tasks so that many can cross N-API in one call). Must be unused.
    /// `now` is read once for a whole batch of submits.
    pub fn enqueue_as(
        &mut self,
        seq: u64,
        data: T,
        priority: f64,
        timeout_ms: Option<u64>,
        max_retries: Option<u32>,
        now: Now,
    ) -> (u64, String) {
        self.next_seq = self.next_seq.max(seq + 1);
        let id = format!("task-{}-{}", now.epoch_ms as u64, seq);
        let rec = Record {
            seq,
            id: id.clone(),
            data,
            priority,
            retries: 0,
            max_retries: max_retries.unwrap_or(self.opts.max_retries),
            timeout_ms: timeout_ms.unwrap_or(self.opts.task_timeout_ms),
            enqueued_at: now.epoch_ms,
            enqueued_instant: now.instant,
            status: Status::Queued,
            dequeued_at: None,
            dequeued_instant: None,
            next_retry_at: None,
            retry_at: None,
            attempts: Vec::new(),
        };
        self.records.insert(seq, rec);
        self.heap.push(HeapKey { priority, seq });
        self.queued.insert(seq);
        self.total += 1;
        let e = self.by_priority.entry(prio_key(priority)).or_insert((priority, 0));
        e.1 += 1;
        if self.emit {
            self.events.push(QueueEvent::Enqueued {
                task_id: id.clone(),
                priority,
                queue_depth: self.depth(),
            });
        }
        (seq, id)
    }

    /// The next queued task in priority order, without removing it.
    pub fn peek(&mut self) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            if self.queued.contains(&top.seq) {
                return Some(top.seq);
            }
            self.heap.pop();
        }
        None
    }

    /// Queued tasks in priority order, at most `limit`, without removing them.
    /// Used to find a task a particular worker can serve.
    pub fn peek_many(&self, limit: usize) -> Vec<u64> {
        let mut keys: Vec<HeapKey> = self.heap.iter().filter(|k| self.queued.contains(&k.seq)).copied().collect();
        keys.sort_by(|a, b| b.cmp(a));
        keys.dedup_by_key(|k| k.seq);
        keys.into_iter().take(limit).map(|k| k.seq).collect()
    }

    pub fn pop(&mut self) -> Option<u64> {
        let seq = self.peek()?;
        self.take(seq);
        Some(seq)
    }

    /// Marks a queued task dequeued (it is about to run).
    pub fn take(&mut self, seq: u64) -> bool {
        if !self.queued.remove(&seq) {
            return false;
        }
        let now = Instant::now();
        let emit = self.emit;
        let depth = self.depth();
        let Some(rec) = self.records.get_mut(&seq) else { return false };
        rec.status = Status::Dequeued;
        rec.dequeued_at = Some(epoch_ms());
        rec.dequeued_instant = Some(now);
        let wait = now.duration_since(rec.enqueued_instant).as_secs_f64() * 1000.0;
        self.wait_sum_ms += wait;
        self.wait_n += 1;
        if emit {
            let ev = QueueEvent::Dequeued {
                task_id: rec.id.clone(),
                priority: rec.priority,
                wait_time_ms: wait,
                queue_depth: depth,
            };
            self.events.push(ev);
        }
        true
    }

    /// Puts a dequeued task back at its old place without counting an attempt
    /// (it was handed to a worker that never started it).
    pub fn unpop(&mut self, seq: u64) {
        if let Some(rec) = self.records.get_mut(&seq) {
            if rec.status == Status::Dequeued {
                rec.status = Status::Queued;
                rec.dequeued_at = None;
                rec.dequeued_instant = None;
                self.heap.push(HeapKey {
                    priority: rec.priority,
                    seq,
                });
                self.queued.insert(seq);
            }
        }
    }

    fn forget(&mut self, seq: u64) -> Option<Record<T>> {
        let rec = self.records.remove(&seq)?;
        self.queued.remove(&seq);
        if let Some(at) = rec.retry_at {
            self.retry_pending.remove(&(at, seq));
        }
        if let Some(e) = self.by_priority.get_mut(&prio_key(rec.priority)) {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                self.by_priority.remove(&prio_key(rec.priority));
            }
        }
        Some(rec)
    }

    pub fn complete(&mut self, seq: u64) -> Option<Record<T>> {
        let rec = self.forget(seq)?;
        let dur = rec.dequeued_instant.map(|d| d.elapsed().as_secs_f64() * 1000.0).unwrap_or(0.0);
        self.dur_sum_ms += dur;
        self.dur_n += 1;
        self.completed += 1;
        if self.emit {
            self.events.push(QueueEvent::Completed {
                task_id: rec.id.clone(),
                duration_ms: dur,
                retries: rec.retries,
            });
        }
        Some(rec)
    }

    /// Records a failed attempt. Schedules a retry while retries remain, else moves
    /// the task to the dead-letter queue.
    pub fn fail(&mut self, seq: u64, attempt: Attempt) -> Option<FailOutcome> {
        let emit = self.emit;
        let rec = self.records.get_mut(&seq)?;
        rec.attempts.push(attempt.clone());
        if rec.retries < rec.max_retries {
            rec.retries += 1;
            let backoff = backoff_ms(self.opts.retry_backoff_ms, self.opts.max_backoff_ms, rec.retries);
            let at = Instant::now() + Duration::from_millis(backoff);
            rec.status = Status::RetryPending;
            rec.next_retry_at = Some(epoch_ms() + backoff as f64);
            rec.retry_at = Some(at);
            rec.dequeued_instant = None;
            let (id, retries, max) = (rec.id.clone(), rec.retries, rec.max_retries);
            self.queued.remove(&seq);
            self.retry_pending.insert((at, seq), ());
            self.retried += 1;
            if emit {
                self.events.push(QueueEvent::RetryScheduled {
                    task_id: id,
                    retries,
                    max_retries: max,
                    backoff_ms: backoff,
                    error: attempt.error,
                });
            }
            return Some(FailOutcome::Retry { backoff_ms: backoff });
        }
        let rec = self.forget(seq)?;
        self.failed += 1;
        let retries = rec.retries;
        let dl = self.dead_letter(rec, &attempt);
        let id = dl.id.clone();
        self.dlq.push_back(dl);
        if self.dlq.len() > self.opts.dlq_capacity {
            let dropped = self.dlq.pop_front();
            if let (true, Some(d)) = (emit, dropped) {
                self.events.push(QueueEvent::Warning {
                    message: format!("Dead-letter queue is full ({}); dropped the oldest record", self.opts.dlq_capacity),
                    task_id: Some(d.id),
                });
            }
        }
        if emit {
            self.events.push(QueueEvent::Failed {
                task_id: id,
                retries,
                error: attempt.error,
                dlq_size: self.dlq_len(),
            });
        }
        Some(FailOutcome::Dead)
    }

    /// Moves a task straight to the dead-letter queue whatever its retries
    /// (used when a task can no longer run at all).
    pub fn remove(&mut self, seq: u64) -> Option<Record<T>> {
        self.forget(seq)
    }

    fn dead_letter(&self, rec: Record<T>, last: &Attempt) -> DeadLetter<T> {
        let mut json = String::with_capacity(RECORD_JSON_CAPACITY);
        json.push_str("{\"id\":");
        json_str(&mut json, &rec.id);
        json.push_str(",\"task\":");
        rec.data.write_task_json(&mut json);
        let _ = write!(
            json,
            ",\"priority\":{},\"retries\":{},\"maxRetries\":{},\"status\":\"failed\",\"enqueuedAt\":{},\"failedAt\":{},\"timeoutMs\":{},\"finalError\":",
            fmt_num(rec.priority),
            rec.retries,
            rec.max_retries,
            rec.enqueued_at as u64,
            epoch_ms() as u64,
            rec.timeout_ms
        );
        json.push_str(&serde_json::json!({ "message": last.error, "code": last.code, "stack": last.stack }).to_string());
        json.push_str(",\"metadata\":{\"attempts\":");
        json.push_str(&serde_json::to_string(&rec.attempts).unwrap_or_else(|_| "[]".into()));
        json.push_str("}}");
        DeadLetter {
            id: rec.id,
            data: rec.data,
            priority: rec.priority,
            timeout_ms: rec.timeout_ms,
            max_retries: rec.max_retries,
            json,
        }
    }

    pub fn next_retry_at(&self) -> Option<Instant> {
        self.retry_pending.keys().next().map(|(at, _)| *at)
    }

    /// Moves every retry whose backoff has elapsed back into the queue.
    pub fn promote_due(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((&(at, seq), _)) = self.retry_pending.iter().next() {
            if at > now {
                break;
            }
            self.retry_pending.remove(&(at, seq));
            let Some(rec) = self.records.get_mut(&seq) else { continue };
            rec.status = Status::Queued;
            rec.next_retry_at = None;
            rec.retry_at = None;
            let (id, retries, prio) = (rec.id.clone(), rec.retries, rec.priority);
            self.heap.push(HeapKey { priority: prio, seq });
            self.queued.insert(seq);
            n += 1;
            if self.emit {
                self.events.push(QueueEvent::Retried {
                    task_id: id,
                    retries,
                    queue_depth: self.depth(),
                });
            }
        }
        n
    }

    /// Ids of dequeued tasks running longer than their timeout (standalone use).
    pub fn check_timeouts(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for rec in self.records.values() {
            if let (Status::Dequeued, Some(d)) = (rec.status, rec.dequeued_instant) {
                let elapsed = now.duration_since(d).as_secs_f64() * 1000.0;
                if elapsed > rec.timeout_ms as f64 {
                    out.push(rec.id.clone());
                    if self.emit {
                        self.events.push(QueueEvent::Timeout {
                            task_id: rec.id.clone(),
                            elapsed_ms: elapsed,
                            timeout_ms: rec.timeout_ms,
                        });
                    }
                }
            }
        }
        out
    }

    /// Drops everything queued (not running); returns the removed records.
    pub fn clear(&mut self) -> Vec<Record<T>> {
        let seqs: Vec<u64> = self
            .records
            .values()
            .filter(|r| r.status != Status::Dequeued)
            .map(|r| r.seq)
            .collect();
        let out: Vec<Record<T>> = seqs.into_iter().filter_map(|s| self.forget(s)).collect();
        self.heap.clear();
        for s in &self.queued {
            if let Some(r) = self.records.get(s) {
                self.heap.push(HeapKey {
                    priority: r.priority,
                    seq: *s,
                });
            }
        }
        if self.emit {
            self.events.push(QueueEvent::QueueCleared { count: out.len() as u64 });
        }
        out
    }

    pub fn clear_dlq(&mut self) -> u64 {
        let n = self.dlq.len() as u64;
        self.dlq.clear();
        if self.emit {
            self.events.push(QueueEvent::DlqCleared { count: n });
        }
        n
    }

    /// Takes dead letters out (all, or the one with `id`).
    pub fn take_dead_letters(&mut self, id: Option<&str>) -> Vec<DeadLetter<T>> {
        match id {
            None => self.dlq.drain(..).collect(),
            Some(id) => match self.dlq.iter().position(|d| d.id == id) {
                Some(i) => self.dlq.remove(i).into_iter().collect(),
                None => Vec::new(),
            },
        }
    }

    pub fn dlq_json(&self) -> String {
        let mut s = String::from("[");
        for (i, d) in self.dlq.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&d.json);
        }
        s.push(']');
        s
    }

    pub fn record_json(&self, seq: u64) -> Option<String> {
        self.records.get(&seq).map(|r| r.to_json())
    }

    pub fn stats_json(&self) -> String {
        let now = Instant::now();
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        by_status.insert("queued", 0);
        by_status.insert("dequeued", 0);
        by_status.insert("retry-pending", 0);
        for r in self.records.values() {
            *by_status.entry(r.status.as_str()).or_default() += 1;
        }
        by_status.insert("completed", self.completed);
        by_status.insert("failed", self.failed);
        let by_priority: BTreeMap<String, u64> = self.by_priority.values().map(|(p, n)| (fmt_num(*p), *n)).collect();
        let oldest = self
            .queued
            .iter()
            .next()
            .and_then(|s| self.records.get(s))
            .map(|r| now.duration_since(r.enqueued_instant).as_millis() as u64)
            .unwrap_or(0);
        serde_json::json!({
            "queueDepth": self.depth(),
            "totalTasks": self.total,
            "activeTasks": self.records.len(),
            "dlqSize": self.dlq_len(),
            "byStatus": by_status,
            "byPriority": by_priority,
            "avgWaitTimeMs": avg(self.wait_sum_ms, self.wait_n),
            "avgDurationMs": avg(self.dur_sum_ms, self.dur_n),
            "oldestTaskAge": oldest,
            "retried": self.retried,
        })
        .to_string()
    }

    pub fn avg_wait_ms(&self) -> f64 {
        avg(self.wait_sum_ms, self.wait_n)
    }

    pub fn avg_duration_ms(&self) -> f64 {
        avg(self.dur_sum_ms, self.dur_n)
    }

    pub fn retried(&self) -> u64 {
        self.retried
    }

    /// Every live record, for shutdown.
    pub fn drain_all(&mut self) -> Vec<Record<T>> {
        let seqs: Vec<u64> = self.records.keys().copied().collect();
        let out = seqs.into_iter().filter_map(|s| self.forget(s)).collect();
        self.heap.clear();
        out
    }
}

fn avg(sum: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        (sum / n as f64 * 100.0).round() / 100.0
    }
}

pub fn fmt_num(p: f64) -> String {
    if p.fract() == 0.0 && p.abs() < 1e15 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

impl<T: TaskData> Record<T> {
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(RECORD_JSON_CAPACITY);
        s.push_str("{\"id\":");
        json_str(&mut s, &self.id);
        s.push_str(",\"task\":");
        self.data.write_task_json(&mut s);
        let _ = write!(
            s,
            ",\"priority\":{},\"retries\":{},\"maxRetries\":{},\"enqueuedAt\":{},\"status\":\"{}\",\"timeoutMs\":{}",
            fmt_num(self.priority),
            self.retries,
            self.max_retries,
            self.enqueued_at as u64,
            self.status.as_str(),
            self.timeout_ms
        );
        if let Some(d) = self.dequeued_at {
            let _ = write!(s, ",\"dequeuedAt\":{}", d as u64);
        }
        if let Some(n) = self.next_retry_at {
            let _ = write!(s, ",\"nextRetryAt\":{}", n as u64);
        }
        s.push_str(",\"metadata\":{\"attempts\":");
        s.push_str(&serde_json::to_string(&self.attempts).unwrap_or_else(|_| "[]".into()));
        s.push_str("}}");
        s
    }
}
