// The semantic cache over HTTP, driven with the real curl (docs/cache.md).
// The fake's stats count the provider calls: that is the oracle for "no
// provider call" on a hit.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  startPair, cleanup, curl, curlChat, metrics, request, openStream, sseData, parseChatSse, errorShape,
  waitFor, within,
} from './helpers.mjs';
import { FAKE_CREATED, fakeUsage } from '../fake/upstream.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;
const KEY_A = { authorization: 'Bearer sk-tenant-a' };
const KEY_B = { authorization: 'Bearer sk-tenant-b' };

const ask = (text, extra = {}) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }], ...extra });
const nowSec = () => Math.floor(Date.now() / 1000);
const chatCalls = (fake) => fake.stats().chat;

function assertMiss(r, what = 'request') {
  assert.equal(r.status, 200, `${what}: status ${r.status} ${r.body.slice(0, 300)}`);
  assert.equal(r.headers['x-parrot-cache'], 'miss', `${what}: x-parrot-cache (Cache-Status ${r.headers['cache-status']})`);
  assert.match(r.headers['cache-status'] || '', /^parrot; fwd=uri-miss(;|$)/, `${what}: Cache-Status`);
  assert.equal(r.headers['x-parrot-similarity'], undefined, `${what}: no similarity on a miss`);
  assert.equal(r.headers['x-parrot-entry'], undefined, `${what}: no entry on a miss`);
}

function assertHit(r, detail, what = 'request') {
  assert.equal(r.status, 200, `${what}: status ${r.status} ${r.body.slice(0, 300)}`);
  assert.equal(r.headers['x-parrot-cache'], 'hit', `${what}: x-parrot-cache (Cache-Status ${r.headers['cache-status']})`);
  assert.equal(r.headers['cache-status'], `parrot; hit; detail=${detail}`, `${what}: Cache-Status`);
  assert.match(r.headers.age || '', /^\d+$/, `${what}: Age`);
  assert.match(r.headers['x-parrot-entry'] || '', /^[0-9a-f]+$/, `${what}: x-parrot-entry`);
  const sim = Number(r.headers['x-parrot-similarity']);
  assert.ok(Number.isFinite(sim) && sim > 0 && sim <= 1, `${what}: x-parrot-similarity ${r.headers['x-parrot-similarity']}`);
  if (detail === 'exact') assert.equal(r.headers['x-parrot-similarity'], '1.0000', `${what}: similarity of an exact hit`);
}

/** A fresh answer id: not the provider's, not one seen before. */
function assertFreshId(id, seen) {
  assert.equal(typeof id, 'string');
  assert.match(id, /^chatcmpl-/, `id ${id}`);
  assert.ok(!id.startsWith('chatcmpl-fake-'), `hit id ${id} is the provider's`);
  assert.ok(!seen.has(id), `id ${id} served twice`);
  seen.add(id);
}

function assertFreshCreated(created, t0) {
  assert.equal(typeof created, 'number');
  assert.notEqual(created, FAKE_CREATED, 'created is the provider\'s, not fresh');
  assert.ok(created >= t0 - 1 && created <= nowSec() + 1, `created ${created} not around now (${t0})`);
}

/** Every data event of a chat SSE body is a well-formed chunk of one answer. */
function assertValidChunks(parsed, what = 'stream') {
  assert.ok(parsed.done, `${what}: no data: [DONE]`);
  assert.ok(parsed.chunks.length >= 2, `${what}: ${parsed.chunks.length} chunks`);
  const id = parsed.chunks[0].id;
  for (const ch of parsed.chunks) {
    assert.equal(ch.object, 'chat.completion.chunk', `${what}: object`);
    assert.equal(ch.id, id, `${what}: one id for every chunk`);
    assert.equal(typeof ch.created, 'number', `${what}: created`);
    assert.equal(ch.model, 'gpt-fake', `${what}: model`);
    assert.ok(Array.isArray(ch.choices), `${what}: choices`);
  }
  assert.equal(parsed.role, 'assistant', `${what}: role`);
  const finishes = parsed.chunks.flatMap((ch) => ch.choices.filter((c) => c.finish_reason));
  assert.equal(finishes.length, 1, `${what}: exactly one choice chunk carries finish_reason`);
}

function assertSseEnd(r, what = 'stream') {
  assert.match(r.headers['content-type'] || '', /^text\/event-stream/, `${what}: content-type`);
  assert.ok(r.body.endsWith('data: [DONE]\n\n'), `${what}: must end with "data: [DONE]\\n\\n": ${JSON.stringify(r.body.slice(-80))}`);
}

// ---------------------------------------------------------------- hits

test('exact hit: no provider call, same answer, fresh id and created, original usage', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const body = { model: 'gpt-fake', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'Name the largest ocean on Earth.' }], temperature: 1 };
  const t0 = nowSec();
  const first = await curlChat(parrot.base, body, KEY_A);
  assertMiss(first, 'first');
  // Stored after the client has its answer (issue #21): the header cannot know.
  assert.equal(first.headers['cache-status'], 'parrot; fwd=uri-miss');
  assert.equal(chatCalls(fake), 1);
  const orig = JSON.parse(first.body);
  assert.equal(orig.id, 'chatcmpl-fake-1');

  const seen = new Set([orig.id]);
  for (let i = 0; i < 2; i++) {
    const r = await curlChat(parrot.base, body, KEY_A);
    assertHit(r, 'exact', `repeat ${i}`);
    assert.equal(chatCalls(fake), 1, 'a hit must not call the provider');
    assert.ok(Number(r.headers.age) <= 5, `Age ${r.headers.age}`);
    assert.match(r.headers['content-type'] || '', /^application\/json/);
    const j = JSON.parse(r.body);
    assertFreshId(j.id, seen);
    assertFreshCreated(j.created, t0);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, orig.model);
    assert.deepEqual(j.choices, orig.choices, 'the stored choices');
    assert.equal(j.choices[0].message.content, 'echo: Name the largest ocean on Earth.');
    assert.deepEqual(j.usage, orig.usage, 'usage as originally billed');
  }

  // One canonical form: key order, whitespace, 1 vs 1.0 and runs of spaces
  // in the question do not split the cache.
  const respelled = '{ "temperature" : 1.0, "messages": [ {"content":"be brief","role":"system"},'
    + ' {"role":"user","content":"Name  the largest   ocean on Earth."} ], "model":"gpt-fake" }';
  const r = await curlChat(parrot.base, respelled, KEY_A);
  assertHit(r, 'exact', 're-spelled body');
  assert.equal(JSON.parse(r.body).choices[0].message.content, 'echo: Name the largest ocean on Earth.');
  assert.equal(chatCalls(fake), 1);
  // Case is kept: "EARTH" is another question (it may still be a semantic hit).
  const upper = await curlChat(parrot.base, { ...body, messages: [body.messages[0], { role: 'user', content: 'Name the largest ocean on EARTH.' }] }, KEY_A);
  assert.equal(upper.status, 200);
  assert.notEqual(upper.headers['cache-status'], 'parrot; hit; detail=exact', 'case must not be folded in the exact key');
});

test('paraphrase is a semantic hit; a near miss stays a miss', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const stored = await curlChat(parrot.base, ask('How do I reset my password?'), KEY_A);
  assertMiss(stored, 'store');
  const orig = JSON.parse(stored.body);

  const para = await curlChat(parrot.base, ask('how can I reset my password'), KEY_A);
  assertHit(para, 'semantic', 'paraphrase');
  const sim = Number(para.headers['x-parrot-similarity']);
  assert.match(para.headers['x-parrot-similarity'], /^\d\.\d{4}$/);
  assert.ok(sim >= 0.8 && sim < 1, `similarity ${sim} must be in [0.8, 1)`);
  assert.equal(chatCalls(fake), 1, 'a semantic hit must not call the provider');
  const j = JSON.parse(para.body);
  assert.equal(j.choices[0].message.content, 'echo: How do I reset my password?', 'the stored answer, not a new one');
  assert.deepEqual(j.usage, orig.usage);
  assert.notEqual(j.id, orig.id);

  const france = await curlChat(parrot.base, ask('What is the capital of France?'), KEY_A);
  assertMiss(france, 'France');
  const germany = await curlChat(parrot.base, ask('What is the capital of Germany?'), KEY_A);
  assertMiss(germany, 'Germany (a near miss)');
  assert.equal(chatCalls(fake), 3, 'the near miss must reach the provider');
  assert.equal(JSON.parse(germany.body).choices[0].message.content, 'echo: What is the capital of Germany?');
  assert.equal(fake.stats().chatByText['What is the capital of Germany?'], 1);
});

test('partition walls: model, system prompt, earlier turns, sampling, tools, tenant miss; inert fields hit', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const q = 'Which planet in the solar system is the largest?';
  const weather = { type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
  const clock = { type: 'function', function: { name: 'get_time', description: 'time', parameters: { type: 'object', properties: {} } } };
  const base = {
    model: 'gpt-fake',
    temperature: 0.2,
    messages: [
      { role: 'system', content: 'You are an astronomy tutor.' },
      { role: 'user', content: 'My name is Ana.' },
      { role: 'assistant', content: 'Nice to meet you, Ana.' },
      { role: 'user', content: q },
    ],
  };
  const withMsgs = (i, m) => ({ ...base, messages: base.messages.map((x, j) => (j === i ? { ...x, ...m } : x)) });
  assertMiss(await curlChat(parrot.base, base, KEY_A), 'base');
  assertHit(await curlChat(parrot.base, base, KEY_A), 'exact', 'base repeated');
  assert.equal(chatCalls(fake), 1);

  const walls = [
    ['another model', { ...base, model: 'gpt-fake-mini' }, KEY_A],
    ['another system prompt', withMsgs(0, { content: 'You are a pirate.' }), KEY_A],
    ['no system prompt', { ...base, messages: base.messages.slice(1) }, KEY_A],
    ['another earlier user turn', withMsgs(1, { content: 'My name is Bob.' }), KEY_A],
    ['another earlier assistant turn', withMsgs(2, { content: 'Hello Ana!' }), KEY_A],
    ['no earlier turns', { ...base, messages: [base.messages[0], base.messages[3]] }, KEY_A],
    ['another temperature', { ...base, temperature: 0.9 }, KEY_A],
    ['no temperature', (({ temperature, ...rest }) => rest)(base), KEY_A],
    ['tools added', { ...base, tools: [weather] }, KEY_A],
    ['tools changed', { ...base, tools: [clock] }, KEY_A],
    ['tool_choice', { ...base, tools: [clock], tool_choice: 'required' }, KEY_A],
    ['top_p', { ...base, top_p: 0.5 }, KEY_A],
    ['seed', { ...base, seed: 7 }, KEY_A],
    ['max_tokens', { ...base, max_tokens: 50 }, KEY_A],
    ['response_format', { ...base, response_format: { type: 'json_object' } }, KEY_A],
    ['stop', { ...base, stop: ['\n'] }, KEY_A],
    ['another tenant (Authorization)', base, KEY_B],
    ['no Authorization', base, {}],
  ];
  let calls = 1;
  for (const [what, body, headers] of walls) {
    const r = await curlChat(parrot.base, body, headers);
    assertMiss(r, what);
    calls += 1;
    assert.equal(chatCalls(fake), calls, `${what} must reach the provider`);
  }

  // Fields that do not change the answer do not split the cache.
  const inert = [
    ['user', { ...base, user: 'user-1234' }],
    ['metadata', { ...base, metadata: { team: 'x', run: '42' } }],
    ['stream: false', { ...base, stream: false }],
    ['store', { ...base, store: true }],
    ['service_tier', { ...base, service_tier: 'auto' }],
    ['safety_identifier', { ...base, safety_identifier: 'sid-1' }],
    ['prompt_cache_key', { ...base, prompt_cache_key: 'pck-1' }],
    ['stream: true', { ...base, stream: true }],
    ['stream + stream_options', { ...base, stream: true, stream_options: { include_usage: true } }],
  ];
  for (const [what, body] of inert) {
    const r = await curlChat(parrot.base, body, KEY_A);
    assertHit(r, 'exact', `inert ${what}`);
    if (body.stream) assertSseEnd(r, what);
    else assert.equal(JSON.parse(r.body).choices[0].message.content, `echo: ${q}`);
  }
  assert.equal(chatCalls(fake), calls, 'inert fields must not reach the provider');
  const m = await metrics(parrot.base);
  assert.equal(m.parrot_cache_entries, 1 + walls.length, 'every wall stored its own entry');
});

// ---------------------------------------------------------------- streams

test('streaming: a stream hits a JSON-stored answer and the other way round (raw SSE)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const t0 = nowSec();
  const stored = await curlChat(parrot.base, ask('Explain photosynthesis in one line.'), KEY_A);
  assertMiss(stored);
  const orig = JSON.parse(stored.body);
  const seen = new Set([orig.id]);

  // Stored from JSON, hit as a stream, without include_usage: no usage chunk.
  const s1 = await curlChat(parrot.base, ask('Explain photosynthesis in one line.', { stream: true }), KEY_A);
  assertHit(s1, 'exact', 'stream without include_usage');
  assertSseEnd(s1);
  const p1 = parseChatSse(s1.body);
  assertValidChunks(p1);
  assert.equal(p1.content, orig.choices[0].message.content);
  assert.equal(p1.finish, 'stop');
  assert.equal(p1.usage, null, 'no usage chunk unless stream_options.include_usage');
  assert.ok(p1.chunks.every((ch) => ch.choices.length > 0), 'no chunk with empty choices without include_usage');
  assertFreshId(p1.chunks[0].id, seen);
  assertFreshCreated(p1.chunks[0].created, t0);

  // With include_usage: a final usage chunk (empty choices) with the original usage.
  const s2 = await curlChat(parrot.base, ask('Explain photosynthesis in one line.', { stream: true, stream_options: { include_usage: true } }), KEY_A);
  assertHit(s2, 'exact', 'stream with include_usage');
  assertSseEnd(s2);
  const p2 = parseChatSse(s2.body);
  assertValidChunks(p2);
  assert.equal(p2.content, orig.choices[0].message.content);
  const last = p2.chunks[p2.chunks.length - 1];
  assert.deepEqual(last.choices, [], 'the usage chunk is the last one, with empty choices');
  assert.deepEqual(last.usage, orig.usage);
  assertFreshId(p2.chunks[0].id, seen);
  assert.equal(chatCalls(fake), 1);

  // Stored from a stream (with usage), hit as JSON and as a stream.
  const q2 = 'List three primary colours.';
  const live = await curlChat(parrot.base, ask(q2, { stream: true, stream_options: { include_usage: true } }), KEY_A, {});
  assertMiss(live, 'streamed miss');
  assertSseEnd(live);
  assert.equal(live.body, fake.stats().lastBody, 'a miss is relayed byte for byte');
  const pl = parseChatSse(live.body);
  assert.equal(chatCalls(fake), 2);
  const j = await curlChat(parrot.base, ask(q2), KEY_A);
  assertHit(j, 'exact', 'JSON from a stream');
  const jb = JSON.parse(j.body);
  assert.equal(jb.object, 'chat.completion');
  assert.equal(jb.choices[0].message.role, 'assistant');
  assert.equal(jb.choices[0].message.content, pl.content);
  assert.equal(jb.choices[0].message.content, `echo: ${q2}`);
  assert.equal(jb.choices[0].finish_reason, 'stop');
  assert.deepEqual(jb.usage, pl.usage);
  assert.deepEqual(jb.usage, fakeUsage(ask(q2), `echo: ${q2}`));
  assertFreshId(jb.id, seen);
  const s3 = await curlChat(parrot.base, ask(q2, { stream: true }), KEY_A);
  assertHit(s3, 'exact', 'stream from a stream');
  assertSseEnd(s3);
  const p3 = parseChatSse(s3.body);
  assertValidChunks(p3);
  assert.equal(p3.content, pl.content);
  assert.equal(p3.usage, null);
  assert.equal(chatCalls(fake), 2);
});

test('tool_calls answers are stored and replayed as JSON and as a stream', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const tools = [
    { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
  ];
  const scripted = { ...KEY_A, 'x-fake-tool-calls': '2' };

  // Stored from JSON.
  const qa = 'What is the weather and the time in Paris?';
  const stored = await curlChat(parrot.base, ask(qa, { tools }), scripted);
  assertMiss(stored);
  const orig = JSON.parse(stored.body);
  const calls = orig.choices[0].message.tool_calls;
  assert.equal(calls.length, 2);
  assert.deepEqual(calls.map((c) => c.function.name), ['get_weather', 'get_time']);
  assert.equal(orig.choices[0].finish_reason, 'tool_calls');

  const hj = await curlChat(parrot.base, ask(qa, { tools }), KEY_A);
  assertHit(hj, 'exact', 'tool calls as JSON');
  const hb = JSON.parse(hj.body);
  assert.deepEqual(hb.choices[0].message.tool_calls, calls, 'same ids, names and arguments');
  assert.equal(hb.choices[0].message.content, null);
  assert.equal(hb.choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(hb.usage, orig.usage);

  const hs = await curlChat(parrot.base, ask(qa, { tools, stream: true }), KEY_A);
  assertHit(hs, 'exact', 'tool calls as a stream');
  assertSseEnd(hs);
  const ps = parseChatSse(hs.body);
  assertValidChunks(ps);
  assert.deepEqual(ps.toolCalls, calls, 'reassembled tool-call deltas');
  assert.equal(ps.finish, 'tool_calls');
  assert.ok(!ps.content, `no text content in a tool-call answer: ${JSON.stringify(ps.content)}`);
  assert.equal(chatCalls(fake), 1);

  // Stored from a stream whose arguments arrived in many small deltas.
  const qb = 'What is the weather and the time in Rome?';
  const live = await curlChat(parrot.base, ask(qb, { tools, stream: true }), scripted);
  assertMiss(live, 'streamed tool calls');
  assertSseEnd(live);
  const pl = parseChatSse(live.body);
  assert.ok(pl.chunks.length > 8, 'the fake split the arguments over several chunks');
  assert.equal(pl.toolCalls.length, 2);
  assert.equal(pl.toolCalls[1].id, `call_fake_${fake.stats().total}_1`);
  const fj = await curlChat(parrot.base, ask(qb, { tools }), KEY_A);
  assertHit(fj, 'exact', 'JSON from a tool-call stream');
  const fb = JSON.parse(fj.body);
  assert.deepEqual(fb.choices[0].message.tool_calls, pl.toolCalls);
  assert.equal(fb.choices[0].finish_reason, 'tool_calls');
  const fs2 = await curlChat(parrot.base, ask(qb, { tools, stream: true }), KEY_A);
  assertHit(fs2, 'exact', 'stream from a tool-call stream');
  assert.deepEqual(parseChatSse(fs2.body).toolCalls, pl.toolCalls);
  assert.equal(chatCalls(fake), 2);
});

// ---------------------------------------------------------------- controls

test('Cache-Control: no-store, no-cache and only-if-cached', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();

  // no-store: answered, not stored.
  const ns = await curlChat(parrot.base, ask('Translate "cat" to French.'), { ...KEY_A, 'cache-control': 'no-store' });
  assert.equal(ns.status, 200);
  assert.equal(JSON.parse(ns.body).choices[0].message.content, 'echo: Translate "cat" to French.');
  const after1 = await curlChat(parrot.base, ask('Translate "cat" to French.'), KEY_A);
  assertMiss(after1, 'after no-store');
  assert.equal(chatCalls(fake), 2, 'a no-store answer must not be served later');
  assertHit(await curlChat(parrot.base, ask('Translate "cat" to French.'), KEY_A), 'exact', 'after a plain store');

  // no-cache on a cached request: the lookup is skipped.
  const nc = await curlChat(parrot.base, ask('Translate "cat" to French.'), { ...KEY_A, 'cache-control': 'no-cache' });
  assert.equal(nc.status, 200);
  assert.equal(nc.headers['x-parrot-cache'], 'bypass');
  assert.match(nc.headers['cache-status'] || '', /^parrot; fwd=request; detail=no-cache(; stored)?$/);
  assert.equal(chatCalls(fake), 3, 'no-cache must reach the provider');
  assert.equal(JSON.parse(nc.body).id, `chatcmpl-fake-${fake.stats().total}`);

  // no-cache on a new request: the answer is still stored.
  const q = 'Translate "dog" to Spanish.';
  const nc2 = await curlChat(parrot.base, ask(q), { ...KEY_A, 'cache-control': 'no-cache' });
  assert.equal(nc2.headers['x-parrot-cache'], 'bypass');
  assert.equal(chatCalls(fake), 4);
  const h = await curlChat(parrot.base, ask(q), KEY_A);
  assertHit(h, 'exact', 'after no-cache');
  assert.equal(JSON.parse(h.body).choices[0].message.content, `echo: ${q}`);
  assert.equal(chatCalls(fake), 4);

  // only-if-cached: 504 cache_miss without a provider call, then a hit once cached.
  const q2 = 'How do I reset my password?';
  for (const stream of [false, true]) {
    const oic = await curlChat(parrot.base, ask(q2, stream ? { stream: true } : {}), { ...KEY_A, 'cache-control': 'only-if-cached' });
    assert.equal(oic.status, 504, oic.body);
    const e = errorShape(assert, oic.body);
    assert.equal(e.code, 'cache_miss');
    assert.ok(oic.headers['x-request-id'], 'x-request-id on the 504');
  }
  assert.equal(chatCalls(fake), 4, 'only-if-cached must never reach the provider');
  assertMiss(await curlChat(parrot.base, ask(q2), KEY_A));
  const oh = await curlChat(parrot.base, ask(q2), { ...KEY_A, 'cache-control': 'only-if-cached' });
  assertHit(oh, 'exact', 'only-if-cached once cached');
  assert.equal(JSON.parse(oh.body).choices[0].message.content, `echo: ${q2}`);
  const osem = await curlChat(parrot.base, ask('how can I reset my password'), { ...KEY_A, 'cache-control': 'only-if-cached' });
  assert.equal(osem.status, 200, 'a semantic hit satisfies only-if-cached');
  assert.equal(osem.headers['cache-status'], 'parrot; hit; detail=semantic');
  assert.equal(chatCalls(fake), 5);
});

test('expiry: x-parrot-ttl, --cache-ttl and Cache-Control max-age (one 1.5 s wait)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await startPair();
  const b = await startPair({ args: ['--cache-ttl', '1s'] });
  const short = 'Short-lived question about tides?';
  const control = 'Long-lived question about volcanoes?';
  const flagShort = 'Question stored under a one second default TTL?';
  const forever = 'Question stored until evicted despite the flag?';

  assertMiss(await curlChat(a.parrot.base, ask(short), { ...KEY_A, 'x-parrot-ttl': '1' }), 'ttl 1 store');
  assertMiss(await curlChat(a.parrot.base, ask(control), KEY_A), 'control store');
  assertMiss(await curlChat(b.parrot.base, ask(flagShort), KEY_A), '--cache-ttl store');
  assertMiss(await curlChat(b.parrot.base, ask(forever), { ...KEY_A, 'x-parrot-ttl': '0' }), 'ttl 0 store');
  assert.equal((await metrics(a.parrot.base)).parrot_cache_stores_total, 2);
  assert.equal((await metrics(b.parrot.base)).parrot_cache_stores_total, 2);

  await sleep(1_500);

  const s = await curlChat(a.parrot.base, ask(short), KEY_A);
  assertMiss(s, 'x-parrot-ttl: 1 after 1.5 s');
  assert.equal(a.fake.stats().chatByText[short], 2);
  const c = await curlChat(a.parrot.base, ask(control), KEY_A);
  assertHit(c, 'exact', 'default TTL after 1.5 s');
  assert.ok(Number(c.headers.age) >= 1, `Age ${c.headers.age} after 1.5 s`);
  assertHit(await curlChat(a.parrot.base, ask(control), { ...KEY_A, 'cache-control': 'max-age=3600' }), 'exact', 'max-age=3600');
  const old = await curlChat(a.parrot.base, ask(control), { ...KEY_A, 'cache-control': 'max-age=0' });
  assertMiss(old, 'max-age=0 on a 1.5 s old entry');
  assert.equal(a.fake.stats().chatByText[control], 2);

  assertMiss(await curlChat(b.parrot.base, ask(flagShort), KEY_A), '--cache-ttl 1s after 1.5 s');
  assert.equal(b.fake.stats().chatByText[flagShort], 2);
  assertHit(await curlChat(b.parrot.base, ask(forever), KEY_A), 'exact', 'x-parrot-ttl: 0 overrides --cache-ttl');
  assert.equal(b.fake.stats().chatByText[forever], 1);
});

// ---------------------------------------------------------------- never stored

test('never stored: upstream error, finish_reason length/content_filter, dropped stream, client disconnect', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();

  // parrot may retry a 500 on its own: count the calls around the next request.
  const q1 = 'Will this fail upstream?';
  const e = await curlChat(parrot.base, ask(q1), { ...KEY_A, 'x-fake-status': '500' });
  assert.equal(e.status, 500);
  assert.equal(errorShape(assert, e.body).code, 'fake_500', 'the provider\'s error is relayed');
  const failedCalls = fake.stats().chatByText[q1];
  assert.ok(failedCalls >= 1);
  const r1 = await curlChat(parrot.base, ask(q1), KEY_A);
  assertMiss(r1, 'after a 500');
  assert.equal(JSON.parse(r1.body).choices[0].message.content, `echo: ${q1}`);
  assert.equal(fake.stats().chatByText[q1], failedCalls + 1, 'the request after a 500 must reach the provider');

  const q2 = 'Will this be cut short?';
  const len = await curlChat(parrot.base, ask(q2), { ...KEY_A, 'x-fake-finish': 'length' });
  assert.equal(JSON.parse(len.body).choices[0].finish_reason, 'length');
  const r2 = await curlChat(parrot.base, ask(q2), KEY_A);
  assertMiss(r2, 'after finish_reason length');
  assert.equal(JSON.parse(r2.body).choices[0].finish_reason, 'stop');
  assert.equal(fake.stats().chatByText[q2], 2);

  const q3 = 'Will this be filtered?';
  const cf = await curlChat(parrot.base, ask(q3, { stream: true }), { ...KEY_A, 'x-fake-finish': 'content_filter' });
  assert.equal(parseChatSse(cf.body).finish, 'content_filter');
  const r3 = await curlChat(parrot.base, ask(q3, { stream: true }), KEY_A);
  assertMiss(r3, 'after finish_reason content_filter');
  assert.equal(parseChatSse(r3.body).finish, 'stop');
  assert.equal(fake.stats().chatByText[q3], 2);

  const q4 = 'Will this stream be dropped?';
  const dropped = await curlChat(parrot.base, ask(q4, { stream: true }), { ...KEY_A, 'x-fake-drop': 'mid-stream', 'x-fake-chunks': '10' });
  assert.equal(dropped.status, 200);
  assert.ok(!dropped.body.includes('data: [DONE]'), 'the dropped stream cannot end with [DONE]');
  const r4 = await curlChat(parrot.base, ask(q4, { stream: true }), KEY_A);
  assertMiss(r4, 'after a dropped stream');
  assertSseEnd(r4);
  assert.equal(parseChatSse(r4.body).content, `echo: ${q4}`);
  assert.equal(fake.stats().chatByText[q4], 2);

  const q5 = 'Will the client hang up?';
  const s = openStream(parrot.base, {
    headers: { ...KEY_A, 'x-fake-chunks': '40', 'x-fake-chunk-delay-ms': '50' },
    body: JSON.stringify(ask(q5, { stream: true })),
  });
  await s.waitFor((t) => sseData(t).length >= 3, 10_000, 'three SSE events');
  s.req.destroy();
  await waitFor(() => fake.stats().aborted >= 1, { timeoutMs: 10_000, what: 'the upstream transfer to be cancelled' });
  const r5 = await curlChat(parrot.base, ask(q5, { stream: true }), KEY_A);
  assertMiss(r5, 'after a client disconnect');
  assert.equal(parseChatSse(r5.body).content, `echo: ${q5}`);
  assert.equal(fake.stats().chatByText[q5], 2);

  const m = await metrics(parrot.base);
  assert.equal(m.parrot_cache_entries, 5, 'only the five clean answers are stored');
  assert.equal(m.parrot_cache_stores_total, 5);
});

// ---------------------------------------------------------------- single-flight

async function singleFlight(stream) {
  const { fake, parrot } = await startPair();
  const q = stream ? 'Concurrent streamed question about comets?' : 'Concurrent question about comets?';
  const headers = { ...KEY_A, 'x-fake-delay-ms': '500', 'x-fake-chunks': '12', ...(stream ? { 'x-fake-chunk-delay-ms': '10' } : {}) };
  const rs = await within(Promise.all(Array.from({ length: 10 }, () => curlChat(parrot.base, ask(q, stream ? { stream: true } : {}), headers))),
    30_000, '10 concurrent requests');
  assert.equal(chatCalls(fake), 1, 'exactly one provider call for 10 identical concurrent misses');
  const want = Array.from({ length: 12 }, (_, i) => `w${i + 1}`).join(' ');
  const ids = new Set();
  const verdicts = { miss: 0, coalesced: 0, exact: 0 };
  for (const r of rs) {
    assert.equal(r.status, 200, r.body.slice(0, 300));
    if (stream) {
      assertSseEnd(r);
      const p = parseChatSse(r.body);
      assertValidChunks(p);
      assert.equal(p.content, want);
      ids.add(p.chunks[0].id);
    } else {
      const j = JSON.parse(r.body);
      assert.equal(j.choices[0].message.content, want);
      ids.add(j.id);
    }
    if (r.headers['x-parrot-cache'] === 'miss') {
      verdicts.miss += 1;
    } else {
      assert.equal(r.headers['x-parrot-cache'], 'hit', `Cache-Status ${r.headers['cache-status']}`);
      const d = /^parrot; hit; detail=(coalesced|exact)$/.exec(r.headers['cache-status'] || '');
      assert.ok(d, `waiter Cache-Status ${r.headers['cache-status']}`);
      verdicts[d[1]] += 1;
    }
  }
  assert.equal(verdicts.miss, 1, JSON.stringify(verdicts));
  assert.equal(verdicts.coalesced + verdicts.exact, 9, JSON.stringify(verdicts));
  assert.ok(verdicts.coalesced >= 1, `no request waited behind the leader: ${JSON.stringify(verdicts)}`);
  assert.equal(ids.size, 10, 'every answer has its own id');
  const m = await metrics(parrot.base);
  assert.equal(m['parrot_cache_hits_total{kind="coalesced"}'], verdicts.coalesced);
  assert.equal(m.parrot_cache_stores_total, 1);
}

test('single-flight: 10 concurrent identical misses make one provider call (JSON)', { timeout: TEST_TIMEOUT_MS }, async () => {
  await singleFlight(false);
});

test('single-flight: 10 concurrent identical misses make one provider call (stream)', { timeout: TEST_TIMEOUT_MS }, async () => {
  await singleFlight(true);
});

test('single-flight: when the leader\'s answer cannot be stored, each waiter asks the provider', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const q = 'Concurrent question that ends with finish_reason length?';
  const headers = { ...KEY_A, 'x-fake-delay-ms': '300', 'x-fake-finish': 'length' };
  const rs = await within(Promise.all(Array.from({ length: 4 }, () => curlChat(parrot.base, ask(q), headers))), 30_000, '4 requests');
  for (const r of rs) {
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).choices[0].finish_reason, 'length');
    assert.notEqual(r.headers['x-parrot-cache'], 'hit');
  }
  assert.equal(chatCalls(fake), 4);
  assert.equal((await metrics(parrot.base)).parrot_cache_entries, 0);
});

// Answers are stored after their clients have them (the store queue): a
// question asked again, or paraphrased, the moment its answer arrives still
// hits, while other clients keep asking new questions; and a queue smaller
// than the burst makes new misses wait their turn rather than drop stores.
test('read-your-writes under load: 8 clients ask, then paraphrase at once; every paraphrase hits, no store is dropped', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--store-queue', '16'] });
  const clients = 8;
  const rounds = 12;
  await within(Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let k = 0; k < rounds; k++) {
      const id = 100 * (c + 1) + k;
      assertMiss(await curlChat(parrot.base, ask(`How do I reset the password of account ${id}?`), KEY_A), `account ${id}`);
      assertHit(await curlChat(parrot.base, ask(`how can I reset the password of account ${id}`), KEY_A), 'semantic', `paraphrase ${id}`);
    }
  })), 45_000, `${clients} clients`);
  assert.equal(chatCalls(fake), clients * rounds, 'one provider call per new question');
  const m = await metrics(parrot.base);
  assert.equal(m.parrot_cache_stores_total, clients * rounds);
  assert.equal(m.parrot_cache_stores_dropped_total, 0);
  assert.equal(m.parrot_cache_store_queue, 0);
});

// ---------------------------------------------------------------- metrics

test('/metrics cache counters follow misses, hits, bypasses and stores', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const m0 = await metrics(parrot.base);
  const B = 'parrot_cache_bypasses_total{reason="no-cache"}';
  for (const k of ['parrot_cache_hits_total{kind="exact"}', 'parrot_cache_hits_total{kind="semantic"}', 'parrot_cache_misses_total',
    B, 'parrot_cache_stores_total', 'parrot_cache_entries', 'parrot_cache_memory_bytes',
    'parrot_cache_evictions_total', 'parrot_cache_refused_total']) {
    assert.equal(m0[k], 0, `${k} starts at 0`);
  }
  const delta = async (expect) => {
    const m = await metrics(parrot.base);
    const got = {};
    for (const k of Object.keys(expect)) got[k] = m[k] - (m0[k] ?? 0);
    assert.deepEqual(got, expect);
    return m;
  };
  const E = 'parrot_cache_hits_total{kind="exact"}';
  const S = 'parrot_cache_hits_total{kind="semantic"}';
  const base = { [E]: 0, [S]: 0, parrot_cache_misses_total: 0, [B]: 0, parrot_cache_stores_total: 0, parrot_cache_entries: 0, parrot_cache_refused_total: 0 };

  assertMiss(await curlChat(parrot.base, ask('How do I reset my password?'), KEY_A));
  const m1 = await delta({ ...base, parrot_cache_misses_total: 1, parrot_cache_stores_total: 1, parrot_cache_entries: 1 });
  assert.ok(m1.parrot_cache_memory_bytes > 0, 'memory grows with an entry');
  assertHit(await curlChat(parrot.base, ask('How do I reset my password?'), KEY_A), 'exact');
  await delta({ ...base, [E]: 1, parrot_cache_misses_total: 1, parrot_cache_stores_total: 1, parrot_cache_entries: 1 });
  assertHit(await curlChat(parrot.base, ask('how can I reset my password'), KEY_A), 'semantic');
  await delta({ ...base, [E]: 1, [S]: 1, parrot_cache_misses_total: 1, parrot_cache_stores_total: 1, parrot_cache_entries: 1 });
  await curlChat(parrot.base, ask('A question fetched with no-cache?'), { ...KEY_A, 'cache-control': 'no-cache' });
  await delta({ ...base, [E]: 1, [S]: 1, parrot_cache_misses_total: 1, [B]: 1, parrot_cache_stores_total: 2, parrot_cache_entries: 2 });
  await curlChat(parrot.base, ask('Never asked before?'), { ...KEY_A, 'cache-control': 'only-if-cached' });
  await curlChat(parrot.base, ask('Not stored?'), { ...KEY_A, 'cache-control': 'no-store' });
  await delta({ ...base, [E]: 1, [S]: 1, parrot_cache_misses_total: 2, [B]: 1, parrot_cache_stores_total: 2, parrot_cache_entries: 2, parrot_cache_refused_total: 1 });
  const stream = await curlChat(parrot.base, ask('How do I reset my password?', { stream: true }), KEY_A);
  assertHit(stream, 'exact');
  await delta({ ...base, [E]: 2, [S]: 1, parrot_cache_misses_total: 2, [B]: 1, parrot_cache_stores_total: 2, parrot_cache_entries: 2, parrot_cache_refused_total: 1 });
});

test('/metrics: parrot_cache_store_skipped_total counts error, unfinished and truncated answers', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Its help text: "Answers not stored: error status, truncated, unfinished
  // or unreplayable."
  const { parrot } = await startPair();
  const cases = [
    ['upstream 500', ask('Skipped because of a 500?'), { 'x-fake-status': '500' }],
    ['finish_reason length', ask('Skipped because too long?'), { 'x-fake-finish': 'length' }],
    ['finish_reason content_filter (stream)', ask('Skipped because filtered?', { stream: true }), { 'x-fake-finish': 'content_filter' }],
    ['stream truncated by the provider', ask('Skipped because truncated?', { stream: true }), { 'x-fake-drop': 'mid-stream', 'x-fake-chunks': '10' }],
  ];
  let before = (await metrics(parrot.base)).parrot_cache_store_skipped_total;
  assert.equal(before, 0);
  for (const [what, body, headers] of cases) {
    await curlChat(parrot.base, body, { ...KEY_A, ...headers });
    const m = await metrics(parrot.base);
    assert.equal(m.parrot_cache_store_skipped_total - before, 1, `${what}: parrot_cache_store_skipped_total went ${before} -> ${m.parrot_cache_store_skipped_total}`);
    assert.equal(m.parrot_cache_stores_total, 0, what);
    before = m.parrot_cache_store_skipped_total;
  }
});

// ---------------------------------------------------------------- configuration

test('--cache false: nothing is ever served from the cache', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--cache', 'false'] });
  const q = 'Is the cache switched off?';
  for (let i = 1; i <= 3; i++) {
    const r = await curlChat(parrot.base, ask(q), KEY_A);
    assert.equal(r.status, 200, `request ${i}: curl exit ${r.code} ${r.stderr.trim()}; parrot exit ${JSON.stringify(parrot.exitInfo)}`);
    assert.notEqual(r.headers['x-parrot-cache'], 'hit');
    assert.ok(!/hit/.test(r.headers['cache-status'] || ''), `Cache-Status ${r.headers['cache-status']}`);
    assert.equal(JSON.parse(r.body).id, `chatcmpl-fake-${i}`, 'the provider\'s own answer');
    assert.equal(r.body, fake.stats().lastBody);
  }
  const s = await curlChat(parrot.base, ask(q, { stream: true }), KEY_A);
  assert.equal(s.body, fake.stats().lastBody, 'streams relayed byte for byte');
  assert.equal(chatCalls(fake), 4);
  const p = await curlChat(parrot.base, ask('how can I reset my password'), KEY_A);
  assert.equal(p.status, 200);
  assert.equal(chatCalls(fake), 5);
});

test('--shared-tenant: different keys share entries', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--shared-tenant', 'team'] });
  assertMiss(await curlChat(parrot.base, ask('How do I reset my password?'), KEY_A));
  const r = await curlChat(parrot.base, ask('How do I reset my password?'), KEY_B);
  assertHit(r, 'exact', 'another key, shared tenant');
  assertHit(await curlChat(parrot.base, ask('how can I reset my password'), { authorization: 'Bearer sk-third' }), 'semantic', 'paraphrase, third key');
  assert.equal(chatCalls(fake), 1);
  // The partition walls other than the tenant still stand.
  assertMiss(await curlChat(parrot.base, ask('How do I reset my password?', { model: 'gpt-fake-mini' }), KEY_B), 'another model');
  assert.equal(chatCalls(fake), 2);
});

test('--tenant-header: the header, not the key, decides the tenant', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--tenant-header', 'x-tenant'] });
  assertMiss(await curlChat(parrot.base, ask('How do I reset my password?'), { ...KEY_A, 'x-tenant': 'alpha' }), 'alpha');
  assertMiss(await curlChat(parrot.base, ask('How do I reset my password?'), { ...KEY_A, 'x-tenant': 'beta' }), 'beta, same key');
  assertMiss(await curlChat(parrot.base, ask('how can I reset my password'), { ...KEY_A, 'x-tenant': 'gamma' }), 'gamma paraphrase');
  assert.equal(chatCalls(fake), 3);
  assertHit(await curlChat(parrot.base, ask('How do I reset my password?'), { ...KEY_A, 'x-tenant': 'alpha' }), 'exact', 'alpha again');
  assertHit(await curlChat(parrot.base, ask('How do I reset my password?'), { ...KEY_B, 'x-tenant': 'beta' }), 'exact', 'beta with another key');
  assert.equal(chatCalls(fake), 3);
});

// ---------------------------------------------------------------- eviction

test('eviction: a 64 KiB cache evicts, stays within its limit and keeps working', { timeout: TEST_TIMEOUT_MS }, async () => {
  const limit = 64 * 1024;
  const { fake, parrot } = await startPair({ args: ['--cache-max-memory', '64k'] });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const N = 300;
  // Random tokens: no two questions are paraphrases of each other.
  const texts = Array.from({ length: N }, () => Array.from({ length: 4 }, () => crypto.randomBytes(5).toString('hex')).join(' '));
  let maxMemory = 0;
  try {
    for (let i = 0; i < N; i += 20) {
      const batch = texts.slice(i, i + 20).map((t) => request(parrot.base, {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'x-fake-chunks': '60', ...KEY_A },
        body: JSON.stringify(ask(t)),
        agent,
      }));
      for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.body.slice(0, 300));
      const m = await metrics(parrot.base);
      maxMemory = Math.max(maxMemory, m.parrot_cache_memory_bytes);
      assert.ok(m.parrot_cache_memory_bytes <= limit, `memory ${m.parrot_cache_memory_bytes} > ${limit} after ${i + 20} answers`);
    }
  } finally {
    agent.destroy();
  }
  assert.equal(chatCalls(fake), N, 'every distinct question was a miss');
  const m = await metrics(parrot.base);
  assert.equal(m.parrot_cache_stores_total, N);
  assert.ok(m.parrot_cache_evictions_total > 0, 'no eviction');
  assert.ok(m.parrot_cache_entries > 0 && m.parrot_cache_entries < N, `entries ${m.parrot_cache_entries}`);
  assert.equal(m.parrot_cache_entries + m.parrot_cache_evictions_total + m.parrot_cache_expirations_total, N,
    'every stored entry is either still there or was evicted');
  assert.ok(maxMemory > limit / 2, `the cache filled up (max ${maxMemory})`);

  assert.equal(parrot.exitInfo, null, 'parrot exited');
  assert.equal((await curl([`${parrot.base}/healthz`])).status, 200);
  assertMiss(await curlChat(parrot.base, ask('A fresh question after the evictions?'), KEY_A));
  assertHit(await curlChat(parrot.base, ask('A fresh question after the evictions?'), KEY_A), 'exact', 'after evictions');
});
