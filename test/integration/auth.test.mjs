// Client keys: /v1 needs a configured key, the key's tenant selects the
// cache (two keys of one tenant share it, tenants never do), the parrot key
// never reaches the provider, and the start-up rules (non-loopback binding,
// provider keys, file permissions, secrets off the command line).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startFake, startParrot, curlChat, cleanup, runCli, errorShape, writeTmpFile, request } from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const KEYS = {
  a1: 'pk-tenant-a-first-0123456789',
  a2: 'pk-tenant-a-second-0123456789',
  b1: 'pk-tenant-b-only-0123456789',
};
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });
const bearer = (k) => ({ authorization: `Bearer ${k}` });

function keysFile(mode = 0o600) {
  const p = writeTmpFile('client-keys', `# parrot client keys\n${KEYS.a1} acme\n${KEYS.a2}   acme\n\n${KEYS.b1} globex\n`);
  fs.chmodSync(p, mode);
  return p;
}

async function keyed(fake, extra = {}) {
  return startParrot({
    args: ['--upstream', fake.url, '--client-keys-file', keysFile()],
    env: { PARROT_UPSTREAM_KEY: 'sk-provider-secret', ...extra },
  });
}

test('no key, a wrong key, or another scheme get 401 invalid_api_key and never reach the provider', T, async () => {
  const fake = await startFake();
  const parrot = await keyed(fake);
  for (const headers of [{}, bearer('pk-not-a-configured-key-000'), { authorization: `Basic ${KEYS.a1}` }, bearer(`${KEYS.a1}x`)]) {
    const r = await curlChat(parrot.base, ask('who are you'), headers);
    assert.equal(r.status, 401, JSON.stringify(headers));
    const e = errorShape(assert, r.body);
    assert.equal(e.code, 'invalid_api_key');
    assert.ok(!r.body.includes('pk-'), 'the error never echoes a key');
  }
  const models = await request(parrot.base, { path: '/v1/models' });
  assert.equal(models.status, 401, 'every /v1 route needs a key, not only chat');
  assert.equal(fake.stats().total, 0, 'nothing unauthenticated reaches the provider');
  // Health probes stay open.
  assert.equal((await request(parrot.base, { path: '/healthz' })).status, 200);
});

test("a good key is served; the provider sees parrot's provider key, never the client's", T, async () => {
  const fake = await startFake();
  const parrot = await keyed(fake);
  const r = await curlChat(parrot.base, ask('what is a parrot'), bearer(KEYS.a1));
  assert.equal(r.status, 200, r.body);
  assert.equal(fake.stats().last.headers.authorization, 'Bearer sk-provider-secret');
  const m = await request(parrot.base, { path: '/v1/models', headers: bearer(KEYS.b1) });
  assert.equal(m.status, 200);
  assert.equal(fake.stats().last.headers.authorization, 'Bearer sk-provider-secret');
});

test('keys of one tenant share the cache; another tenant misses the same question', T, async () => {
  const fake = await startFake();
  const parrot = await keyed(fake);
  const q = ask('How many moons does Jupiter have?');
  let r = await curlChat(parrot.base, q, bearer(KEYS.a1));
  assert.equal(r.headers['x-parrot-cache'], 'miss');
  r = await curlChat(parrot.base, q, bearer(KEYS.a2));
  assert.equal(r.headers['x-parrot-cache'], 'hit', 'a second key of tenant acme hits');
  const calls = fake.stats().chat;
  r = await curlChat(parrot.base, q, bearer(KEYS.b1));
  assert.equal(r.headers['x-parrot-cache'], 'miss', 'tenant globex cannot see acme\'s answers');
  assert.equal(fake.stats().chat, calls + 1);
  // A paraphrase is not a semantic hit across the wall either.
  r = await curlChat(parrot.base, ask('how many moons does jupiter have'), bearer(KEYS.b1));
  assert.equal(r.headers['x-parrot-cache'], 'hit', 'globex now hits its own entry');
});

test('client keys from the environment (comma-separated) work the same', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', fake.url],
    env: { PARROT_UPSTREAM_KEY: 'sk-provider-secret', PARROT_CLIENT_KEYS: `${KEYS.a1} acme, ${KEYS.b1} globex` },
  });
  assert.equal((await curlChat(parrot.base, ask('env keys'), bearer(KEYS.b1))).status, 200);
  assert.equal((await curlChat(parrot.base, ask('env keys'), bearer(KEYS.a2))).status, 401);
});

test('start-up rules: provider key required, file mode checked, keys never on the command line, masked', T, async () => {
  const fake = await startFake();
  // Client keys without a provider key would forward nothing usable: refuse.
  let r = await runCli(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--client-keys-file', keysFile()]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /needs a provider key/);
  // A keys file others can read is refused, naming the fix.
  r = await runCli(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--client-keys-file', keysFile(0o644)],
    { PARROT_UPSTREAM_KEY: 'sk-x' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /accessible to other users.*chmod/);
  // Secrets are refused as flags.
  r = await runCli(['--client-keys', `${KEYS.a1} acme`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /PARROT_CLIENT_KEYS/);
  r = await runCli(['--admin-key', 'adm-secret-000000000000']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /PARROT_ADMIN_KEY/);
  // Masked in --print-config.
  r = await runCli(['--print-config'], { PARROT_CLIENT_KEYS: `${KEYS.a1} acme`, PARROT_ADMIN_KEY: 'adm-secret-000000000000' });
  assert.equal(r.code, 0);
  assert.ok(!r.stdout.includes(KEYS.a1) && !r.stdout.includes('adm-secret'), r.stdout);
  assert.match(r.stdout, /^# client-keys = \*+ {2}# env/m);
  // A malformed entry names its line, not the key.
  const bad = writeTmpFile('bad-keys', `${KEYS.a1} acme\nshort tenant\n`);
  fs.chmodSync(bad, 0o600);
  r = await runCli(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--client-keys-file', bad], { PARROT_UPSTREAM_KEY: 'sk-x' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /entry 2: the key is shorter than 16/);
  assert.ok(!r.stderr.includes(KEYS.a1));
});

test('a non-loopback address needs client keys or --insecure-open', T, async () => {
  const fake = await startFake();
  let r = await runCli(['--listen', '0.0.0.0:0', '--upstream', fake.url, '--print-config']);
  assert.equal(r.code, 0, 'printing the config never binds');
  r = await runCli(['--listen', '0.0.0.0:0', '--upstream', fake.url], {}, { timeoutMs: 5_000 });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /refusing to listen.*client keys/);
  // With client keys it starts (and is stopped at once).
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--client-keys-file', keysFile(), '--listen', '0.0.0.0:0'],
    env: { PARROT_UPSTREAM_KEY: 'sk-provider-secret' },
  });
  const listening = parrot.logs().find((l) => l.msg === 'listening');
  assert.equal(listening.client_keys, true);
  assert.match(listening.addr, /^0\.0\.0\.0:\d+$/);
});
