// The openai embedder (docs/embedders.md): lookups embedded by a remote
// OpenAI-compatible /v1/embeddings endpoint (the fake upstream, scripted
// through fake.embedScript()), batched, failing open to a miss, behind a
// circuit breaker. The fake's embedBatches (inputs per call) is the oracle
// for batching; its chat counter for "no provider call".
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFake, startParrot, curlChat, cleanup, makeTmpDir, metrics, runCli, waitFor,
} from './helpers.mjs';

after(cleanup);
const T = { timeout: 90_000 };
const DIM = 64;
const KEY = 'sk-embed-secret-4f9a';
const AUTH = { authorization: 'Bearer sk-client' };
const PW1 = 'How do I reset my password?';
const PW2 = 'how can I reset my password';
const PW3 = 'Please, how can I reset my password?';
const CONCEPTS = { [PW1]: 'password', [PW2]: 'password', [PW3]: 'password' };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

/** A fake whose embeddings are scripted, and a parrot using it as embedder. */
async function pair({ script = {}, args = [], env = {}, fake: given } = {}) {
  const fake = given || await startFake();
  fake.embedScript({ dim: DIM, concepts: CONCEPTS, ...script });
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--embedder', 'openai', '--embed-url', fake.url,
      '--embed-model', 'text-embedding-fake', ...args],
    env: { PARROT_EMBED_KEY: KEY, ...env },
  });
  return { fake, parrot };
}

/** Ask text; the answer must be the provider's echo of `answerOf` (the
 * question first stored, for a semantic hit). */
async function chat(parrot, text, answerOf = text) {
  const r = await curlChat(parrot.base, ask(text), AUTH);
  assert.equal(r.status, 200, `${text}: ${r.status} ${r.body.slice(0, 300)}`);
  assert.equal(JSON.parse(r.body).choices[0].message.content, `echo: ${answerOf}`, 'the right answer');
  return r;
}

const result = async (parrot, name) => (await metrics(parrot.base))[`parrot_embed_requests_total{result="${name}"}`];

test('a paraphrase is a semantic hit through the remote embedder; the key goes as Bearer and is never logged', T, async () => {
  const { fake, parrot } = await pair({ args: ['--embed-dim', String(DIM)] });
  const miss = await chat(parrot, PW1);
  assert.equal(miss.headers['x-parrot-cache'], 'miss');
  const stats = fake.stats();
  assert.equal(stats.embedCalls, 1);
  assert.deepEqual(stats.embedInputs, [PW1]);

  const hit = await chat(parrot, PW2, PW1);
  assert.equal(hit.headers['x-parrot-cache'], 'hit');
  assert.equal(hit.headers['cache-status'], 'parrot; hit; detail=semantic');
  const sim = Number(hit.headers['x-parrot-similarity']);
  assert.ok(sim > 0.9 && sim < 1, `similarity ${sim}`);
  // The second answer is the first question's: served from the cache.
  assert.equal(fake.stats().chat, 1, 'a semantic hit must not call the provider');

  // The embeddings call itself: model, input array, the configured key.
  const last = fake.stats().last;
  assert.equal(last.path, '/v1/embeddings');
  assert.equal(last.headers.authorization, `Bearer ${KEY}`);
  const body = JSON.parse(last.body);
  assert.equal(body.model, 'text-embedding-fake');
  assert.deepEqual(body.input, [PW2]);

  // An unrelated question is a miss; an exact repeat needs no embedding.
  assert.equal((await chat(parrot, 'What is the capital of France?')).headers['x-parrot-cache'], 'miss');
  const calls = fake.stats().embedCalls;
  assert.equal((await chat(parrot, PW1)).headers['cache-status'], 'parrot; hit; detail=exact');
  assert.equal(fake.stats().embedCalls, calls, 'an exact hit must not embed');

  const m = await metrics(parrot.base);
  assert.equal(m[`parrot_embedder_info{name="openai:text-embedding-fake:${DIM}"}`], 1);
  assert.equal(m['parrot_embed_requests_total{result="ok"}'], 3);
  assert.equal(m.parrot_embed_calls_total, 3);
  assert.equal(m.parrot_embed_call_duration_seconds_count, 3);
  assert.equal(m['parrot_embed_call_duration_seconds_bucket{le="+Inf"}'], 3);

  const printed = await runCli(['--print-config'], { PARROT_EMBED_KEY: KEY });
  assert.match(printed.stdout, /^# embed-key = \*+ {2}# env/m);
  assert.ok(!printed.stdout.includes(KEY), '--print-config must mask embed-key');
  const flag = await runCli(['--embed-key', KEY]);
  assert.equal(flag.code, 2, 'embed-key is not accepted as a flag');
  assert.match(flag.stderr, /PARROT_EMBED_KEY/);
  assert.equal(await parrot.stop(), 0);
  assert.ok(!parrot.stderr().includes(KEY), 'the embeddings key must never be logged');
});

test('concurrent lookups are coalesced into one embeddings call, up to embed-batch texts', T, async () => {
  // The first call is held at the fake until seven more texts queue behind it.
  const { fake, parrot } = await pair({
    script: { hold: 1 },
    args: ['--embed-dim', String(DIM), '--embed-batch', '4', '--embed-timeout', '60s'],
  });
  const texts = Array.from({ length: 8 }, (_, i) => `distinct question number ${i}`);
  const first = chat(parrot, texts[0]);
  await waitFor(() => fake.stats().embedHeld === 1, { what: 'the first call held' });
  const rest = texts.slice(1).map((t) => chat(parrot, t));
  await waitFor(async () => (await metrics(parrot.base)).parrot_embed_queue_depth === 7,
    { what: 'seven texts queued', timeoutMs: 20_000 });
  fake.releaseEmbeddings();
  const answers = await Promise.all([first, ...rest]);
  for (const r of answers) assert.equal(r.headers['x-parrot-cache'], 'miss');
  // One call for the first text, then the seven queued ones, four at a time.
  assert.deepEqual(fake.stats().embedBatches, [1, 4, 3]);
  assert.deepEqual([...fake.stats().embedInputs].sort(), [...texts].sort());
  const m = await metrics(parrot.base);
  assert.equal(m.parrot_embed_calls_total, 3);
  assert.equal(m.parrot_embed_batched_texts_total, 8);
  assert.equal(m['parrot_embed_requests_total{result="ok"}'], 8);
  // Each answer was stored with its own vector: every text is now a hit.
  for (const t of texts) assert.equal((await chat(parrot, t)).headers['x-parrot-cache'], 'hit');
});

const failures = [
  { what: 'a 500', script: { mode: 'status', status: 500 }, result: 'http_error' },
  { what: 'a 401', script: { mode: 'status', status: 401 }, result: 'http_error' },
  { what: 'a body that is not JSON', script: { mode: 'garbage' }, result: 'bad_response' },
  { what: 'one vector too few', script: { mode: 'missing' }, result: 'bad_response' },
  { what: 'vectors of the wrong dimension', script: { mode: 'wrong-dim' }, result: 'bad_dimension' },
  { what: 'a dropped connection', script: { mode: 'drop' }, result: 'unreachable' },
  { what: 'an answer slower than embed-timeout', script: { delayMs: 5_000 }, result: 'timeout', args: ['--embed-timeout', '200ms'] },
];

for (const f of failures) {
  test(`embeddings endpoint answering ${f.what}: served as a miss, kept for exact hits only`, T, async () => {
    const { fake, parrot } = await pair({
      args: ['--embed-dim', String(DIM), '--breaker-failures', '100', ...(f.args || [])],
    });
    await chat(parrot, PW1); // stored with its vector while the endpoint works
    fake.embedScript({ dim: DIM, concepts: CONCEPTS, ...f.script });
    const text = 'What is the capital of France?';
    const r = await chat(parrot, text);
    assert.equal(r.headers['x-parrot-cache'], 'miss');
    assert.equal(await result(parrot, f.result), 1, `counted as ${f.result}`);
    // The paraphrase cannot be looked up semantically either: a miss, answered.
    const p = await chat(parrot, PW2);
    assert.equal(p.headers['x-parrot-cache'], 'miss');
    assert.equal(await result(parrot, f.result), 2);
    // Stored without a vector: an exact repeat still hits, with no provider call.
    const calls = fake.stats().chat;
    assert.equal((await chat(parrot, text)).headers['cache-status'], 'parrot; hit; detail=exact');
    assert.equal(fake.stats().chat, calls);
    const log = parrot.logs().find((l) => l.msg === 'request' && l.cache === 'miss' && l.embed === f.result);
    assert.ok(log, `a request log line with embed=${f.result}`);
    // Healthy again: another paraphrase finds the first question's vector.
    fake.embedScript({ dim: DIM, concepts: CONCEPTS });
    assert.equal((await chat(parrot, PW3, PW1)).headers['cache-status'], 'parrot; hit; detail=semantic');
  });
}

test('the breaker skips a failing endpoint after breaker-failures calls, then probes it again', T, async () => {
  const { fake, parrot } = await pair({
    script: { mode: 'status', status: 503 },
    args: ['--embed-dim', String(DIM), '--breaker-failures', '2', '--breaker-cooldown', '1s'],
  });
  await chat(parrot, 'first failing question');
  await chat(parrot, 'second failing question');
  assert.equal(fake.stats().embedCalls, 2);
  let m = await metrics(parrot.base);
  assert.equal(m.parrot_embed_breaker_state, 2, 'open');
  // While it is open, lookups go on without asking the endpoint.
  const r = await chat(parrot, 'third question, breaker open');
  assert.equal(r.headers['x-parrot-cache'], 'miss');
  assert.equal(fake.stats().embedCalls, 2, 'no call while the breaker is open');
  assert.equal(await result(parrot, 'breaker_open'), 1);
  assert.ok(parrot.logs().find((l) => l.msg === 'request' && l.embed === 'breaker_open'));

  // Healthy again: after the cooldown one call probes it and closes the breaker.
  fake.embedScript({ dim: DIM, concepts: CONCEPTS });
  let n = 0;
  await waitFor(async () => {
    await chat(parrot, `probe question ${n++}`);
    return (await metrics(parrot.base)).parrot_embed_breaker_state === 0;
  }, { what: 'the breaker to close', timeoutMs: 20_000, intervalMs: 100 });
  assert.equal(fake.stats().embedCalls, 3, 'exactly one probe call');
  await chat(parrot, PW1);
  assert.equal((await chat(parrot, PW2, PW1)).headers['cache-status'], 'parrot; hit; detail=semantic');
  m = await metrics(parrot.base);
  assert.equal(m['parrot_embed_requests_total{result="http_error"}'], 2);
});

test('Cache-Control: no-cache skips the lookup but stores the answer with its remote vector', T, async () => {
  const { fake, parrot } = await pair({ args: ['--embed-dim', String(DIM)] });
  const r = await curlChat(parrot.base, ask(PW1), { ...AUTH, 'cache-control': 'no-cache' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-parrot-cache'], 'bypass');
  assert.equal(r.headers['cache-status'], 'parrot; fwd=request; detail=no-cache');
  assert.deepEqual(fake.stats().embedInputs, [PW1]);
  assert.equal((await chat(parrot, PW2, PW1)).headers['cache-status'], 'parrot; hit; detail=semantic');
});

test('the dimension is learnt from the endpoint at start-up; start-up refuses without one', T, async () => {
  const { parrot } = await pair();
  const m = await metrics(parrot.base);
  assert.equal(m[`parrot_embedder_info{name="openai:text-embedding-fake:${DIM}"}`], 1);
  await chat(parrot, PW1);
  assert.equal((await chat(parrot, PW2, PW1)).headers['x-parrot-cache'], 'hit');

  const down = await startFake();
  down.embedScript({ mode: 'status', status: 503 });
  const r = await runCli(['--listen', '127.0.0.1:0', '--data-dir', makeTmpDir(), '--upstream', down.url,
    '--embedder', 'openai', '--embed-url', down.url]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot learn the embedding dimension/);
  assert.match(r.stderr, /http_error; set embed-dim/);

  const nourl = await runCli(['--listen', '127.0.0.1:0', '--data-dir', makeTmpDir(), '--embedder', 'openai']);
  assert.equal(nourl.code, 2, 'a configuration error');
  assert.match(nourl.stderr, /embedder=openai needs embed-url/);
  const bad = await runCli(['--embedder', 'openai', '--embed-url', 'ftp://x/v1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid value for embed-url/);
  const unknown = await runCli(['--listen', '127.0.0.1:0', '--data-dir', makeTmpDir(), '--embedder', 'word2vec']);
  assert.equal(unknown.code, 2, 'a configuration error');
  assert.match(unknown.stderr, /invalid value for embedder: 'word2vec' \(expected one of builtin\|openai\)/);
});

test('a restart re-embeds the log with the embedder now configured: vectors never mix', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-embed-');
  // Stored under the builtin embedder (its own vectors, 384-dim).
  let parrot = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });
  await chat(parrot, PW1);
  await chat(parrot, 'What is the capital of France?');
  assert.equal(await parrot.stop(), 0);
  assert.equal(fake.stats().embedCalls, 0);

  // Back with the remote embedder: the builtin embedder's shutdown snapshot
  // is loaded without its vectors, and both texts are embedded in one call.
  // (No snapshot at this shutdown: the next start reads the same file.)
  ({ parrot } = await pair({ fake, args: ['--data-dir', dir, '--embed-dim', String(DIM), '--snapshot-on-shutdown', 'false'] }));
  assert.deepEqual(fake.stats().embedBatches, [2]);
  assert.match(parrot.logs().find((l) => l.msg === 'cache loaded').detail,
    /2 entries loaded.*written by another embedder: its vectors were dropped.*the cache holds 2 entries/);
  assert.equal((await chat(parrot, PW2, PW1)).headers['cache-status'], 'parrot; hit; detail=semantic');
  assert.equal(await parrot.stop(), 0);

  // Another dimension: the endpoint answers 32-dim vectors while 64 are
  // expected. Nothing is mixed in: the entries come back for exact hits only.
  fake.reset();
  ({ parrot } = await pair({ fake, script: { dim: 32 }, args: ['--data-dir', dir, '--embed-dim', String(DIM)] }));
  assert.match(parrot.logs().find((l) => l.msg === 'cache loaded').detail,
    /the cache holds 2 entries \(2 for exact hits only: the embedder failed\)/);
  assert.equal(await result(parrot, 'bad_dimension'), 2);
  assert.equal((await chat(parrot, PW2)).headers['x-parrot-cache'], 'miss', 'no vector to meet');
  assert.equal((await chat(parrot, PW1)).headers['cache-status'], 'parrot; hit; detail=exact');
});
