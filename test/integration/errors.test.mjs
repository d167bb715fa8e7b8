// parrot-generated errors (validation, limits, upstream failures) and
// relayed upstream errors, driven with the real curl and raw sockets.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import {
  startPair, startParrot, startFake, cleanup, curl, chatBody, errorShape, closedPort, within,
} from './helpers.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

function post(parrot, body, { ct = 'application/json', extra = [], path = '/v1/chat/completions' } = {}) {
  const h = ct === null ? [] : ['-H', `content-type: ${ct}`];
  return curl([...h, ...extra, '--data-binary', '@-', `${parrot.base}${path}`], { input: body });
}

function expectError(r, status, { code, param, type } = {}) {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.body}`);
  assert.match(r.headers['content-type'] || '', /^application\/json/, 'error content-type');
  const e = errorShape(assert, r.body);
  if (code !== undefined) assert.equal(e.code, code, `code in ${r.body}`);
  if (param !== undefined) assert.equal(e.param, param, `param in ${r.body}`);
  if (type !== undefined) assert.equal(e.type, type, `type in ${r.body}`);
  return e;
}

/** Send raw bytes on a fresh TCP connection; resolve with whatever comes back. */
function rawExchange(port, bytes, { waitMs = 5_000, endAfterWrite = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const parts = [];
    const finish = (how) => {
      clearTimeout(t);
      s.destroy();
      const text = Buffer.concat(parts).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ how, text, status: m ? Number(m[1]) : 0 });
    };
    const t = setTimeout(() => finish('timeout'), waitMs);
    s.on('connect', () => {
      s.write(bytes);
      if (endAfterWrite) s.end();
    });
    s.on('data', (c) => {
      parts.push(c);
      // One complete response is enough.
      const text = Buffer.concat(parts).toString('latin1');
      const he = text.indexOf('\r\n\r\n');
      if (he >= 0) {
        const cl = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, he));
        if (cl && text.length >= he + 4 + Number(cl[1])) finish('response');
      }
    });
    s.on('end', () => finish('end'));
    s.on('error', () => finish('error'));
  });
}

test('request validation errors are OpenAI-shaped with exact status and code', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const cases = [
    ['malformed JSON', '{"model": "gpt-fake", "messages": [', 400, { code: 'invalid_json' }],
    ['trailing garbage', '{"model":"gpt-fake","messages":[{"role":"user","content":"x"}]} xyz', 400, { code: 'invalid_json' }],
    ['JSON array body', '[1,2,3]', 400, { code: 'invalid_json' }],
    ['JSON string body', '"hello"', 400, { code: 'invalid_json' }],
    ['JSON null body', 'null', 400, { code: 'invalid_json' }],
    ['missing model', JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }), 400,
      { code: 'missing_required_parameter', param: 'model' }],
    ['missing messages', JSON.stringify({ model: 'gpt-fake' }), 400,
      { code: 'missing_required_parameter', param: 'messages' }],
    ['empty messages', JSON.stringify({ model: 'gpt-fake', messages: [] }), 400, { code: 'invalid_type' }],
    ['messages is a string', JSON.stringify({ model: 'gpt-fake', messages: 'hi' }), 400, { code: 'invalid_type' }],
    ['messages is an object', JSON.stringify({ model: 'gpt-fake', messages: { role: 'user' } }), 400, { code: 'invalid_type' }],
    ['model is a number', JSON.stringify({ model: 5, messages: [{ role: 'user', content: 'x' }] }), 400, { code: 'invalid_type' }],
    ['model is null', JSON.stringify({ model: null, messages: [{ role: 'user', content: 'x' }] }), 400, { code: 'invalid_type' }],
  ];
  for (const [name, body, status, want] of cases) {
    const r = await post(parrot, body);
    expectError(r, status, want);
    assert.ok(r.headers['x-request-id'], `${name}: x-request-id`);
    assert.equal(fake.stats().total, 0, `${name}: parrot forwarded ${JSON.stringify(body)} instead of rejecting it`);
  }
  assert.equal(fake.stats().total, 0, 'invalid requests must not reach the upstream');
});

test('Content-Type must be application/json', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const body = chatBody('ct');
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
    expectError(await post(parrot, body, { ct }), 415, { code: 'unsupported_media_type' });
  }
  // curl -H 'content-type:' removes the header entirely.
  expectError(await post(parrot, body, { ct: null, extra: ['-H', 'content-type:'] }), 415,
    { code: 'unsupported_media_type' });
  assert.equal(fake.stats().total, 0);
  // A charset parameter is still application/json.
  const ok = await post(parrot, body, { ct: 'application/json; charset=utf-8' });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(fake.stats().total, 1);
});

test('--max-body-size: over-limit bodies get 413, under-limit bodies pass', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--max-body-size', '1k'] });
  const small = chatBody('x'.repeat(900));
  assert.ok(Buffer.byteLength(small) <= 1024);
  const ok = await post(parrot, small);
  assert.equal(ok.status, 200, ok.body);

  const big = chatBody('x'.repeat(2000));
  expectError(await post(parrot, big), 413, { code: 'request_too_large' });
  // Much bigger than the limit (curl may get cut off while uploading; a status must still arrive).
  const huge = chatBody('y'.repeat(4 * 1024 * 1024));
  const h = await post(parrot, huge);
  expectError(h, 413, { code: 'request_too_large' });
  // Chunked upload without Content-Length over the limit.
  const chunked = await post(parrot, big, { extra: ['-H', 'transfer-encoding: chunked'] });
  expectError(chunked, 413, { code: 'request_too_large' });
  assert.equal(fake.stats().paths['/v1/chat/completions'], 1, 'only the small request reached the upstream');

  const health = await curl([`${parrot.base}/healthz`]);
  assert.equal(health.status, 200);
});

test('upstream unreachable gives 502 upstream_unreachable', { timeout: TEST_TIMEOUT_MS }, async () => {
  const port = await closedPort();
  const parrot = await startParrot({ args: ['--upstream', `http://127.0.0.1:${port}/v1`] });
  expectError(await post(parrot, chatBody('x')), 502, { type: 'upstream_error', code: 'upstream_unreachable' });
  expectError(await curl([`${parrot.base}/v1/models`]), 502, { type: 'upstream_error', code: 'upstream_unreachable' });
  expectError(await post(parrot, chatBody('x', { stream: true }), { extra: ['-N'] }), 502,
    { type: 'upstream_error', code: 'upstream_unreachable' });
  assert.equal((await curl([`${parrot.base}/healthz`])).status, 200);
});

test('upstream slower than --upstream-timeout gives 504 upstream_timeout', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--upstream-timeout', '1s'] });
  const r = await post(parrot, chatBody('slow'), { extra: ['-H', 'x-fake-delay-ms: 3000'] });
  const e = expectError(r, 504, { code: 'upstream_timeout' });
  assert.equal(e.type, 'upstream_error');
  assert.equal(fake.stats().total, 1);
  // Fast requests still work with the same limit.
  const ok = await post(parrot, chatBody('fast'));
  assert.equal(ok.status, 200, ok.body);
});

test('upstream error responses are relayed with status and body unchanged', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  for (const status of [400, 401, 403, 404, 409, 422, 429, 500, 502, 503]) {
    const r = await post(parrot, chatBody('x'), { extra: ['-H', `x-fake-status: ${status}`] });
    assert.equal(r.status, status, r.body);
    assert.equal(r.body, fake.stats().lastBody, `body of relayed ${status}`);
    assert.equal(JSON.parse(r.body).error.code, `fake_${status}`);
    const m = await curl(['-H', `x-fake-status: ${status}`, `${parrot.base}/v1/models`]);
    assert.equal(m.status, status);
    assert.equal(m.body, fake.stats().lastBody);
  }
  // Stream requests that fail upstream before streaming are relayed too.
  const s = await post(parrot, chatBody('x', { stream: true }), { extra: ['-N', '-H', 'x-fake-status: 429'] });
  assert.equal(s.status, 429);
  assert.equal(s.body, fake.stats().lastBody);
});

test('garbage input does not hurt the process', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--max-body-size', '64k'] });

  const bin = crypto.randomBytes(4096);
  bin[0] = 0xff; // never valid JSON / UTF-8 start
  expectError(await post(parrot, bin), 400, { code: 'invalid_json' });

  expectError(await post(parrot, ''), 400, { code: 'invalid_json' });
  expectError(await post(parrot, '   \n\t '), 400, { code: 'invalid_json' });
  expectError(await post(parrot, '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['.repeat(200)), 400,
    { code: 'invalid_json' });

  // Huge Content-Length with a tiny body: must be refused, not waited on forever.
  const hugeCl = await curl(['-H', 'content-type: application/json', '-H', 'content-length: 99999999999',
    '--data-binary', 'x', `${parrot.base}/v1/chat/completions`], { timeoutMs: 8_000 });
  expectError(hugeCl, 413, { code: 'request_too_large' });

  // Raw sockets: absurd / malformed Content-Length, truncated bodies, junk request lines.
  const port = parrot.port;
  const overflow = await rawExchange(port,
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
    + 'Content-Length: 184467440737095516160000\r\n\r\n{}');
  assert.ok([400, 413].includes(overflow.status), `overflowing Content-Length: ${overflow.how} ${overflow.text.slice(0, 200)}`);

  const negative = await rawExchange(port,
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}');
  assert.equal(negative.status, 400, `negative Content-Length: ${negative.how} ${negative.text.slice(0, 200)}`);

  const junk = await rawExchange(port, 'HELLO\x00\x01\x02 there\r\n\r\n');
  assert.ok(junk.status === 400 || junk.how === 'end' || junk.how === 'error',
    `junk request line: ${junk.how} ${junk.text.slice(0, 200)}`);

  const binaryJunk = await rawExchange(port, crypto.randomBytes(2048), { endAfterWrite: true });
  assert.notEqual(binaryJunk.how, 'timeout', 'binary junk connection neither answered nor closed');

  // Client promises 100 bytes, sends 10, then closes its side.
  await rawExchange(port,
    'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":',
    { endAfterWrite: true, waitMs: 3_000 });

  // Many connections opened and dropped immediately.
  await Promise.all(Array.from({ length: 50 }, () => new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => { s.destroy(); resolve(); });
    s.on('error', resolve);
  })));

  assert.equal(fake.stats().total, 0, 'none of the garbage reached the upstream');
  assert.equal(parrot.exitInfo, null, 'parrot exited');
  const h = await within(curl([`${parrot.base}/healthz`]), 10_000, 'healthz after garbage');
  assert.equal(h.status, 200);
  assert.deepEqual(JSON.parse(h.body), { status: 'ok' });
  const ok = await post(parrot, chatBody('still alive'));
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).choices[0].message.content, 'echo: still alive');
});

test('upstream that goes away gives 502, and works again when it is back', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Upstream goes away after parrot started: 502, then comes back on the same port: 200.
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url] });
  assert.equal((await post(parrot, chatBody('recommend a science fiction novel'))).status, 200);
  const port = fake.port;
  await fake.close();
  expectError(await post(parrot, chatBody('what year did the berlin wall fall')), 502, { code: 'upstream_unreachable' });
  const again = await startFake({ port });
  const r = await post(parrot, chatBody('give me a pancake recipe'));
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, again.stats().lastBody);
});
