// The official openai npm SDK talking to parrot.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, {
  APIError, BadRequestError, AuthenticationError, NotFoundError, RateLimitError, InternalServerError,
  PermissionDeniedError, UnprocessableEntityError,
} from 'openai';
import { startPair, startParrot, cleanup, closedPort } from './helpers.mjs';
import { fakeEmbedding, fakeUsage } from '../fake/upstream.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

function client(parrot, opts = {}) {
  return new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 30_000, ...opts });
}

const msgs = (text) => [{ role: 'system', content: 'be a parrot' }, { role: 'user', content: text }];

test('SDK: non-stream chat completion', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const r = await c.chat.completions.create({ model: 'gpt-fake-mini', messages: msgs('polly wants a cracker') });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'gpt-fake-mini');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'echo: polly wants a cracker');
  assert.equal(r.choices[0].finish_reason, 'stop');
  const body = { messages: msgs('polly wants a cracker') };
  assert.deepEqual(r.usage, fakeUsage(body, 'echo: polly wants a cracker'));
  const last = fake.stats().last;
  assert.equal(last.headers.authorization, 'Bearer sk-test');
  assert.equal(JSON.parse(last.body).model, 'gpt-fake-mini');
});

test('SDK: streamed chat completion with include_usage', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const stream = await c.chat.completions.create({
    model: 'gpt-fake',
    messages: msgs('one two three four'),
    stream: true,
    stream_options: { include_usage: true },
  }, { headers: { 'x-fake-chunk-delay-ms': '10' } });
  let text = '';
  let finish = null;
  let role = null;
  let usageChunk = null;
  let chunks = 0;
  for await (const ch of stream) {
    chunks += 1;
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) {
      assert.deepEqual(ch.choices, [], 'usage chunk has empty choices');
      usageChunk = ch;
      continue;
    }
    const ch0 = ch.choices[0];
    if (ch0.delta.role) role = ch0.delta.role;
    text += ch0.delta.content ?? '';
    if (ch0.finish_reason) finish = ch0.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, 'echo: one two three four');
  assert.equal(finish, 'stop');
  assert.ok(usageChunk, 'no usage chunk');
  assert.deepEqual(usageChunk.usage, fakeUsage({ messages: msgs('one two three four') }, text));
  // role + 5 words + finish + usage
  assert.equal(chunks, 8);
  assert.equal(fake.stats().completed, 1);
  assert.equal(JSON.parse(fake.stats().last.body).stream, true);
});

test('SDK: stream without include_usage has no usage chunk, x-fake-chunks honoured', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const c = client(parrot);
  const stream = await c.chat.completions.create(
    { model: 'gpt-fake', messages: msgs('ignored'), stream: true },
    { headers: { 'x-fake-chunks': '25' } },
  );
  const words = [];
  let sawUsage = false;
  for await (const ch of stream) {
    if (ch.usage) sawUsage = true;
    const d = ch.choices[0]?.delta?.content;
    if (d) words.push(d.trim());
  }
  assert.equal(sawUsage, false);
  assert.deepEqual(words, Array.from({ length: 25 }, (_, i) => `w${i + 1}`));
});

test('SDK: models.list and models.retrieve', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const page = await c.models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['gpt-fake', 'gpt-fake-mini', 'text-embedding-fake']);
  const ids = [];
  for await (const m of c.models.list()) ids.push(m.id);
  assert.equal(ids.length, 3);
  const one = await c.models.retrieve('gpt-fake');
  assert.equal(one.id, 'gpt-fake');
  assert.equal(one.owned_by, 'fake');
  assert.equal(fake.stats().last.url, '/v1/models/gpt-fake');
  await assert.rejects(c.models.retrieve('no-such-model'), (e) => e instanceof NotFoundError && e.code === 'model_not_found');
});

test('SDK: embeddings (default base64 and explicit float)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const inputs = ['the quick brown fox', 'jumps over', 'the lazy dog'];
  const r = await c.embeddings.create({ model: 'text-embedding-fake', input: inputs });
  assert.equal(JSON.parse(fake.stats().last.body).encoding_format, 'base64');
  assert.equal(r.data.length, 3);
  r.data.forEach((d, i) => {
    assert.equal(d.index, i);
    assert.equal(d.embedding.length, 8);
    assert.deepEqual(Array.from(d.embedding), fakeEmbedding(inputs[i]));
  });
  const f = await c.embeddings.create({ model: 'text-embedding-fake', input: 'single', encoding_format: 'float' });
  assert.equal(f.data.length, 1);
  assert.deepEqual(f.data[0].embedding, fakeEmbedding('single'));
  assert.equal(f.model, 'text-embedding-fake');
});

test('SDK: request ids via withResponse() and _request_id', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const mine = await c.chat.completions
    .create({ model: 'gpt-fake', messages: msgs('name three prime numbers') }, { headers: { 'x-request-id': 'sdk-req-42' } })
    .withResponse();
  assert.equal(mine.request_id, 'sdk-req-42');
  assert.equal(mine.data._request_id, 'sdk-req-42');
  assert.equal(mine.response.status, 200);
  const upstreamId = mine.data.id.replace('chatcmpl-fake-', 'upstream-');
  assert.equal(mine.response.headers.get('x-upstream-request-id'), upstreamId);

  const gen = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('translate good morning to german') }).withResponse();
  assert.ok(gen.request_id, 'parrot must generate an x-request-id');
  assert.notEqual(gen.request_id, 'sdk-req-42');
  assert.match(gen.response.headers.get('x-upstream-request-id') || '', /^upstream-\d+$/);
  assert.notEqual(gen.request_id, gen.response.headers.get('x-upstream-request-id'));
  assert.equal(gen.data._request_id, gen.request_id);

  const models = await c.models.list().withResponse();
  assert.ok(models.request_id);
  assert.equal(fake.stats().total, 3);
});

test('SDK: upstream errors map to the SDK error classes', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const c = client(parrot);
  const cases = [
    [400, BadRequestError],
    [401, AuthenticationError],
    [403, PermissionDeniedError],
    [404, NotFoundError],
    [422, UnprocessableEntityError],
    [429, RateLimitError],
    [500, InternalServerError],
    [503, InternalServerError],
  ];
  for (const [status, Cls] of cases) {
    for (const stream of [false, true]) {
      await assert.rejects(
        c.chat.completions.create(
          { model: 'gpt-fake', messages: msgs('err'), ...(stream ? { stream: true } : {}) },
          { headers: { 'x-fake-status': String(status), 'x-request-id': `err-${status}` } },
        ),
        (e) => {
          assert.ok(e instanceof Cls, `status ${status}: got ${e?.constructor?.name}: ${e?.message}`);
          assert.ok(e instanceof APIError);
          assert.equal(e.status, status);
          assert.equal(e.error?.message, `fake error ${status}`);
          assert.match(e.message, new RegExp(`fake error ${status}`));
          assert.equal(e.code, `fake_${status}`);
          assert.equal(e.type, 'fake_error');
          assert.equal(e.requestID, `err-${status}`);
          return true;
        },
      );
    }
  }
  await assert.rejects(c.models.list({ headers: { 'x-fake-status': '401' } }), AuthenticationError);
});

test('SDK: parrot-generated 502 when the upstream is unreachable', { timeout: TEST_TIMEOUT_MS }, async () => {
  const port = await closedPort();
  const parrot = await startParrot({ args: ['--upstream', `http://127.0.0.1:${port}/v1`] });
  const c = client(parrot);
  for (const stream of [false, true]) {
    await assert.rejects(
      c.chat.completions.create({ model: 'gpt-fake', messages: msgs('x'), ...(stream ? { stream: true } : {}) }),
      (e) => {
        assert.ok(e instanceof APIError, `got ${e?.constructor?.name}: ${e?.message}`);
        assert.equal(e.status, 502);
        assert.equal(e.code, 'upstream_unreachable');
        assert.equal(e.type, 'upstream_error');
        assert.ok(e.requestID, 'x-request-id on the 502');
        return true;
      },
    );
  }
});

test('SDK: parrot-generated 504 when the upstream is too slow', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair({ args: ['--upstream-timeout', '1s'] });
  const c = client(parrot);
  await assert.rejects(
    c.chat.completions.create({ model: 'gpt-fake', messages: msgs('slow') }, { headers: { 'x-fake-delay-ms': '3000' } }),
    (e) => {
      assert.ok(e instanceof APIError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 504);
      assert.equal(e.code, 'upstream_timeout');
      return true;
    },
  );
});

test('SDK: parrot validation errors surface as BadRequestError', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  await assert.rejects(
    c.chat.completions.create({ model: 'gpt-fake', messages: [] }),
    (e) => e instanceof BadRequestError && e.status === 400 && e.code === 'invalid_type',
  );
  await assert.rejects(
    c.chat.completions.create({ messages: msgs('x') }),
    (e) => e instanceof BadRequestError && e.code === 'missing_required_parameter' && e.param === 'model',
  );
  assert.equal(fake.stats().total, 0);
});
