// The upstream pool: weighted providers, failover, SDK-style retries with
// Retry-After, x-should-retry, mid-stream failures, circuit breakers and the
// first-byte timeout. Driven with curl and the official openai SDK.
//
// The shared fake (startFake) plays a healthy provider. Behaviour the fake
// cannot script per provider (always 500, 429 then 200, silence, a stream cut
// after a few events) comes from small node:http providers defined below,
// each recording every call it receives.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import OpenAI, {
  APIError, APIConnectionError, RateLimitError, InternalServerError, BadRequestError,
  AuthenticationError, PermissionDeniedError, NotFoundError, UnprocessableEntityError,
} from 'openai';
import {
  startFake, startParrot, cleanup, curl, request, chatBody, waitFor, within, metrics, closedPort,
  sseData, joinDeltas, errorShape,
} from './helpers.mjs';

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------- local providers

const providers = new Set();
after(async () => {
  for (const p of [...providers]) await p.close();
  await cleanup();
});

/**
 * A small provider on 127.0.0.1. `behave(call, req, res)` answers each call;
 * call = {n (1-based), t (performance.now() when the request body was read),
 * method, path, headers, body (string), json (parsed body or null)}.
 * Returns {port, url (with /v1), name ("127.0.0.1:PORT"), calls, chats(),
 * setBehaviour(fn), close()}. Closed by the file's after() hook, or earlier.
 */
async function provider(label, behave) {
  const calls = [];
  const sockets = new Set();
  let current = behave;
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8');
      let json = null;
      try { json = JSON.parse(body); } catch { /* not JSON */ }
      const call = {
        n: calls.length + 1,
        t: performance.now(),
        method: req.method,
        path: new URL(req.url, 'http://provider.invalid').pathname,
        headers: { ...req.headers },
        body,
        json,
      };
      calls.push(call);
      try {
        current(call, req, res, label);
      } catch (err) {
        res.destroy(err);
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  let closing = null;
  const p = {
    label,
    port,
    url: `http://127.0.0.1:${port}/v1`,
    name: `127.0.0.1:${port}`,
    calls,
    chats: () => calls.filter((c) => c.path === '/v1/chat/completions').length,
    setBehaviour(fn) { current = fn; },
    close() {
      if (!closing) {
        closing = new Promise((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        providers.delete(p);
      }
      return closing;
    },
  };
  providers.add(p);
  return p;
}

const lastUser = (json) => {
  const m = Array.isArray(json?.messages) ? json.messages : [];
  for (let i = m.length - 1; i >= 0; i--) if (m[i]?.role === 'user') return String(m[i].content);
  return '';
};

function chunk(label, n, delta, finish = null) {
  return `data: ${JSON.stringify({
    id: `chatcmpl-${label}-${n}`,
    object: 'chat.completion.chunk',
    created: 1700000000,
    model: 'gpt-fake',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;
}

/** A healthy provider: chat (JSON or SSE) answers "<label>: <last user text>", GET /models lists one model. */
function healthy(call, req, res, label) {
  if (call.path === '/v1/models') {
    const text = JSON.stringify({ object: 'list', data: [{ id: 'gpt-fake', object: 'model', created: 0, owned_by: label }] });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  const content = `${label}: ${lastUser(call.json)}`;
  if (call.json?.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(chunk(label, call.n, { role: 'assistant', content: '' }));
    res.write(chunk(label, call.n, { content }));
    res.write(chunk(label, call.n, {}, 'stop'));
    res.end('data: [DONE]\n\n');
    return;
  }
  const text = JSON.stringify({
    id: `chatcmpl-${label}-${call.n}`,
    object: 'chat.completion',
    created: 1700000000,
    model: 'gpt-fake',
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
    system_fingerprint: null,
  });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The exact error body a scripted provider sends for `status` on call n. */
const errorText = (label, status, n) => JSON.stringify({
  error: { message: `${label} refuses call ${n} with ${status}`, type: 'provider_error', param: null, code: `${label}_${status}` },
});

/** A behaviour answering `status` with errorText() and the raw header pairs in `extra` (order kept). */
const failing = (status, extra = []) => (call, req, res, label) => {
  const text = errorText(label, status, call.n);
  res.writeHead(status, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(text)), ...extra]);
  res.end(text);
};

/** Accepts and reads the request, then never answers (the socket is destroyed at close()). */
const silent = () => {};

// ---------------------------------------------------------------- client helpers

/** POST /v1/chat/completions with curl (-N), bypassing the cache lookup. */
function curlChat(parrot, text, { stream = false, headers = {}, timeoutMs = 20_000 } = {}) {
  const args = ['-N', '-H', 'content-type: application/json', '-H', 'cache-control: no-cache'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push('--data-binary', '@-', `${parrot.base}/v1/chat/completions`);
  return curl(args, { input: chatBody(text, stream ? { stream: true } : {}), timeoutMs });
}

/** The official SDK pointed at parrot. maxRetries is the SDK default (2) unless given. */
function sdk(parrot, opts = {}) {
  return new OpenAI({
    baseURL: `${parrot.base}/v1`,
    apiKey: 'sk-test',
    timeout: 20_000,
    defaultHeaders: { 'cache-control': 'no-cache' },
    ...opts,
  });
}

const msgs = (text) => [{ role: 'user', content: text }];

/** Collect an SDK stream: {chunks, text, error}. Never hangs longer than ms. */
async function drain(stream, ms = 15_000) {
  const out = { chunks: [], text: '', error: null };
  await within((async () => {
    try {
      for await (const ch of stream) {
        out.chunks.push(ch);
        out.text += ch.choices?.[0]?.delta?.content ?? '';
      }
    } catch (e) {
      out.error = e;
    }
  })(), ms, 'SDK stream to end');
  return out;
}

/** Expect `promise` to reject; resolves the error. */
async function rejection(promise, what) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail(`${what}: expected an error, the call succeeded`);
}

/** One provider metric from parrot's /metrics (undefined when absent). */
async function providerMetric(parrot, family, name) {
  const m = await metrics(parrot.base);
  return m[`${family}{provider="http://${name}/v1"}`]; // labels are scheme://host:port/path
}

async function providerMetrics(parrot, name) {
  const m = await metrics(parrot.base);
  const get = (f) => m[`parrot_upstream_${f}{provider="http://${name}/v1"}`];
  return {
    attempts: get('attempts_total'),
    failures: get('failures_total'),
    retries: get('retries_total'),
    failovers: get('failovers_total'),
    breaker: get('breaker_state'),
  };
}

/** `n` GET /v1/models through parrot, `concurrency` at a time over keep-alive; resolves the statuses. */
async function manyModels(parrot, n, concurrency = 8) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = [];
  let next = 0;
  try {
    await within(Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next += 1;
        const r = await request(parrot.base, { path: '/v1/models', agent, timeoutMs: 10_000 });
        statuses.push(r.status);
      }
    })), 30_000, `${n} GET /v1/models`);
  } finally {
    agent.destroy();
  }
  return statuses;
}

// ---------------------------------------------------------------- 1. weights

async function checkWeights(parrot, a, b) {
  const statuses = await manyModels(parrot, 400);
  assert.equal(statuses.length, 400);
  assert.ok(statuses.every((s) => s === 200), `non-200 answers: ${statuses.filter((s) => s !== 200).join(',')}`);
  const na = a.stats().paths['/v1/models'] || 0;
  const nb = b.stats().paths['/v1/models'] || 0;
  console.log(`# weights 3:1 over 400 requests: A ${na}, B ${nb}`);
  assert.equal(na + nb, 400, 'each request reached exactly one provider');
  assert.ok(Math.abs(na - 300) <= 30, `weight 3 provider got ${na} of 400 (expected 300 +- 30)`);
  assert.ok(Math.abs(nb - 100) <= 30, `weight 1 provider got ${nb} of 400 (expected 100 +- 30)`);
  // parrot's own per-provider counters agree with what the providers saw.
  assert.equal(await providerMetric(parrot, 'parrot_upstream_attempts_total', `127.0.0.1:${a.port}`), na);
  assert.equal(await providerMetric(parrot, 'parrot_upstream_attempts_total', `127.0.0.1:${b.port}`), nb);
}

test('weights: repeated --upstream URL;weight=N split traffic 3:1', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await startFake();
  const b = await startFake();
  const parrot = await startParrot({ args: ['--upstream', `${a.url};weight=3`, '--upstream', `${b.url};weight=1`] });
  await checkWeights(parrot, a, b);
});

test('weights: PARROT_UPSTREAM="urlA;weight=3,urlB;weight=1" split traffic 3:1', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await startFake();
  const b = await startFake();
  const parrot = await startParrot({ env: { PARROT_UPSTREAM: `${a.url};weight=3,${b.url};weight=1` } });
  await checkWeights(parrot, a, b);
});

// ---------------------------------------------------------------- 2. failover

test('failover: a provider answering 500 is skipped for the next one (curl and SDK, JSON and stream)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await provider('A', failing(500));
  const b = await startFake();
  // A's weight makes it the first choice of nearly every request; a high
  // breaker threshold keeps it in rotation so that every request fails over.
  const parrot = await startParrot({
    args: ['--upstream', `${a.url};weight=9`, '--upstream', b.url, '--breaker-failures', '1000'],
  });

  const r1 = await curlChat(parrot, 'failover curl json');
  assert.equal(r1.status, 200, r1.body);
  assert.equal(JSON.parse(r1.body).choices[0].message.content, 'echo: failover curl json');
  assert.equal(r1.headers['x-should-retry'], undefined);

  const r2 = await curlChat(parrot, 'failover curl stream', { stream: true });
  assert.equal(r2.status, 200, r2.body);
  assert.match(r2.headers['content-type'], /^text\/event-stream/);
  assert.equal(joinDeltas(r2.body), 'echo: failover curl stream');
  assert.ok(r2.body.endsWith('data: [DONE]\n\n'), r2.body.slice(-200));
  assert.ok(!r2.body.includes('"error"'), `stream carries an error: ${r2.body}`);

  // maxRetries 0: the success is parrot's failover, not an SDK retry.
  const c = sdk(parrot, { maxRetries: 0 });
  const r3 = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('failover sdk json') });
  assert.equal(r3.choices[0].message.content, 'echo: failover sdk json');
  const s4 = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('failover sdk stream'), stream: true });
  const o4 = await drain(s4);
  assert.equal(o4.error, null, `SDK stream failed: ${o4.error}`);
  assert.equal(o4.text, 'echo: failover sdk stream');

  assert.equal(b.stats().chat, 4, 'B answered all four requests');
  assert.ok(a.chats() >= 1, 'A (weight 9) was tried first at least once');
  const ma = await providerMetrics(parrot, a.name);
  const mb = await providerMetrics(parrot, `127.0.0.1:${b.port}`);
  assert.equal(ma.attempts, a.chats());
  assert.equal(ma.failures, a.chats(), 'every call to A counted as a failure');
  assert.equal(mb.failures, 0);
  assert.ok(mb.failovers > 0, `parrot_upstream_failovers_total for B is ${mb.failovers}`);
  assert.equal(mb.failovers, a.chats(), 'each failed call to A moved its request to B');
  assert.equal(ma.breaker, 0);
});

test('failover: a provider refusing connections is skipped (curl JSON, SDK stream)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const deadPort = await closedPort();
  const dead = `127.0.0.1:${deadPort}`;
  const b = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', `http://${dead}/v1;weight=9`, '--upstream', b.url, '--breaker-failures', '1000'],
  });
  const r1 = await curlChat(parrot, 'refused curl json');
  assert.equal(r1.status, 200, r1.body);
  assert.equal(JSON.parse(r1.body).choices[0].message.content, 'echo: refused curl json');

  const c = sdk(parrot, { maxRetries: 0 });
  const s = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('refused sdk stream'), stream: true });
  const o = await drain(s);
  assert.equal(o.error, null, `SDK stream failed: ${o.error}`);
  assert.equal(o.text, 'echo: refused sdk stream');

  assert.equal(b.stats().chat, 2);
  const md = await providerMetrics(parrot, dead);
  const mb = await providerMetrics(parrot, `127.0.0.1:${b.port}`);
  assert.ok(md.failures >= 1, `failures on the refusing provider: ${md.failures}`);
  assert.equal(md.failures, md.attempts);
  assert.ok(mb.failovers > 0, `parrot_upstream_failovers_total for B is ${mb.failovers}`);
  assert.equal(mb.failovers, md.attempts);
});

// ---------------------------------------------------------------- 3. Retry-After

/** First call answers 429 with `headers`, every later one is healthy. */
const rateLimitedOnce = (headers) => (call, req, res, label) => {
  if (call.n === 1) failing(429, headers)(call, req, res, label);
  else healthy(call, req, res, label);
};

test('429 with Retry-After: 1 is retried after the wait and the client gets 200', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', rateLimitedOnce(['retry-after', '1']));
  const parrot = await startParrot({ args: ['--upstream', p.url] });
  const r = await curlChat(parrot, 'rate limited once');
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).choices[0].message.content, 'P: rate limited once');
  assert.equal(p.calls.length, 2);
  const gap = p.calls[1].t - p.calls[0].t;
  console.log(`# Retry-After: 1 -> second call ${Math.round(gap)} ms after the first`);
  assert.ok(gap >= 900, `the retry came ${Math.round(gap)} ms after the 429, before Retry-After: 1 elapsed`);
});

test('429 with retry-after-ms: 200 is retried after the wait and the client gets 200', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', rateLimitedOnce(['retry-after-ms', '200']));
  const parrot = await startParrot({ args: ['--upstream', p.url] });
  const r = await curlChat(parrot, 'rate limited in ms');
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).choices[0].message.content, 'P: rate limited in ms');
  assert.equal(p.calls.length, 2);
  const gap = p.calls[1].t - p.calls[0].t;
  console.log(`# retry-after-ms: 200 -> second call ${Math.round(gap)} ms after the first`);
  assert.ok(gap >= 180, `the retry came ${Math.round(gap)} ms after the 429, before retry-after-ms: 200 elapsed`);
});

test('retry-after-ms wins over Retry-After, as in the SDKs', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Retry-After: 0 comes first on the wire; the SDKs still wait retry-after-ms.
  const p = await provider('P', rateLimitedOnce(['retry-after', '0', 'retry-after-ms', '1500']));
  const parrot = await startParrot({ args: ['--upstream', p.url] });
  const r = await curlChat(parrot, 'rate limited with both headers');
  assert.equal(r.status, 200, r.body);
  assert.equal(p.calls.length, 2);
  const gap = p.calls[1].t - p.calls[0].t;
  console.log(`# retry-after: 0 + retry-after-ms: 1500 -> second call ${Math.round(gap)} ms after the first`);
  assert.ok(gap >= 1400, `the retry came ${Math.round(gap)} ms after the 429: retry-after-ms: 1500 was not honoured`);
});

test('Retry-After beyond --retry-max-delay: the 429 is relayed at once with x-should-retry: false; the SDK raises RateLimitError without retrying', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', failing(429, ['retry-after', '120']));
  const parrot = await startParrot({ args: ['--upstream', p.url, '--retry-max-delay', '5s'] });
  const r = await curlChat(parrot, 'rate limited for two minutes');
  assert.equal(p.calls.length, 1, 'parrot must not retry a 429 it would have to wait 120 s for');
  assert.equal(r.status, 429, r.body);
  assert.equal(r.body, errorText('P', 429, 1), 'the provider\'s body is relayed unchanged');
  assert.equal(r.headers['retry-after'], '120');
  assert.equal(r.headers['x-should-retry'], 'false', `headers: ${JSON.stringify(r.headers)}`);

  const c = sdk(parrot); // maxRetries 2 by default
  const e = await rejection(c.chat.completions.create({ model: 'gpt-fake', messages: msgs('sdk rate limited') }), 'SDK 429');
  assert.ok(e instanceof RateLimitError, `expected RateLimitError, got ${e?.constructor?.name}: ${e?.message}`);
  assert.equal(e.status, 429);
  assert.equal(e.code, 'P_429');
  assert.equal(p.calls.length, 2, `the SDK retried a 429 that parrot marked final: ${p.calls.length - 1} provider calls for one SDK call`);
});

// ---------------------------------------------------------------- 4. non-retryable

test('non-retryable 400, 401, 403, 404, 422 are relayed at once, unchanged (curl and SDK classes)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', (call, req, res, label) => failing(Number(call.headers['x-want-status']))(call, req, res, label));
  const parrot = await startParrot({ args: ['--upstream', p.url] });
  const classes = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError, 422: UnprocessableEntityError,
  };
  const c = sdk(parrot); // default maxRetries: these statuses are not retried by the SDK either
  for (const status of [400, 401, 403, 404, 422]) {
    const before = p.calls.length;
    const r = await curlChat(parrot, `non retryable ${status}`, { headers: { 'x-want-status': String(status) } });
    assert.equal(r.status, status, r.body);
    assert.equal(p.calls.length, before + 1, `${status}: exactly one upstream call`);
    assert.equal(r.body, errorText('P', status, before + 1), `${status}: body unchanged`);
    assert.equal(r.headers['x-should-retry'], undefined, `${status}: no x-should-retry`);

    const e = await rejection(c.chat.completions.create(
      { model: 'gpt-fake', messages: msgs(`sdk non retryable ${status}`) },
      { headers: { 'x-want-status': String(status) } },
    ), `SDK ${status}`);
    assert.ok(e instanceof classes[status], `${status}: expected ${classes[status].name}, got ${e?.constructor?.name}`);
    assert.equal(e.status, status);
    assert.equal(e.code, `P_${status}`);
    assert.equal(p.calls.length, before + 2, `${status}: one upstream call for the SDK request`);
  }
  const m = await providerMetrics(parrot, p.name);
  assert.equal(m.retries, 0);
  assert.equal(m.failures, 0, 'client errors are not provider failures');
});

// ---------------------------------------------------------------- 5. exhausted

test('retries exhausted: 503 x3 with --retries 2 is relayed with x-should-retry: false; the SDK does not retry it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', failing(503));
  const parrot = await startParrot({ args: ['--upstream', p.url, '--retries', '2', '--breaker-failures', '100'] });
  const r = await curlChat(parrot, 'always unavailable');
  assert.equal(p.calls.length, 3, 'one call and two retries');
  assert.equal(r.status, 503, r.body);
  assert.equal(r.body, errorText('P', 503, 3), 'the last attempt\'s body is relayed');
  assert.equal(r.headers['x-should-retry'], 'false');

  const c = sdk(parrot); // maxRetries 2 by default
  const e = await rejection(c.chat.completions.create({ model: 'gpt-fake', messages: msgs('sdk always unavailable') }), 'SDK 503');
  assert.ok(e instanceof InternalServerError, `expected InternalServerError, got ${e?.constructor?.name}: ${e?.message}`);
  assert.equal(e.status, 503);
  assert.equal(e.code, 'P_503');
  assert.equal(p.calls.length, 6, `the SDK multiplied parrot's retries: ${p.calls.length - 3} provider calls for one SDK call`);
  const m = await providerMetrics(parrot, p.name);
  assert.equal(m.attempts, 6);
  assert.equal(m.retries, 4);
});

test('/metrics: a relayed final 503 or 429 counts in parrot_upstream_failures_total', { timeout: TEST_TIMEOUT_MS }, async () => {
  // parrot_upstream_failures_total: "attempts that failed: connection error,
  // timeout, 408, 409, 429 or 5xx" - also the last one, which is relayed.
  const p = await provider('P', (call, req, res, label) => failing(Number(call.headers['x-want-status']))(call, req, res, label));
  const parrot = await startParrot({ args: ['--upstream', p.url, '--retries', '0', '--breaker-failures', '100'] });
  for (const status of [503, 429]) {
    const r = await curlChat(parrot, `relayed ${status}`, { headers: { 'x-want-status': String(status) } });
    assert.equal(r.status, status, r.body);
  }
  const m = await providerMetrics(parrot, p.name);
  assert.equal(m.attempts, 2);
  assert.equal(m.failures, 2, `2 failed attempts (503, 429), parrot_upstream_failures_total says ${m.failures}`);
});

test('--retries 0: one call, the 503 is relayed without x-should-retry', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', failing(503));
  const parrot = await startParrot({ args: ['--upstream', p.url, '--retries', '0'] });
  const r = await curlChat(parrot, 'unavailable, no retries');
  assert.equal(p.calls.length, 1);
  assert.equal(r.status, 503, r.body);
  assert.equal(r.body, errorText('P', 503, 1));
  assert.equal(r.headers['x-should-retry'], undefined, 'parrot did not retry, so the SDK may');
});

// ---------------------------------------------------------------- 6. mid-stream

/** Sends the role chunk and two content chunks, then destroys the socket. */
function cutStream(call, req, res, label) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const events = [
    chunk(label, call.n, { role: 'assistant', content: '' }),
    chunk(label, call.n, { content: 'partial' }),
    chunk(label, call.n, { content: ' answer' }),
  ];
  call.sent = events.join('');
  res.write(call.sent, () => setTimeout(() => res.socket?.destroy(), 50));
}

test('mid-stream failure: the events, then an SSE error event, the end; no failover after the first byte', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await provider('A', cutStream);
  const b = await startFake();
  const parrot = await startParrot({ args: ['--upstream', `${a.url};weight=9`, '--upstream', b.url] });

  const r = await curlChat(parrot, 'cut stream curl', { stream: true, timeoutMs: 15_000 });
  assert.equal(r.status, 200);
  assert.equal(a.calls.length, 1);
  const sent = a.calls[0].sent;
  assert.equal(r.body.slice(0, sent.length), sent, 'the events sent before the cut arrive unchanged');
  const rest = sseData(r.body.slice(sent.length));
  assert.equal(rest.length, 1, `expected one trailing error event, got ${JSON.stringify(r.body.slice(sent.length))}`);
  const err = errorShape(assert, rest[0]);
  assert.equal(err.code, 'upstream_stream_error');
  assert.ok(!r.body.includes('[DONE]'));
  assert.equal(r.code, 0, `curl: the stream must end cleanly, got exit ${r.code} ${r.stderr}`);

  const c = sdk(parrot);
  const s = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('cut stream sdk'), stream: true });
  const o = await drain(s);
  assert.equal(o.chunks.length, 3, 'the three events before the cut');
  assert.equal(o.text, 'partial answer');
  assert.ok(o.error, 'the SDK stream must report the failure');
  assert.ok(o.error instanceof APIError, `expected APIError, got ${o.error?.constructor?.name}: ${o.error?.message}`);
  assert.ok(!(o.error instanceof APIConnectionError), 'the failure is reported in-band, not as a connection error');
  assert.equal(o.error.code, 'upstream_stream_error');

  assert.equal(a.calls.length, 2, 'no retry of a started stream');
  assert.equal(b.stats().total, 0, 'no failover after the first byte');
  const mb = await providerMetrics(parrot, `127.0.0.1:${b.port}`);
  assert.equal(mb.failovers, 0);
  assert.equal(mb.attempts, 0);
});

// ---------------------------------------------------------------- 7. breakers

test('breaker: 3 failures open it, the provider is skipped, a probe after the cooldown closes it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await provider('A', failing(500));
  const b = await provider('B', healthy);
  const parrot = await startParrot({
    args: ['--upstream', a.url, '--upstream', b.url, '--breaker-failures', '3', '--breaker-cooldown', '1s'],
  });
  const models = async () => {
    const r = await request(parrot.base, { path: '/v1/models', timeoutMs: 10_000 });
    assert.equal(r.status, 200, r.body);
    return r;
  };

  // Equal weights: about every other request tries A first and fails over.
  for (let i = 0; i < 12 && a.calls.length < 3; i++) await models();
  assert.equal(a.calls.length, 3, 'A was tried three times');
  let ma = await providerMetrics(parrot, a.name);
  assert.equal(ma.failures, 3);
  assert.equal(ma.breaker, 2, 'three consecutive failures open A\'s breaker');

  // While it is open, A gets nothing.
  await Promise.all([models(), models(), models(), models()]);
  assert.equal(a.calls.length, 3, 'an open breaker keeps A out');
  const bBefore = b.calls.length;

  // A recovers; after the cooldown one probe reaches it and closes the breaker.
  a.setBehaviour(healthy);
  await waitFor(async () => { await models(); return a.calls.length >= 4; },
    { timeoutMs: 6_000, intervalMs: 100, what: 'a probe to reach A after the 1 s cooldown' });
  assert.equal(a.calls.length, 4, 'exactly one probe');
  ma = await providerMetrics(parrot, a.name);
  assert.equal(ma.breaker, 0, 'a successful probe closes the breaker');
  assert.ok(b.calls.length > bBefore, 'B served while A was out');

  // A takes its share again.
  const a0 = a.calls.length;
  const b0 = b.calls.length;
  for (let i = 0; i < 20; i++) await models();
  const na = a.calls.length - a0;
  const nb = b.calls.length - b0;
  assert.equal(na + nb, 20);
  assert.ok(na >= 8 && na <= 12, `A took ${na} of 20 requests after recovering (equal weights)`);
});

test('breaker: /readyz stays 200 while the only provider\'s breaker is open; /readyz?upstream=1 is 503 until it closes', { timeout: TEST_TIMEOUT_MS }, async () => {
  const p = await provider('P', failing(500));
  const parrot = await startParrot({
    args: ['--upstream', p.url, '--retries', '0', '--breaker-failures', '3', '--breaker-cooldown', '1s'],
  });
  const readyz = (path) => request(parrot.base, { path });
  for (const path of ['/readyz', '/readyz?upstream=1']) {
    const r0 = await readyz(path);
    assert.equal(r0.status, 200, `${path}: ${r0.body}`);
    assert.equal(JSON.parse(r0.body).status, 'ready', path);
  }
  for (let i = 0; i < 3; i++) {
    const r = await curlChat(parrot, `breaker readiness ${i}`);
    assert.equal(r.status, 500, r.body);
  }
  assert.equal(await providerMetric(parrot, 'parrot_upstream_breaker_state', p.name), 2);
  // Still ready to serve (hits work; misses get a clear error), so an
  // orchestrator does not take the pod out for the provider's outage ...
  const ready1 = await readyz('/readyz');
  assert.equal(ready1.status, 200, `readyz with the only breaker open: ${ready1.body}`);
  assert.equal(JSON.parse(ready1.body).status, 'ready');
  // ... while the upstream check says no provider is available.
  const up1 = await readyz('/readyz?upstream=1');
  assert.equal(up1.status, 503, `readyz?upstream=1 with the only breaker open: ${up1.body}`);
  assert.equal(JSON.parse(up1.body).status, 'no_upstream', up1.body);

  p.setBehaviour(healthy);
  await waitFor(async () => (await readyz('/readyz?upstream=1')).status === 200,
    { timeoutMs: 6_000, intervalMs: 100, what: '/readyz?upstream=1 to answer 200 after the cooldown' });
  const r = await curlChat(parrot, 'breaker readiness probe');
  assert.equal(r.status, 200, r.body);
  assert.equal(await providerMetric(parrot, 'parrot_upstream_breaker_state', p.name), 0);
  for (const path of ['/readyz', '/readyz?upstream=1']) {
    const r2 = await readyz(path);
    assert.equal(r2.status, 200, `${path}: ${r2.body}`);
    assert.equal(JSON.parse(r2.body).status, 'ready', path);
  }
});

// ---------------------------------------------------------------- 8. SDK error classes

test('SDK: parrot\'s own 502 and 504 are APIError with a status, never APIConnectionError', { timeout: TEST_TIMEOUT_MS }, async () => {
  // A refused connection, retried once by parrot: 502 upstream_unreachable.
  const dead = `127.0.0.1:${await closedPort()}`;
  const p1 = await startParrot({ args: ['--upstream', `http://${dead}/v1`, '--retries', '1'] });
  const e1 = await rejection(sdk(p1).chat.completions.create({ model: 'gpt-fake', messages: msgs('nobody home') }), 'SDK 502');
  assert.ok(!(e1 instanceof APIConnectionError), `a 502 from parrot surfaced as ${e1?.constructor?.name}: ${e1?.message}`);
  assert.ok(e1 instanceof APIError && e1 instanceof InternalServerError, `got ${e1?.constructor?.name}`);
  assert.equal(e1.status, 502);
  assert.equal(e1.code, 'upstream_unreachable');
  assert.equal(e1.headers.get('x-should-retry'), 'false');
  assert.equal((await providerMetrics(p1, dead)).attempts, 2, 'parrot tried twice and the SDK did not retry');

  // A provider that never answers, with --first-byte-timeout: 504 upstream_timeout.
  const s = await provider('S', silent);
  const p2 = await startParrot({ args: ['--upstream', s.url, '--retries', '1', '--first-byte-timeout', '500ms'] });
  const e2 = await rejection(sdk(p2).chat.completions.create({ model: 'gpt-fake', messages: msgs('silence') }), 'SDK 504');
  assert.ok(!(e2 instanceof APIConnectionError), `a 504 from parrot surfaced as ${e2?.constructor?.name}: ${e2?.message}`);
  assert.ok(e2 instanceof InternalServerError, `got ${e2?.constructor?.name}`);
  assert.equal(e2.status, 504);
  assert.equal(e2.code, 'upstream_timeout');
  assert.equal(s.calls.length, 2, 'parrot tried twice and the SDK did not retry');
});

// ---------------------------------------------------------------- 9. first-byte timeout

test('--first-byte-timeout: a provider that never sends headers is abandoned for the next one', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await provider('A', silent);
  const b = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', `${a.url};weight=9`, '--upstream', b.url, '--first-byte-timeout', '500ms'],
  });
  const r = await curlChat(parrot, 'silent first provider');
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).choices[0].message.content, 'echo: silent first provider');

  const o = await drain(await sdk(parrot, { maxRetries: 0 }).chat.completions.create(
    { model: 'gpt-fake', messages: msgs('silent first provider, streamed'), stream: true },
  ));
  assert.equal(o.error, null, `SDK stream failed: ${o.error}`);
  assert.equal(o.text, 'echo: silent first provider, streamed');

  assert.equal(b.stats().chat, 2);
  assert.ok(a.calls.length >= 1, 'A (weight 9) was tried first');
  const ma = await providerMetrics(parrot, a.name);
  const mb = await providerMetrics(parrot, `127.0.0.1:${b.port}`);
  assert.equal(ma.failures, a.calls.length, 'each silent attempt counted as a failure');
  assert.equal(mb.failovers, a.calls.length);
});
