// Server-Timing on every response parrot makes, and the
// parrot_overhead_seconds histogram (docs/metrics.md). Durations are checked
// against lower bounds only (a provider the fake holds for a known delay):
// these machines are too noisy for upper ones.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startPair, cleanup, curl, curlChat, metrics, waitFor, waitForLog } from './helpers.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 60_000;
const KEY = { authorization: 'Bearer sk-timing' };
const HOLD_MS = 150; // the fake waits this long before a scripted answer's headers
const ask = (text, extra = {}) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }], ...extra });

/**
 * The one Server-Timing header of a curl response, parsed into
 * {metric: {dur, desc}}. Fails unless there is exactly one header, in the
 * shape parrot writes: parrot first, then upstream and cache when present.
 */
function timing(r, what) {
  const values = r.headerList.filter(([k]) => k === 'server-timing').map(([, v]) => v);
  assert.equal(values.length, 1, `${what}: one Server-Timing header, got ${JSON.stringify(values)}`);
  return parseTiming(values[0], what);
}

function parseTiming(value, what) {
  assert.match(value, /^parrot;dur=\d+\.\d{3}(, upstream;dur=\d+\.\d{3})?(, cache;desc=(hit|miss|bypass))?$/,
    `${what}: Server-Timing ${value}`);
  const out = {};
  for (const m of value.split(', ')) {
    const [name, ...params] = m.split(';');
    out[name] = Object.fromEntries(params.map((p) => p.split('=')));
    if (out[name].dur !== undefined) {
      out[name].dur = Number(out[name].dur);
      assert.ok(Number.isFinite(out[name].dur) && out[name].dur >= 0, `${what}: ${m}`);
    }
  }
  return out;
}

/** The Server-Timing a request with only parrot's own time must carry. */
function assertOwnOnly(r, what) {
  const t = timing(r, what);
  assert.deepEqual(Object.keys(t), ['parrot'], `${what}: no provider, no cache`);
}

const get = (base, p, headers = {}) =>
  curl([...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), `${base}${p}`]);

const embed = (base, input) =>
  curl(['-H', 'content-type: application/json', '-H', `authorization: ${KEY.authorization}`,
    '--data-binary', JSON.stringify({ model: 'text-embedding-fake', input }), `${base}/v1/embeddings`]);

test('every kind of response carries one Server-Timing; the overhead is counted per route and outcome', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const q = 'What is the capital of France?';

  const miss = await curlChat(parrot.base, ask(q), { ...KEY, 'x-fake-delay-ms': String(HOLD_MS) });
  assert.equal(miss.status, 200);
  assert.equal(miss.headers['x-parrot-cache'], 'miss');
  let t = timing(miss, 'miss');
  assert.deepEqual(Object.keys(t), ['parrot', 'upstream', 'cache']);
  assert.ok(t.upstream.dur >= HOLD_MS, `the provider was held ${HOLD_MS} ms: ${t.upstream.dur}`);
  assert.equal(t.cache.desc, 'miss');

  const hit = await curlChat(parrot.base, ask(q), KEY);
  assert.equal(hit.headers['cache-status'], 'parrot; hit; detail=exact');
  t = timing(hit, 'exact hit');
  assert.deepEqual(Object.keys(t), ['parrot', 'cache'], 'a hit never went to the provider');
  assert.equal(t.cache.desc, 'hit');

  const byp = await curlChat(parrot.base, ask(q), { ...KEY, 'cache-control': 'no-cache', 'x-fake-delay-ms': String(HOLD_MS) });
  assert.equal(byp.headers['x-parrot-cache'], 'bypass');
  t = timing(byp, 'bypass');
  assert.ok(t.upstream.dur >= HOLD_MS, `bypass: ${t.upstream.dur}`);
  assert.equal(t.cache.desc, 'bypass');

  // Passed through: the provider's time, and no cache metric.
  const models = await get(parrot.base, '/v1/models', { ...KEY, 'x-fake-delay-ms': String(HOLD_MS) });
  assert.equal(models.status, 200);
  t = timing(models, 'pass-through');
  assert.deepEqual(Object.keys(t), ['parrot', 'upstream']);
  assert.ok(t.upstream.dur >= HOLD_MS, `pass-through: ${t.upstream.dur}`);

  // Embeddings are cached input by input: a miss, then a hit.
  const e1 = await embed(parrot.base, 'timing input');
  assert.equal(e1.status, 200);
  assert.equal(timing(e1, 'embeddings miss').cache.desc, 'miss');
  const e2 = await embed(parrot.base, 'timing input');
  assert.equal(e2.headers['x-parrot-cache'], 'hit');
  t = timing(e2, 'embeddings hit');
  assert.deepEqual(Object.keys(t), ['parrot', 'cache']);
  assert.equal(t.cache.desc, 'hit');

  // Answers parrot makes itself: an error, a 404, the operational routes.
  const bad = await curlChat(parrot.base, '{"model": "gpt-fake", "messages": ', KEY);
  assert.equal(bad.status, 400);
  assertOwnOnly(bad, '400');
  const nowhere = await get(parrot.base, '/nowhere');
  assert.equal(nowhere.status, 404);
  assertOwnOnly(nowhere, '404');
  for (const p of ['/healthz', '/readyz', '/metrics']) {
    const r = await get(parrot.base, p);
    assert.equal(r.status, 200, p);
    assertOwnOnly(r, p);
  }
  assert.equal(fake.stats().chat, 2, 'the miss and the bypass reached the provider');

  // Requests are counted once libmicrohttpd reports them complete, just
  // after their answer: wait for the 11 so far (the scrape above included).
  await waitFor(() => parrot.logs().filter((l) => l.msg === 'request').length >= 11, { what: '11 request log lines' });
  const m = await metrics(parrot.base);
  const count = (route, cache) => m[`parrot_overhead_seconds_count{route="${route}",cache="${cache}"}`];
  assert.equal(count('chat', 'miss'), 1);
  assert.equal(count('chat', 'hit'), 1);
  assert.equal(count('chat', 'bypass'), 1);
  assert.equal(count('chat', 'none'), 1, 'the 400: refused before any lookup');
  assert.equal(count('v1', 'none'), 1, '/v1/models');
  assert.equal(count('v1', 'miss'), 1, 'embeddings miss');
  assert.equal(count('v1', 'hit'), 1, 'embeddings hit');
  assert.equal(count('other', 'none'), 1);
  assert.equal(count('health', 'none'), 2);
  assert.equal(count('metrics', 'none'), 1);
  // One observation per request: each route's counts add up to its
  // parrot_http_requests_total.
  const byRoute = (re) => {
    const sums = {};
    for (const [k, v] of Object.entries(m)) {
      const g = re.exec(k);
      if (g) sums[g[1]] = (sums[g[1]] ?? 0) + v;
    }
    return sums;
  };
  assert.deepEqual(byRoute(/^parrot_overhead_seconds_count\{route="(\w+)"/),
    byRoute(/^parrot_http_requests_total\{route="(\w+)"/));
  for (const [k, v] of Object.entries(m)) {
    if (k.startsWith('parrot_overhead_seconds_sum')) assert.ok(v >= 0, `${k} = ${v}`);
  }
  // Buckets are cumulative and end at the count.
  assert.equal(m['parrot_overhead_seconds_bucket{route="chat",cache="miss",le="+Inf"}'], 1);
  assert.ok(m['parrot_overhead_seconds_bucket{route="chat",cache="miss",le="2.5e-05"}'] <= 1);
});

test('a streamed miss through the SDK: Server-Timing comes with the head, before the provider is done', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const client = new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-timing', maxRetries: 0, timeout: 30_000 });
  const CHUNKS = 5, GAP_MS = 100;
  const { data: stream, response } = await client.chat.completions
    .create(ask('Stream a few words to me', { stream: true }),
      { headers: { 'x-fake-delay-ms': String(HOLD_MS), 'x-fake-chunks': String(CHUNKS), 'x-fake-chunk-delay-ms': String(GAP_MS) } })
    .withResponse();
  const t = parseTiming(response.headers.get('server-timing'), 'streamed miss');
  assert.equal(t.cache.desc, 'miss');
  assert.ok(t.upstream.dur >= HOLD_MS, `the provider's head was held ${HOLD_MS} ms: ${t.upstream.dur}`);
  let words = '';
  for await (const chunk of stream) words += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(words.trim().split(/\s+/).length, CHUNKS);
  // The header's provider part ended at the head; the log line's runs to
  // the end of the answer, which the fake sent over (CHUNKS - 1) gaps later.
  const line = await waitForLog(parrot, (l) => l.id === response.headers.get('x-request-id'));
  assert.ok(line.upstream_ms >= HOLD_MS + (CHUNKS - 1) * GAP_MS, `upstream_ms ${line.upstream_ms}`);
  assert.ok(t.upstream.dur < line.upstream_ms, `header ${t.upstream.dur} ms, whole answer ${line.upstream_ms} ms`);

  // The SDK sees the hit's too: no provider part.
  const { response: hit } = await client.chat.completions
    .create(ask('Stream a few words to me')).withResponse();
  assert.equal(hit.headers.get('x-parrot-cache'), 'hit');
  assert.deepEqual(Object.keys(parseTiming(hit.headers.get('server-timing'), 'SDK hit')), ['parrot', 'cache']);
});
