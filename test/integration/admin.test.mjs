// The admin API: its key, each action (stats, list, get, delete,
// invalidate by partition / model / age / similarity), one audit log line
// per call without prompts, and deletions that survive a restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startParrot, curlChat, cleanup, errorShape, makeTmpDir, request, waitFor } from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const ADMIN = 'adm-key-for-tests-0123456789';
const alice = { authorization: 'Bearer sk-alice' };
const bob = { authorization: 'Bearer sk-bob' };
const ask = (text, model = 'gpt-fake') => ({ model, messages: [{ role: 'user', content: text }] });

async function adminParrot(fake, { dir, args = [], env = {} } = {}) {
  return startParrot({
    args: ['--upstream', fake.url, ...(dir ? ['--data-dir', dir] : []), ...args],
    env: { PARROT_ADMIN_KEY: ADMIN, ...env },
  });
}

async function admin(parrot, method, path, body, key = ADMIN) {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await request(parrot.base, { method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: JSON.parse(r.body), body: r.body };
}

async function cached(parrot, text, headers = alice, model = 'gpt-fake') {
  const r = await curlChat(parrot.base, ask(text, model), headers);
  assert.equal(r.status, 200, r.body);
  return r;
}

const auditLines = (parrot) => parrot.logs().filter((l) => l.msg === 'admin');

test('the admin API needs its key: 401 without or with a wrong one, 403 when no key is configured', T, async () => {
  const fake = await startFake();
  let parrot = await adminParrot(fake);
  for (const key of [null, 'wrong-admin-key-000000000', 'sk-alice']) {
    const r = await admin(parrot, 'GET', '/admin/stats', undefined, key);
    assert.equal(r.status, 401, r.body);
    assert.equal(errorShape(assert, r.body).code, 'invalid_api_key');
  }
  // Also for paths that do not exist: nothing is revealed before the key.
  assert.equal((await admin(parrot, 'GET', '/admin/nope', undefined, null)).status, 401);
  assert.equal((await admin(parrot, 'GET', '/admin/nope')).status, 404);
  const denied = auditLines(parrot).filter((l) => l.action === 'denied');
  assert.equal(denied.length, 4, 'every refused call is logged');
  assert.ok(denied.every((l) => l.status === 401));
  await parrot.stop();

  parrot = await startParrot({ args: ['--upstream', fake.url] });
  const r = await admin(parrot, 'GET', '/admin/stats');
  assert.equal(r.status, 403);
  assert.equal(errorShape(assert, r.body).code, 'admin_disabled');
  assert.match(r.json.error.message, /admin-key/);
});

test('stats, list, get and delete; each call is logged without the prompt', T, async () => {
  const fake = await startFake();
  const parrot = await adminParrot(fake);
  await cached(parrot, 'What is the boiling point of water at sea level?');
  await cached(parrot, 'Name three primary colours');
  const hit = await cached(parrot, 'Name three primary colours');
  assert.equal(hit.headers['x-parrot-cache'], 'hit');
  await cached(parrot, 'What is the boiling point of water at sea level?', bob);

  const st = await admin(parrot, 'GET', '/admin/stats');
  assert.equal(st.status, 200, st.body);
  assert.equal(st.json.entries, 3);
  assert.equal(st.json.partitions, 2, 'alice and bob are separate partitions');
  assert.equal(st.json.hits.exact, 1);
  assert.equal(st.json.misses, 3);
  assert.equal(st.json.hit_ratio, 0.25);
  assert.ok(st.json.memory_bytes > 0 && st.json.memory_bytes <= st.json.max_memory_bytes);
  assert.deepEqual(st.json.by_partition.map((p) => p.entries), [2, 1]);

  const list = await admin(parrot, 'GET', '/admin/entries');
  assert.equal(list.status, 200, list.body);
  assert.equal(list.json.object, 'list');
  assert.equal(list.json.data.length, 3);
  assert.equal(list.json.has_more, false);
  assert.ok(!list.body.includes('primary colours'), 'prompts are hidden unless admin-show-prompts');
  const entry = list.json.data.find((e) => e.id === hit.headers['x-parrot-entry']);
  assert.ok(entry, 'the ids are the x-parrot-entry ids');
  assert.equal(entry.hits, 1);
  assert.equal(entry.model, 'gpt-fake');
  assert.equal(entry.partition, st.json.by_partition[0].partition);

  // Paging and the partition filter.
  const page1 = await admin(parrot, 'GET', '/admin/entries?limit=2');
  assert.equal(page1.json.data.length, 2);
  assert.equal(page1.json.has_more, true);
  const page2 = await admin(parrot, 'GET', `/admin/entries?limit=2&after=${page1.json.last_id}`);
  assert.equal(page2.json.data.length, 1);
  assert.equal(page2.json.has_more, false);
  assert.deepEqual([...page1.json.data, ...page2.json.data].map((e) => e.id).sort(), list.json.data.map((e) => e.id).sort());
  const bobs = await admin(parrot, 'GET', `/admin/entries?partition=${st.json.by_partition[1].partition}`);
  assert.equal(bobs.json.data.length, 1);
  assert.equal((await admin(parrot, 'GET', '/admin/entries?limit=0')).status, 400);
  assert.equal((await admin(parrot, 'GET', '/admin/entries?partition=xyz')).status, 400);

  const one = await admin(parrot, 'GET', `/admin/entries/${entry.id}`);
  assert.equal(one.status, 200);
  assert.equal(one.json.id, entry.id);
  const del = await admin(parrot, 'DELETE', `/admin/entries/${entry.id}`);
  assert.equal(del.status, 200, del.body);
  assert.deepEqual(del.json, { id: entry.id, object: 'parrot.cache_entry.deleted', deleted: true, logged: true });
  assert.equal((await admin(parrot, 'GET', `/admin/entries/${entry.id}`)).status, 404);
  assert.equal((await admin(parrot, 'DELETE', `/admin/entries/${entry.id}`)).status, 404);
  assert.equal((await cached(parrot, 'Name three primary colours')).headers['x-parrot-cache'], 'miss',
    'a deleted answer is asked again');
  assert.equal((await admin(parrot, 'POST', '/admin/stats', {})).status, 405);

  const audit = auditLines(parrot);
  const actions = audit.map((l) => l.action);
  for (const a of ['stats', 'list', 'get', 'delete'])
    assert.ok(actions.includes(a), `${a} is logged: ${JSON.stringify(actions)}`);
  const dl = audit.find((l) => l.action === 'delete' && l.status === 200);
  assert.equal(dl.count, 1);
  assert.equal(dl.id, entry.id);
  assert.equal(audit.find((l) => l.action === 'list' && l.limit === 2 && !l.after).count, 2);
  assert.ok(!JSON.stringify(parrot.logs()).includes('primary colours'), 'no prompt in any log line');
});

test('admin-show-prompts shows the lookup text', T, async () => {
  const fake = await startFake();
  const parrot = await adminParrot(fake, { args: ['--admin-show-prompts'] });
  await cached(parrot, 'Where do parrots live?');
  const list = await admin(parrot, 'GET', '/admin/entries');
  assert.equal(list.json.data[0].prompt, 'Where do parrots live?');
});

test('invalidate by partition, model, age and similarity returns the count removed', T, async () => {
  const fake = await startFake();
  const parrot = await adminParrot(fake);
  await cached(parrot, 'How do I reset my password?');
  await cached(parrot, 'What is the capital of France?');
  await cached(parrot, 'Tell me a joke about cats', alice, 'gpt-other');
  await cached(parrot, 'What is the capital of France?', bob);

  // Bad bodies get 400 with the offending parameter.
  for (const [body, param] of [[{}, null], [{ colour: 'red' }, 'colour'], [{ text: 'x' }, 'radius'],
    [{ text: 'reset password', radius: 1.5 }, 'radius'], [{ older_than: -1 }, 'older_than'],
    [{ partition: 'abc' }, 'partition'], [{ all: true, model: 'gpt-fake' }, 'all']]) {
    const r = await admin(parrot, 'POST', '/admin/invalidate', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(errorShape(assert, r.body).param, param, JSON.stringify(body));
  }

  let r = await admin(parrot, 'POST', '/admin/invalidate', { model: 'gpt-other' });
  assert.deepEqual(r.json, { object: 'parrot.invalidation', removed: 1, logged: true });

  // Similarity: a paraphrase of the password question, scoped to alice's partition.
  const { json: list } = await admin(parrot, 'GET', '/admin/entries');
  const parts = [...new Set(list.data.map((e) => e.partition))];
  assert.equal(parts.length, 2);
  const alicePart = list.data.find((e) => list.data.filter((o) => o.partition === e.partition).length === 2).partition;
  r = await admin(parrot, 'POST', '/admin/invalidate', { text: 'how can I reset my password', radius: 0.7, partition: alicePart });
  assert.equal(r.json.removed, 1, r.body);
  assert.equal((await cached(parrot, 'What is the capital of France?')).headers['x-parrot-cache'], 'hit',
    'a dissimilar entry stays');
  assert.equal((await cached(parrot, 'How do I reset my password?')).headers['x-parrot-cache'], 'miss');

  // Age: nothing is older than an hour; everything is older than 0 s.
  r = await admin(parrot, 'POST', '/admin/invalidate', { older_than: 3600 });
  assert.equal(r.json.removed, 0);
  r = await admin(parrot, 'POST', '/admin/invalidate', { older_than: 0, partition: alicePart });
  assert.equal(r.json.removed, 2, 'both of alice\'s remaining entries');
  r = await admin(parrot, 'POST', '/admin/invalidate', { all: true });
  assert.equal(r.json.removed, 1, "bob's entry");
  assert.equal((await admin(parrot, 'GET', '/admin/stats')).json.entries, 0);

  const inv = auditLines(parrot).filter((l) => l.action === 'invalidate' && l.status === 200);
  assert.deepEqual(inv.map((l) => l.count), [1, 1, 0, 2, 1]);
  const sem = inv[1];
  assert.equal(sem.radius, 0.7);
  assert.equal(sem.text_bytes, 'how can I reset my password'.length);
  assert.ok(!JSON.stringify(parrot.logs()).includes('reset my password'), 'the text is never logged');
});

test('deletes and invalidations survive a restart (DEL records replayed)', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-admin-wal-');
  // No snapshot at shutdown: the restart must replay the DEL records.
  let parrot = await adminParrot(fake, { dir, args: ['--wal-fsync', 'always', '--snapshot-on-shutdown', 'false'] });
  const texts = ['first durable question', 'second durable question', 'third durable question about dogs'];
  for (const t of texts) await cached(parrot, t);
  const { json: list } = await admin(parrot, 'GET', '/admin/entries');
  assert.equal(list.data.length, 3);
  // Ids are random, so the first question's is taken from a hit.
  const firstId = (await cached(parrot, texts[0])).headers['x-parrot-entry'];
  assert.ok(list.data.some((e) => e.id === firstId));
  assert.equal((await admin(parrot, 'DELETE', `/admin/entries/${firstId}`)).json.deleted, true);
  assert.equal((await admin(parrot, 'POST', '/admin/invalidate', { text: 'third durable question about dogs', radius: 0.99 })).json.removed, 1);
  // Asked again after its delete: stored anew, so it must come back.
  await cached(parrot, texts[0]);
  assert.equal(await parrot.stop('SIGTERM'), 0);

  parrot = await adminParrot(fake, { dir });
  const loaded = parrot.logs().find((l) => l.msg === 'cache loaded');
  assert.match(loaded.detail, /4 entries loaded, 0 expired, 2 deleted, .*the cache holds 2 entries/);
  const calls = fake.stats().chat;
  assert.equal((await cached(parrot, texts[0])).headers['x-parrot-cache'], 'hit', 'stored again after the delete');
  assert.equal((await cached(parrot, texts[1])).headers['x-parrot-cache'], 'hit');
  assert.equal(fake.stats().chat, calls);
  assert.equal((await cached(parrot, texts[2])).headers['x-parrot-cache'], 'miss', 'the invalidated entry stays gone');
  await waitFor(async () => (await admin(parrot, 'GET', '/admin/stats')).json.entries === 3, { what: '3 entries' });

  // A snapshot on demand, then a restart from it: the same 3 entries, no log replay.
  const snap = await admin(parrot, 'POST', '/admin/snapshot');
  assert.equal(snap.status, 200);
  assert.equal(snap.json.object, 'parrot.snapshot');
  assert.match(snap.json.detail, /3 entries/);
  assert.equal((await admin(parrot, 'GET', '/admin/snapshot')).status, 405);
  assert.ok(auditLines(parrot).some((l) => l.action === 'snapshot' && l.status === 200), 'the snapshot is logged');
  await parrot.stop('SIGKILL'); // (a sanitized build gets SIGTERM: its shutdown snapshot is equal)
  parrot = await adminParrot(fake, { dir });
  assert.match(parrot.logs().find((l) => l.msg === 'cache loaded').detail,
    /snapshot .*: 3 entries loaded.*wal\.log: 0 entries loaded.*the cache holds 3 entries/);
  for (const t of texts) assert.equal((await cached(parrot, t)).headers['x-parrot-cache'], 'hit');
});
