// Relaying through parrot with the real curl: byte-identical bodies,
// pass-through routes, headers, health endpoints, request logs.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startPair, cleanup, curl, chatBody, errorShape, waitForLog, joinDeltas,
} from './helpers.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

const JSON_CT = ['-H', 'content-type: application/json'];

function postChat(parrot, body, extra = []) {
  return curl([...JSON_CT, ...extra, '--data-binary', '@-', `${parrot.base}/v1/chat/completions`], { input: body });
}

test('curl: non-stream chat completion is relayed byte for byte', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const r = await postChat(parrot, chatBody('hello parrot'));
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  const s = fake.stats();
  assert.equal(s.paths['/v1/chat/completions'], 1, 'upstream saw exactly one chat request');
  assert.equal(r.body, s.lastBody);
  assert.equal(JSON.parse(r.body).choices[0].message.content, 'echo: hello parrot');
  // The forwarded request body is the client's body (parsed equal).
  assert.deepEqual(JSON.parse(s.last.body), JSON.parse(chatBody('hello parrot')));
  assert.equal(s.last.method, 'POST');
  assert.equal(s.last.url, '/v1/chat/completions');
});

test('curl: streamed chat completion is relayed byte for byte', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const body = chatBody('stream me please', { stream: true, stream_options: { include_usage: true } });
  const r = await postChat(parrot, body, ['-N', '-H', 'x-fake-chunks: 12', '-H', 'x-fake-chunk-delay-ms: 5']);
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'] || '', /^text\/event-stream/);
  assert.match(r.headers['x-upstream-request-id'] || '', /^upstream-\d+$/);
  assert.ok(r.headers['x-request-id']);
  const s = fake.stats();
  assert.equal(s.completed, 1, 'fake finished the stream');
  assert.equal(r.body, s.lastBody);
  assert.ok(r.body.endsWith('data: [DONE]\n\n'));
  assert.equal(joinDeltas(r.body), 'w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12');
});

test('health endpoints, unknown routes and wrong methods', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const h = await curl([`${parrot.base}/healthz`]);
  assert.equal(h.status, 200);
  assert.match(h.headers['content-type'] || '', /^application\/json/);
  assert.deepEqual(JSON.parse(h.body), { status: 'ok' });

  const rz = await curl([`${parrot.base}/readyz`]);
  assert.equal(rz.status, 200);
  assert.deepEqual(JSON.parse(rz.body), { status: 'ready' });

  for (const [method, p] of [['POST', '/healthz'], ['DELETE', '/readyz'], ['PUT', '/healthz']]) {
    const r = await curl(['-X', method, `${parrot.base}${p}`]);
    assert.equal(r.status, 405, `${method} ${p}`);
    assert.equal(errorShape(assert, r.body).code, 'method_not_allowed');
  }
  for (const p of ['/', '/nope', '/v2/chat/completions', '/healthzz', '/v1x/models']) {
    const r = await curl([`${parrot.base}${p}`]);
    assert.equal(r.status, 404, p);
    assert.equal(errorShape(assert, r.body).code, 'unknown_url', p);
  }
  assert.equal(fake.stats().total, 0, 'none of these reached the upstream');
});

test('other /v1 routes pass through unchanged, query string kept', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();

  const m = await curl([`${parrot.base}/v1/models?limit=2&after=x%20y`]);
  assert.equal(m.status, 200, m.body);
  assert.equal(fake.stats().last.url, '/v1/models?limit=2&after=x%20y');
  assert.equal(fake.stats().last.method, 'GET');
  assert.equal(m.body, fake.stats().lastBody);
  assert.equal(JSON.parse(m.body).data.length, 3);

  const one = await curl([`${parrot.base}/v1/models/gpt-fake-mini`]);
  assert.equal(one.status, 200);
  assert.equal(JSON.parse(one.body).id, 'gpt-fake-mini');

  const emb = JSON.stringify({ model: 'text-embedding-fake', input: ['a', 'b', 'c'] });
  const e = await curl([...JSON_CT, '--data-binary', '@-', `${parrot.base}/v1/embeddings`], { input: emb });
  assert.equal(e.status, 200, e.body);
  assert.equal(e.body, fake.stats().lastBody);
  assert.equal(fake.stats().last.body, emb, 'pass-through request body is unchanged');

  // Any method; the upstream's own 404 comes back unchanged.
  const d = await curl(['-X', 'DELETE', `${parrot.base}/v1/files/file-abc?purge=1`]);
  assert.equal(fake.stats().last.method, 'DELETE');
  assert.equal(fake.stats().last.url, '/v1/files/file-abc?purge=1');
  assert.equal(d.status, 404);
  assert.equal(d.body, fake.stats().lastBody);
});

test('Authorization is passed through when no upstream key is configured', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const r = await postChat(parrot, chatBody('auth'), ['-H', 'authorization: Bearer sk-client-abc']);
  assert.equal(r.status, 200, r.body);
  assert.equal(fake.stats().last.headers.authorization, 'Bearer sk-client-abc');

  const m = await curl(['-H', 'authorization: Bearer sk-client-def', `${parrot.base}/v1/models`]);
  assert.equal(m.status, 200);
  assert.equal(fake.stats().last.headers.authorization, 'Bearer sk-client-def');
});

test('PARROT_UPSTREAM_KEY replaces the client Authorization header', { timeout: TEST_TIMEOUT_MS }, async () => {
  const secret = 'sk-upstream-SECRET-7f3a9c';
  const { fake, parrot } = await startPair({ env: { PARROT_UPSTREAM_KEY: secret } });
  const r = await postChat(parrot, chatBody('auth'), ['-H', 'authorization: Bearer sk-client-abc']);
  assert.equal(r.status, 200, r.body);
  assert.equal(fake.stats().last.headers.authorization, `Bearer ${secret}`);

  // Also added when the client sent none; pass-through routes too.
  const m = await curl([`${parrot.base}/v1/models`]);
  assert.equal(m.status, 200);
  assert.equal(fake.stats().last.headers.authorization, `Bearer ${secret}`);

  // The secret must not leak back to the client or into the logs.
  assert.ok(!r.body.includes(secret) && !JSON.stringify(r.headers).includes(secret));
  await waitForLog(parrot, (l) => l.path === '/v1/models', 'request log for /v1/models');
  assert.ok(!parrot.stderr().includes(secret), 'upstream key appears in parrot logs');
});

test('x-request-id is echoed or generated on every response; upstream id relayed', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();

  const mine = await postChat(parrot, chatBody('what is the capital of france'), ['-H', 'x-request-id: client-id-123']);
  assert.equal(mine.status, 200);
  assert.equal(mine.headers['x-request-id'], 'client-id-123');
  const upstreamId = JSON.parse(mine.body).id.replace('chatcmpl-fake-', 'upstream-');
  assert.equal(mine.headers['x-upstream-request-id'], upstreamId);

  const gen1 = await postChat(parrot, chatBody('write a haiku about autumn rain'));
  const gen2 = await postChat(parrot, chatBody('how many legs does a spider have'));
  for (const g of [gen1, gen2]) {
    assert.equal(g.status, 200);
    assert.ok(g.headers['x-request-id'], 'generated x-request-id missing');
    assert.match(g.headers['x-upstream-request-id'] || '', /^upstream-\d+$/);
    assert.notEqual(g.headers['x-request-id'], g.headers['x-upstream-request-id'],
      'x-request-id must be parrot\'s own id, not the upstream\'s');
  }
  assert.notEqual(gen1.headers['x-request-id'], gen2.headers['x-request-id'], 'generated ids are unique');

  // Pass-through, streaming, health, parrot errors and relayed upstream errors too.
  const checks = [
    curl([`${parrot.base}/v1/models`]),
    postChat(parrot, chatBody('explain tcp slow start', { stream: true }), ['-N']),
    curl([`${parrot.base}/healthz`]),
    curl([`${parrot.base}/readyz`]),
    curl([`${parrot.base}/no-such-route`]),
    curl(['-X', 'POST', `${parrot.base}/healthz`]),
    postChat(parrot, '{not json'),
    curl(['-H', 'x-fake-status: 503', `${parrot.base}/v1/models`]),
  ];
  for (const r of await Promise.all(checks)) {
    assert.ok(r.status > 0);
    assert.ok(r.headers['x-request-id'], `no x-request-id on a ${r.status} response: ${JSON.stringify(r.headers)}`);
  }
  const echoed = await curl(['-H', 'x-request-id: abc-404', `${parrot.base}/nowhere`]);
  assert.equal(echoed.status, 404);
  assert.equal(echoed.headers['x-request-id'], 'abc-404');
  assert.ok(fake.stats().total >= 4);
});

test('one JSON "request" log line per request with the documented fields', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const body = chatBody('log me');
  const r = await postChat(parrot, body, ['-H', 'x-request-id: log-test-1']);
  assert.equal(r.status, 200);
  const line = await waitForLog(parrot, (l) => l.id === 'log-test-1', 'request log line with id log-test-1');
  assert.equal(line.method, 'POST');
  assert.equal(line.path, '/v1/chat/completions');
  assert.equal(line.status, 200);
  for (const k of ['ms', 'bytes_in', 'bytes_out', 'upstream_ms']) {
    assert.equal(typeof line[k], 'number', `field ${k} is ${JSON.stringify(line[k])}`);
    assert.ok(line[k] >= 0, `field ${k} negative`);
  }
  assert.ok(line.bytes_in >= Buffer.byteLength(body), `bytes_in ${line.bytes_in} < body ${Buffer.byteLength(body)}`);
  assert.ok(line.bytes_out >= r.raw.length, `bytes_out ${line.bytes_out} < body ${r.raw.length}`);

  const nf = await curl(['-H', 'x-request-id: log-test-2', `${parrot.base}/missing`]);
  assert.equal(nf.status, 404);
  const l2 = await waitForLog(parrot, (l) => l.id === 'log-test-2', 'request log line with id log-test-2');
  assert.equal(l2.status, 404);
  assert.equal(l2.method, 'GET');
  assert.equal(l2.path, '/missing');
  assert.equal(parrot.logs().filter((l) => l.msg === 'request' && l.id === 'log-test-1').length, 1,
    'exactly one request line per request');
});
