// Scale-out (docs/scale-out.md): three parrot replicas share one cache
// through a real redis-server. The fake provider's counters are the oracle
// for provider calls; /admin/entries on each replica is the oracle for "the
// same entry set" (an entry has the same id on every replica).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFake, startParrot, startRedis, redisCli, cleanup, curlChat, request, waitFor, makeTmpDir, runCli,
} from './helpers.mjs';

after(cleanup);

const T = { timeout: 120_000 };
const ADMIN = 'adm-key-for-replica-tests-0123';
const KEY = { authorization: 'Bearer sk-replicas' };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });
const CONVERGE_MS = 20_000;
let nsCount = 0;

/** A replica of namespace ns on redis; dir keeps its data directory. */
function replica(fake, redis, ns, { dir, args = [] } = {}) {
  return startParrot({
    args: ['--upstream', fake.url, '--redis', redis.url, '--redis-namespace', ns,
      ...(dir ? ['--data-dir', dir] : []), ...args],
    env: { PARROT_ADMIN_KEY: ADMIN },
  });
}

async function cluster(n, { aof = false, args = [] } = {}) {
  const fake = await startFake();
  const redis = await startRedis({ aof });
  const ns = `t${process.pid}-${++nsCount}`;
  const dirs = [];
  const parrots = [];
  for (let i = 0; i < n; i++) {
    dirs.push(makeTmpDir('parrot-replica-'));
    parrots.push(await replica(fake, redis, ns, { dir: dirs[i], args }));
  }
  return { fake, redis, ns, dirs, parrots };
}

async function admin(parrot, method, path, body) {
  const headers = { authorization: `Bearer ${ADMIN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await request(parrot.base, { method, path, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: JSON.parse(r.body) };
}

/** Every entry id the replica holds, sorted. */
async function entryIds(parrot) {
  const ids = [];
  let after = '';
  for (;;) {
    const r = await admin(parrot, 'GET', `/admin/entries?limit=1000${after ? `&after=${after}` : ''}`);
    assert.equal(r.status, 200);
    ids.push(...r.json.data.map((e) => e.id));
    if (!r.json.has_more) return ids.sort();
  }
}

/** Wait until every replica holds exactly the same entries, and at least min of them. */
async function converged(parrots, min, what) {
  let last = [];
  try {
    return await waitFor(async () => {
      last = await Promise.all(parrots.map(entryIds));
      const first = JSON.stringify(last[0]);
      return last[0].length >= min && last.every((ids) => JSON.stringify(ids) === first) ? last[0] : null;
    }, { timeoutMs: CONVERGE_MS, intervalMs: 100, what });
  } catch (e) {
    const reps = await Promise.all(parrots.map(async (p) => {
      const r = await request(p.base, { path: '/metrics' });
      return r.body.split('\n').filter((l) => l.startsWith('parrot_replica_')).join(' ');
    }));
    e.message += `; entries per replica: ${last.map((ids) => ids.length).join(', ')}; metrics: ${reps.join(' | ')}`;
    throw e;
  }
}

async function chat(parrot, text) {
  const r = await curlChat(parrot.base, ask(text), KEY);
  assert.equal(r.status, 200, `${text}: ${r.body.slice(0, 300)}`);
  return r;
}

async function metricValue(parrot, name) {
  const r = await request(parrot.base, { path: '/metrics' });
  const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(r.body);
  return m ? Number(m[1]) : NaN;
}

test('a miss stored through A is an exact and a semantic hit on B and C; delete and invalidate through A remove it there', T, async () => {
  const { fake, parrots: [a, b, c] } = await cluster(3);
  const stored = await chat(a, 'How do I reset my password?');
  assert.equal(stored.headers['x-parrot-cache'], 'miss');
  const [id] = await converged([a, b, c], 1, 'the entry on every replica');

  const exact = await chat(b, 'How do I reset my password?');
  assert.equal(exact.headers['cache-status'], 'parrot; hit; detail=exact');
  assert.equal(exact.headers['x-parrot-entry'], id, 'the same entry, under the same id');
  const para = await chat(c, 'how can I reset my password');
  assert.equal(para.headers['cache-status'], 'parrot; hit; detail=semantic');
  assert.equal(para.headers['x-parrot-entry'], id);
  assert.equal(JSON.parse(para.body).choices[0].message.content, 'echo: How do I reset my password?');
  assert.equal(fake.stats().chat, 1, 'hits on B and C made no provider call');
  assert.ok(await metricValue(b, 'parrot_replica_applied_total') >= 1);
  assert.equal(await metricValue(a, 'parrot_replica_connected{thread="writer"}'), 1);

  // A delete through A's admin API.
  assert.equal((await admin(a, 'DELETE', `/admin/entries/${id}`)).status, 200);
  for (const p of [b, c]) {
    await waitFor(async () => (await admin(p, 'GET', `/admin/entries/${id}`)).status === 404,
      { timeoutMs: CONVERGE_MS, what: 'the delete on another replica' });
  }
  assert.equal((await chat(b, 'How do I reset my password?')).headers['x-parrot-cache'], 'miss');

  // An invalidation through A removes what B stored, on every replica.
  await chat(b, 'What is the capital of France?');
  await converged([a, b, c], 2, 'two entries everywhere');
  const inv = await admin(a, 'POST', '/admin/invalidate', { model: 'gpt-fake' });
  assert.equal(inv.status, 200);
  assert.equal(inv.json.removed, 2);
  const none = await converged([a, b, c], 0, 'the invalidation everywhere');
  assert.deepEqual(none, []);
});

test('Redis killed mid-traffic: no client error, hits go on; Redis back: the backlog replicates and the replicas converge', T, async () => {
  const { fake, redis, parrots } = await cluster(3, { aof: true });
  const [a, b, c] = parrots;
  await chat(a, 'question before the outage');
  await converged(parrots, 1, 'the first entry everywhere');

  // Traffic on all three replicas while Redis dies and stays dead a while.
  let n = 0;
  let stopTraffic = false;
  const errors = [];
  const traffic = (async () => {
    while (!stopTraffic) {
      const i = n++;
      const p = parrots[i % 3];
      const r = await curlChat(p.base, ask(`traffic question ${i}`), KEY);
      if (r.status !== 200) errors.push(`${i}: ${r.status} ${r.body.slice(0, 200)}`);
    }
  })();
  await waitFor(() => n >= 10, { what: 'traffic before the kill' });
  await redis.stop('SIGKILL');
  const atKill = n;
  await waitFor(() => n >= atKill + 30, { timeoutMs: 30_000, what: 'traffic while Redis is down' });
  // Hits are served from memory meanwhile.
  const hit = await chat(c, 'question before the outage');
  assert.equal(hit.headers['x-parrot-cache'], 'hit');
  await waitFor(async () => await metricValue(a, 'parrot_replica_connected{thread="writer"}') === 0,
    { what: 'the writer to notice' });
  assert.ok(await metricValue(a, 'parrot_replica_queue_depth') > 0, 'changes wait for Redis');

  await redis.restart();
  await waitFor(() => n >= atKill + 40, { timeoutMs: 30_000, what: 'traffic after Redis came back' });
  stopTraffic = true;
  await traffic;
  assert.deepEqual(errors, [], 'no client saw an error');
  const ids = await converged(parrots, n + 1, 'every entry on every replica');
  assert.equal(ids.length, n + 1);
  assert.equal(fake.stats().chat, n + 1, 'one provider call per question');
  for (const p of parrots) assert.equal(await metricValue(p, 'parrot_replica_dropped_total'), 0);
  // Every entry is an exact hit on a replica that did not store it.
  for (let i = 0; i < n; i += 7) {
    const r = await chat(parrots[(i + 1) % 3], `traffic question ${i}`);
    assert.equal(r.headers['x-parrot-cache'], 'hit', `traffic question ${i}`);
  }
  assert.equal(b.exitInfo, null);
});

test('a replica started late, and one whose position was trimmed from the stream, converge by re-seeding', T, async () => {
  const { fake, redis, ns, parrots: [a, b] } = await cluster(2);
  for (let i = 0; i < 5; i++) await chat(i % 2 ? a : b, `early question ${i}`);
  await converged([a, b], 5, 'the early entries');

  const lateDir = makeTmpDir('parrot-replica-late-');
  let late = await replica(fake, redis, ns, { dir: lateDir });
  await converged([a, b, late], 5, 'the late replica');
  assert.equal(await metricValue(late, 'parrot_replica_reseeds_total'), 1, 'no position yet: a re-seed');
  const exact = await chat(late, 'early question 3');
  assert.equal(exact.headers['x-parrot-cache'], 'hit');

  // Away while the stream is trimmed past its position.
  await late.stop('SIGTERM');
  for (let i = 0; i < 5; i++) await chat(a, `while away ${i}`);
  await converged([a, b], 10, 'the entries made while it was away');
  const key = `parrot:{${ns}}:changes`;
  await redisCli(redis.port, ['XTRIM', key, 'MAXLEN', '0']);
  assert.equal(await redisCli(redis.port, ['XLEN', key]), '0');
  late = await replica(fake, redis, ns, { dir: lateDir });
  await converged([a, b, late], 10, 'the trimmed replica');
  assert.equal(await metricValue(late, 'parrot_replica_reseeds_total'), 1, 'trimmed: a re-seed');
  assert.equal(fake.stats().chat, 10);
});

test('a replica killed with SIGKILL and restarted loses nothing that Redis acknowledged', T, async () => {
  const { fake, redis, ns, dirs, parrots: [a, b, c] } = await cluster(3);
  // C's own answers: once A has them, Redis acknowledged them.
  for (let i = 0; i < 20; i++) await chat(c, `own question ${i}`);
  await converged([a, b, c], 20, 'C\'s answers everywhere');
  c.proc.kill('SIGKILL');
  await c.exited;
  // Others' answers while C is down.
  for (let i = 0; i < 10; i++) await chat(i % 2 ? a : b, `while dead ${i}`);
  const restarted = await replica(fake, redis, ns, { dir: dirs[2] });
  const ids = await converged([a, b, restarted], 30, 'the restarted replica');
  assert.equal(ids.length, 30);
  for (const q of ['own question 0', 'own question 19', 'while dead 9']) {
    assert.equal((await chat(restarted, q)).headers['x-parrot-cache'], 'hit', q);
  }
  assert.equal(fake.stats().chat, 30);
});

test('50 concurrent identical misses spread over three replicas make one provider call', T, async () => {
  const { fake, parrots } = await cluster(3);
  const q = 'What is the boiling point of water at sea level?';
  // The provider takes a while, so that every request arrives while the
  // first is still in flight.
  const slow = { ...KEY, 'x-fake-delay-ms': '1500' };
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => curlChat(parrots[i % 3].base, ask(q), slow)));
  for (const r of rs) {
    assert.equal(r.status, 200, r.body.slice(0, 200));
    assert.equal(JSON.parse(r.body).choices[0].message.content, `echo: ${q}`);
  }
  assert.equal(fake.stats().chatByText[q], 1, 'one provider call for all three replicas');
  assert.equal(rs.filter((r) => r.headers['x-parrot-cache'] === 'miss').length, 1);
  let led = 0;
  for (const p of parrots) led += await metricValue(p, 'parrot_replica_flights_total{result="led"}');
  assert.equal(led, 1, 'one replica led');
});

test('a rate limit of N per minute holds across the three replicas together, and with Redis away each allows its share', T, async () => {
  const N = 6;
  const { redis, parrots } = await cluster(3, { args: ['--rate-limit-rpm', String(N)] });
  // Sequential misses of one client, round-robin over the replicas. The
  // bound allows for the bucket's refill while the loop runs.
  async function allowed(key, what) {
    const t0 = Date.now();
    const statuses = [];
    for (let i = 0; i < 3 * N; i++) {
      const r = await curlChat(parrots[i % 3].base, ask(`${what} ${i}`), key);
      statuses.push(r.status);
    }
    const refill = Math.ceil(((Date.now() - t0) / 60000) * N);
    const ok = statuses.filter((s) => s === 200).length;
    assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(' '));
    assert.ok(ok >= N && ok <= N + refill, `${what}: ${ok} of ${3 * N} allowed (limit ${N}, refill ${refill}): ${statuses.join(' ')}`);
  }
  await allowed({ authorization: 'Bearer sk-limited-1' }, 'shared limit');

  // Without Redis each replica limits alone, to N / (the replicas it saw).
  for (const p of parrots) {
    await waitFor(async () => await metricValue(p, 'parrot_replica_replicas') === 3,
      { timeoutMs: 20_000, what: 'every replica to count three' });
  }
  await redis.stop('SIGKILL');
  await allowed({ authorization: 'Bearer sk-limited-2' }, 'fallback limit');
});

test('an ACL user and its password: replication works, and the password appears in no log, metric, admin answer or printed config', T, async () => {
  const PASSWORD = 'redis-pw-never-shown-4242';
  const fake = await startFake();
  const redis = await startRedis({ cliAuth: ['--no-auth-warning', '--user', 'parrot', '--pass', PASSWORD],
    args: ['--user', 'default', 'off', '--user', 'parrot', 'on', `>${PASSWORD}`, '~parrot:*', '+@all'] });
  const ns = `t${process.pid}-acl`;
  const url = `redis://parrot@127.0.0.1:${redis.port}`;
  const start = (password) => startParrot({
    args: ['--upstream', fake.url, '--redis', url, '--redis-namespace', ns],
    env: { PARROT_ADMIN_KEY: ADMIN, PARROT_REDIS_PASSWORD: password },
  });
  const a = await start(PASSWORD);
  const b = await start(PASSWORD);
  await chat(a, 'Which planet is the largest?');
  await converged([a, b], 1, 'the entry through an ACL user');
  // A wrong password: parrot serves all the same and says why it cannot share.
  const wrong = await start('wrong-password-5151');
  assert.equal((await chat(wrong, 'A question for a replica that cannot share?')).status, 200);
  await waitFor(() => wrong.logs().find((l) => l.msg === 'redis unreachable; retrying with backoff'),
    { what: 'the warning' });
  assert.match(JSON.stringify(wrong.logs().find((l) => l.msg === 'redis unreachable; retrying with backoff')), /WRONGPASS|invalid/i);
  const printed = await runCli(['--redis', url, '--print-config'], { PARROT_REDIS_PASSWORD: PASSWORD });
  assert.equal(printed.code, 0, printed.stderr);
  const flag = await runCli(['--redis', url, '--redis-password', PASSWORD]);
  assert.equal(flag.code, 2, 'a secret is never a flag');
  const shown = [printed.stdout, printed.stderr, flag.stderr];
  for (const p of [a, b, wrong]) {
    shown.push(p.stderr(), (await request(p.base, { path: '/metrics' })).body,
      JSON.stringify((await admin(p, 'GET', '/admin/stats')).json));
  }
  for (const text of shown) assert.ok(!text.includes(PASSWORD) && !text.includes('wrong-password-5151'), 'the password leaked');
});
