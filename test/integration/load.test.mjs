// 500 concurrent streams through one parrot: all complete, bounded threads.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startPair, cleanup, within, sampleProc, joinDeltas, sseData, procStatus } from './helpers.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 120_000;

const N = 500;
const WORDS = Array.from({ length: 10 }, (_, i) => `w${i + 1}`).join(' ');

function oneStream(agent, base, i) {
  return new Promise((resolve) => {
    const req = http.request(`${base}/v1/chat/completions`, {
      method: 'POST',
      agent,
      headers: {
        'content-type': 'application/json',
        'x-fake-chunks': '10',
        'x-fake-chunk-delay-ms': '50',
        'x-request-id': `load-${i}`,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ i, status: res.statusCode, text, complete: res.complete, id: res.headers['x-request-id'] }));
      res.on('error', (e) => resolve({ i, error: e.message, text }));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ i, error: e.message }));
    req.end(JSON.stringify({ model: `gpt-fake-${i}`, messages: [{ role: 'user', content: `n${i}` }], stream: true }));
  });
}

test(`${N} concurrent streaming requests complete with bounded threads`, { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const before = procStatus(parrot.pid);
  const sampler = sampleProc(parrot.pid, 20);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let results;
  try {
    results = await within(Promise.all(Array.from({ length: N }, (_, i) => oneStream(agent, parrot.base, i))),
      90_000, `${N} streams`);
  } finally {
    agent.destroy();
  }
  const s = sampler.stop();
  console.log(`# ${N} streams: max threads ${s.maxThreads}, max RSS ${s.maxRssKb} kB (start ${before.rssKb} kB, ${s.samples} samples)`);

  const failures = results.filter((r) => r.error || r.status !== 200 || !r.complete);
  assert.deepEqual(failures.map((r) => ({ i: r.i, error: r.error, status: r.status })).slice(0, 10), [],
    `${failures.length} of ${N} streams failed`);
  for (const r of results) {
    assert.equal(r.id, `load-${r.i}`, 'x-request-id echoed per request');
    assert.equal(joinDeltas(r.text), WORDS, `stream ${r.i} content`);
    const events = sseData(r.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(JSON.parse(events[0]).model, `gpt-fake-${r.i}`, `stream ${r.i} got another request's events`);
  }
  assert.equal(fake.stats().completed, N);
  assert.equal(fake.stats().aborted, 0);
  assert.ok(s.samples > 5, 'process was sampled');
  assert.ok(s.maxThreads <= 16, `parrot used ${s.maxThreads} threads`);
  assert.equal(parrot.exitInfo, null, 'parrot still running');
});
