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
import { REPO_ROOT, PARROT_BIN, startFake, startParrot, curlChat, cleanup, runCli, request, makeTmpDir } from './helpers.mjs';

const deploy = (...p) => path.join(REPO_ROOT, 'deploy', ...p);
const T = { timeout: 60_000 };
let defaults; // option -> value from --print-config
let scraped;  // metric names in a real scrape
let port;     // the default port

function parseConfig(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z0-9-]+) = (.*?)  \((\w+)\)$/.exec(line);
    if (m) out[m[1]] = { value: m[2], source: m[3] };
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

test('the Kubernetes sidecar matches parrot: port, probes, data dir, env options, secrets', T, async () => {
  const docs = fs.readdirSync(deploy('k8s')).filter((f) => /\.ya?ml$/.test(f))
    .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(deploy('k8s', f), 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, `${f}: ${d.errors.join('; ')}`);
      return d.toJS();
    }));
  const dep = docs.find((d) => d.kind === 'Deployment');
  const secret = docs.find((d) => d.kind === 'Secret');
  assert.ok(dep && secret, 'a Deployment and a Secret');
  const spec = dep.spec.template.spec;
  const parrot = spec.containers.find((c) => c.name === 'parrot');
  const app = spec.containers.find((c) => c.name !== 'parrot');
  assert.ok(parrot && app, 'an app container and a parrot sidecar');

  const env = Object.fromEntries(parrot.env.map((e) => [e.name, e]));
  const http = parrot.ports.find((p) => p.name === 'http');
  assert.equal(http.containerPort, port, 'the container port is parrot\'s default port');
  assert.equal(Number(env.PARROT_LISTEN.value.split(':').pop()), port);
  assert.equal(app.env.find((e) => e.name === 'OPENAI_BASE_URL').value, `http://127.0.0.1:${port}/v1`);
  assert.deepEqual(parrot.livenessProbe.httpGet, { path: '/healthz', port: 'http' });
  assert.deepEqual(parrot.readinessProbe.httpGet, { path: '/readyz', port: 'http' });
  assert.ok(parrot.resources.requests && parrot.resources.limits.memory, 'resources are set');
  const dataMount = parrot.volumeMounts.find((m) => m.mountPath === env.PARROT_DATA_DIR.value);
  assert.ok(dataMount, 'the data dir is a volume');
  const dataVol = spec.volumes.find((v) => v.name === dataMount.name);
  assert.ok(dataVol.emptyDir || dataVol.persistentVolumeClaim);
  assert.equal(dep.spec.template.metadata.annotations['prometheus.io/port'], String(port));

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
  const appKey = app.env.find((e) => e.name === 'OPENAI_API_KEY').valueFrom.secretKeyRef.key;
  assert.ok(secret.stringData['client-keys'].includes(secret.stringData[appKey]), 'the app key is a client key');

  // parrot accepts exactly this environment (values of secrets stand in).
  const plain = Object.fromEntries(parrot.env.map((e) => [e.name, e.value ?? 'secret-stand-in-0123456789']));
  const cfg = await configWith(plain);
  for (const name of Object.keys(plain)) assert.equal(cfg[optionOf(name)].source, 'env', name);
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
  assert.ok(timeout > Number(defaults['shutdown-timeout'].value.replace('ms', '')), 'systemd waits out the drain');

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
