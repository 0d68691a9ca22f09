// The dashboard page: renders /api/status, then follows /api/events. Plain DOM and
// canvas, no library, nothing fetched from elsewhere (the server's CSP forbids it).
// Every value from the pool is put in the page as text, never as HTML.
(() => {
  'use strict';

  const WINDOW_MS = 5 * 60 * 1000;
  const MAX_EVENTS = 100;
  const $ = (sel) => document.querySelector(sel);
  const state = { status: null, points: [], tickMs: 1000, events: [], token: '' };

  // A token given as #token=... is taken and removed from the address bar (and so
  // from the history); it lives only in this tab's sessionStorage.
  try {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem('wpDashboardToken', decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    state.token = sessionStorage.getItem('wpDashboardToken') || '';
  } catch {
    /* storage disabled: the token field still works for this page */
  }

  // ---------------------------------------------------------------- formatting

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (typeof n === 'number' ? nf.format(Math.round(n)) : '–');
  function fmtRate(n) {
    if (typeof n !== 'number') return '–';
    if (n === 0) return '0';
    return n >= 100 ? nf.format(Math.round(n)) : n.toFixed(n >= 10 ? 1 : 2);
  }
  function fmtMs(ms) {
    if (typeof ms !== 'number') return '–';
    if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
    if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
    return `${(ms / 1000).toFixed(1)} s`;
  }
  function fmtDuration(ms) {
    if (typeof ms !== 'number' || ms < 0) return '–';
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h ${m % 60}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }
  function fmtMB(bytes) {
    return typeof bytes === 'number' ? `${(bytes / 1048576).toFixed(1)} MB` : '–';
  }
  const fmtTime = (t) => new Date(t).toLocaleTimeString('en-GB', { hour12: false });

  /** el('td', { class: 'num' }, 'text', childNode, ...) */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function bar(fraction, label) {
    const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
    const fill = el('span');
    fill.style.width = `${(f * 100).toFixed(1)}%`;
    return el('div', { class: `bar${f > 0.9 ? ' hot' : f > 0.7 ? ' warn' : ''}` }, fill, el('em', null, label));
  }

  // ---------------------------------------------------------------- charts

  const CHARTS = {
    throughput: {
      canvas: '#chart-throughput',
      legend: '#legend-throughput',
      series: [
        { key: 'completed', label: 'completed/s', color: '#3fb950' },
        { key: 'failed', label: 'failed/s', color: '#f85149' },
      ],
      axis: fmtAxis,
      minTop: 4,
    },
    queue: {
      canvas: '#chart-queue',
      legend: '#legend-queue',
      series: [{ key: 'queue', label: 'queued', color: '#d29922' }],
      axis: fmtAxis,
      minTop: 4,
    },
    latency: {
      canvas: '#chart-latency',
      legend: '#legend-latency',
      series: [
        { key: 'waitP50', label: 'wait p50', color: '#a371f7' },
        { key: 'waitP99', label: 'wait p99', color: '#a371f7', dash: [4, 3] },
        { key: 'runP50', label: 'run p50', color: '#4c9aff' },
        { key: 'runP99', label: 'run p99', color: '#4c9aff', dash: [4, 3] },
      ],
      axis: fmtAxisMs,
      minTop: 1,
      // p99 wait can be a thousand times p50 run: a linear axis would flatten one of them.
      log: { floor: 0.01 },
    },
  };

  for (const c of Object.values(CHARTS)) {
    const legend = $(c.legend);
    for (const s of c.series) {
      const swatch = el('i');
      swatch.style.background = s.color;
      legend.append(el('span', null, swatch, s.label));
    }
  }

  function fmtAxis(v) {
    if (v >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
    if (v >= 1e3) return `${+(v / 1e3).toFixed(2)}k`;
    return String(+v.toFixed(2));
  }
  function fmtAxisMs(v) {
    return v >= 1000 ? `${+(v / 1000).toFixed(2)} s` : `${+v.toFixed(2)} ms`;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawChart(chart, points, now) {
    const canvas = $(chart.canvas);
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const from = now - WINDOW_MS;
    const visible = points.filter((p) => p.t >= from);
    let max = 0;
    for (const p of visible) for (const s of chart.series) if (typeof p[s.key] === 'number' && p[s.key] > max) max = p[s.key];
    const log = chart.log;
    const top = log ? 10 ** Math.ceil(Math.log10(Math.max(max, chart.minTop || 0, log.floor * 10))) : niceMax(Math.max(max, chart.minTop || 0));
    const left = 58;
    const right = 8;
    const padTop = 6;
    const bottom = 18;
    const plotW = w - left - right;
    const plotH = h - padTop - bottom;
    const x = (t) => left + ((t - from) / WINDOW_MS) * plotW;
    const lo = log ? Math.log10(log.floor) : 0;
    const hi = log ? Math.log10(top) : 0;
    const y = log
      ? (v) => padTop + plotH - ((Math.log10(Math.max(v, log.floor)) - lo) / (hi - lo)) * plotH
      : (v) => padTop + plotH - (v / top) * plotH;
    const ticks = log ? Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i)) : [0, 1, 2, 3, 4].map((i) => (top * i) / 4);

    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#7d8a98';
    ctx.strokeStyle = '#26303b';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of ticks) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(w - right, yy);
      ctx.stroke();
      ctx.fillText(chart.axis(v), left - 6, yy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'alphabetic';
    for (let m = 0; m <= 5; m++) {
      const t = now - m * 60000;
      ctx.fillText(m === 0 ? 'now' : `-${m}m`, Math.min(Math.max(x(t), left + 10), w - right - 12), h - 4);
    }

    // A gap (no page was open, or the stream dropped) breaks the line.
    const gap = state.tickMs * 3;
    for (const s of chart.series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.6;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      let prev = null;
      for (const p of visible) {
        const v = p[s.key];
        if (typeof v !== 'number') {
          prev = null;
          continue;
        }
        if (prev && p.t - prev.t <= gap) ctx.lineTo(x(p.t), y(v));
        else ctx.moveTo(x(p.t), y(v));
        prev = p;
      }
      ctx.stroke();
      // A value with no neighbour (a burst inside one second) would draw nothing as a line.
      ctx.fillStyle = s.color;
      for (let i = 0; i < visible.length; i++) {
        const v = visible[i][s.key];
        if (typeof v !== 'number') continue;
        const near = (j) => j >= 0 && j < visible.length && typeof visible[j][s.key] === 'number' && Math.abs(visible[j].t - visible[i].t) <= gap;
        if (!near(i - 1) && !near(i + 1)) {
          ctx.beginPath();
          ctx.arc(x(visible[i].t), y(v), 2.5, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    }
    ctx.setLineDash([]);
    // What is drawn, for tests and for anyone reading the DOM.
    canvas.dataset.points = String(visible.length);
    canvas.dataset.max = String(max);
    const last = visible[visible.length - 1];
    canvas.dataset.last = last ? JSON.stringify(Object.fromEntries(chart.series.map((s) => [s.key, last[s.key]]))) : '';
  }

  function drawCharts() {
    const now = state.status ? state.status.time : Date.now();
    for (const c of Object.values(CHARTS)) drawChart(c, state.points, now);
  }

  // ---------------------------------------------------------------- rendering

  function setText(sel, text) {
    const e = $(sel);
    if (e.textContent !== text) e.textContent = text;
  }

  function renderCounters(s) {
    const t = s.tasks;
    const iv = s.interval;
    setText('#c-throughput', iv ? fmtRate(iv.rates.completed) : '–');
    setText('#c-submitted', fmtInt(t.submitted));
    setText('#c-completed', fmtInt(t.completed));
    setText('#c-failed', fmtInt(t.failed));
    setText('#c-retried', fmtInt(t.retried));
    setText('#c-queued', fmtInt(t.queued));
    setText('#c-running', fmtInt(t.running));
    setText('#c-dlq', fmtInt(t.dlq));
    setText('#c-workers', `${s.workers.filter((w) => w.state === 'ready').length} / ${s.workers.filter((w) => w.state === 'busy').length}`);
    const p = s.performance;
    setText('#c-lifecycle', `${fmtInt(p.workersSpawned)} / ${fmtInt(p.workersRestarted)} / ${fmtInt(p.workersCrashed)}`);
  }

  function renderHeader(s) {
    const badge = $('#health-status');
    const hs = (s.health && s.health.status) || 'unknown';
    badge.textContent = hs;
    badge.className = `badge ${hs}`;
    setText(
      '#pool-summary',
      `pool size ${s.pool.size} (min ${s.config.minWorkers}, max ${s.config.maxWorkers}) · up ${fmtDuration(s.pool.uptime)} · daemon PID ${s.pid}` +
        (s.pool.shuttingDown ? ' · shutting down' : ''),
    );
  }

  function renderShared(s) {
    const sh = s.queue && s.queue.shared;
    const section = $('#shared');
    section.hidden = !sh;
    if (!sh) return;
    const box = $('#shared-counts');
    box.replaceChildren();
    for (const k of ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed']) {
      if (sh[k] === undefined) continue;
      box.append(el('div', { class: 'card' }, el('div', { class: 'label' }, k), el('div', { class: 'value', id: `shared-${k}` }, fmtInt(sh[k]))));
    }
    const pools = sh.servingPools;
    let text = '';
    if (Array.isArray(pools)) text = `serving pools: ${pools.length ? pools.map((p) => (typeof p === 'object' && p ? p.id || p.name || JSON.stringify(p) : String(p))).join(', ') : 'none'}`;
    else if (typeof pools === 'number') text = `serving pools: ${pools}`;
    // This pool's own link to the queue: a silent or lost connection shows here.
    if (sh.connected === false) text += ` · DISCONNECTED from the shared queue since ${new Date(sh.since).toLocaleTimeString()} (reconnecting; not serving)`;
    else if (sh.connected === true) text += ` · connected, ${fmtInt(sh.held || 0)} job(s) held here`;
    setText('#shared-pools', text);
    $('#shared-pools').classList.toggle('bad', sh.connected === false);
  }

  function renderWorkers(s) {
    const tbody = $('#workers tbody');
    const limitBytes = (s.config.workerMemoryLimitMB || 512) * 1048576;
    const rows = s.workers.map((w) =>
      el(
        'tr',
        { dataset: { workerId: w.id, state: w.state } },
        el('td', null, w.id),
        el('td', { class: 'num' }, w.pid),
        el('td', null, el('span', { class: `state state-${w.state}` }, w.state)),
        el('td', { class: 'num' }, fmtInt(w.tasksExecuted)),
        el('td', { class: 'mono' }, w.currentTask || (w.inFlight > 1 ? `${w.inFlight} in flight` : '')),
        el('td', null, bar(w.rssBytes / limitBytes, fmtMB(w.rssBytes))),
        el('td', null, bar((w.cpuPercent || 0) / 100, typeof w.cpuPercent === 'number' ? `${w.cpuPercent.toFixed(0)}%` : '–')),
        el('td', { class: 'num' }, fmtDuration(w.uptime)),
        el('td', { class: 'num' }, fmtInt(w.restartCount)),
      ),
    );
    for (const x of s.exits || []) {
      const why = x.signal ? `killed by ${x.signal}` : `exit code ${x.code}`;
      rows.push(
        el(
          'tr',
          { class: 'gone', dataset: { workerId: x.workerId, state: x.state } },
          el('td', null, x.workerId),
          el('td', { class: 'num' }, x.pid),
          el('td', null, el('span', { class: `state state-${x.state}` }, x.state)),
          el(
            'td',
            { colspan: 6 },
            `${why} ${fmtDuration(x.ago)} ago${x.state === 'restarting' ? ': its slot is being refilled' : x.replacedBy ? `: replaced by ${x.replacedBy}` : ''}`,
          ),
        ),
      );
    }
    tbody.replaceChildren(...rows);
    setText('#workers-count', `${s.workers.length} running`);
  }

  function alertDetails(a) {
    const skip = new Set(['id', 'severity', 'type', 'workerId', 'timestamp']);
    const parts = Object.entries(a)
      .filter(([k, v]) => !skip.has(k) && v !== null && v !== undefined)
      .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
    return parts.length ? `: ${parts.join(', ')}` : '';
  }

  function renderHealth(s) {
    const h = s.health || {};
    const cap = h.capacity || {};
    const box = $('#health-detail');
    const kv = [
      ['status', h.status],
      ['capacity', cap.capacityPercent !== undefined ? `${cap.capacityPercent}% (${cap.healthy} of ${cap.total} healthy)` : '–'],
      ['utilization', cap.utilizationPercent !== undefined ? `${cap.utilizationPercent}%` : '–'],
      ['alerts', h.alerts ? `${h.alerts.total} total · ${h.alerts.recent} recent · ${h.alerts.critical} critical` : '–'],
      ['failed slots', s.pool.failedSlots ?? 0],
      ['avg wait / run', `${fmtMs(s.performance.avgTaskWaitTimeMs)} / ${fmtMs(s.performance.avgTaskDurationMs)}`],
      ['p50 / p99 wait (all)', `${fmtMs(s.latencyTotal.wait.p50)} / ${fmtMs(s.latencyTotal.wait.p99)}`],
      ['p50 / p99 run (all)', `${fmtMs(s.latencyTotal.run.p50)} / ${fmtMs(s.latencyTotal.run.p99)}`],
    ];
    box.replaceChildren(...kv.flatMap(([k, v]) => [el('span', { class: 'k' }, k), el('span', null, v)]));
    const alerts = Array.isArray(h.recentAlerts) ? h.recentAlerts : [];
    const list = $('#alerts');
    if (!alerts.length) {
      list.replaceChildren(el('li', { class: 'muted' }, 'No alerts.'));
      return;
    }
    list.replaceChildren(
      ...alerts.map((a) =>
        el(
          'li',
          { class: `sev-${a.severity}` },
          el('time', null, a.timestamp ? fmtTime(a.timestamp) : ''),
          el('span', null, `${a.severity || ''} ${a.type || ''}${a.workerId ? ` ${a.workerId}` : ''}${alertDetails(a)}`),
        ),
      ),
    );
  }

  function renderDlq(s) {
    const d = s.dlq || { total: 0, entries: [] };
    setText('#dlq-total', d.total > d.entries.length ? `${d.total} (newest ${d.entries.length} shown)` : String(d.total));
    $('#dlq-empty').hidden = d.total > 0;
    const canAct = s.actions && s.actions.enabled;
    $('#dlq-actions').hidden = !canAct || d.total === 0;
    $('#dlq tbody').replaceChildren(
      ...d.entries.map((e) =>
        el(
          'tr',
          { dataset: { taskId: e.id } },
          el('td', { class: 'mono' }, e.id),
          el('td', null, e.type),
          el('td', { class: 'num' }, e.attempts),
          el('td', null, e.failedAt ? fmtTime(e.failedAt) : ''),
          el('td', null, e.workerId || ''),
          el('td', { class: 'wrap dlq-error' }, e.error.code ? el('code', null, e.error.code) : null, e.error.code ? ' ' : null, e.error.message),
          el('td', { class: 'wrap mono' }, e.payload === undefined ? '' : e.payload),
          el('td', null, canAct ? el('button', { type: 'button', class: 'small', dataset: { requeue: e.id } }, 'requeue') : null),
        ),
      ),
    );
  }

  function renderActions(s) {
    const enabled = Boolean(s.actions && s.actions.enabled);
    $('#actions-readonly').hidden = enabled;
    $('#actions-controls').hidden = !enabled;
  }

  function render(s) {
    state.status = s;
    renderHeader(s);
    renderCounters(s);
    renderShared(s);
    renderWorkers(s);
    renderHealth(s);
    renderDlq(s);
    renderActions(s);
    drawCharts();
  }

  // ---------------------------------------------------------------- events list

  function describe(e) {
    const d = e.data || {};
    switch (e.type) {
      case 'worker-exited':
        return [d.signal || (d.code !== 0 && d.code !== null) ? 'bad' : '', `${d.workerId} (PID ${d.pid}) exited: ${d.signal ? `signal ${d.signal}` : `code ${d.code}`}`];
      case 'worker-error':
        return ['bad', `${d.workerId}: ${d.error}${d.code ? ` (${d.code})` : ''}`];
      case 'zombie-detected':
        return ['bad', `${d.workerId} (PID ${d.pid}) is a zombie: no heartbeat for ${fmtDuration(d.timeSinceHeartbeat)}`];
      case 'high-memory':
        return ['warn', `${d.workerId} uses ${d.memoryMB} MB (limit ${d.threshold} MB)`];
      case 'pool-scaled-up':
        return ['', `scaled up by ${d.count}: size ${d.newSize}`];
      case 'pool-scaled-down':
        return ['', `scaled down by ${d.count}: size ${d.newSize}`];
      case 'autoscale':
        return ['', d.action === 'cooldown' ? `autoscale ${d.direction} waits for its cooldown (queue ${d.queueDepth})` : `autoscale ${d.action}: ${d.from} → ${d.to} (queue ${d.queueDepth})`];
      case 'task-failed':
        return [d.retried ? 'warn' : 'bad', `task ${d.taskId} failed${d.workerId ? ` on ${d.workerId}` : ''}${d.code ? ` [${d.code}]` : ''}: ${d.error}${d.retried ? ' (retrying)' : ''}`];
      case 'log':
        return [d.level === 'error' ? 'bad' : d.level === 'warn' ? 'warn' : '', d.message];
      case 'dashboard-action':
        return ['', `dashboard: ${d.action} ${JSON.stringify(Object.fromEntries(Object.entries(d).filter(([k]) => k !== 'action')))}`];
      case 'drain':
        return ['', 'the queue drained after being full'];
      case 'pool-shutdown':
        return ['warn', 'the pool shut down'];
      default:
        return ['', `${e.type} ${JSON.stringify(d)}`];
    }
  }

  function addEvents(batch) {
    for (const e of batch.events) state.events.unshift(e);
    if (batch.dropped) state.events.unshift({ type: 'dropped', time: Date.now(), data: { n: batch.dropped } });
    if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
    $('#events').replaceChildren(
      ...state.events.map((e) => {
        const [cls, text] = e.type === 'dropped' ? ['muted', `… ${e.data.n} more events in that second (not shown)`] : describe(e);
        return el('li', { class: cls ? `ev-${cls}` : null, dataset: { type: e.type } }, el('time', null, fmtTime(e.time)), el('span', null, text));
      }),
    );
  }

  // ---------------------------------------------------------------- actions

  function message(text, ok) {
    const m = $('#action-msg');
    m.textContent = text;
    m.className = `action-msg ${ok ? 'ok' : 'err'}`;
  }

  async function act(path, body) {
    // The field is the one source: emptying it sends no token, whatever was stored.
    const token = $('#token').value.trim();
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body || {}) });
    } catch (e) {
      message(`request failed: ${e.message}`, false);
      return null;
    }
    const out = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = out.error || {};
      message(`${res.status} ${err.code || ''}: ${err.message || res.statusText}`, false);
      return null;
    }
    if (token !== state.token) {
      state.token = token;
      try {
        if (token) sessionStorage.setItem('wpDashboardToken', token);
        else sessionStorage.removeItem('wpDashboardToken');
      } catch {
        /* not kept */
      }
    }
    return out;
  }

  async function scale(direction) {
    const count = Number($('#scale-count').value) || 1;
    const out = await act('api/scale', { direction, count });
    if (out) message(`scaled ${direction} by ${out.count}: pool size ${out.newSize}`, true);
  }

  $('#token').value = state.token;
  // Enter in the token field must not submit (and reload) anything.
  $('#actions-controls').addEventListener('submit', (ev) => ev.preventDefault());
  $('#scale-up').addEventListener('click', () => scale('up'));
  $('#scale-down').addEventListener('click', () => scale('down'));
  $('#dlq-requeue-all').addEventListener('click', async () => {
    const out = await act('api/dlq/requeue', {});
    if (out) message(`requeued ${out.requeued} task(s)`, true);
  });
  $('#dlq-clear').addEventListener('click', async () => {
    if (!confirm('Drop every task in the dead-letter queue?')) return;
    const out = await act('api/dlq/clear', {});
    if (out) message(`cleared ${out.cleared} dead letter(s)`, true);
  });
  $('#dlq tbody').addEventListener('click', async (ev) => {
    const id = ev.target && ev.target.dataset && ev.target.dataset.requeue;
    if (!id) return;
    const out = await act('api/dlq/requeue', { taskId: id });
    if (out) message(`requeued ${id}`, true);
  });

  // ---------------------------------------------------------------- live updates

  function setConn(cls, text) {
    const c = $('#conn');
    c.className = `conn conn-${cls}`;
    c.textContent = text;
  }

  fetch('api/status')
    .then((r) => (r.ok ? r.json() : null))
    .then((s) => {
      if (s && !state.status) render(s);
    })
    .catch(() => {});

  const es = new EventSource('api/events');
  es.addEventListener('open', () => setConn('live', 'live'));
  es.addEventListener('error', () => setConn(es.readyState === EventSource.CLOSED ? 'lost' : 'connecting', es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting'));
  es.addEventListener('history', (ev) => {
    const h = JSON.parse(ev.data);
    state.tickMs = h.tickMs || 1000;
    // On a reconnect the server's history replaces ours (it saw the same ticks).
    state.points = h.points;
    drawCharts();
  });
  es.addEventListener('pool', (ev) => addEvents(JSON.parse(ev.data)));
  es.addEventListener('status', (ev) => {
    const { status, point } = JSON.parse(ev.data);
    state.points.push(point);
    const cut = point.t - WINDOW_MS * 2;
    while (state.points.length && state.points[0].t < cut) state.points.shift();
    render(status);
    setConn('live', 'live');
  });
  window.addEventListener('resize', drawCharts);
})();
