// The cache survives restarts through its write-ahead log: SIGTERM, SIGKILL
// after the fsync policy promised durability, a torn tail, and a corrupt
// middle that refuses to start until `parrot wal repair`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startFake, startParrot, curlChat, cleanup, makeTmpDir, metrics, runCli, waitFor } from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const auth = { authorization: 'Bearer sk-persist' };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

async function parrotOn(fake, dir, extra = []) {
  return startParrot({ args: ['--upstream', fake.url, '--data-dir', dir, ...extra] });
}

async function cacheStatus(parrot, text) {
  const r = await curlChat(parrot.base, ask(text), auth);
  assert.equal(r.status, 200, r.body);
  return r.headers['x-parrot-cache'];
}

test('entries survive SIGTERM and come back as exact and semantic hits', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-persist-');
  let parrot = await parrotOn(fake, dir);
  assert.equal(await cacheStatus(parrot, 'How do I reset my password?'), 'miss');
  assert.equal(await cacheStatus(parrot, 'What is the capital of France?'), 'miss');
  assert.equal(await parrot.stop('SIGTERM'), 0);

  parrot = await parrotOn(fake, dir);
  const calls = fake.stats().chat;
  assert.equal(await cacheStatus(parrot, 'What is the capital of France?'), 'hit');
  assert.equal(await cacheStatus(parrot, 'how can I reset my password'), 'hit');
  assert.equal(fake.stats().chat, calls, 'hits after a restart must not call the provider');
  const loaded = parrot.logs().find((l) => l.msg === 'cache loaded');
  assert.match(loaded.detail, /2 entries loaded/);
});

test('kill -9: every entry the fsync policy promised is back', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-kill-');
  let parrot = await parrotOn(fake, dir, ['--wal-fsync', 'always']);
  const texts = Array.from({ length: 30 }, (_, i) => `durable question number ${i} about cats`);
  await Promise.all(texts.map((t) => curlChat(parrot.base, ask(t), auth)));
  // The answers are served at once; durability follows on the log's thread.
  await waitFor(async () => (await metrics(parrot.base)).parrot_wal_durable_seq >= 30,
    { what: 'the log to make 30 records durable' });
  process.kill(parrot.pid, 'SIGKILL');
  await parrot.stop('SIGKILL');

  parrot = await parrotOn(fake, dir);
  const calls = fake.stats().chat;
  for (const t of texts)
    assert.equal(await cacheStatus(parrot, t), 'hit', t);
  assert.equal(fake.stats().chat, calls);
});

test('a torn tail is cut off with a log line; a corrupt middle refuses to start until repaired', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-damage-');
  // No snapshot at shutdown: this test damages the log, which must keep its records.
  const noSnap = ['--snapshot-on-shutdown', 'false'];
  let parrot = await parrotOn(fake, dir, ['--wal-fsync', 'always', ...noSnap]);
  for (let i = 0; i < 3; i++) await cacheStatus(parrot, `record ${i} for the damage test`);
  await waitFor(async () => (await metrics(parrot.base)).parrot_wal_durable_seq >= 3, { what: 'durable records' });
  assert.equal(await parrot.stop('SIGTERM'), 0);
  const log = path.join(dir, 'wal.log');
  const good = fs.readFileSync(log);

  // Torn tail: half of a fourth record.
  fs.writeFileSync(log, Buffer.concat([good, good.subarray(good.length - 40, good.length - 10)]));
  parrot = await parrotOn(fake, dir, noSnap);
  assert.equal(await cacheStatus(parrot, 'record 2 for the damage test'), 'hit');
  assert.match(parrot.logs().find((l) => l.msg === 'cache loaded').detail, /3 entries loaded/);
  assert.equal(await parrot.stop('SIGTERM'), 0);

  // Corrupt middle: flip a byte inside the first record's payload.
  const bad = Buffer.from(good);
  bad[120] ^= 0xff;
  fs.writeFileSync(log, bad);
  const refused = await runCli(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /offset/);
  assert.match(refused.stderr, /parrot wal repair/);
  const check = await runCli(['wal', 'check', '--data-dir', dir]);
  assert.equal(check.code, 1);
  assert.match(check.stdout, /corrupt/);
  const repair = await runCli(['wal', 'repair', '--data-dir', dir]);
  assert.equal(repair.code, 0, repair.stdout + repair.stderr);
  parrot = await parrotOn(fake, dir, noSnap);
  const detail = parrot.logs().find((l) => l.msg === 'cache loaded').detail;
  assert.match(detail, /0 entries loaded/, 'records after the damage are dropped by the repair');
});

test('--persist false keeps nothing on disk', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-nopersist-');
  let parrot = await parrotOn(fake, dir, ['--persist', 'false']);
  await cacheStatus(parrot, 'not kept');
  assert.equal(await parrot.stop('SIGTERM'), 0);
  assert.equal(fs.existsSync(path.join(dir, 'wal.log')), false);
  parrot = await parrotOn(fake, dir);
  assert.equal(await cacheStatus(parrot, 'not kept'), 'miss');
});

test('kill -9: answers stored in one batch come back, the later answer to a question last', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-batch-');
  let parrot = await parrotOn(fake, dir, ['--wal-fsync', 'always']);
  const texts = Array.from({ length: 40 }, (_, i) => `batched question number ${i} about owls`);
  const script = (tag) => Object.fromEntries(texts.map((t, i) => [t, `${tag} answer ${i}`]));
  // Asked all at once, the answers queue up and the store thread takes them
  // in batches, each logged with one write and one sync.
  fake.chatScript({ answers: script('first') });
  await Promise.all(texts.map((t) => curlChat(parrot.base, ask(t), auth)));
  // Then answered again (no-cache: looked up never, stored always): each
  // question's second record must win the replay.
  fake.chatScript({ answers: script('second') });
  const noCache = { ...auth, 'cache-control': 'no-cache' };
  const again = await Promise.all(texts.map((t) => curlChat(parrot.base, ask(t), noCache)));
  for (const r of again) assert.equal(r.headers['x-parrot-cache'], 'bypass');
  const m = await metrics(parrot.base); // waits for the store queue
  assert.equal(m.parrot_cache_stores_total, 80);
  assert.equal(m.parrot_cache_stores_dropped_total, 0);
  assert.equal(m.parrot_cache_store_queue, 0);
  await waitFor(async () => (await metrics(parrot.base)).parrot_wal_durable_seq >= m.parrot_wal_last_seq,
    { what: 'the log to make every record durable' });
  process.kill(parrot.pid, 'SIGKILL');
  await parrot.stop('SIGKILL');

  parrot = await parrotOn(fake, dir);
  const calls = fake.stats().chat;
  for (const [i, t] of texts.entries()) {
    const r = await curlChat(parrot.base, ask(t), auth);
    assert.equal(r.headers['x-parrot-cache'], 'hit', t);
    assert.equal(JSON.parse(r.body).choices[0].message.content, `second answer ${i}`);
  }
  assert.equal(fake.stats().chat, calls);
});
