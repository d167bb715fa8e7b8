// Issue #14 "Harden the front door", the cache's part: tool-call answers
// served on exact hits only, raw control bytes in JSON strings refused,
// invalidation by text with every embedder, no global counters leaked to
// clients, and integers kept exact in the cache key. Real binary, fake
// provider, curl and node:http; the fake's chat counter is the oracle for
// "the provider was asked".
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFake, startPair, startParrot, cleanup, curlChat, errorShape, metrics, parseChatSse, request,
} from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };

const ask = (text, extra = {}) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }], ...extra });
const chatCalls = (fake) => fake.stats().chat;

// ---------------------------------------------------------------- tool calls

const EMAIL_TOOLS = [{
  type: 'function',
  function: {
    name: 'send_email',
    description: 'Send an email',
    parameters: { type: 'object', properties: { to: { type: 'string' }, body: { type: 'string' } } },
  },
}];
const ALICE = 'Send an email to Alice saying the launch is delayed';
const ALICE_PARAPHRASE = 'Please send an email to Alice saying the launch is delayed';
const BOB = 'Send an email to Bob saying the launch is delayed';
const TOOLS_1 = { 'x-fake-tool-calls': '1' };

/** The arguments of the one tool call in a JSON answer. */
function toolArgs(r, what) {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.body.slice(0, 300)}`);
  const calls = JSON.parse(r.body).choices[0].message.tool_calls;
  assert.equal(calls.length, 1, `${what}: one tool call`);
  assert.equal(calls[0].function.name, 'send_email');
  return JSON.parse(calls[0].function.arguments);
}

const toolRejections = async (parrot) => (await metrics(parrot.base))['parrot_cache_verifier_rejections_total{reason="tool_calls"}'];

for (const verifier of ['true', 'false']) {
  test(`--verifier ${verifier}: a semantic candidate whose answer calls tools is a miss`, T, async () => {
    const { fake, parrot } = await startPair({ args: ['--verifier', verifier] });
    const key = { authorization: `Bearer sk-tools-${verifier}` };

    // The control: with a text answer these two questions meet semantically,
    // so what follows does reach the semantic path.
    const textKey = { authorization: `Bearer sk-text-${verifier}` };
    assert.equal((await curlChat(parrot.base, ask(ALICE, { tools: EMAIL_TOOLS }), textKey)).headers['x-parrot-cache'], 'miss');
    const control = await curlChat(parrot.base, ask(ALICE_PARAPHRASE, { tools: EMAIL_TOOLS }), textKey);
    assert.equal(control.headers['cache-status'], 'parrot; hit; detail=semantic', 'text answers still hit semantically');

    const first = await curlChat(parrot.base, ask(ALICE, { tools: EMAIL_TOOLS }), { ...key, ...TOOLS_1 });
    assert.equal(first.headers['x-parrot-cache'], 'miss');
    assert.equal(toolArgs(first, 'Alice').query, ALICE);
    const calls = chatCalls(fake);

    // Bob must get his own email, not Alice's.
    const bob = await curlChat(parrot.base, ask(BOB, { tools: EMAIL_TOOLS }), { ...key, ...TOOLS_1 });
    assert.equal(bob.headers['x-parrot-cache'], 'miss', `Bob was served ${bob.body.slice(0, 300)}`);
    assert.equal(toolArgs(bob, 'Bob').query, BOB, 'the arguments name Bob');
    assert.equal(chatCalls(fake), calls + 1, 'the provider was asked for Bob');

    const para = await curlChat(parrot.base, ask(ALICE_PARAPHRASE, { tools: EMAIL_TOOLS }), { ...key, ...TOOLS_1 });
    assert.equal(para.headers['x-parrot-cache'], 'miss', 'a paraphrase does not replay a tool call either');
    assert.equal(toolArgs(para, 'paraphrase').query, ALICE_PARAPHRASE);

    // The exact question still replays its own tool call.
    const again = await curlChat(parrot.base, ask(ALICE, { tools: EMAIL_TOOLS }), key);
    assert.equal(again.headers['cache-status'], 'parrot; hit; detail=exact');
    assert.equal(toolArgs(again, 'exact repeat').query, ALICE);
    assert.equal(chatCalls(fake), calls + 2);
    assert.ok(await toolRejections(parrot) >= 2, 'counted as verifier rejections with reason tool_calls');
  });
}

test('a tool-call answer stored from a stream is not served to a paraphrase, streamed or not', T, async () => {
  const { fake, parrot } = await startPair();
  for (const stream of [false, true]) {
    const key = { authorization: `Bearer sk-tools-stream-${stream}` };
    const live = await curlChat(parrot.base, ask(ALICE, { tools: EMAIL_TOOLS, stream: true }), { ...key, ...TOOLS_1 });
    assert.equal(live.headers['x-parrot-cache'], 'miss');
    // Stored: the exact question replays it.
    assert.equal((await curlChat(parrot.base, ask(ALICE, { tools: EMAIL_TOOLS }), key)).headers['cache-status'],
      'parrot; hit; detail=exact');
    const before = await toolRejections(parrot);
    const r = await curlChat(parrot.base, ask(ALICE_PARAPHRASE, { tools: EMAIL_TOOLS, stream }), { ...key, ...TOOLS_1 });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-parrot-cache'], 'miss', `stream ${stream}: ${r.body.slice(0, 300)}`);
    const calls = stream ? parseChatSse(r.body).toolCalls : JSON.parse(r.body).choices[0].message.tool_calls;
    assert.equal(JSON.parse(calls[0].function.arguments).query, ALICE_PARAPHRASE, `stream ${stream}: its own arguments`);
    assert.equal(await toolRejections(parrot), before + 1, 'turned down for its tool calls');
  }
  assert.equal(chatCalls(fake), 4);
});

// ---------------------------------------------------------------- raw control bytes

test('a raw control byte inside a JSON string is refused with 400 before the cache or the provider sees it', T, async () => {
  const { fake, parrot } = await startPair();
  const key = { authorization: 'Bearer sk-raw-bytes' };
  const head = '{"model":"gpt-fake","messages":[{"role":"user","content":"Transfer $10 to Alice';
  const tail = '"}]}';
  // What cJSON would read up to the NUL, cached first: the NUL body must not
  // be answered from it.
  const cached = await curlChat(parrot.base, head + tail, key);
  assert.equal(cached.status, 200);
  const calls = chatCalls(fake);

  for (const byte of [0x00, 0x01, 0x0a, 0x1f]) {
    const body = Buffer.concat([Buffer.from(head), Buffer.from([byte]), Buffer.from(' and $1000 to Mallory'), Buffer.from(tail)]);
    // curl --data-binary sends the bytes as they are.
    const viaCurl = await curlChat(parrot.base, body.toString('latin1'), key);
    // And node:http with a Buffer, whatever curl does with its input.
    const viaNode = await request(parrot.base, {
      method: 'POST', path: '/v1/chat/completions', headers: { ...key, 'content-type': 'application/json' }, body,
    });
    for (const [what, r] of [['curl', viaCurl], ['node', viaNode]]) {
      assert.equal(r.status, 400, `byte 0x${byte.toString(16)} via ${what}: ${r.status} ${r.body.slice(0, 300)}`);
      const e = errorShape(assert, r.body);
      assert.equal(e.type, 'invalid_request_error');
      assert.equal(e.code, 'invalid_json');
      assert.match(e.message, new RegExp(`raw control character 0x${byte.toString(16).padStart(2, '0')} at byte ${Buffer.byteLength(head)}`));
      assert.equal(r.headers['x-parrot-cache'], undefined, 'no cache verdict for a refused body');
    }
  }
  assert.equal(chatCalls(fake), calls, 'the provider never saw them');

  // JSON's blanks between values are fine, and so are escaped control characters.
  const pretty = '{\r\n\t"model": "gpt-fake",\n\t"messages": [{"role": "user", "content": "tab\\there\\u0001"}]\n}\n';
  const ok = await curlChat(parrot.base, pretty, key);
  assert.equal(ok.status, 200, ok.body.slice(0, 300));
  assert.equal(JSON.parse(ok.body).choices[0].message.content, 'echo: tab\there\u0001');
});

// ---------------------------------------------------------------- invalidate by text, remote embedder

const ADMIN = 'adm-key-hardening-0123456789';
const DIM = 64;
const PW1 = 'How do I reset my password?';
const PW2 = 'how can I reset my password';
const OTHER = 'What is the capital of Norway?';

async function adminCall(parrot, path, body) {
  const r = await request(parrot.base, {
    method: 'POST', path, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: JSON.parse(r.body), body: r.body };
}

test('POST /admin/invalidate by text works with the openai embedder, and fails cleanly when it is down', T, async () => {
  const fake = await startFake();
  fake.embedScript({ dim: DIM, concepts: { [PW1]: 'password', [PW2]: 'password' } });
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--embedder', 'openai', '--embed-url', fake.url,
      '--embed-model', 'text-embedding-fake', '--embed-dim', String(DIM)],
    env: { PARROT_ADMIN_KEY: ADMIN },
  });
  const key = { authorization: 'Bearer sk-invalidate' };
  for (const q of [PW1, OTHER]) assert.equal((await curlChat(parrot.base, ask(q), key)).headers['x-parrot-cache'], 'miss');

  const r = await adminCall(parrot, '/admin/invalidate', { text: PW2, radius: 0.9 });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.removed, 1, 'the paraphrase radius took the password entry');
  assert.equal(fake.stats().embedInputs.at(-1), PW2, 'the text went through the remote embedder');
  assert.equal((await curlChat(parrot.base, ask(PW1), key)).headers['x-parrot-cache'], 'miss', 'removed');
  assert.equal((await curlChat(parrot.base, ask(OTHER), key)).headers['x-parrot-cache'], 'hit', 'kept');

  // The embedder failing: an OpenAI-shaped 503, nothing removed, no crash.
  fake.embedScript({ dim: DIM, mode: 'status', status: 500 });
  const down = await adminCall(parrot, '/admin/invalidate', { text: OTHER, radius: 0.5 });
  assert.equal(down.status, 503, down.body);
  const e = errorShape(assert, down.body);
  assert.equal(e.code, 'embedder_unavailable');
  assert.equal(e.param, 'text');
  assert.equal((await request(parrot.base, { path: '/healthz' })).status, 200, 'still alive');
  assert.equal((await curlChat(parrot.base, ask(OTHER), key)).headers['x-parrot-cache'], 'hit', 'nothing removed');
  assert.equal(await parrot.stop('SIGTERM'), 0);
});

// ---------------------------------------------------------------- no global counters for clients

test('clients see no log sequence numbers and no counted ids: entry ids and hit ids are random', T, async () => {
  const { parrot } = await startPair({ args: ['--wal-fsync', 'always'] });
  const entries = [];
  const hitIds = [];
  for (let i = 0; i < 4; i++) {
    const key = { authorization: `Bearer sk-counter-${i}` }; // a tenant each
    const miss = await curlChat(parrot.base, ask(`counter question ${i}`), key);
    assert.equal(miss.headers['x-parrot-cache'], 'miss');
    assert.equal(miss.headers['x-parrot-wal-seq'], undefined, 'no log sequence number in a response');
    const hit = await curlChat(parrot.base, ask(`counter question ${i}`), key);
    assert.equal(hit.headers['x-parrot-cache'], 'hit');
    assert.match(hit.headers['x-parrot-entry'], /^[0-9a-f]{16}$/);
    entries.push(BigInt(`0x${hit.headers['x-parrot-entry']}`));
    hitIds.push(JSON.parse(hit.body).id);
  }
  // Stored one after the other, yet nowhere near each other: 64 random bits
  // fall within 2^32 of each other once in 2^31.
  for (let i = 1; i < entries.length; i++) {
    const d = entries[i] > entries[i - 1] ? entries[i] - entries[i - 1] : entries[i - 1] - entries[i];
    assert.ok(d >= 1n << 32n, `entry ids ${entries[i - 1].toString(16)} and ${entries[i].toString(16)} look counted`);
  }
  // Hit ids: chatcmpl-parrot-<24 hex>; no part of them counts hits.
  for (const id of hitIds) assert.match(id, /^chatcmpl-parrot-[0-9a-f]{24}$/);
  for (let i = 1; i < hitIds.length; i++) {
    for (const [from, to] of [[16, 32], [32, 40]]) {
      const a = BigInt(`0x${hitIds[i - 1].slice(16).slice(from - 16, to - 16)}`);
      const b = BigInt(`0x${hitIds[i].slice(16).slice(from - 16, to - 16)}`);
      assert.ok((b > a ? b - a : a - b) > 1000n, `hit ids ${hitIds[i - 1]} and ${hitIds[i]} look counted`);
    }
  }
  // The operator still has the log's progress, in /metrics.
  const m = await metrics(parrot.base);
  assert.ok(m.parrot_wal_last_seq >= 4, 'parrot_wal_last_seq');
  assert.ok(m.parrot_wal_durable_seq <= m.parrot_wal_last_seq);
});

// ---------------------------------------------------------------- exact integers in the key

test('seeds above 2^53 that differ by one do not share a cache key', T, async () => {
  const { fake, parrot } = await startPair();
  const key = { authorization: 'Bearer sk-seeds' };
  // Written by hand: JSON.stringify would round them through a double.
  const body = (seed) => `{"model":"gpt-fake","seed":${seed},"messages":[{"role":"user","content":"roll a die"}]}`;

  const a = await curlChat(parrot.base, body('9007199254740992'), key);
  assert.equal(a.headers['x-parrot-cache'], 'miss');
  const b = await curlChat(parrot.base, body('9007199254740993'), key);
  assert.equal(b.headers['x-parrot-cache'], 'miss', `seed 2^53+1 was served seed 2^53's answer (${b.headers['cache-status']})`);
  assert.match(fake.stats().last.body, /"seed":9007199254740993/, 'the provider got the seed as written');
  assert.equal(chatCalls(fake), 2);
  // Each still hits its own entry, and spellings of one integer agree.
  for (const seed of ['9007199254740993', '9007199254740992', '9007199254740992.0']) {
    const r = await curlChat(parrot.base, body(seed), key);
    assert.equal(r.headers['cache-status'], 'parrot; hit; detail=exact', `seed ${seed}`);
  }
  const neg = await curlChat(parrot.base, body('-9007199254740993'), key);
  assert.equal(neg.headers['x-parrot-cache'], 'miss');
  assert.equal((await curlChat(parrot.base, body('-9007199254740992'), key)).headers['x-parrot-cache'], 'miss');
  assert.equal(chatCalls(fake), 4);
});
