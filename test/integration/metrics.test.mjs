// /metrics (docs/metrics.md): each family moves as traffic says it should,
// the text passes `promtool check metrics`, a real Prometheus server scrapes
// it, and the request log line carries the cache fields but never a prompt.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startPair, startFake, startParrot, cleanup, curlChat, metrics, request, waitFor, waitForLog,
  closedPort, makeTmpDir, runCli,
} from './helpers.mjs';

const TEST_TIMEOUT_MS = 90_000;
const KEY = { authorization: 'Bearer sk-metrics' };
const PRICE_IN = 2.5; // USD per 1M tokens, as given to --prices
const PRICE_OUT = 10;
const ask = (text, extra = {}) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }], ...extra });

const children = new Set();
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await cleanup();
});

/** The change of each series in `keys` between two parsed scrapes. */
function deltas(before, now, keys) {
  const out = {};
  for (const k of keys) out[k] = (now[k] ?? 0) - (before[k] ?? 0);
  return out;
}

/**
 * Wait until parrot logged n requests. Requests are counted when
 * libmicrohttpd reports them complete, just after the client has its
 * answer, and logged right after that.
 */
function settled(parrot, n) {
  return waitFor(() => parrot.logs().filter((l) => l.msg === 'request').length >= n, { what: `${n} request log lines` });
}

async function chat(base, text, headers = {}, extra = {}) {
  const r = await curlChat(base, ask(text, extra), { ...KEY, ...headers });
  assert.equal(r.status, 200, `${text}: ${r.status} ${r.body.slice(0, 300)}`);
  return r;
}

test('each metric family moves with the traffic that feeds it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair({ args: ['--prices', `gpt-fake=${PRICE_IN}/${PRICE_OUT}`] });
  const m0 = await metrics(parrot.base);
  assert.ok(m0.parrot_start_time_seconds > 1.6e9, 'start time is a Unix time');

  const miss = await chat(parrot.base, 'How do I reset my password?');
  assert.equal(miss.headers['x-parrot-cache'], 'miss');
  const usage = JSON.parse(miss.body).usage;
  assert.equal((await chat(parrot.base, 'How do I reset my password?')).headers['x-parrot-cache'], 'hit');
  const sem = await chat(parrot.base, 'how can I reset my password');
  assert.equal(sem.headers['cache-status'], 'parrot; hit; detail=semantic');
  await chat(parrot.base, 'Turn on the kitchen lights please');
  // Close to the stored question, but the verifier sees on vs off.
  const opp = await chat(parrot.base, 'Turn off the kitchen lights please');
  assert.equal(opp.headers['x-parrot-cache'], 'miss');
  const byp = await chat(parrot.base, 'Fetched fresh', { 'cache-control': 'no-cache' });
  assert.equal(byp.headers['x-parrot-cache'], 'bypass');
  await chat(parrot.base, 'Kept out of the cache', { 'cache-control': 'no-store' });
  const refused = await curlChat(parrot.base, ask('Never seen'), { ...KEY, 'cache-control': 'only-if-cached' });
  assert.equal(refused.status, 504);
  assert.equal((await request(parrot.base, { path: '/v1/models' })).status, 200);
  assert.equal((await request(parrot.base, { path: '/nowhere' })).status, 404);
  assert.equal((await request(parrot.base, { path: '/healthz' })).status, 200);

  await settled(parrot, 12);
  const m = await metrics(parrot.base);
  const saved = 2 * (usage.prompt_tokens + usage.completion_tokens);
  assert.deepEqual(deltas(m0, m, [
    'parrot_http_requests_total{route="chat",code="200"}',
    'parrot_http_requests_total{route="chat",code="504"}',
    'parrot_http_requests_total{route="v1",code="200"}',
    'parrot_http_requests_total{route="other",code="404"}',
    'parrot_http_requests_total{route="health",code="200"}',
    'parrot_cache_hits_total{kind="exact"}',
    'parrot_cache_hits_total{kind="semantic"}',
    'parrot_cache_misses_total',
    'parrot_cache_bypasses_total{reason="no-cache"}',
    'parrot_cache_no_store_total',
    'parrot_cache_refused_total',
    'parrot_cache_verifier_rejections_total{reason="opposite"}',
    'parrot_cache_stores_total',
    'parrot_cache_entries',
    'parrot_chat_request_duration_seconds_count{cache="hit"}',
    'parrot_chat_request_duration_seconds_count{cache="miss"}',
    'parrot_chat_request_duration_seconds_count{cache="bypass"}',
    'parrot_upstream_first_byte_seconds_count',
    'parrot_upstream_duration_seconds_count',
    'parrot_tokens_saved_total{kind="prompt"}',
    'parrot_tokens_saved_total{kind="completion"}',
  ]), {
    'parrot_http_requests_total{route="chat",code="200"}': 7,
    'parrot_http_requests_total{route="chat",code="504"}': 1,
    'parrot_http_requests_total{route="v1",code="200"}': 1,
    'parrot_http_requests_total{route="other",code="404"}': 1,
    'parrot_http_requests_total{route="health",code="200"}': 1,
    'parrot_cache_hits_total{kind="exact"}': 1,
    'parrot_cache_hits_total{kind="semantic"}': 1,
    'parrot_cache_misses_total': 4, // password, lights on, lights off, no-store
    'parrot_cache_bypasses_total{reason="no-cache"}': 1,
    'parrot_cache_no_store_total': 1,
    'parrot_cache_refused_total': 1,
    'parrot_cache_verifier_rejections_total{reason="opposite"}': 1,
    'parrot_cache_stores_total': 4, // the misses and the bypass, not the no-store
    'parrot_cache_entries': 4,
    'parrot_chat_request_duration_seconds_count{cache="hit"}': 2,
    'parrot_chat_request_duration_seconds_count{cache="miss"}': 4,
    'parrot_chat_request_duration_seconds_count{cache="bypass"}': 1,
    // Every provider call: the 5 chat completions sent on, and /v1/models.
    'parrot_upstream_first_byte_seconds_count': 6,
    'parrot_upstream_duration_seconds_count': 6,
    'parrot_tokens_saved_total{kind="prompt"}': 2 * usage.prompt_tokens,
    'parrot_tokens_saved_total{kind="completion"}': 2 * usage.completion_tokens,
  });
  assert.ok(saved > 0);
  const usd = 2 * (usage.prompt_tokens * PRICE_IN + usage.completion_tokens * PRICE_OUT) / 1e6;
  assert.ok(Math.abs(m.parrot_cost_saved_usd_total - usd) < 1e-12,
    `cost saved ${m.parrot_cost_saved_usd_total}, expected ${usd}`);
  assert.ok(m.parrot_cache_memory_bytes > m0.parrot_cache_memory_bytes, 'memory grows with entries');
  // Histograms: +Inf bucket equals the count, buckets are cumulative, the sum is positive.
  for (const kind of ['hit', 'miss', 'bypass']) {
    const name = 'parrot_chat_request_duration_seconds';
    assert.equal(m[`${name}_bucket{cache="${kind}",le="+Inf"}`], m[`${name}_count{cache="${kind}"}`]);
    assert.ok(m[`${name}_sum{cache="${kind}"}`] > 0, `${kind} latency sum`);
    assert.ok(m[`${name}_bucket{cache="${kind}",le="0.001"}`] <= m[`${name}_bucket{cache="${kind}",le="0.01"}`]);
  }
  // /metrics itself is counted once answered.
  const m2 = await metrics(parrot.base);
  assert.ok(m2['parrot_http_requests_total{route="metrics",code="200"}'] >= 2);
});

test('a model without a price counts tokens but no money', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair({ args: ['--prices', 'gpt-other=1/1'] });
  await chat(parrot.base, 'What is the tallest mountain?');
  await chat(parrot.base, 'What is the tallest mountain?');
  await settled(parrot, 2);
  const m = await metrics(parrot.base);
  assert.ok(m['parrot_tokens_saved_total{kind="prompt"}'] > 0);
  assert.equal(m.parrot_cost_saved_usd_total, 0);
});

test('an invalid price table stops parrot with exit code 2', { timeout: TEST_TIMEOUT_MS }, async () => {
  const r = await runCli(['--prices', 'gpt-4o=two/ten', '--print-config']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid price 'gpt-4o=two\/ten'/);
});

test('upstream attempts, failures, retries, failovers, breaker state and evictions', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const deadName = `127.0.0.1:${await closedPort()}`;
  const fakeName = new URL(fake.url).host;
  // The dead provider's weight makes it the first pick; one failure opens
  // its breaker, and the retry fails over to the fake.
  const parrot = await startParrot({
    args: ['--upstream', `http://${deadName}/v1;weight=100`, '--upstream', `${fake.url};weight=1`,
      '--breaker-failures', '1', '--breaker-cooldown', '1h', '--cache-max-memory', '12k'],
  });
  await chat(parrot.base, 'First question to fail over');
  const m = await metrics(parrot.base);
  const p = (name, prov) => m[`${name}{provider="http://${prov}/v1"}`]; // scheme://host:port/path
  assert.equal(p('parrot_upstream_attempts_total', deadName), 1);
  assert.equal(p('parrot_upstream_failures_total', deadName), 1);
  assert.equal(p('parrot_upstream_breaker_state', deadName), 2, 'open');
  assert.equal(p('parrot_upstream_attempts_total', fakeName), 1);
  assert.equal(p('parrot_upstream_retries_total', fakeName), 1);
  assert.equal(p('parrot_upstream_failovers_total', fakeName), 1);
  assert.equal(p('parrot_upstream_breaker_state', fakeName), 0, 'closed');

  // Enough distinct answers to overflow 12 KiB: the oldest are evicted.
  for (let i = 0; i < 12; i++) {
    await chat(parrot.base, `Distinct question number ${i} ${'padding '.repeat(40)}`);
  }
  const m2 = await metrics(parrot.base);
  assert.ok(m2.parrot_cache_evictions_total > 0, 'evictions counted');
  assert.ok(m2.parrot_cache_memory_bytes <= 12 * 1024, `memory ${m2.parrot_cache_memory_bytes}`);
  assert.equal(m2[`parrot_upstream_attempts_total{provider="http://${deadName}/v1"}`], 1, 'open breaker keeps it out');
});

test('the request log line: cache fields, hashed partition, never the prompt', { timeout: TEST_TIMEOUT_MS }, async () => {
  const secret = 'Where did I bury the treasure chest';
  const { parrot } = await startPair();
  await chat(parrot.base, secret);
  await chat(parrot.base, secret);
  const hit = await waitForLog(parrot, (l) => l.cache === 'hit-exact');
  const miss = await waitForLog(parrot, (l) => l.cache === 'miss');
  assert.equal(hit.model, 'gpt-fake');
  assert.match(hit.partition, /^[0-9a-f]{16}$/);
  assert.equal(hit.partition, miss.partition, 'one partition for one question');
  assert.equal(hit.similarity, 1);
  assert.ok(hit.tokens_saved > 0);
  assert.equal(typeof hit.ms, 'number');
  assert.equal(miss.attempts, 1);
  assert.match(miss.provider, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  assert.equal(miss.tokens_saved, undefined);
  assert.equal(miss.prompt, undefined);
  assert.ok(!parrot.stderr().includes('treasure'), 'the question never reaches the log');

  // log-prompts puts it in, on purpose.
  const { parrot: loud } = await startPair({ args: ['--log-prompts'] });
  await chat(loud.base, secret);
  const line = await waitForLog(loud, (l) => l.cache === 'miss');
  assert.equal(line.prompt, secret);
});

/** Run promtool on text; resolves {code, out}. */
function promtool(text) {
  return new Promise((resolve, reject) => {
    const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: err ? err.code : 0, out: stdout + stderr });
    });
    child.stdin.end(text);
  });
}

test('promtool check metrics accepts the exposition after traffic of every kind', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair({ args: ['--prices', 'gpt-fake=0.15/0.6'] });
  await chat(parrot.base, 'How do I reset my password?');
  await chat(parrot.base, 'How do I reset my password?');
  await chat(parrot.base, 'how can I reset my password');
  await chat(parrot.base, 'fresh', { 'cache-control': 'no-cache' });
  await request(parrot.base, { path: '/nowhere' });
  const r = await request(parrot.base, { path: '/metrics' });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  // Every sample belongs to a family announced with HELP and TYPE.
  const typed = new Set([...r.body.matchAll(/^# TYPE (\S+) \S+$/gm)].map((x) => x[1]));
  const helped = new Set([...r.body.matchAll(/^# HELP (\S+) .+$/gm)].map((x) => x[1]));
  for (const line of r.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const name = line.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/)[0];
    const fam = typed.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(fam) && helped.has(fam), `sample without HELP/TYPE: ${line}`);
  }
  const res = await promtool(r.body);
  assert.equal(res.code, 0, `promtool: ${res.out}`);
  assert.equal(res.out.trim(), '', `promtool lint: ${res.out}`);
  // And promtool does catch what it should (the check is not vacuous): a
  // counter named against the conventions, a line that does not parse.
  const lint = await promtool(`${r.body}# HELP parrot_bad A counter.\n# TYPE parrot_bad counter\nparrot_bad 1\n`);
  assert.notEqual(lint.code, 0);
  assert.match(lint.out, /parrot_bad counter metrics should have "_total" suffix/);
  const broken = await promtool(`${r.body}parrot_cache_entries{ 1\n`);
  assert.notEqual(broken.code, 0);
});

test('a real Prometheus server scrapes parrot', { timeout: 120_000 }, async () => {
  const { parrot } = await startPair();
  await chat(parrot.base, 'Scraped question?');
  await chat(parrot.base, 'Scraped question?');
  const dir = makeTmpDir('parrot-prom-');
  const port = await closedPort();
  const cfg = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(cfg, [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    '  - job_name: parrot',
    '    static_configs:',
    `      - targets: ['127.0.0.1:${parrot.port}']`,
    '',
  ].join('\n'));
  const prom = spawn('prometheus', [
    `--config.file=${cfg}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(prom);
  let promErr = '';
  prom.stderr.on('data', (c) => { promErr += c; });
  const promBase = `http://127.0.0.1:${port}`;
  const query = async (q) => {
    let r;
    try {
      r = await request(promBase, { path: `/api/v1/query?query=${encodeURIComponent(q)}` });
    } catch {
      return null; // not listening yet
    }
    if (r.status !== 200) return null;
    const j = JSON.parse(r.body);
    assert.equal(j.status, 'success');
    return j.data.result;
  };
  try {
    const up = await waitFor(async () => {
      const res = await query('up{job="parrot"}');
      return res && res.length === 1 && res[0].value[1] === '1' ? res : null;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `Prometheus to scrape parrot (stderr: ${promErr.slice(-500)})` });
    assert.equal(up[0].metric.instance, `127.0.0.1:${parrot.port}`);
    const hits = await waitFor(async () => {
      const res = await query('parrot_cache_hits_total{job="parrot",kind="exact"}');
      return res && res.length === 1 ? res : null;
    }, { timeoutMs: 30_000, intervalMs: 250, what: 'parrot_cache_hits_total in Prometheus' });
    assert.equal(hits[0].value[1], '1');
    // A histogram arrives whole: histogram_quantile() over it gives a number.
    const q = await query('histogram_quantile(0.5, parrot_chat_request_duration_seconds_bucket{cache="hit"})');
    assert.equal(q.length, 1);
    assert.ok(Number(q[0].value[1]) > 0, `p50 ${q[0].value[1]}`);
  } finally {
    prom.kill('SIGTERM');
    await new Promise((resolve) => (prom.exitCode !== null ? resolve() : prom.on('exit', resolve)));
    children.delete(prom);
  }
});
