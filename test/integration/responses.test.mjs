// POST /v1/responses through the cache (docs/cache.md), driven with the
// official openai SDK; the fake counts the provider calls
// (stats().responses).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startPair, cleanup } from './helpers.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 60_000;

function client(parrot) {
  return new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-responses', maxRetries: 0, timeout: 30_000 });
}

const create = (c, body, headers = {}) =>
  c.responses.create({ model: 'gpt-fake', instructions: 'be brief', ...body }, { headers }).withResponse();
const cacheOf = (res) => res.response.headers.get('x-parrot-cache');
const withoutStamp = ({ id, created_at, ...rest }) => rest;

test('store: true — a repeat is an exact hit with the original id', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const live = await create(c, { input: 'What is the capital of France?' });
  assert.equal(cacheOf(live), 'miss');
  const hit = await create(c, { input: 'What is the capital of France?' });
  assert.equal(cacheOf(hit), 'hit');
  assert.equal(hit.response.headers.get('cache-status'), 'parrot; hit; detail=exact');
  assert.equal(fake.stats().responses, 1);
  assert.equal(hit.data.id, live.data.id, 'the provider holds this response: its id is served');
  assert.deepEqual(withoutStamp(hit.data), withoutStamp(live.data));
  assert.equal(hit.data.output_text, live.data.output_text);
  // The same text as input items is the same question.
  const items = await create(c, { input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is the capital of France?' }] }] });
  assert.equal(cacheOf(items), 'hit');
  // A paraphrase is not served from a stored response.
  const para = await create(c, { input: 'what is the capital of france' });
  assert.equal(cacheOf(para), 'miss');
  assert.equal(fake.stats().responses, 2);
});

test('store: false — hits carry a fresh id', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const live = await create(c, { input: 'Name a primary colour.', store: false });
  const hit = await create(c, { input: 'Name a primary colour.', store: false });
  assert.equal(cacheOf(hit), 'hit');
  assert.notEqual(hit.data.id, live.data.id);
  assert.match(hit.data.id, /^resp-parrot-[0-9a-f]{24}$/);
  assert.deepEqual(withoutStamp(hit.data), withoutStamp(live.data));
  assert.equal(fake.stats().responses, 1);
  // Without a stored response, a paraphrase may be served too (the chat
  // verifier's rules), again under a fresh id.
  const q = await create(c, { input: 'How do I reset my password?', store: false });
  const para = await create(c, { input: 'how can I reset my password', store: false });
  assert.equal(para.response.headers.get('cache-status'), 'parrot; hit; detail=semantic');
  assert.notEqual(para.data.id, q.data.id);
  assert.equal(para.data.output_text, q.data.output_text);
  // With store: true the same paraphrase is not served from it.
  await create(c, { input: 'How do I reset my pin?' });
  const stored = await create(c, { input: 'how can I reset my pin' });
  assert.equal(cacheOf(stored), 'miss');
  assert.equal(fake.stats().responses, 4);
});

test('requests that depend on state parrot cannot see, and unfinished answers, are never cached', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const cases = [
    { previous_response_id: 'resp_abc' },
    { conversation: 'conv_abc' },
    { background: true },
    { tools: [{ type: 'web_search' }] },
    { tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }, { type: 'mcp', server_label: 'x', server_url: 'https://example.invalid' }] },
  ];
  let calls = 0;
  for (const extra of cases) {
    for (let i = 0; i < 2; i++) {
      const r = await create(c, { input: 'same question', ...extra });
      calls += 1;
      assert.equal(cacheOf(r), 'bypass', JSON.stringify(extra));
      assert.match(r.response.headers.get('cache-status'), /detail=uncacheable/);
      assert.equal(fake.stats().responses, calls, `${JSON.stringify(extra)} reached the provider`);
    }
  }
  await create(c, { input: 'cut short' }, { 'x-fake-finish': 'incomplete' });
  assert.equal(cacheOf(await create(c, { input: 'cut short' })), 'miss', 'an incomplete response was not stored');
  // A function tool is the client's own: cached.
  const fn = { tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} } }] };
  await create(c, { input: 'with a tool', ...fn });
  assert.equal(cacheOf(await create(c, { input: 'with a tool', ...fn })), 'hit');
  assert.equal(fake.stats().responses, calls + 3);
});

/** Iterate a Responses stream: the event types in order, the text, the final response. */
async function collectEvents(stream) {
  const out = { types: [], seqs: [], text: '', final: null };
  for await (const ev of stream) {
    out.types.push(ev.type);
    out.seqs.push(ev.sequence_number);
    if (ev.type === 'response.output_text.delta') out.text += ev.delta;
    if (ev.type === 'response.completed') out.final = ev.response;
  }
  return out;
}

const EXPECTED_TYPES = [
  'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
  'response.output_text.delta', 'response.output_text.done', 'response.content_part.done',
  'response.output_item.done', 'response.completed',
];

test('stream: true — stored from response.completed, replayed as the same typed events', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const body = { model: 'gpt-fake', input: 'Tell me about tides', store: false, stream: true };
  const live = await collectEvents(await c.responses.create(body));
  assert.equal(fake.stats().responses, 1);
  const { data: stream, response } = await c.responses.create(body).withResponse();
  assert.equal(response.headers.get('x-parrot-cache'), 'hit');
  const hit = await collectEvents(stream);
  assert.equal(fake.stats().responses, 1, 'the replay made no provider call');
  // The live stream splits the text into several deltas; the replay sends one.
  assert.deepEqual([...new Set(hit.types)], [...new Set(live.types)]);
  assert.deepEqual(hit.types, EXPECTED_TYPES);
  assert.deepEqual(hit.seqs, hit.types.map((_, i) => i), 'sequence numbers count up from 0');
  assert.equal(hit.text, live.text);
  assert.deepEqual(withoutStamp(hit.final), withoutStamp(live.final));
  // A plain request is served from the streamed answer, and the other way round.
  const plain = await create(c, { input: 'Tell me about tides', store: false, instructions: undefined });
  assert.equal(cacheOf(plain), 'hit');
  assert.equal(plain.data.output_text, live.text);
  await create(c, { input: 'Tell me about waves', store: false, instructions: undefined });
  const replayed = await collectEvents(await c.responses.create({ ...body, input: 'Tell me about waves' }));
  assert.equal(replayed.text, 'echo: Tell me about waves');
  assert.equal(fake.stats().responses, 2);
});

test('the SDK responses.stream helper sees on a hit what it saw live', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const run = async () => {
    const deltas = [];
    const s = c.responses.stream({ model: 'gpt-fake', input: 'Describe a harbour' });
    s.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await s.finalResponse();
    return { text: deltas.join(''), final };
  };
  const live = await run();
  const hit = await run();
  assert.equal(fake.stats().responses, 1);
  assert.equal(hit.text, live.text);
  assert.equal(hit.final.output_text, live.final.output_text);
  assert.equal(hit.final.id, live.final.id, 'store defaults to true: the original id');
  assert.deepEqual(withoutStamp(hit.final), withoutStamp(live.final));
});

test('a stream that ends without response.completed is relayed and not stored', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const body = { model: 'gpt-fake', input: 'unfinished', stream: true };
  const cut = await collectEvents(await c.responses.create(body, { headers: { 'x-fake-drop': 'mid-stream' } }));
  assert.equal(cut.final, null);
  const incomplete = await collectEvents(await c.responses.create({ ...body, input: 'stopped' }, { headers: { 'x-fake-finish': 'incomplete' } }));
  assert.ok(incomplete.types.includes('response.incomplete'));
  const again = await c.responses.create(body).withResponse();
  assert.equal(again.response.headers.get('x-parrot-cache'), 'miss');
  await collectEvents(again.data);
  const again2 = await c.responses.create({ ...body, input: 'stopped' }).withResponse();
  assert.equal(again2.response.headers.get('x-parrot-cache'), 'miss');
  await collectEvents(again2.data);
  assert.equal(fake.stats().responses, 4);
});
