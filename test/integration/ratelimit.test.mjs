// Per-client rate limits: requests and provider tokens per minute, answered
// with an OpenAI-shaped 429 and Retry-After; cache hits cost nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { RateLimitError } from 'openai';
import { startPair, curlChat, cleanup, errorShape } from './helpers.mjs';

after(cleanup);
const T = { timeout: 30_000 };

const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

test('requests per minute: the 4th provider call in a minute is refused, per client', T, async () => {
  const { fake, parrot } = await startPair({ args: ['--rate-limit-rpm', '3'] });
  const alice = { authorization: 'Bearer sk-alice' };
  for (let i = 0; i < 3; i++) {
    const r = await curlChat(parrot.base, ask(`question ${i} for the limit`), alice);
    assert.equal(r.status, 200, r.body);
  }
  const refused = await curlChat(parrot.base, ask('one question too many'), alice);
  assert.equal(refused.status, 429, refused.body);
  const e = errorShape(assert, refused.body);
  assert.equal(e.code, 'rate_limit_exceeded');
  assert.equal(e.type, 'requests');
  const wait = Number(refused.headers['retry-after']);
  assert.ok(wait >= 1 && wait <= 60, `Retry-After ${refused.headers['retry-after']}`);
  assert.equal(fake.stats().chat, 3, 'a refused request must not reach the provider');

  // A cached answer spends no provider budget: still served.
  const hit = await curlChat(parrot.base, ask('question 0 for the limit'), alice);
  assert.equal(hit.status, 200, hit.body);
  assert.equal(hit.headers['x-parrot-cache'], 'hit');

  // Another client has its own budget.
  const bob = await curlChat(parrot.base, ask('bob asks'), { authorization: 'Bearer sk-bob' });
  assert.equal(bob.status, 200, bob.body);

  // The SDK maps it to RateLimitError (no retries, so the refusal is seen).
  const sdk = new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-alice', maxRetries: 0 });
  await assert.rejects(sdk.chat.completions.create(ask('sdk over the limit')), (err) => {
    assert.ok(err instanceof RateLimitError, String(err));
    assert.equal(err.status, 429);
    return true;
  });
});

test('tokens per minute: usage is charged, then the client waits', T, async () => {
  // Every fake answer reports a dozen or so total_tokens; 10 per minute
  // allows the first call and refuses the next.
  const { fake, parrot } = await startPair({ args: ['--rate-limit-tpm', '10'] });
  const h = { authorization: 'Bearer sk-carol' };
  const first = await curlChat(parrot.base, ask('a first question about tokens'), h);
  assert.equal(first.status, 200, first.body);
  assert.ok(JSON.parse(first.body).usage.total_tokens > 10);
  const second = await curlChat(parrot.base, ask('a second question about tokens'), h);
  assert.equal(second.status, 429, second.body);
  assert.equal(errorShape(assert, second.body).type, 'tokens');
  assert.ok(Number(second.headers['retry-after']) >= 1);
  assert.equal(fake.stats().chat, 1);
  // Streams are charged too (from their usage chunk).
  const other = { authorization: 'Bearer sk-dave' };
  const s = await curlChat(parrot.base, { ...ask('stream with usage'), stream: true,
    stream_options: { include_usage: true } }, other);
  assert.equal(s.status, 200);
  const after = await curlChat(parrot.base, ask('after the stream'), other);
  assert.equal(after.status, 429, after.body);
});

test('no limit by default', T, async () => {
  const { fake, parrot } = await startPair();
  for (let i = 0; i < 20; i++) {
    const r = await curlChat(parrot.base, ask(`unlimited ${i}`), { authorization: 'Bearer sk-x' });
    assert.equal(r.status, 200);
  }
  assert.equal(fake.stats().chat, 20);
});
