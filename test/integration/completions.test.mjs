// POST /v1/completions (legacy) through the cache, plain and streamed
// (docs/cache.md), driven with the official openai SDK; the fake counts the
// provider calls (stats().completions).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startPair, cleanup } from './helpers.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 60_000;
const MODEL = 'gpt-fake-instruct';

function client(parrot) {
  return new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-legacy', maxRetries: 0, timeout: 30_000 });
}

const complete = (c, prompt, extra = {}, headers = {}) =>
  c.completions.create({ model: MODEL, prompt, max_tokens: 16, ...extra }, { headers }).withResponse();
const cacheOf = (res) => res.response.headers.get('x-parrot-cache');
// What the client keeps of an answer, ids and timestamps aside.
const sameAnswer = ({ id, created, ...rest }) => rest;

async function collect(stream) {
  const out = { text: [], finish: [], usage: null, objects: new Set(), ids: new Set() };
  for await (const ch of stream) {
    out.objects.add(ch.object);
    out.ids.add(ch.id);
    if (ch.usage) out.usage = ch.usage;
    for (const c of ch.choices) {
      out.text[c.index] = (out.text[c.index] || '') + c.text;
      if (c.finish_reason) out.finish[c.index] = c.finish_reason;
    }
  }
  return out;
}

test('a repeated completion is a hit equal to the live answer', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const live = await complete(c, 'Once upon a time');
  assert.equal(cacheOf(live), 'miss');
  const hit = await complete(c, 'Once upon a time');
  assert.equal(cacheOf(hit), 'hit');
  assert.equal(hit.response.headers.get('cache-status'), 'parrot; hit; detail=exact');
  assert.equal(fake.stats().completions, 1);
  assert.equal(hit.data.object, 'text_completion');
  assert.match(hit.data.id, /^cmpl-parrot-[0-9a-f]{24}$/);
  assert.deepEqual(sameAnswer(hit.data), sameAnswer(live.data));
  assert.equal(hit.data.choices[0].text, 'completed: Once upon a time');
  // ["x"] is the same prompt as "x".
  assert.equal(cacheOf(await complete(c, ['Once upon a time'])), 'hit');
  // Other parameters are another partition.
  assert.equal(cacheOf(await complete(c, 'Once upon a time', { temperature: 0.2 })), 'miss');
  assert.equal(fake.stats().completions, 2);
});

test('streamed: relayed live, replayed as text_completion chunks on a hit, in both directions', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const live = await collect(await c.completions.create({ model: MODEL, prompt: 'The sea is', max_tokens: 16, stream: true, stream_options: { include_usage: true } }));
  const replay = await collect(await c.completions.create({ model: MODEL, prompt: 'The sea is', max_tokens: 16, stream: true, stream_options: { include_usage: true } }));
  assert.equal(fake.stats().completions, 1, 'the replay made no provider call');
  assert.deepEqual(replay.text, live.text);
  assert.deepEqual(replay.finish, ['stop']);
  assert.deepEqual(replay.usage, live.usage);
  assert.deepEqual([...replay.objects], ['text_completion']);
  assert.equal(replay.ids.size, 1);
  // The streamed answer serves a plain request, and a plain one a stream.
  const plain = await complete(c, 'The sea is');
  assert.equal(cacheOf(plain), 'hit');
  assert.equal(plain.data.choices[0].text, live.text[0]);
  await complete(c, 'The sky is');
  const fromPlain = await collect(await c.completions.create({ model: MODEL, prompt: 'The sky is', max_tokens: 16, stream: true }));
  assert.deepEqual(fromPlain.text, ['completed: The sky is']);
  assert.equal(fromPlain.usage, null, 'no usage chunk unless asked');
  assert.equal(fake.stats().completions, 2);
});

test('token prompts and batches are cached exactly; unfinished answers are not stored', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  await complete(c, [15496, 11, 995]);
  assert.equal(cacheOf(await complete(c, [15496, 11, 995])), 'hit');
  const batch = await complete(c, ['first prompt', 'second prompt']);
  const again = await complete(c, ['first prompt', 'second prompt']);
  assert.equal(cacheOf(again), 'hit');
  assert.deepEqual(sameAnswer(again.data), sameAnswer(batch.data));
  assert.equal(again.data.choices.length, 2);
  assert.equal(cacheOf(await complete(c, ['second prompt', 'first prompt'])), 'miss');
  assert.equal(fake.stats().completions, 3);
  await complete(c, 'cut short', {}, { 'x-fake-finish': 'length' });
  assert.equal(cacheOf(await complete(c, 'cut short')), 'miss', 'a length-limited answer was not stored');
  assert.equal(fake.stats().completions, 5);
});
