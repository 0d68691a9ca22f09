'use strict';
// A hostile worker (fixtures/hostile-worker.js) in a pool with two well-behaved ones:
// random bytes, valid-looking messages with wrong types and sizes, replies for tasks
// it never got, floods of heartbeats and of bare newlines, then it hangs. The pool
// kills and replaces it with ERR_PROTOCOL where it should, keeps every other worker's
// tasks intact, and never crashes.
//
// The attacks' order and contents come from a seed: it is printed, and
// HOSTILE_SEED=<n> replays a run.
// Run: node --test __test__/hostile-worker.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { fixture, openPool, settle, within, waitFor, assertGone, mulberry32 } = require('./helpers');

const SEED = process.env.HOSTILE_SEED !== undefined ? Number(process.env.HOSTILE_SEED) : 24;
const MAX_MESSAGE_BYTES = 64 * 1024;
const GOOD_TASKS_PER_ROUND = 40;
const MB = 1024 * 1024;

/** What each attack must lead to: the hostile task's outcome, and whether it is replaced. */
const EXPECT = {
  bytes: { code: 'ERR_PROTOCOL', replaced: true },
  types: { code: 'ERR_PROTOCOL', replaced: true },
  sizes: { code: 'ERR_PROTOCOL', replaced: true },
  strangers: { code: null, replaced: false },
  heartbeats: { code: null, replaced: false },
  newlines: { code: null, replaced: false },
  hang: { code: 'ERR_TASK_TIMEOUT', replaced: true },
};

/** Every attack once in a seeded order, `hang` last (as the issue has it), then two more. */
function plan(rnd) {
  const names = Object.keys(EXPECT).filter((a) => a !== 'hang');
  for (let i = names.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [names[i], names[j]] = [names[j], names[i]];
  }
  const extra = [0, 1].map(() => names[Math.floor(rnd() * names.length)]);
  return [...names, 'hang', ...extra].map((attack) => ({ attack, seed: Math.floor(rnd() * 2 ** 31) }));
}

function hostilePid(pool) {
  const w = pool.getAllWorkersStatus().find((x) => x.capabilities && x.capabilities.includes('hostile') && (x.state === 'ready' || x.state === 'idle'));
  return w ? w.pid : null;
}

function goodPids(pool) {
  return pool.getAllWorkersStatus().filter((x) => x.capabilities && x.capabilities.includes('good')).map((x) => x.pid).sort();
}

test('a hostile worker is killed and replaced where it should be; the other workers\' tasks are intact', { timeout: 180000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (replay with HOSTILE_SEED=${SEED})`);
  const { pool, note } = await openPool(t, {
    maxMessageBytes: MAX_MESSAGE_BYTES,
    gracePeriodMs: 300,
    workerGroups: [
      { size: 2, workerScript: fixture('echo-worker.js'), capabilities: ['good'] },
      { size: 1, workerScript: fixture('hostile-worker.js'), capabilities: ['hostile'], env: { HOSTILE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) } },
    ],
  });
  const protocolErrors = [];
  pool.on('worker-error', (e) => {
    if (e.code === 'ERR_PROTOCOL') protocolErrors.push(e.pid);
  });
  await waitFor(() => hostilePid(pool) && goodPids(pool).length === 2, 15000, 'three ready workers');
  const good = goodPids(pool);
  const rnd = mulberry32(SEED);
  let sampler = null;
  try {
    for (const [round, { attack, seed }] of plan(rnd).entries()) {
      const before = await waitFor(() => hostilePid(pool), 15000, `a hostile worker before round ${round}`);
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 5);
      const hostile = settle(pool.submitTask({ type: 'attack', payload: { attack, seed }, requires: ['hostile'], maxRetries: 0, timeout: attack === 'hang' ? 500 : 20000 }));
      const goods = Array.from({ length: GOOD_TASKS_PER_ROUND }, (_, i) => settle(pool.submitTask({ type: 'echo', payload: { round, i }, requires: ['good'] })));
      const out = await within(hostile, 30000, `the ${attack} task`);
      const context = `round ${round}, attack ${attack} (seed ${seed}): ${JSON.stringify(out.ok ? out.value : { code: out.error.code, message: out.error.message })}`;
      const want = EXPECT[attack];
      if (want.code) {
        assert.equal(out.ok, false, context);
        assert.equal(out.error.code, want.code, context);
      } else {
        assert.equal(out.ok, true, context);
        assert.deepEqual(out.value, { hostile: true, attack }, context);
      }
      for (const [i, g] of (await within(Promise.all(goods), 30000, 'the good tasks')).entries()) {
        assert.equal(g.ok, true, `good task ${i} of ${context}: ${g.ok || g.error.message}`);
        assert.deepEqual(g.value, { round, i }, `good task ${i} has its own result, not a forged one (${context})`);
      }
      clearInterval(sampler);
      sampler = null;
      if (want.replaced) {
        await assertGone([before], 10000);
        const after = await waitFor(() => hostilePid(pool), 15000, `a replacement after ${attack}`);
        assert.notEqual(after, before, context);
        if (want.code === 'ERR_PROTOCOL') assert.ok(protocolErrors.includes(before), `a worker-error with ERR_PROTOCOL for ${before}: ${context}`);
      } else {
        assert.equal(hostilePid(pool), before, `not replaced: ${context}`);
      }
      if (attack === 'newlines') {
        // 96 MB of bare newlines are consumed as they come, not kept.
        const grew = (peak - rss0) / MB;
        t.diagnostic(`round ${round}: parent RSS growth during 96 MB of newlines: ${grew.toFixed(1)} MB`);
        assert.ok(grew < 40, `the parent's RSS grew by ${grew.toFixed(1)} MB`);
      }
      assert.deepEqual(goodPids(pool), good, `the good workers were never replaced (${context})`);
      note();
      t.diagnostic(`round ${round}: ${attack} -> ${out.ok ? 'answered' : out.error.code}${want.replaced ? ', replaced' : ''}`);
    }
    const m = pool.getPoolMetrics();
    assert.equal(m.pool.initialized, true);
  } finally {
    if (sampler) clearInterval(sampler);
  }
});
