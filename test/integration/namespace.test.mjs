// x-parrot-namespace: a cache scope inside the client's tenant
// (docs/cache.md, "Namespaces"), driven with the official openai SDK.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { BadRequestError } from 'openai';
import { startPair, cleanup } from './helpers.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 60_000;

function client(parrot, key, ns) {
  return new OpenAI({
    baseURL: `${parrot.base}/v1`,
    apiKey: key,
    maxRetries: 0,
    timeout: 30_000,
    defaultHeaders: ns === undefined ? {} : { 'x-parrot-namespace': ns },
  });
}

const ask = (c, text) =>
  c.chat.completions.create({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] }).withResponse();

test('a namespace is its own cache inside the tenant, and never reaches another tenant', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const plain = client(parrot, 'sk-ns-a');
  const suite = client(parrot, 'sk-ns-a', 'test-suite');
  const other = client(parrot, 'sk-ns-b', 'test-suite');

  const first = await ask(plain, 'what is a namespace');
  assert.equal(first.response.headers.get('x-parrot-cache'), 'miss');
  // Same key, same question, another namespace: not the plain scope's answer.
  const inNs = await ask(suite, 'what is a namespace');
  assert.equal(inNs.response.headers.get('x-parrot-cache'), 'miss');
  assert.equal(fake.stats().chat, 2);
  const again = await ask(suite, 'what is a namespace');
  assert.equal(again.response.headers.get('x-parrot-cache'), 'hit');
  assert.equal(again.data.choices[0].message.content, inNs.data.choices[0].message.content);
  // Another key with the same namespace name is another tenant: a miss.
  const foreign = await ask(other, 'what is a namespace');
  assert.equal(foreign.response.headers.get('x-parrot-cache'), 'miss');
  assert.equal(fake.stats().chat, 3);
  // The header is parrot's own: the provider never saw it.
  assert.equal(fake.stats().last.headers['x-parrot-namespace'], undefined);
});

test('a shared tenant is shared per namespace', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--shared-tenant', 'team'] });
  await ask(client(parrot, 'sk-app-1', 'docs'), 'shared question');
  const other = await ask(client(parrot, 'sk-app-2', 'docs'), 'shared question');
  assert.equal(other.response.headers.get('x-parrot-cache'), 'hit');
  const outside = await ask(client(parrot, 'sk-app-2'), 'shared question');
  assert.equal(outside.response.headers.get('x-parrot-cache'), 'miss');
  assert.equal(fake.stats().chat, 2);
});

test('a malformed namespace is refused with an OpenAI-shaped 400', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  for (const bad of ['has space', 'a:b', 'x'.repeat(65), 'slash/ed']) {
    await assert.rejects(ask(client(parrot, 'sk-ns-bad', bad), 'hi'), (e) => {
      assert.ok(e instanceof BadRequestError, `${bad}: ${e}`);
      assert.equal(e.code, 'invalid_namespace');
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
  }
  const ok = await ask(client(parrot, 'sk-ns-bad', 'x'.repeat(64)), 'hi');
  assert.equal(ok.response.headers.get('x-parrot-cache'), 'miss');
  assert.equal(fake.stats().chat, 1);
});
