// Self-test of the scripted fake upstream (no parrot involved), so a broken
// fake is not mistaken for a broken proxy.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  startFake, cleanup, request, chatBody, waitFor, within, joinDeltas, sseData, errorShape,
} from './helpers.mjs';
import { fakeEmbedding } from '../fake/upstream.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

const json = { 'content-type': 'application/json' };

test('fake: non-stream chat echoes the last user message and records stats', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const body = JSON.stringify({
    model: 'm-1',
    messages: [
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'x' },
      { role: 'user', content: [{ type: 'text', text: 'second' }, { type: 'text', text: 'part' }] },
    ],
  });
  const r = await request(fake.origin, { method: 'POST', path: '/v1/chat/completions?x=1', headers: { ...json, authorization: 'Bearer k' }, body });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.match(r.headers['x-request-id'], /^upstream-\d+$/);
  assert.equal(r.headers['openai-processing-ms'], '1');
  const j = JSON.parse(r.body);
  assert.equal(j.object, 'chat.completion');
  assert.match(j.id, /^chatcmpl-fake-\d+$/);
  assert.equal(j.model, 'm-1');
  assert.equal(j.choices[0].message.content, 'echo: second part');
  assert.equal(j.choices[0].finish_reason, 'stop');
  assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + j.usage.completion_tokens);
  const s = fake.stats();
  assert.equal(s.lastBody, r.body);
  assert.equal(s.total, 1);
  assert.equal(s.paths['/v1/chat/completions'], 1);
  assert.equal(s.last.method, 'POST');
  assert.equal(s.last.url, '/v1/chat/completions?x=1');
  assert.equal(s.last.headers.authorization, 'Bearer k');
  assert.equal(s.last.body, body);
  fake.reset();
  assert.equal(fake.stats().total, 0);
  await fake.close();
});

test('fake: stream with include_usage and x-fake-chunks', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const r = await request(fake.origin, {
    method: 'POST', path: '/v1/chat/completions', headers: { ...json, 'x-fake-chunks': '5' },
    body: chatBody('ignored', { stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/event-stream');
  assert.equal(r.body, fake.stats().lastBody);
  assert.equal(joinDeltas(r.body), 'w1 w2 w3 w4 w5');
  const data = sseData(r.body);
  assert.equal(data.at(-1), '[DONE]');
  // role chunk + 5 words + finish + usage + DONE
  assert.equal(data.length, 9);
  const usage = JSON.parse(data.at(-2));
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 5);
  assert.equal(JSON.parse(data.at(-3)).choices[0].finish_reason, 'stop');
  assert.equal(fake.stats().completed, 1);
  await fake.close();
});

test('fake: error scripting, models, embeddings, 404', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const e = await request(fake.origin, { path: '/v1/models', headers: { 'x-fake-status': '429' } });
  assert.equal(e.status, 429);
  assert.equal(e.headers['retry-after'], '0');
  const err = errorShape(assert, e.body);
  assert.equal(err.message, 'fake error 429');
  assert.equal(err.code, 'fake_429');

  const m = await request(fake.origin, { path: '/v1/models' });
  assert.deepEqual(JSON.parse(m.body).data.map((x) => x.id), ['gpt-fake', 'gpt-fake-mini', 'text-embedding-fake']);

  const em = await request(fake.origin, {
    method: 'POST', path: '/v1/embeddings', headers: json,
    body: JSON.stringify({ model: 'e', input: ['a', 'b'] }),
  });
  const ej = JSON.parse(em.body);
  assert.equal(ej.data.length, 2);
  assert.deepEqual(ej.data[1].embedding, fakeEmbedding('b'));
  assert.equal(ej.data[1].embedding.length, 8);

  const b64 = await request(fake.origin, {
    method: 'POST', path: '/v1/embeddings', headers: json,
    body: JSON.stringify({ model: 'e', input: 'a', encoding_format: 'base64' }),
  });
  const buf = Buffer.from(JSON.parse(b64.body).data[0].embedding, 'base64');
  assert.deepEqual(Array.from(new Float32Array(buf.buffer, buf.byteOffset, 8)), fakeEmbedding('a'));

  const nf = await request(fake.origin, { path: '/v2/nothing' });
  assert.equal(nf.status, 404);
  errorShape(assert, nf.body);

  const st = await request(fake.origin, { path: '/_fake/stats' });
  assert.equal(JSON.parse(st.body).total, 5);
  await request(fake.origin, { method: 'POST', path: '/_fake/reset' });
  assert.equal(fake.stats().total, 0);
  await fake.close();
});

test('fake: delay, drops and aborted accounting', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  await assert.rejects(request(fake.origin, { path: '/v1/models', headers: { 'x-fake-drop': 'before-headers' } }));
  const mid = await new Promise((resolve) => {
    const req = http.request(`${fake.origin}/v1/chat/completions`, {
      method: 'POST', headers: { ...json, 'x-fake-drop': 'mid-stream', 'x-fake-chunks': '6' }, agent: false,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('error', () => resolve({ text, complete: res.complete }));
      res.on('close', () => resolve({ text, complete: res.complete }));
    });
    req.on('error', () => resolve({ text: '', complete: false }));
    req.end(chatBody('x', { stream: true }));
  });
  assert.equal(mid.complete, false);
  assert.equal(mid.text, fake.stats().lastBody);
  assert.ok(!mid.text.includes('[DONE]'));
  assert.equal(fake.stats().aborted, 0, 'deliberate drops are not client aborts');

  // A client that gives up during x-fake-delay-ms counts as aborted.
  const ac = new AbortController();
  const p = fetch(`${fake.url}/models`, { headers: { 'x-fake-delay-ms': '5000' }, signal: ac.signal });
  await waitFor(() => fake.stats().inflight === 1, { what: 'request in flight' });
  ac.abort();
  await assert.rejects(p);
  await waitFor(() => fake.stats().aborted === 1, { what: 'aborted=1' });
  await fake.close();
});

test('fake: x-fake-bytes honours back-pressure and sends exactly N bytes', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const N = 16 * 1024 * 1024 + 5;
  let received = 0;
  let paused;
  const done = new Promise((resolve, reject) => {
    const req = http.request(`${fake.origin}/v1/chat/completions`, {
      method: 'POST', headers: { ...json, 'x-fake-bytes': String(N) }, agent: false,
    }, (res) => {
      res.on('data', (c) => {
        received += c.length;
        if (!paused) {
          res.pause();
          paused = sleep(1000).then(() => { const w = fake.stats().bigWritten; res.resume(); return w; });
        }
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(chatBody('x', { stream: true }));
  });
  await within(done, 30_000, 'big stream');
  const writtenWhilePaused = await paused;
  assert.ok(writtenWhilePaused < N, `fake wrote ${writtenWhilePaused} of ${N} bytes while the client was paused`);
  assert.equal(received, N);
  assert.equal(fake.stats().bigWritten, N);
  await fake.close();
});

test('fake: CLI prints {"listening":PORT} and serves', { timeout: TEST_TIMEOUT_MS }, async () => {
  const script = fileURLToPath(new URL('../fake/upstream.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const line = await within(new Promise((resolve) => {
      let buf = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (c) => {
        buf += c;
        if (buf.includes('\n')) resolve(buf.split('\n')[0]);
      });
    }), 10_000, 'fake CLI start');
    assert.match(line, /^\{"listening":\d+\}$/);
    const { listening } = JSON.parse(line);
    const r = await request(`http://127.0.0.1:${listening}`, { path: '/v1/models' });
    assert.equal(r.status, 200);
  } finally {
    child.kill('SIGTERM');
  }
});
