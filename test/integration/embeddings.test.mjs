// POST /v1/embeddings through the cache, input by input (docs/cache.md),
// driven with the official openai SDK; the fake's stats count the provider
// calls and the inputs each one carried.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { BadRequestError } from 'openai';
import { startPair, cleanup, metrics, waitFor } from './helpers.mjs';
import { fakeEmbedding } from '../fake/upstream.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 60_000;
const MODEL = 'text-embedding-fake';

function client(parrot, headers = {}) {
  return new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-emb', maxRetries: 0, timeout: 30_000, defaultHeaders: headers });
}

const embed = (c, input, extra = {}, headers = {}) =>
  c.embeddings.create({ model: MODEL, input, ...extra }, { headers }).withResponse();

const vectors = (res) => res.data.data.map((d) => d.embedding);
const cacheOf = (res) => res.response.headers.get('x-parrot-cache');

test('a single input: the second call is a hit, equal in both encodings', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  for (const encoding_format of [undefined, 'float', 'base64']) {
    fake.reset();
    const extra = encoding_format ? { encoding_format } : {};
    const text = `the quick brown fox ${encoding_format}`;
    const live = await embed(c, text, extra);
    assert.equal(cacheOf(live), 'miss');
    const hit = await embed(c, text, extra);
    assert.equal(cacheOf(hit), 'hit', encoding_format);
    assert.equal(hit.response.headers.get('cache-status'), 'parrot; hit; detail=exact');
    assert.equal(fake.stats().embedCalls, 1, 'one provider call');
    assert.deepEqual(vectors(hit), vectors(live));
    assert.equal(hit.data.model, live.data.model);
    assert.equal(hit.data.object, 'list');
    assert.deepEqual(hit.data.usage, { prompt_tokens: 0, total_tokens: 0 }, 'nothing billed on a hit');
    if (encoding_format !== 'base64') {
      // The SDK decoded base64 (its default) or parsed numbers: the provider's floats.
      assert.deepEqual(hit.data.data[0].embedding, fakeEmbedding(text).map(Math.fround));
    }
  }
  // A stored float answer serves a base64 request and the other way round.
  const cross = await embed(c, 'the quick brown fox float', { encoding_format: 'base64' });
  assert.equal(cacheOf(cross), 'hit');
  const raw = Buffer.from(cross.data.data[0].embedding, 'base64');
  const f32 = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  assert.deepEqual([...f32], fakeEmbedding('the quick brown fox float').map(Math.fround));
  // Four hits of five billed tokens each were saved (counted once each answer is sent).
  await waitFor(async () => (await metrics(parrot.base))['parrot_tokens_saved_total{kind="prompt"}'] === 20,
    { what: 'parrot_tokens_saved_total{kind="prompt"} 20' });
});

test('a batch with cached and new inputs: one provider call carrying only the new ones, in order', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const texts = Array.from({ length: 10 }, (_, i) => `sentence number ${i} about caching`);
  const cachedIdx = [0, 1, 2, 4, 5, 7, 9];
  await embed(c, cachedIdx.map((i) => texts[i]));
  assert.equal(fake.stats().embedCalls, 1);
  fake.reset();

  const mixed = await embed(c, texts);
  assert.equal(cacheOf(mixed), 'miss');
  assert.equal(mixed.response.headers.get('x-parrot-cached-inputs'), '7/10');
  assert.match(mixed.response.headers.get('cache-status'), /detail=partial; stored/);
  const st = fake.stats();
  assert.equal(st.embedCalls, 1, 'one provider call');
  assert.deepEqual(st.embedInputs, [texts[3], texts[6], texts[8]], 'only the new inputs, in order');
  // usage counts what the provider billed: one word count per new input.
  const billed = [3, 6, 8].reduce((n, i) => n + texts[i].split(' ').length, 0);
  assert.deepEqual(mixed.data.usage, { prompt_tokens: billed, total_tokens: billed });
  assert.deepEqual(mixed.data.data.map((d) => d.index), texts.map((_, i) => i));
  assert.deepEqual(vectors(mixed), texts.map((t) => fakeEmbedding(t).map(Math.fround)));

  // The reference: the whole batch straight from the provider.
  const direct = await embed(c, texts, {}, { 'Cache-Control': 'no-cache' });
  assert.equal(cacheOf(direct), 'bypass');
  assert.deepEqual(vectors(mixed), vectors(direct));

  // Now everything is cached, in float encoding too.
  fake.reset();
  const all = await embed(c, texts, { encoding_format: 'float' });
  assert.equal(cacheOf(all), 'hit');
  assert.equal(fake.stats().embedCalls, 0);
  assert.deepEqual(vectors(all), vectors(direct));

  const m = await metrics(parrot.base);
  assert.equal(m['parrot_cache_items_total{result="hit"}'], 17, 'hits: 7 + 10');
  assert.equal(m['parrot_cache_items_total{result="miss"}'], 10, 'misses: 7 + 3');
  assert.equal(m['parrot_cache_items_total{result="bypass"}'], 10, 'no-cache: 10');
});

test('token arrays are inputs; dimensions and the model split the cache', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const tokens = [[101, 2023, 2003], [101, 2178]];
  const live = await embed(c, tokens, { encoding_format: 'float' });
  assert.equal(fake.stats().embedCalls, 1);
  const one = await embed(c, tokens[1], { encoding_format: 'float' });
  assert.equal(cacheOf(one), 'hit', 'one token array is one input');
  assert.deepEqual(vectors(one), [vectors(live)[1]]);
  assert.equal(cacheOf(await embed(c, tokens, { dimensions: 4, encoding_format: 'float' })), 'miss');
  assert.equal(cacheOf(await embed(c, tokens[0], { model: 'text-embedding-other', encoding_format: 'float' })), 'miss');
  // A string with the same characters is another input.
  assert.equal(cacheOf(await embed(c, '[101,2178]', { encoding_format: 'float' })), 'miss');
  assert.equal(fake.stats().embedCalls, 4);
});

test('Cache-Control and namespaces apply; bad inputs get OpenAI-shaped 400s', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  await embed(c, 'stored once', {}, { 'Cache-Control': 'no-store' });
  assert.equal(cacheOf(await embed(c, 'stored once')), 'miss', 'no-store kept it out');
  await assert.rejects(embed(c, ['stored once', 'never seen'], {}, { 'Cache-Control': 'only-if-cached' }),
    (e) => e.status === 504 && e.code === 'cache_miss');
  assert.equal(cacheOf(await embed(c, 'stored once', {}, { 'x-parrot-namespace': 'other' })), 'miss');
  assert.equal(fake.stats().embedCalls, 3);
  for (const input of ['', [], [''], ['a', [1, 2]], [1.5], { text: 'x' }, null]) {
    await assert.rejects(embed(c, input), (e) => {
      assert.ok(e instanceof BadRequestError, JSON.stringify(input));
      assert.equal(e.param, 'input');
      return true;
    });
  }
  await assert.rejects(embed(c, 'x', { encoding_format: 'int8' }), (e) => e.status === 400 && e.param === 'encoding_format');
  await assert.rejects(embed(c, Array(2049).fill('x')), (e) => e.status === 400 && /2048/.test(e.message));
  assert.equal(fake.stats().embedCalls, 3, 'nothing malformed reached the provider');
});

test('100 inputs of 1536 floats, 97 cached: 3 go to the provider, the answer (over 1 MiB) is merged', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const c = client(parrot);
  const texts = Array.from({ length: 100 }, (_, i) => `document chunk ${i}`);
  const fresh = new Set([13, 50, 99]);
  fake.embedScript({ dim: 1536 });
  await embed(c, texts.filter((_, i) => !fresh.has(i)), { encoding_format: 'float' });
  const before = fake.stats().embedCalls;
  const mixed = await embed(c, texts, { encoding_format: 'float' });
  assert.equal(mixed.response.headers.get('x-parrot-cached-inputs'), '97/100');
  assert.equal(fake.stats().embedCalls, before + 1);
  assert.deepEqual(fake.stats().embedBatches.at(-1), 3);
  const direct = await embed(c, texts, { encoding_format: 'float' }, { 'Cache-Control': 'no-cache' });
  assert.equal(direct.data.data[0].embedding.length, 1536);
  assert.deepEqual(vectors(mixed), vectors(direct));
  const hit = await embed(c, texts);
  assert.equal(cacheOf(hit), 'hit');
  assert.deepEqual(vectors(hit), vectors(direct));
});
