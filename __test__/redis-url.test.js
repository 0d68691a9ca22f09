'use strict';
// The Redis URL parser (lib/distributed/config.js) fed generated input with fast-check,
// seeded (URL_SEED=<n> replays a run): whatever it is given, it answers with options or an
// ERR_INVALID_CONFIG error; no message, display or resolved option shows the password;
// the hosts, ports, database and master of a URL it accepts are the ones written.
// Run: node --test __test__/redis-url.test.js

const assert = require('node:assert/strict');
const fc = require('fast-check');
const { parseRedisUrl, resolveClientOptions } = require('../lib/distributed/config');
const { test } = require('./helpers');

const SEED = Number(process.env.URL_SEED || 20261207);
const RUNS = 400;

// A password long enough (and marked) that it cannot appear by chance.
const password = fc.string({ minLength: 1, maxLength: 12 }).map((s) => `Pw9${s}#`);
const host = fc.oneof(fc.constantFrom('127.0.0.1', 'redis', 'r-1.example.internal'), fc.ipV4(), fc.ipV6().map((h) => `[${h}]`));
const port = fc.integer({ min: 1, max: 65535 });
const hostPort = fc.tuple(host, port).map(([h, p]) => `${h}:${p}`);

function check(url) {
  let parsed;
  try {
    parsed = parseRedisUrl(url);
  } catch (e) {
    assert.equal(e.code, 'ERR_INVALID_CONFIG', `${url}: ${e.message}`);
    return { error: e };
  }
  return { parsed };
}

test('any string: options or ERR_INVALID_CONFIG, never another error', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.webUrl(), fc.constantFrom('redis://', 'redis-sentinel://', 'redis-cluster://').chain((s) => fc.string().map((r) => s + r))), (url) => {
      check(url);
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('a password never shows, in a refusal, the display or the resolved options', () => {
  const scheme = fc.constantFrom('redis', 'rediss', 'redis-sentinel', 'rediss-sentinel', 'redis-cluster', 'rediss-cluster', 'http');
  fc.assert(
    fc.property(scheme, password, fc.array(hostPort, { minLength: 1, maxLength: 3 }), fc.string({ maxLength: 8 }), (s, pw, hosts, tail) => {
      const url = `${s}://user:${encodeURIComponent(pw)}@${hosts.join(',')}${tail}`;
      const { parsed, error } = check(url);
      const secret = encodeURIComponent(pw);
      if (error) {
        assert.ok(!error.message.includes(secret) && !error.message.includes(pw), `refusal shows the password: ${error.message}`);
        return;
      }
      assert.ok(!parsed.display.includes(secret) && !parsed.display.includes(pw), parsed.display);
      let opts;
      try {
        opts = resolveClientOptions({ url });
      } catch (e) {
        assert.equal(e.code, 'ERR_INVALID_CONFIG');
        assert.ok(!e.message.includes(secret));
        return;
      }
      // What a pool shows (pool.config.queue) is built from these minus url, redis, sentinel and cluster.
      const { url: _u, redis: _r, sentinel: _s, cluster: _c, ...shown } = opts;
      assert.ok(!JSON.stringify(shown).includes(pw) && !JSON.stringify(shown).includes(secret));
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('sentinel and cluster URLs give back the hosts, ports, database and master written', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.tuple(host, port), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 0, max: 15 }),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/),
      password,
      (sentinel, hosts, db, master, pw) => {
        const list = hosts.map(([h, p]) => `${h}:${p}`).join(',');
        const auth = `:${encodeURIComponent(pw)}@`;
        const url = sentinel ? `redis-sentinel://${auth}${list}/${db}#${master}` : `redis-cluster://${auth}${list}`;
        const { parsed } = check(url);
        assert.ok(parsed, `${url} is accepted`);
        const core = sentinel ? parsed.sentinel.sentinels : parsed.cluster.nodes;
        assert.deepEqual(core, hosts.map(([h, p]) => [h.replace(/^\[|\]$/g, ''), p]));
        assert.equal((sentinel ? parsed.sentinel : parsed.cluster).password, pw);
        if (sentinel) {
          assert.equal(parsed.sentinel.masterName, master);
          assert.equal(parsed.sentinel.db, db);
          assert.equal(parsed.options.name, master);
        }
      },
    ),
    { seed: SEED, numRuns: RUNS },
  );
});
