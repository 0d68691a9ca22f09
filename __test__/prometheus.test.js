'use strict';
// pool.getPrometheusMetrics(): the text exposition format, parsed line by line.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorkerPool } = require('..');
const { fixture, assertGone } = require('./helpers');

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|\+Inf|NaN)$/;

function parse(text) {
  const types = new Map();
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, kind] = line.split(' ');
      types.set(name, kind);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a valid sample line: ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels: m[2] || '', value: Number(m[5]) });
  }
  return { types, samples };
}

function familyOf(name, types) {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix) && types.has(name.slice(0, -suffix.length))) return name.slice(0, -suffix.length);
  }
  return null;
}

test('getPrometheusMetrics is valid exposition text that matches the pool', { timeout: 60000 }, async () => {
  const pool = await createWorkerPool({ poolSize: 2, logLevel: 'silent', workerScript: fixture('echo-worker.js'), maxTaskRetries: 0 });
  const pids = pool.getWorkerPids();
  try {
    await Promise.all(Array.from({ length: 50 }, (_, i) => pool.submitTask({ type: 'echo', payload: i })));
    await pool.submitTask({ type: 'throw' }).catch(() => {});
    const { types, samples } = parse(pool.getPrometheusMetrics());
    for (const s of samples) assert.ok(familyOf(s.name, types), `${s.name} has a # TYPE line`);
    const one = (name, labels = '') => samples.find((s) => s.name === name && s.labels === labels)?.value;

    assert.equal(types.get('worker_pool_tasks_submitted_total'), 'counter');
    assert.equal(one('worker_pool_tasks_submitted_total'), 51);
    assert.equal(one('worker_pool_tasks_completed_total'), 50);
    assert.equal(one('worker_pool_tasks_failed_total'), 1);
    assert.equal(types.get('worker_pool_queue_depth'), 'gauge');
    assert.equal(one('worker_pool_queue_depth'), 0);
    assert.equal(one('worker_pool_workers', '{state="ready"}'), 2);
    const rss = samples.filter((s) => s.name === 'worker_pool_worker_rss_bytes');
    assert.equal(rss.length, 2);
    for (const r of rss) assert.ok(r.value > 1e6, 'worker RSS comes from /proc');

    for (const h of ['worker_pool_task_wait_seconds', 'worker_pool_task_run_seconds']) {
      assert.equal(types.get(h), 'histogram');
      const buckets = samples.filter((s) => s.name === `${h}_bucket`);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, `${h} buckets are cumulative`);
      assert.equal(buckets.at(-1).labels, '{le="+Inf"}');
      assert.equal(buckets.at(-1).value, one(`${h}_count`));
    }
    assert.equal(one('worker_pool_task_run_seconds_count'), 50);
  } finally {
    await pool.shutdown(true);
    await assertGone(pids, 5000);
  }
});
