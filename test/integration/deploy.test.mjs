// deploy/ checked against the real binary: the defaults come from
// `parrot --print-config`, the probe paths from requests to a running
// parrot, and the metric names from its /metrics after traffic, so a
// manifest that drifts from parrot fails here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import YAML from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { REPO_ROOT, PARROT_BIN, startFake, startParrot, curlChat, cleanup, runCli, request, makeTmpDir } from './helpers.mjs';

const deploy = (...p) => path.join(REPO_ROOT, 'deploy', ...p);
const T = { timeout: 60_000 };
let defaults; // option -> value from --print-config
let scraped;  // metric names in a real scrape
let port;     // the default port

function parseConfig(text) {
  const out = {};
  for (const line of text.split('\n')) {
    // "name = value  # source"; unset: "name =  # default (unset)"; a secret:
    // "# name = ********  # env (set; a secret, not printed)".
    const m = /^(?:# )?([a-z0-9-]+) =(?: (.*?))? {2}# (\w+)/.exec(line);
    if (m) out[m[1]] = { value: m[2] ?? '', source: m[3] };
  }
  return out;
}

/** --print-config under env (and args): every PARROT_* must be a real option. */
async function configWith(env, args = []) {
  const r = await runCli([...args, '--print-config'], env);
  assert.equal(r.code, 0, `parrot rejects this configuration: ${r.stderr}`);
  return parseConfig(r.stdout);
}

const optionOf = (envName) => envName.replace(/^PARROT_/, '').toLowerCase().replaceAll('_', '-');

before(async () => {
  defaults = await configWith({});
  port = Number(/:(\d+)$/.exec(defaults.listen.value)[1]);
  // Traffic that moves the cache, verifier, upstream and WAL families.
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url] });
  const ask = (t) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: t }] });
  await curlChat(parrot.base, ask('What is the capital of France?'), { authorization: 'Bearer sk-d' });
  await curlChat(parrot.base, ask('What is the capital of France?'), { authorization: 'Bearer sk-d' });
  const r = await request(parrot.base, { path: '/metrics' });
  assert.equal(r.status, 200);
  scraped = new Set(r.body.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)[0]));
  // The probe paths the manifests use are real routes.
  for (const p of ['/healthz', '/readyz']) assert.equal((await request(parrot.base, { path: p })).status, 200, p);
  await parrot.stop();
});
after(cleanup);

/** parrot_* names in a PromQL expression (label names and functions are not). */
function metricNames(expr) {
  const noStrings = expr.replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  return [...noStrings.matchAll(/\b(parrot_[a-z0-9_]+)\b/g)].map((m) => m[1]);
}

/** Every object `kubectl kustomize deploy/k8s/NAME` renders, or null without kubectl. */
function kustomize(name) {
  try { execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' }); } catch { return null; }
  const out = execFileSync('kubectl', ['kustomize', deploy('k8s', name)], { encoding: 'utf8' });
  return YAML.parseAllDocuments(out).map((d) => {
    assert.equal(d.errors.length, 0, `${name}: ${d.errors.join('; ')}`);
    return d.toJS();
  }).filter(Boolean);
}

// The Kubernetes and Prometheus Operator schemas (kubernetes-models: the
// OpenAPI schemas of the Kubernetes API and of the operator's CRDs, checked
// with ajv): a wrong type, a missing required field or a bad enum fails.
const MODELS = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};
function validate(objs, where) {
  for (const o of objs) {
    const M = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(M, `${where}: no schema for ${o.apiVersion} ${o.kind}`);
    assert.doesNotThrow(() => new M(o).validate(), `${where}: ${o.kind} ${o.metadata?.name}`);
  }
}

/** Bytes in a Kubernetes quantity (Mi, Gi, M, G) or a parrot size (k, m, g). */
function bytes(q, parrotSize = false) {
  const m = /^(\d+)([a-zA-Z]*)$/.exec(String(q));
  const unit = parrotSize ? { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()]
    : { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 }[m[2]];
  assert.ok(unit, `unit of ${q}`);
  return Number(m[1]) * unit;
}
/** A duration as parrot spells it (30s, 1m, 500ms, 2h; a bare number is seconds), in seconds. */
const seconds = (v) => {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v);
  assert.ok(m, `duration ${JSON.stringify(v)}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, undefined: 1 }[m[2]];
};
const matches = (selector, labels) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const rulesFile = () => YAML.parse(fs.readFileSync(deploy('prometheus', 'rules.yml'), 'utf8'));
/** The job ParrotDown alerts on. */
const downJob = () => /\bup\{job="([^"]+)"\}/.exec(rulesFile().groups[0].rules.find((r) => r.alert === 'ParrotDown').expr)[1];

/** Checks common to both layouts on the parrot container and its pod. */
async function checkParrot(spec, parrot, secret) {
  const env = Object.fromEntries(parrot.env.map((e) => [e.name, e]));
  const http = parrot.ports.find((p) => p.name === 'http');
  assert.equal(http.containerPort, port, 'the container port is parrot\'s default port');
  assert.equal(Number(env.PARROT_LISTEN.value.split(':').pop()), port);
  // Probes: alive, started, and ready without asking about the providers.
  assert.deepEqual(parrot.startupProbe.httpGet, { path: '/healthz', port: 'http' });
  assert.deepEqual(parrot.livenessProbe.httpGet, { path: '/healthz', port: 'http' });
  assert.deepEqual(parrot.readinessProbe.httpGet, { path: '/readyz', port: 'http' },
    'readiness is /readyz without ?upstream=1: a provider outage must not take pods out of service');
  assert.ok(parrot.resources.requests && parrot.resources.limits.memory, 'resources are set');
  const cacheMem = bytes((env.PARROT_CACHE_MAX_MEMORY ?? defaults['cache-max-memory']).value, true);
  assert.ok(bytes(parrot.resources.limits.memory) > cacheMem, 'the memory limit leaves room above cache-max-memory');
  const dataMount = parrot.volumeMounts.find((m) => m.mountPath === env.PARROT_DATA_DIR.value);
  assert.ok(dataMount, 'the data dir is a volume');
  const dataVol = spec.volumes.find((v) => v.name === dataMount.name);
  assert.ok(dataVol.emptyDir || dataVol.persistentVolumeClaim);
  assert.equal(parrot.securityContext.runAsUser, 10001);
  assert.equal(parrot.securityContext.allowPrivilegeEscalation, false);

  // Secrets come from the Secret, never literal values.
  for (const name of ['PARROT_UPSTREAM_KEY', 'PARROT_ADMIN_KEY']) {
    const ref = env[name].valueFrom.secretKeyRef;
    assert.equal(ref.name, secret.metadata.name);
    assert.ok(ref.key in secret.stringData, `${ref.key} is in the Secret`);
  }
  const keysMount = parrot.volumeMounts.find((m) => env.PARROT_CLIENT_KEYS_FILE.value.startsWith(`${m.mountPath}/`));
  const keysVol = spec.volumes.find((v) => v.name === keysMount.name).secret;
  assert.equal(keysVol.secretName, secret.metadata.name);
  assert.equal(keysVol.defaultMode & 0o007, 0, 'parrot refuses a keys file others can read');

  // parrot accepts exactly this environment (values of secrets stand in).
  const plain = Object.fromEntries(parrot.env.map((e) => [e.name, e.value ?? 'secret-stand-in-0123456789']));
  const cfg = await configWith(plain);
  for (const name of Object.keys(plain)) assert.equal(cfg[optionOf(name)].source, 'env', name);
  // The grace period covers the drain (and a preStop sleep before it).
  const drain = seconds(cfg['shutdown-timeout'].value);
  const preStop = parrot.lifecycle?.preStop?.sleep?.seconds ?? 0;
  assert.ok(spec.terminationGracePeriodSeconds > drain + preStop,
    `terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} > shutdown-timeout ${drain} s + preStop ${preStop} s`);
}

/** The PrometheusRule carries rules.yml's groups unchanged. */
function checkRule(objs) {
  const rule = objs.find((o) => o.kind === 'PrometheusRule');
  assert.ok(rule, 'a PrometheusRule');
  assert.deepEqual(rule.spec.groups, rulesFile().groups, 'PrometheusRule = deploy/prometheus/rules.yml');
}

test('k8s sidecar overlay: parrot is a native sidecar of the app, probes, grace, PodMonitor job', T, async (t) => {
  const objs = kustomize('sidecar');
  if (!objs) { t.skip('kubectl is not installed: the kustomize overlays were not rendered'); return; }
  validate(objs, 'sidecar');
  const dep = objs.find((d) => d.kind === 'Deployment');
  const secret = objs.find((d) => d.kind === 'Secret');
  assert.ok(dep && secret, 'a Deployment and a Secret');
  assert.equal(objs.filter((d) => d.kind === 'Deployment').length, 1, 'one Deployment: the app\'s');
  const spec = dep.spec.template.spec;
  const parrot = (spec.initContainers ?? []).find((c) => c.name === 'parrot');
  assert.ok(parrot, 'parrot is an init container');
  assert.equal(parrot.restartPolicy, 'Always', 'a restartable init container: a native sidecar');
  assert.ok(!spec.containers.some((c) => c.name === 'parrot'), 'parrot is not a regular container');
  const app = spec.containers.find((c) => c.name !== 'parrot');
  assert.ok(app, 'an app container');
  assert.equal(app.env.find((e) => e.name === 'OPENAI_BASE_URL').value, `http://127.0.0.1:${port}/v1`);
  await checkParrot(spec, parrot, secret);
  const appKey = app.env.find((e) => e.name === 'OPENAI_API_KEY').valueFrom.secretKeyRef.key;
  assert.ok(secret.stringData['client-keys'].includes(secret.stringData[appKey]), 'the app key is a client key');
  assert.ok(matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'the selector selects the pods');

  // Scraped by a PodMonitor whose job is the one ParrotDown watches.
  const pm = objs.find((o) => o.kind === 'PodMonitor');
  assert.ok(pm, 'a PodMonitor');
  assert.ok(matches(pm.spec.selector.matchLabels, dep.spec.template.metadata.labels), 'the PodMonitor selects the app\'s pods');
  const ep = pm.spec.podMetricsEndpoints[0];
  assert.equal(ep.port, 'http');
  assert.equal(ep.path, '/metrics');
  const job = ep.relabelings.find((r) => r.targetLabel === 'job' && (r.action ?? 'replace') === 'replace');
  assert.equal(job?.replacement, downJob(), 'the scrape\'s job is ParrotDown\'s');
  checkRule(objs);
});

test('k8s gateway overlay: replicas behind a Service, PDB, ServiceMonitor and PrometheusRule', T, async (t) => {
  const objs = kustomize('gateway');
  if (!objs) { t.skip('kubectl is not installed: the kustomize overlays were not rendered'); return; }
  validate(objs, 'gateway');
  const one = (kind) => {
    const all = objs.filter((o) => o.kind === kind);
    assert.equal(all.length, 1, `one ${kind}`);
    return all[0];
  };
  const dep = one('Deployment');
  const secret = one('Secret');
  const spec = dep.spec.template.spec;
  const parrot = spec.containers.find((c) => c.name === 'parrot');
  assert.ok(parrot, 'parrot is the pod\'s container');
  assert.ok(dep.spec.replicas >= 2, 'several replicas');
  assert.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0, 'rolling updates keep every replica serving');
  await checkParrot(spec, parrot, secret);
  const podLabels = dep.spec.template.metadata.labels;

  const svc = one('Service');
  assert.ok(matches(svc.spec.selector, podLabels), 'the Service selects parrot\'s pods');
  const svcPort = svc.spec.ports.find((p) => p.targetPort === 'http');
  assert.equal(svcPort.port, port);
  const pdb = one('PodDisruptionBudget');
  assert.ok(matches(pdb.spec.selector.matchLabels, podLabels), 'the PDB covers parrot\'s pods');
  assert.ok(pdb.spec.maxUnavailable >= 1 && pdb.spec.maxUnavailable < dep.spec.replicas, 'a drain leaves replicas serving');

  const sm = one('ServiceMonitor');
  assert.ok(matches(sm.spec.selector.matchLabels, svc.metadata.labels), 'the ServiceMonitor selects the Service');
  assert.equal(sm.spec.endpoints[0].port, svcPort.name);
  assert.equal(sm.spec.endpoints[0].path, '/metrics');
  // The operator's job label: the Service's jobLabel label, else its name.
  const job = sm.spec.jobLabel ? svc.metadata.labels[sm.spec.jobLabel] : svc.metadata.name;
  assert.equal(job, downJob(), 'the scrape\'s job is ParrotDown\'s');
  checkRule(objs);
});

test('k8s gateway-redis overlay: the replicas share one Redis with AOF and an eviction policy that spares the stream', T, async (t) => {
  const objs = kustomize('gateway-redis');
  if (!objs) { t.skip('kubectl is not installed: the kustomize overlays were not rendered'); return; }
  validate(objs, 'gateway-redis');
  const dep = objs.find((o) => o.kind === 'Deployment');
  const parrot = dep.spec.template.spec.containers.find((c) => c.name === 'parrot');
  const env = Object.fromEntries(parrot.env.map((e) => [e.name, e]));
  const redisSvc = objs.find((o) => o.kind === 'Service' && o.metadata.name === 'parrot-redis');
  const sts = objs.find((o) => o.kind === 'StatefulSet');
  assert.ok(matches(redisSvc.spec.selector, sts.spec.template.metadata.labels), 'the Redis Service selects Redis');
  const redisUrl = new URL(env.PARROT_REDIS.value);
  assert.equal(redisUrl.hostname, redisSvc.metadata.name);
  assert.equal(Number(redisUrl.port), redisSvc.spec.ports[0].port);
  assert.equal(env.PARROT_REDIS_PASSWORD.valueFrom.secretKeyRef.name, 'parrot-redis', 'the password comes from a Secret');
  // parrot accepts the settings (the password as the Secret would give it).
  const cfg = await configWith({ PARROT_REDIS: env.PARROT_REDIS.value, PARROT_REDIS_NAMESPACE: env.PARROT_REDIS_NAMESPACE.value,
    PARROT_REDIS_PASSWORD: 'from-the-secret' });
  assert.equal(cfg.redis.value, env.PARROT_REDIS.value);
  const args = sts.spec.template.spec.containers[0].args;
  const arg = (name) => args[args.indexOf(name) + 1];
  assert.equal(arg('--appendonly'), 'yes');
  assert.equal(arg('--maxmemory-policy'), 'volatile-lru', 'keys without an expiry (the stream) are never evicted');
  assert.ok(dep.spec.replicas >= 2, 'several replicas share it');
});

test('compose gateway: replicas of one parrot service share a Redis with AOF and an eviction policy that spares the stream', T, async () => {
  // docker compose is not on these machines: the file is read as YAML and
  // every setting parrot gets is checked by parrot itself.
  const doc = YAML.parseDocument(fs.readFileSync(deploy('compose', 'gateway.yaml'), 'utf8'));
  assert.equal(doc.errors.length, 0, doc.errors.join('; '));
  const { services } = doc.toJS();
  const { redis, parrot } = services;
  assert.ok(redis && parrot, 'a redis and a parrot service');
  assert.ok(parrot.deploy.replicas >= 2, 'several replicas');
  assert.deepEqual(parrot.depends_on, ['redis']);
  const cmd = redis.command.split(/\s+/);
  const arg = (name) => cmd[cmd.indexOf(name) + 1];
  assert.equal(cmd[0], 'redis-server');
  assert.equal(arg('--appendonly'), 'yes');
  assert.equal(arg('--maxmemory-policy'), 'volatile-lru', 'keys without an expiry (the stream) are never evicted');
  assert.match(arg('--requirepass'), /REDIS_PASSWORD/, 'Redis asks for the password parrot is given');
  // Compose's ${VAR:?msg} / ${VAR:-default}, filled as an operator would.
  const given = { PARROT_UPSTREAM_KEY: 'sk-operator', REDIS_PASSWORD: 'pw', PARROT_ADMIN_KEY: 'admin-key-0123456789abcdef' };
  const fill = (v) => String(v).replace(/\$\{(\w+)(?::[?-]([^}]*))?\}/g, (_, name, dflt) => given[name] ?? dflt ?? '');
  const env = Object.fromEntries(Object.entries(parrot.environment).map(([k, v]) => [k, fill(v)]));
  assert.equal(new URL(env.PARROT_REDIS).hostname, 'redis', 'the replicas reach the redis service by name');
  assert.equal(env.PARROT_REDIS_PASSWORD, given.REDIS_PASSWORD);
  const cfg = await configWith(env);
  assert.equal(cfg.redis.value, env.PARROT_REDIS);
  assert.equal(cfg['redis-namespace'].value, env.PARROT_REDIS_NAMESPACE);
  const [, hostPort] = /^(?:[\d.]+:)?([\d-]+):(\d+)$/.exec(parrot.ports[0]) ?? [];
  assert.ok(hostPort, `a published port range: ${parrot.ports[0]}`);
  assert.equal(Number(/:(\d+)$/.exec(cfg.listen.value)[1]), Number(/:(\d+)$/.exec(parrot.ports[0])[1]));
});

test('k8s files: every manifest in base and overlays parses and fits its schema', T, () => {
  // Without kubectl this is what is left to check; with it, it also catches
  // a file that no overlay uses.
  const used = new Set();
  for (const dir of ['base', 'sidecar', 'gateway', 'gateway-redis', 'components/alerts']) {
    const k = YAML.parse(fs.readFileSync(deploy('k8s', dir, 'kustomization.yaml'), 'utf8'));
    for (const r of [...(k.resources ?? []), ...(k.patches ?? []).map((p) => p.path)])
      if (r.endsWith('.yaml')) used.add(path.join(dir, r));
    for (const f of fs.readdirSync(deploy('k8s', dir)).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml'))
      assert.ok(used.has(path.join(dir, f)), `deploy/k8s/${dir}/${f} is used by its kustomization`);
  }
  for (const f of used) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(deploy('k8s', f), 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, `${f}: ${d.errors.join('; ')}`);
      return d.toJS();
    });
    // Patches are partial objects or JSON patches: parse only.
    if (/^(gateway\/deployment|gateway-redis\/deployment|sidecar\/app)\.yaml$/.test(f)) continue;
    validate(docs, f);
  }
});

test('the systemd unit verifies and its command line is a valid parrot configuration', T, async (t) => {
  const unit = fs.readFileSync(deploy('parrot.service'), 'utf8');
  const exec = /^ExecStart=(\S+)(.*)$/m.exec(unit);
  const args = exec[2].trim().split(/\s+/);
  const cfg = await configWith({}, args);
  assert.equal(Number(cfg.listen.value.split(':').pop()), port);
  assert.equal(cfg['data-dir'].value, `/var/lib/${/^StateDirectory=(\S+)$/m.exec(unit)[1]}`);
  assert.match(unit, /^EnvironmentFile=-?\/etc\/parrot\/parrot\.env$/m, 'secrets come from an EnvironmentFile');
  const unitLines = unit.split('\n');
  for (const opt of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'DynamicUser=yes', 'CapabilityBoundingSet='])
    assert.ok(unitLines.includes(opt), `hardening: ${opt}`);
  const timeout = Number(/^TimeoutStopSec=(\d+)s$/m.exec(unit)[1]) * 1000;
  assert.ok(timeout > seconds(defaults['shutdown-timeout'].value) * 1000, 'systemd waits out the drain');

  let analyze = null;
  try { execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' }); analyze = 'systemd-analyze'; } catch { /* missing */ }
  if (!analyze) {
    t.diagnostic('systemd-analyze is not installed: `systemd-analyze verify` was not run');
    return;
  }
  // verify insists that the binary exists: point it at the one just built.
  const dir = makeTmpDir('parrot-unit-');
  fs.writeFileSync(path.join(dir, 'parrot.service'), unit.replace(exec[0], `ExecStart=${PARROT_BIN}${exec[2]}`));
  const out = execFileSync(analyze, ['verify', path.join(dir, 'parrot.service')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(out.trim(), '');
});

test('the Dockerfile: two debian:12-slim stages, non-root, healthcheck and port match parrot', T, async () => {
  const text = fs.readFileSync(deploy('Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages = [];
  for (const l of lines) {
    const [ins, ...rest] = l.split(/\s+/);
    if (ins.toUpperCase() === 'FROM') stages.push({ from: rest, lines: [] });
    else stages.at(-1).lines.push({ ins: ins.toUpperCase(), arg: rest.join(' ') });
  }
  assert.equal(stages.length, 2, 'a build stage and a runtime stage');
  assert.deepEqual(stages[0].from.map((s) => s.toLowerCase()), ['debian:12-slim', 'as', 'build']);
  assert.equal(stages[1].from[0], 'debian:12-slim');
  const rt = stages[1].lines;
  const one = (ins) => rt.filter((l) => l.ins === ins).map((l) => l.arg);
  assert.match(stages[0].lines.filter((l) => l.ins === 'RUN').map((l) => l.arg).join(' '), /libmicrohttpd-dev/);
  assert.doesNotMatch(one('RUN').join(' '), /-dev\b|build-essential/, 'no build tools at run time');
  assert.ok(one('COPY').some((a) => a.startsWith('--from=build ')));
  const user = one('USER').at(-1);
  assert.ok(user && !/^(root|0)(:|$)/.test(user), `runs as a non-root user (${user})`);
  assert.deepEqual(one('EXPOSE'), [String(port)]);
  const hc = one('HEALTHCHECK')[0];
  assert.match(hc, new RegExp(`http://127\\.0\\.0\\.1:${port}/healthz`));
  const env = {};
  for (const a of one('ENV')) for (const m of a.matchAll(/(PARROT_[A-Z_]+)=(\S+)/g)) env[m[1]] = m[2];
  assert.equal(Number(env.PARROT_LISTEN.split(':').pop()), port);
  assert.deepEqual(JSON.parse(one('VOLUME')[0]), [env.PARROT_DATA_DIR], 'the data dir is the volume');
  const cfg = await configWith(env);
  for (const name of Object.keys(env)) assert.equal(cfg[optionOf(name)].source, 'env', name);

  // Every file the build copies from the context exists (a renamed file
  // breaks docker build, which cannot run in this test).
  for (const st of stages) {
    for (const l of st.lines.filter((x) => x.ins === 'COPY' && !x.arg.startsWith('--from='))) {
      for (const src of l.arg.split(/\s+/).slice(0, -1)) assert.ok(fs.existsSync(path.join(REPO_ROOT, src)), `COPY ${src}`);
    }
  }
  // The word-vector table is built in the build stage and lands where
  // parrot looks for it by default.
  const buildRuns = stages[0].lines.filter((l) => l.ins === 'RUN').map((l) => l.arg).join(' ');
  const made = /make vectors VECTORS=(\S+)/.exec(buildRuns);
  assert.ok(made, 'the build stage runs make vectors');
  const wvDir = path.dirname(defaults['word-vectors'].value);
  const copied = one('COPY').map((a) => a.split(/\s+/)).find((a) => a[0] === '--from=build' && a.at(-1).replace(/\/$/, '') === wvDir);
  assert.ok(copied, `the table is copied to ${wvDir}`);
  assert.ok(made[1].startsWith(copied[1]), `${copied[1]} holds ${made[1]}`);
});

test('alert rules use only metrics parrot exports, and promtool accepts them', T, async (t) => {
  const file = deploy('prometheus', 'rules.yml');
  const rules = YAML.parse(fs.readFileSync(file, 'utf8')).groups.flatMap((g) => g.rules);
  assert.ok(rules.length >= 5);
  const used = new Set(rules.flatMap((r) => metricNames(r.expr)));
  assert.ok(used.size >= 5);
  for (const m of used) assert.ok(scraped.has(m), `${m} is not in parrot's /metrics`);
  // `up` is the one series Prometheus makes itself.
  assert.ok(rules.some((r) => /\bup\{job="parrot"\}/.test(r.expr)));
  let promtool = true;
  try { execFileSync('promtool', ['--version'], { stdio: 'ignore' }); } catch { promtool = false; }
  if (!promtool) {
    t.diagnostic('promtool is not installed: `promtool check rules` was not run');
    return;
  }
  const out = execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  assert.match(out, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

test('the Grafana dashboard parses and queries only metrics parrot exports', T, () => {
  const dash = JSON.parse(fs.readFileSync(deploy('grafana', 'parrot.json'), 'utf8'));
  const exprs = [...dash.panels.flatMap((p) => p.targets.map((x) => x.expr)),
    ...dash.templating.list.map((v) => v.query)];
  const ids = dash.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const used = new Set(exprs.flatMap(metricNames));
  assert.ok(used.size >= 10);
  for (const m of used) assert.ok(scraped.has(m), `${m} is not in parrot's /metrics`);
});

test('the Grafana dashboard loads through file provisioning as well as UI import', T, () => {
  const text = fs.readFileSync(deploy('grafana', 'parrot.json'), 'utf8');
  const dash = JSON.parse(text);
  // Provisioning does not fill import inputs: a ${DS_...} left in a file
  // provisioned dashboard is a data source that does not exist.
  assert.equal(dash.__inputs, undefined, 'no __inputs (import-only)');
  assert.doesNotMatch(text, /\$\{DS_[A-Z_]+\}/, 'no import placeholders');
  assert.ok(dash.uid && dash.title, 'a stable uid and a title');
  const vars = new Map(dash.templating.list.map((v) => [v.name, v]));
  assert.equal(vars.get('datasource')?.type, 'datasource');
  assert.equal(vars.get('datasource').query, 'prometheus');
  // Every data source reference is the variable (or a fixed uid), never an
  // undefined variable.
  const refs = [];
  const walk = (o) => {
    if (Array.isArray(o)) o.forEach(walk);
    else if (o && typeof o === 'object') {
      if (o.datasource) refs.push(o.datasource);
      Object.values(o).forEach(walk);
    }
  };
  walk(dash);
  assert.ok(refs.length >= dash.panels.length);
  for (const r of refs) {
    const uid = typeof r === 'string' ? r : r.uid;
    const v = /^\$\{?(\w+)\}?$/.exec(uid);
    if (v) assert.ok(vars.has(v[1]), `data source variable ${uid} is defined`);
  }
  const prov = YAML.parse(fs.readFileSync(deploy('grafana', 'provisioning', 'dashboards', 'parrot.yaml'), 'utf8'));
  assert.equal(prov.apiVersion, 1);
  assert.equal(prov.providers[0].type, 'file');
  assert.ok(path.isAbsolute(prov.providers[0].options.path));
  const ds = YAML.parse(fs.readFileSync(deploy('grafana', 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8'));
  assert.equal(ds.datasources[0].type, 'prometheus');
});

test('docs/deploy.md names every alert the rules define', T, () => {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'deploy.md'), 'utf8');
  const alerts = rulesFile().groups.flatMap((g) => g.rules).map((r) => r.alert);
  for (const a of alerts) assert.ok(doc.includes(`\`${a}\``), `${a} is documented`);
  const words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve'];
  assert.match(doc, new RegExp(`Alerts \\((${alerts.length}|${words[alerts.length]})\\b`), 'the count in the text');
});
