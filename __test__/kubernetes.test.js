'use strict';
// deploy/kubernetes/: the example manifests parse, and the relations an operator must
// keep hold: QUEUE_URL from a Secret that exists, a grace period above the daemon's
// SHUTDOWN_TIMEOUT (ms vs s), a memory limit covering POOL_SIZE × WORKER_MEMORY_LIMIT_MB
// plus the daemon, probes that reach what the daemon really serves, and only
// environment variables the daemon reads.
// Run: node --test __test__/kubernetes.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');
const { ROOT } = require('./helpers');

const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const DAEMON_SRC = fs.readFileSync(path.join(ROOT, 'scripts', 'daemon.js'), 'utf8');

/** Every document of every YAML file in deploy/kubernetes. */
function loadAll() {
  const docs = [];
  for (const f of fs.readdirSync(DIR).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(DIR, f), 'utf8'))) {
      assert.deepEqual(d.errors, [], `${f} parses`);
      const obj = d.toJS();
      if (obj) docs.push({ file: f, ...obj });
    }
  }
  return docs;
}

const docs = loadAll();
const deployment = docs.find((d) => d.kind === 'Deployment');
const pod = deployment && deployment.spec.template.spec;
const container = pod && pod.containers[0];

/** The container's environment as given (value or valueFrom), by name. */
function envOf(c) {
  return Object.fromEntries((c.env || []).map((e) => [e.name, e]));
}

/** A daemon variable's value: the manifest's, else the daemon's default. */
function envValue(name, def) {
  const e = envOf(container)[name];
  if (!e || e.value === undefined || e.value === '') return def;
  return e.value;
}

/** A Kubernetes memory quantity in MiB. */
function mib(q) {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(String(q));
  assert.ok(m, `a memory quantity: ${q}`);
  const n = Number(m[1]);
  const unit = { undefined: 1 / 1048576, Ki: 1 / 1024, Mi: 1, Gi: 1024, Ti: 1048576, K: 1000 / 1048576, M: 1e6 / 1048576, G: 1e9 / 1048576, T: 1e12 / 1048576 };
  return n * unit[m[2]];
}

/** The default the daemon gives `name` (intEnv('NAME', { def: N })), or undefined. */
function daemonDefault(name) {
  const m = new RegExp(`intEnv\\('${name}',\\s*\\{[^}]*def:\\s*(\\d+)`).exec(DAEMON_SRC);
  return m ? Number(m[1]) : undefined;
}

test('the manifests parse: a Deployment of pool daemons and the Secret it reads', () => {
  assert.ok(deployment, 'a Deployment');
  assert.ok(container, 'a container');
  assert.ok(docs.some((d) => d.kind === 'Secret'), 'a Secret');
  assert.ok(
    (container.command || []).concat(container.args || []).some((a) => /scripts\/daemon\.js$|worker-pool-daemon\.sh$/.test(a)),
    `the container runs the daemon: ${JSON.stringify(container.command)}`,
  );
  assert.deepEqual(deployment.spec.selector.matchLabels, Object.fromEntries(Object.entries(deployment.spec.template.metadata.labels).filter(([k]) => k in deployment.spec.selector.matchLabels)));
});

test('QUEUE_URL comes from a secretKeyRef to a Secret and key that the manifests define', () => {
  const e = envOf(container).QUEUE_URL;
  assert.ok(e, 'QUEUE_URL is set');
  assert.equal(e.value, undefined, 'QUEUE_URL is not written in the Deployment');
  const ref = e.valueFrom && e.valueFrom.secretKeyRef;
  assert.ok(ref && ref.name && ref.key, `QUEUE_URL from a secretKeyRef: ${JSON.stringify(e)}`);
  const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === ref.name);
  assert.ok(secret, `a Secret named ${ref.name}`);
  assert.equal(secret.metadata.namespace, deployment.metadata.namespace);
  const data = { ...(secret.stringData || {}), ...(secret.data || {}) };
  assert.ok(ref.key in data, `the Secret has the key ${ref.key}`);
  const url = secret.stringData ? secret.stringData[ref.key] : Buffer.from(secret.data[ref.key], 'base64').toString();
  const { parseRedisUrl } = require('../lib/distributed/config');
  assert.doesNotThrow(() => parseRedisUrl(url), 'the example URL is one the daemon accepts');
});

test('terminationGracePeriodSeconds is above SHUTDOWN_TIMEOUT (ms) / 1000', () => {
  const shutdownMs = Number(envValue('SHUTDOWN_TIMEOUT', daemonDefault('SHUTDOWN_TIMEOUT')));
  assert.ok(Number.isInteger(shutdownMs) && shutdownMs > 0, `SHUTDOWN_TIMEOUT: ${shutdownMs}`);
  assert.equal(daemonDefault('SHUTDOWN_TIMEOUT'), 20000, "the daemon's default is still 20000 ms");
  const grace = pod.terminationGracePeriodSeconds;
  assert.ok(Number.isInteger(grace), 'terminationGracePeriodSeconds is set');
  // A margin for closing the Redis connections and the workers after the drain.
  assert.ok(grace >= shutdownMs / 1000 + 5, `grace ${grace} s > SHUTDOWN_TIMEOUT ${shutdownMs} ms / 1000 + 5 s`);
});

test('the memory limit covers POOL_SIZE × WORKER_MEMORY_LIMIT_MB plus the daemon', () => {
  const poolSize = Number(envValue('POOL_SIZE', daemonDefault('POOL_SIZE')));
  // The pool's own default (README: workerMemoryLimitMB 512) when the variable is unset.
  const perWorker = Number(envValue('WORKER_MEMORY_LIMIT_MB', 512));
  assert.ok(poolSize > 0 && perWorker > 0);
  assert.match(DAEMON_SRC, /intEnv\('WORKER_MEMORY_LIMIT_MB'\)/, 'the daemon reads WORKER_MEMORY_LIMIT_MB');
  const limits = (container.resources && container.resources.limits) || {};
  assert.ok(limits.memory, 'a memory limit');
  const limit = mib(limits.memory);
  assert.ok(limit >= poolSize * perWorker, `limit ${limit} Mi >= ${poolSize} × ${perWorker} Mi`);
  assert.ok(limit - poolSize * perWorker >= 128, `at least 128 Mi for the daemon above the workers (has ${limit - poolSize * perWorker} Mi)`);
  const req = container.resources.requests && container.resources.requests.memory;
  assert.ok(req && mib(req) <= limit, 'the memory request is at most the limit');
});

test('a readiness probe reaches what the daemon serves', () => {
  const probe = container.readinessProbe;
  assert.ok(probe, 'a readiness probe');
  if (probe.httpGet) {
    assert.equal(probe.httpGet.path, '/healthz');
    const port = (container.ports || []).find((p) => p.name === probe.httpGet.port || p.containerPort === probe.httpGet.port);
    assert.ok(port, `the probe's port ${probe.httpGet.port} is a container port`);
    assert.equal(String(port.containerPort), envValue('METRICS_PORT'), 'the probe port is METRICS_PORT');
    assert.equal(envValue('METRICS_HOST'), '0.0.0.0', 'METRICS_HOST lets the kubelet reach the port');
  } else {
    assert.ok(probe.exec, 'an httpGet or exec probe');
    assert.ok(probe.exec.command.some((a) => /worker-pool(\.js)?$/.test(a)) && probe.exec.command.some((a) => a === 'ping' || a === 'status'));
  }
  // An exec probe on the control socket uses the socket the daemon listens on.
  for (const p of [container.readinessProbe, container.livenessProbe]) {
    if (!p || !p.exec) continue;
    const i = p.exec.command.indexOf('--socket');
    assert.ok(i > 0, 'the exec probe names the socket');
    assert.equal(p.exec.command[i + 1], envValue('SOCKET_PATH'));
  }
});

test("the daemon's files are on writable volumes, and every variable is one the daemon reads", () => {
  const readOnly = container.securityContext && container.securityContext.readOnlyRootFilesystem;
  const mounts = (container.volumeMounts || []).map((m) => m.mountPath);
  for (const v of ['PID_FILE', 'SOCKET_PATH', 'FIFO_DIR']) {
    const p = envValue(v);
    if (readOnly) assert.ok(p && mounts.some((m) => p.startsWith(`${m}/`)), `${v} (${p}) is on a mounted volume`);
  }
  assert.ok(Buffer.byteLength(envValue('SOCKET_PATH', '')) <= 107, 'the socket path fits a Unix socket address');
  for (const name of Object.keys(envOf(container))) {
    assert.ok(DAEMON_SRC.includes(`'${name}'`) || DAEMON_SRC.includes(`env.${name}`), `the daemon reads ${name}`);
  }
});
