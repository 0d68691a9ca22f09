'use strict';
// The dashboard's view of a pool: one JSON snapshot (GET /api/status and each SSE
// tick), and the per-interval rates and latency quantiles the charts plot.

const DLQ_SHOWN = 50;
const ALERTS_SHOWN = 20;
const PREVIEW_CHARS = 200;
// The DLQ can hold 10,000 records; it is copied again only when it may have changed,
// or at this age (a requeue followed by an equal number of new failures keeps the counts).
const DLQ_MAX_AGE_MS = 10000;

const HISTOGRAMS = { wait: 'worker_pool_task_wait_seconds', run: 'worker_pool_task_run_seconds' };

/**
 * The cumulative buckets of the task wait and run histograms, from the Prometheus text:
 * { wait: [[le, count], ...], run: [...] } with le in seconds (Infinity for +Inf).
 * The pool has no other accessor for its histograms, and this text is what Prometheus
 * itself reads, so the page and a Grafana panel agree.
 */
function parseHistograms(text) {
  const out = { wait: [], run: [] };
  for (const [key, name] of Object.entries(HISTOGRAMS)) {
    const prefix = `${name}_bucket{le="`;
    for (let i = text.indexOf(prefix); i !== -1; i = text.indexOf(prefix, i + 1)) {
      const leEnd = text.indexOf('"', i + prefix.length);
      const lineEnd = text.indexOf('\n', leEnd);
      const le = text.slice(i + prefix.length, leEnd);
      const count = Number(text.slice(text.indexOf(' ', leEnd) + 1, lineEnd === -1 ? undefined : lineEnd));
      out[key].push([le === '+Inf' ? Infinity : Number(le), count]);
    }
  }
  return out;
}

/** Bucket-wise later − earlier (counts since `earlier`); earlier may be null. */
function bucketDelta(later, earlier) {
  if (!earlier || earlier.length !== later.length) return later;
  return later.map(([le, c], i) => [le, Math.max(0, c - earlier[i][1])]);
}

/**
 * The q-quantile in milliseconds of cumulative buckets, interpolated linearly within
 * the bucket as Prometheus' histogram_quantile does; null when the buckets are empty.
 * A rank in the +Inf bucket answers the highest finite bound.
 */
function quantileMs(buckets, q) {
  if (!buckets.length) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe * 1000;
      const inBucket = count - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return (prevLe + (le - prevLe) * frac) * 1000;
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe * 1000;
}

function latencyOf(hists) {
  const one = (b) => ({ p50: round3(quantileMs(b, 0.5)), p99: round3(quantileMs(b, 0.99)), count: b.length ? b[b.length - 1][1] : 0 });
  return { wait: one(hists.wait), run: one(hists.run) };
}

function round3(v) {
  return v === null ? null : Math.round(v * 1000) / 1000;
}

function preview(value) {
  if (value === undefined) return undefined;
  let s;
  try {
    s = JSON.stringify(value);
  } catch {
    s = String(value);
  }
  if (s === undefined) return undefined;
  return s.length > PREVIEW_CHARS ? `${s.slice(0, PREVIEW_CHARS)}…` : s;
}

/** What the page shows of a dead letter: no stacks, a bounded payload preview. */
/** The newest DLQ_SHOWN records, newest first, and the total. */
function summarizeDlq(records) {
  const entries = [];
  for (let i = records.length - 1; i >= 0 && entries.length < DLQ_SHOWN; i--) entries.push(dlqEntry(records[i]));
  return { total: records.length, entries };
}

function dlqEntry(r) {
  const attempts = (r.metadata && Array.isArray(r.metadata.attempts) && r.metadata.attempts) || [];
  const last = attempts[attempts.length - 1];
  const err = r.finalError || (last && { code: last.code, message: last.error }) || {};
  return {
    id: r.id,
    type: r.task && r.task.type,
    priority: r.priority,
    attempts: attempts.length || r.retries + 1,
    enqueuedAt: r.enqueuedAt,
    failedAt: r.failedAt ?? null,
    workerId: (last && last.workerId) || null,
    error: { code: err.code || null, message: err.message || '' },
    payload: preview(r.task && r.task.payload),
  };
}

/**
 * Builds snapshots of one pool. `sample()` also advances the interval (rates and
 * latency since the previous sample); `status()` reads without advancing, so an
 * /api/status request does not shorten the charts' interval.
 */
class StatusSource {
  constructor(pool, { actionsEnabled = false } = {}) {
    this.pool = pool;
    this.actionsEnabled = actionsEnabled;
    this.prev = null; // { t, tasks, hists }
    this.lastInterval = null; // { rates, latency } of the latest sample
    this.dlqCache = null; // { key, at, value }
    this.exits = []; // crashed or exited workers seen while a page was open
  }

  noteExit(e) {
    if (!e || typeof e.workerId !== 'string') return;
    this.exits.unshift({ workerId: e.workerId, pid: e.pid, code: e.code ?? null, signal: e.signal ?? null, at: Date.now() });
    if (this.exits.length > 20) this.exits.length = 20;
  }

  #dlq(tasks) {
    const key = `${tasks.dlq}:${tasks.failed}`;
    const now = Date.now();
    const c = this.dlqCache;
    if (c && c.key === key && now - c.at < DLQ_MAX_AGE_MS) return c.value;
    let records = [];
    try {
      records = this.pool.taskQueue.getDeadLetterQueue();
    } catch {
      /* a pool without a queue view: shown empty */
    }
    if (records && typeof records.then === 'function') {
      // A shared queue's failed set is in Redis: show the last answer and ask again in
      // the background (at most one request at a time).
      if (!this.dlqLoading) {
        this.dlqLoading = records
          .then((r) => {
            this.dlqCache = { key, at: Date.now(), value: summarizeDlq(r) };
          }, () => {})
          .finally(() => {
            this.dlqLoading = null;
          });
      } else {
        records.catch(() => {});
      }
      return c ? c.value : { total: 0, entries: [] };
    }
    const value = summarizeDlq(records);
    this.dlqCache = { key, at: now, value };
    return value;
  }

  #histograms() {
    if (typeof this.pool.getPrometheusMetrics !== 'function') return { wait: [], run: [] };
    try {
      return parseHistograms(String(this.pool.getPrometheusMetrics()));
    } catch {
      return { wait: [], run: [] };
    }
  }

  #build(m, hists) {
    const pool = this.pool;
    const cfg = pool.config || {};
    const workers = pool.getAllWorkersStatus().map((w) => ({
      id: w.id,
      pid: w.pid,
      state: w.state,
      healthy: w.healthy,
      tasksExecuted: w.tasksExecuted,
      currentTask: w.currentTask ?? null,
      inFlight: w.inFlight ?? null,
      rssBytes: w.rssBytes ?? null,
      memoryMB: w.memoryMB ?? null,
      cpuPercent: w.cpuPercent ?? null,
      uptime: w.uptime,
      lastActivity: w.lastActivity,
      restartCount: w.restartCount ?? 0,
    }));
    // A crashed worker's slot is refilled by a new worker (a higher id: ids are never
    // reused), at once or after a cooldown when the start was unstable. Each exit
    // claims the first worker started after it; an exit with none is still restarting.
    const now = Date.now();
    const idNum = (id) => Number(/(\d+)$/.exec(id)?.[1] ?? -1);
    const claimed = new Set();
    const restartable = cfg.autoRestart !== false && !m.pool.shuttingDown;
    const exits = this.exits
      .filter((x) => now - x.at < 60000)
      .reverse()
      .map((x) => {
        const crashed = x.signal !== null || (x.code !== 0 && x.code !== null);
        let state = 'exited';
        let replacedBy = null;
        if (crashed) {
          // The core spawns the replacement before the exit event reaches JS: allow 1 s.
          const next = workers
            .filter((w) => !claimed.has(w.id) && idNum(w.id) > idNum(x.workerId) && now - w.uptime >= x.at - 1000)
            .sort((a, b) => b.uptime - a.uptime)[0];
          if (next) {
            claimed.add(next.id);
            replacedBy = next.id;
            state = next.state === 'initializing' ? 'restarting' : 'restarted';
          } else if (restartable) {
            state = 'restarting';
          }
        }
        return { ...x, ago: now - x.at, state, replacedBy };
      })
      .reverse();
    let alerts = [];
    try {
      alerts = pool.healthMonitor.getAlerts(ALERTS_SHOWN);
    } catch {
      /* no monitor view */
    }
    const q = m.queue || {};
    const status = {
      time: now,
      pid: process.pid,
      pool: m.pool,
      config: {
        minWorkers: cfg.minWorkers,
        maxWorkers: cfg.maxWorkers,
        workerMemoryLimitMB: cfg.workerMemoryLimitMB,
        autoRestart: cfg.autoRestart,
        loadBalancing: cfg.loadBalancing,
        transport: cfg.transport,
      },
      health: { ...m.health, recentAlerts: alerts },
      workers,
      exits,
      queue: { depth: q.queueDepth ?? m.tasks.queued, byStatus: q.byStatus || {}, oldestTaskAge: q.oldestTaskAge ?? 0 },
      tasks: m.tasks,
      performance: m.performance,
      latencyTotal: latencyOf(hists),
      dlq: this.#dlq(m.tasks),
      actions: { enabled: this.actionsEnabled },
    };
    // Distributed mode: the shared queue's counts, only when the pool has one.
    if (q.shared && typeof q.shared === 'object') status.queue.shared = q.shared;
    return status;
  }

  /** A snapshot without moving the interval; `interval` is that of the latest sample, if recent. */
  status() {
    const m = this.pool.getPoolMetrics();
    const s = this.#build(m, this.#histograms());
    // Rates from a page that closed long ago would describe another time.
    s.interval = this.prev && Date.now() - this.prev.t < 5000 ? this.lastInterval : null;
    return s;
  }

  /** A snapshot, and the rates and latency since the previous sample. */
  sample() {
    const t = Date.now();
    const m = this.pool.getPoolMetrics();
    const hists = this.#histograms();
    const s = this.#build(m, hists);
    const p = this.prev;
    let interval = null;
    // After a long gap (no page open) a rate would average over the gap: start afresh.
    if (p && t > p.t && t - p.t < 10000) {
      const dt = (t - p.t) / 1000;
      const rate = (k) => Math.max(0, (m.tasks[k] - p.tasks[k]) / dt);
      interval = {
        seconds: dt,
        rates: { completed: round3(rate('completed')), failed: round3(rate('failed')), submitted: round3(rate('submitted')) },
        latency: latencyOf({ wait: bucketDelta(hists.wait, p.hists.wait), run: bucketDelta(hists.run, p.hists.run) }),
      };
    }
    this.prev = { t, tasks: { ...m.tasks }, hists };
    this.lastInterval = interval;
    s.interval = interval;
    return s;
  }
}

module.exports = { StatusSource, parseHistograms, quantileMs, bucketDelta, dlqEntry };
