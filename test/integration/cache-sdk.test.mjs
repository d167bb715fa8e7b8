// The semantic cache seen through the official openai npm SDK
// (docs/cache.md). Headers are read with .withResponse(); the fake's stats
// count the provider calls.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError } from 'openai';
import { startPair, cleanup, within } from './helpers.mjs';
import { FAKE_CREATED, fakeUsage } from '../fake/upstream.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

function client(parrot, opts = {}) {
  return new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-sdk-cache', maxRetries: 0, timeout: 30_000, ...opts });
}

const msgs = (text) => [{ role: 'system', content: 'answer briefly' }, { role: 'user', content: text }];
const nowSec = () => Math.floor(Date.now() / 1000);
const chatCalls = (fake) => fake.stats().chat;

function cacheHeaders(response) {
  const h = response.headers;
  return {
    cache: h.get('x-parrot-cache'),
    status: h.get('cache-status'),
    age: h.get('age'),
    sim: h.get('x-parrot-similarity'),
    entry: h.get('x-parrot-entry'),
  };
}

function assertHitHeaders(response, detail, what = 'request') {
  const c = cacheHeaders(response);
  assert.equal(c.cache, 'hit', `${what}: ${JSON.stringify(c)}`);
  assert.equal(c.status, `parrot; hit; detail=${detail}`, what);
  assert.match(c.age || '', /^\d+$/, `${what}: Age`);
  assert.match(c.entry || '', /^[0-9a-f]+$/, `${what}: x-parrot-entry`);
  if (detail === 'exact') assert.equal(c.sim, '1.0000', what);
  return c;
}

function assertMissHeaders(response, what = 'request') {
  const c = cacheHeaders(response);
  assert.equal(c.cache, 'miss', `${what}: ${JSON.stringify(c)}`);
  assert.match(c.status || '', /^parrot; fwd=uri-miss/, what);
  assert.equal(c.sim, null, what);
}

/** Iterate an SDK stream; returns what a client would rebuild from it. */
async function collect(stream) {
  const out = { chunks: 0, ids: new Set(), created: new Set(), text: '', role: null, finish: null, usageChunks: [], toolCalls: [] };
  for await (const ch of stream) {
    out.chunks += 1;
    assert.equal(ch.object, 'chat.completion.chunk');
    out.ids.add(ch.id);
    out.created.add(ch.created);
    if (ch.usage) {
      assert.deepEqual(ch.choices, [], 'the usage chunk has empty choices');
      out.usageChunks.push(ch.usage);
      continue;
    }
    assert.equal(ch.choices.length, 1);
    const c = ch.choices[0];
    assert.equal(out.finish, null, 'no chunk with choices after the finish chunk');
    if (c.delta.role) out.role = c.delta.role;
    if (c.delta.content) out.text += c.delta.content;
    for (const tc of c.delta.tool_calls || []) {
      const cur = out.toolCalls[tc.index] || (out.toolCalls[tc.index] = { id: undefined, type: undefined, function: { name: '', arguments: '' } });
      if (tc.id) cur.id = tc.id;
      if (tc.type) cur.type = tc.type;
      if (tc.function?.name) cur.function.name += tc.function.name;
      if (tc.function?.arguments) cur.function.arguments += tc.function.arguments;
    }
    if (c.finish_reason) out.finish = c.finish_reason;
  }
  return out;
}

test('SDK: exact hit without a provider call: fresh id and created, same content, original usage', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const t0 = nowSec();
  const req = { model: 'gpt-fake', messages: msgs('What is the boiling point of water at sea level?') };
  const first = await c.chat.completions.create(req).withResponse();
  assertMissHeaders(first.response, 'first');
  assert.equal(first.data.id, 'chatcmpl-fake-1');
  assert.equal(chatCalls(fake), 1);

  const ids = new Set([first.data.id]);
  for (let i = 0; i < 2; i++) {
    const hit = await c.chat.completions.create(req).withResponse();
    assertHitHeaders(hit.response, 'exact', `repeat ${i}`);
    assert.equal(chatCalls(fake), 1, 'a hit must not call the provider');
    const d = hit.data;
    assert.ok(!ids.has(d.id), `id ${d.id} repeated`);
    assert.match(d.id, /^chatcmpl-/);
    assert.ok(!d.id.startsWith('chatcmpl-fake-'), `id ${d.id} is the provider's`);
    ids.add(d.id);
    assert.notEqual(d.created, FAKE_CREATED, 'created is fresh');
    assert.ok(d.created >= t0 - 1 && d.created <= nowSec() + 1, `created ${d.created}`);
    assert.equal(d.object, 'chat.completion');
    assert.equal(d.model, 'gpt-fake');
    assert.equal(d.choices[0].message.content, first.data.choices[0].message.content);
    assert.equal(d.choices[0].message.role, 'assistant');
    assert.equal(d.choices[0].finish_reason, 'stop');
    assert.deepEqual(d.usage, first.data.usage, 'usage as originally billed');
    assert.ok(hit.request_id, 'x-request-id on a hit');
  }
});

test('SDK: paraphrase is a semantic hit, a near miss is not', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const stored = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('How do I reset my password?') });
  const para = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('how can I reset my password') }).withResponse();
  const h = assertHitHeaders(para.response, 'semantic', 'paraphrase');
  const sim = Number(h.sim);
  assert.ok(sim >= 0.8 && sim < 1, `similarity ${h.sim}`);
  assert.equal(para.data.choices[0].message.content, stored.choices[0].message.content);
  assert.equal(para.data.choices[0].message.content, 'echo: How do I reset my password?');
  assert.deepEqual(para.data.usage, stored.usage);
  assert.equal(chatCalls(fake), 1);

  await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('What is the capital of France?') });
  const de = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs('What is the capital of Germany?') }).withResponse();
  assertMissHeaders(de.response, 'near miss');
  assert.equal(de.data.choices[0].message.content, 'echo: What is the capital of Germany?');
  assert.equal(chatCalls(fake), 3);
});

test('SDK: partition walls (model, system prompt, earlier turn, temperature, tools, API key) and inert fields', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const q = 'Recommend a book about the history of mathematics.';
  const base = { model: 'gpt-fake', temperature: 0.3, messages: [{ role: 'system', content: 'You are a librarian.' }, { role: 'user', content: q }] };
  const tool = { type: 'function', function: { name: 'search_catalog', parameters: { type: 'object', properties: { q: { type: 'string' } } } } };
  await c.chat.completions.create(base);
  assert.equal(chatCalls(fake), 1);

  const walls = [
    ['model', c, { ...base, model: 'gpt-fake-mini' }],
    ['system prompt', c, { ...base, messages: [{ role: 'system', content: 'You are a critic.' }, base.messages[1]] }],
    ['earlier turn', c, { ...base, messages: [base.messages[0], { role: 'user', content: 'I like novels.' }, { role: 'assistant', content: 'Noted.' }, base.messages[1]] }],
    ['temperature', c, { ...base, temperature: 1.3 }],
    ['tools', c, { ...base, tools: [tool] }],
    ['API key', client(parrot, { apiKey: 'sk-someone-else' }), base],
  ];
  let calls = 1;
  for (const [what, cl, body] of walls) {
    const r = await cl.chat.completions.create(body).withResponse();
    assertMissHeaders(r.response, what);
    calls += 1;
    assert.equal(chatCalls(fake), calls, `${what} must reach the provider`);
  }
  const inert = [
    ['user', { ...base, user: 'end-user-7' }],
    ['metadata', { ...base, metadata: { purpose: 'test' } }],
  ];
  for (const [what, body] of inert) {
    const r = await c.chat.completions.create(body).withResponse();
    assertHitHeaders(r.response, 'exact', what);
    assert.equal(r.data.choices[0].message.content, `echo: ${q}`);
  }
  const s = await c.chat.completions.create({ ...base, stream: true, stream_options: { include_usage: true } }).withResponse();
  assertHitHeaders(s.response, 'exact', 'stream + stream_options');
  assert.equal((await collect(s.data)).text, `echo: ${q}`);
  assert.equal(chatCalls(fake), calls, 'inert fields must not reach the provider');
});

test('SDK: a stream hits an answer stored from JSON, with and without include_usage', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const q = 'Describe the water cycle in one sentence.';
  const stored = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(q) });

  const { data: s1, response: r1 } = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(q), stream: true }).withResponse();
  assertHitHeaders(r1, 'exact', 'stream');
  const o1 = await collect(s1);
  assert.equal(o1.text, stored.choices[0].message.content);
  assert.equal(o1.role, 'assistant');
  assert.equal(o1.finish, 'stop');
  assert.equal(o1.usageChunks.length, 0, 'no usage chunk without include_usage');
  assert.equal(o1.ids.size, 1, 'one id for the whole stream');
  assert.ok(![...o1.ids][0].startsWith('chatcmpl-fake-'));
  assert.notEqual([...o1.ids][0], stored.id);

  const { data: s2, response: r2 } = await c.chat.completions.create({
    model: 'gpt-fake', messages: msgs(q), stream: true, stream_options: { include_usage: true },
  }).withResponse();
  assertHitHeaders(r2, 'exact', 'stream with include_usage');
  const o2 = await collect(s2);
  assert.equal(o2.text, stored.choices[0].message.content);
  assert.equal(o2.finish, 'stop');
  assert.deepEqual(o2.usageChunks, [stored.usage], 'one usage chunk with the original usage');

  // The SDK's own accumulator must accept the replay as a complete answer.
  const helper = c.chat.completions.stream({ model: 'gpt-fake', messages: msgs(q), stream_options: { include_usage: true } });
  const final = await within(helper.finalChatCompletion(), 10_000, 'finalChatCompletion');
  assert.equal(final.choices[0].message.content, stored.choices[0].message.content);
  assert.equal(final.choices[0].finish_reason, 'stop');
  assert.deepEqual(final.usage, stored.usage);
  assert.equal(chatCalls(fake), 1);
});

test('SDK: JSON hits an answer stored from a stream', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const q = 'Name two noble gases.';
  const live = await collect(await c.chat.completions.create(
    { model: 'gpt-fake', messages: msgs(q), stream: true, stream_options: { include_usage: true } },
    { headers: { 'x-fake-chunk-delay-ms': '5' } },
  ));
  assert.equal(live.text, `echo: ${q}`);
  assert.equal(chatCalls(fake), 1);
  const { data, response } = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(q) }).withResponse();
  assertHitHeaders(response, 'exact', 'JSON from a stream');
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.content, live.text);
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.deepEqual(data.usage, live.usageChunks[0]);
  assert.deepEqual(data.usage, fakeUsage({ messages: msgs(q) }, `echo: ${q}`));
  // And as a stream again, through the SDK's accumulator.
  const final = await c.chat.completions.stream({ model: 'gpt-fake', messages: msgs(q) }).finalChatCompletion();
  assert.equal(final.choices[0].message.content, live.text);
  assert.equal(chatCalls(fake), 1);
});

test('SDK: tool calls are replayed with the same ids, names and arguments (JSON and stream)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const tools = [
    { type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { id: { type: 'string' } } } } },
    { type: 'function', function: { name: 'refund_order', parameters: { type: 'object', properties: { id: { type: 'string' } } } } },
  ];
  const script = { headers: { 'x-fake-tool-calls': '2' } };

  const qa = 'Find order 1234 and refund it.';
  const orig = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(qa), tools }, script);
  const calls = orig.choices[0].message.tool_calls;
  assert.equal(calls.length, 2);
  assert.equal(orig.choices[0].finish_reason, 'tool_calls');

  const j = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(qa), tools }).withResponse();
  assertHitHeaders(j.response, 'exact', 'tool calls as JSON');
  assert.deepEqual(j.data.choices[0].message.tool_calls, calls);
  assert.equal(j.data.choices[0].finish_reason, 'tool_calls');

  const s = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(qa), tools, stream: true }).withResponse();
  assertHitHeaders(s.response, 'exact', 'tool calls as a stream');
  const o = await collect(s.data);
  assert.deepEqual(o.toolCalls, calls);
  assert.equal(o.finish, 'tool_calls');
  const final = await c.chat.completions.stream({ model: 'gpt-fake', messages: msgs(qa), tools }).finalChatCompletion();
  assert.deepEqual(final.choices[0].message.tool_calls.map(({ id, type, function: f }) => ({ id, type, function: { name: f.name, arguments: f.arguments } })), calls);
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(chatCalls(fake), 1);

  // Stored from a stream of many small argument deltas.
  const qb = 'Find order 9876 and refund it.';
  const live = await collect(await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(qb), tools, stream: true }, script));
  assert.equal(live.toolCalls.length, 2);
  assert.equal(live.finish, 'tool_calls');
  const fromStream = await c.chat.completions.create({ model: 'gpt-fake', messages: msgs(qb), tools }).withResponse();
  assertHitHeaders(fromStream.response, 'exact', 'JSON from a tool-call stream');
  assert.deepEqual(fromStream.data.choices[0].message.tool_calls, live.toolCalls);
  assert.equal(chatCalls(fake), 2);
});

test('SDK: Cache-Control request directives', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const body = { model: 'gpt-fake', messages: msgs('How many legs does a spider have?') };

  await assert.rejects(
    c.chat.completions.create(body, { headers: { 'cache-control': 'only-if-cached' } }),
    (e) => {
      assert.ok(e instanceof APIError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 504);
      assert.equal(e.code, 'cache_miss');
      return true;
    },
  );
  assert.equal(chatCalls(fake), 0);

  const ns = await c.chat.completions.create(body, { headers: { 'cache-control': 'no-store' } }).withResponse();
  assert.equal(ns.response.status, 200);
  const m1 = await c.chat.completions.create(body).withResponse();
  assertMissHeaders(m1.response, 'after no-store');
  assert.equal(chatCalls(fake), 2);

  const nc = await c.chat.completions.create(body, { headers: { 'cache-control': 'no-cache' } }).withResponse();
  assert.equal(cacheHeaders(nc.response).cache, 'bypass');
  assert.equal(nc.data.id, `chatcmpl-fake-${fake.stats().total}`);
  assert.equal(chatCalls(fake), 3);

  const oic = await c.chat.completions.create(body, { headers: { 'cache-control': 'only-if-cached' } }).withResponse();
  assertHitHeaders(oic.response, 'exact', 'only-if-cached once cached');
  assert.equal(oic.data.choices[0].message.content, 'echo: How many legs does a spider have?');
  assert.equal(chatCalls(fake), 3);
});

test('SDK: 10 concurrent identical streams make one provider call', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const q = 'Concurrent SDK stream about nebulae?';
  const one = async () => {
    const { data, response } = await c.chat.completions.create(
      { model: 'gpt-fake', messages: msgs(q), stream: true, stream_options: { include_usage: true } },
      { headers: { 'x-fake-delay-ms': '500', 'x-fake-chunks': '15', 'x-fake-chunk-delay-ms': '10' } },
    ).withResponse();
    return { h: cacheHeaders(response), o: await collect(data) };
  };
  const rs = await within(Promise.all(Array.from({ length: 10 }, one)), 30_000, '10 concurrent SDK streams');
  assert.equal(chatCalls(fake), 1, 'exactly one provider call');
  const want = Array.from({ length: 15 }, (_, i) => `w${i + 1}`).join(' ');
  const usage = fakeUsage({ messages: msgs(q) }, want);
  const kinds = {};
  for (const { h, o } of rs) {
    assert.equal(o.text, want);
    assert.equal(o.finish, 'stop');
    assert.deepEqual(o.usageChunks, [usage]);
    const k = h.cache === 'hit' ? h.status : h.cache;
    kinds[k] = (kinds[k] || 0) + 1;
  }
  assert.equal(kinds.miss, 1, JSON.stringify(kinds));
  const coalesced = kinds['parrot; hit; detail=coalesced'] || 0;
  const exact = kinds['parrot; hit; detail=exact'] || 0;
  assert.equal(coalesced + exact, 9, JSON.stringify(kinds));
  assert.ok(coalesced >= 1, JSON.stringify(kinds));
});
