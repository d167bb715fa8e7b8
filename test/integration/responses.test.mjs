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
