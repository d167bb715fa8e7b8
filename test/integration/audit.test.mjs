// Audits of semantic hits (docs/audit.md), against the scripted fake: the
// fake answers each question with a scripted text, so paraphrases can be
// made to disagree (one answer per entity) or agree. With --audit-rate 1
// every semantic hit is asked again; the tests wait for each verdict
// before the next request, so the sequence is deterministic.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFake, startParrot, cleanup, curlChat, request, metrics, makeTmpDir, waitFor,
} from './helpers.mjs';

after(cleanup);
const T = { timeout: 120_000 };
const ADMIN = 'adm-key-for-audit-tests-0123456';
const KEY = { authorization: 'Bearer sk-audit-tenant' };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

// "How do I X?" and "how can I X" are semantic hits of each other with the
// builtin embedder (similarity 0.90-0.96, docs/quality.md).
const TOPICS = [
  'reset my password', 'cancel my subscription', 'change my email address', 'delete my account',
  'update my billing address', 'export my data', 'enable two factor authentication',
  'invite a teammate', 'download my invoices', 'rename a project', 'archive a project',
  'change my username', 'add a payment method', 'remove a payment method', 'change my plan',
  'upload a profile picture', 'turn on notifications', 'share a document', 'create an api key',
  'revoke an api key', 'merge two accounts', 'restore a deleted file', 'pause my subscription',
  'transfer ownership of a workspace', 'change the language', 'set a spending limit',
  'verify my phone number', 'leave a workspace', 'connect a calendar', 'print a receipt',
  'change my time zone', 'block a user', 'report a bug', 'close a ticket', 'reopen a ticket',
];
const original = (t) => `How do I ${t}?`;
const paraphrase = (t) => `how can I ${t}`;

async function auditParrot(fake, { dir, args = [] } = {}) {
  return startParrot({
    args: ['--upstream', fake.url, '--audit-rate', '1', ...(dir ? ['--data-dir', dir] : []), ...args],
    env: { PARROT_ADMIN_KEY: ADMIN },
  });
}

async function admin(parrot, path) {
  const r = await request(parrot.base, { path, headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

async function chat(parrot, text) {
  const r = await curlChat(parrot.base, ask(text), KEY);
  assert.equal(r.status, 200, `${text}: ${r.body}`);
  return r;
}

/** Every audit offered so far has a verdict or was dropped. */
async function settled(parrot, offered) {
  return waitFor(async () => {
    const a = await admin(parrot, '/admin/audits');
    const dropped = Object.values(a.dropped).reduce((x, y) => x + y, 0);
    return a.sampled === offered && a.same + a.different + dropped === offered && a.inflight === 0 ? a : null;
  }, { what: `${offered} audits settled`, timeoutMs: 20_000 });
}

/**
 * Ask each topic's question, then its paraphrase, waiting for each audit;
 * returns the paraphrases' outcomes. Stops after the topic for which
 * until(audits) holds, when given.
 */
async function workload(parrot, topics, until = null) {
  const outcomes = [];
  let offered = (await admin(parrot, '/admin/audits')).sampled;
  for (const t of topics) {
    assert.equal((await chat(parrot, original(t))).headers['x-parrot-cache'], 'miss', original(t));
    const r = await chat(parrot, paraphrase(t));
    const semantic = r.headers['cache-status'] === 'parrot; hit; detail=semantic';
    outcomes.push({ topic: t, semantic, content: JSON.parse(r.body).choices[0].message.content });
    if (semantic && until && until(await settled(parrot, ++offered))) break;
    else if (semantic && !until) await settled(parrot, ++offered);
  }
  return outcomes;
}

/** One answer per question: a paraphrase's answer names another number. */
function disagreeing(topics) {
  const answers = {};
  topics.forEach((t, i) => {
    answers[original(t)] = `Use form ${2 * i + 1} for that.`;
    answers[paraphrase(t)] = `Use form ${2 * i + 2} for that.`;
  });
  return answers;
}

test('paraphrases with different answers: the bound rises, entries are disputed, the threshold rises and wrong hits stop', T, async () => {
  const fake = await startFake();
  fake.chatScript({ answers: disagreeing(TOPICS) });
  const parrot = await auditParrot(fake, { args: ['--similarity-threshold', '0.88'] });
  // Wrong hits until the partition's threshold is above every paraphrase's
  // paraphrase similarity seen so far...
  const out = await workload(parrot, TOPICS, (a) => a.threshold_max >= 0.96);
  const hits = out.filter((o) => o.semantic).length;
  assert.ok(out[0].semantic, 'the first paraphrase is a (wrong) semantic hit');
  assert.ok(out.length < TOPICS.length - 5, `the threshold reached 0.96 after ${out.length} topics`);
  // ... then they stop: the next paraphrases are misses, answered fresh.
  const rest = await workload(parrot, TOPICS.slice(out.length, out.length + 5));
  for (const o of rest) {
    assert.equal(o.semantic, false, `${o.topic}: still a semantic hit`);
    assert.match(o.content, /^Use form \d*[02468] for that\.$/, `${o.topic}: the provider's own answer`);
  }

  const a = await admin(parrot, '/admin/audits');
  assert.equal(a.different, hits, 'every audit disagreed');
  assert.equal(a.same, 0);
  assert.equal(a.audits, hits);
  assert.equal(a.wrong, hits);
  assert.equal(a.wrong_hit_rate, 1);
  assert.equal(a.wrong_hit_rate_upper, 1, 'every audit wrong: the bound is 1');
  assert.equal(a.disputed, hits);
  assert.equal(a.partitions_raised, 1);
  assert.equal(a.by_partition.length, 1);
  // Five audits before the first step, then a step per disagreement.
  assert.equal(a.by_partition[0].threshold, Math.min(1, Math.round((0.88 + 0.02 * (hits - 4)) * 1e4) / 1e4));
  assert.equal(a.threshold_max, a.by_partition[0].threshold);
  assert.equal(a.disagreements.length, hits);
  assert.equal(a.disagreements[0].why, 'numbers');
  assert.match(a.disagreements[0].entry, /^[0-9a-f]{16}$/);
  assert.equal(a.disagreements[0].question, undefined, 'no texts without --log-prompts');

  // A disputed entry answers its own question exactly, never a paraphrase;
  // the paraphrase has its own entry now, with the provider's answer.
  const again = await chat(parrot, paraphrase(TOPICS[0]));
  assert.equal(again.headers['cache-status'], 'parrot; hit; detail=exact');
  assert.equal(JSON.parse(again.body).choices[0].message.content, 'Use form 2 for that.');
  const orig = await chat(parrot, original(TOPICS[0]));
  assert.equal(orig.headers['cache-status'], 'parrot; hit; detail=exact');
  assert.equal(JSON.parse(orig.body).choices[0].message.content, 'Use form 1 for that.');

  const m = await metrics(parrot.base);
  assert.equal(m['parrot_audit_total{verdict="different"}'], hits);
  assert.equal(m['parrot_upstream_requests_total{reason="audit"}'], hits);
  assert.equal(m.parrot_audit_wrong_hit_rate_upper, 1);
  assert.equal(m.parrot_audit_partitions_raised, 1);
  assert.equal(m.parrot_cache_disputed_total, hits);
  const stats = await admin(parrot, '/admin/stats');
  assert.equal(stats.audit.partitions_raised, 1);
  // The dashboard's panel reads the same summary.
  const d = JSON.parse((await request(parrot.base, { path: '/dashboard/stats.json' })).body);
  assert.equal(d.audit.wrong, hits);
  assert.equal(d.audit.wrong_hit_rate_upper, 1);
  assert.equal(d.audit.max_wrong_hit_rate, 0.02);
  // One JSON line per disagreement.
  assert.equal(parrot.logs().filter((l) => l.msg === 'audit disagreement').length, hits);
});

test('paraphrases with the same answer: audits agree, the threshold stays, the bound is the zero-failure bound', T, async () => {
  const fake = await startFake();
  const answers = {};
  for (const t of TOPICS.slice(0, 10)) answers[original(t)] = answers[paraphrase(t)] = `The way to ${t} is in Settings.`;
  fake.chatScript({ answers });
  const parrot = await auditParrot(fake, { args: ['--similarity-threshold', '0.88'] });
  const out = await workload(parrot, TOPICS.slice(0, 10));
  const n = out.filter((o) => o.semantic).length;
  assert.equal(n, 10, 'every paraphrase is a semantic hit');
  const a = await admin(parrot, '/admin/audits');
  assert.equal(a.same, n);
  assert.equal(a.different, 0);
  assert.equal(a.disputed, 0);
  assert.equal(a.partitions_raised, 0);
  assert.equal(a.by_partition[0].threshold, 0.88, 'the threshold is left alone');
  assert.equal(a.wrong_hit_rate, 0);
  // 0 wrong in n: 1 - 0.025^(1/n), far below the bound of the other workload.
  assert.ok(Math.abs(a.wrong_hit_rate_upper - (1 - 0.025 ** (1 / n))) < 1e-9, `bound ${a.wrong_hit_rate_upper}`);
  assert.equal(a.disagreements.length, 0);
  assert.equal(parrot.logs().filter((l) => l.msg === 'audit agreed').length, n);
});

test('an audit never holds up the hit it audits, and goes with the client\'s credentials, not streamed', T, async () => {
  const fake = await startFake();
  fake.chatScript({ holdAudits: true, answers: disagreeing(TOPICS) });
  const parrot = await auditParrot(fake, { args: ['--log-prompts'] });
  await chat(parrot, original(TOPICS[0]));
  // A streamed hit: the audit still asks for one JSON answer.
  const r = await curlChat(parrot.base, { ...ask(paraphrase(TOPICS[0])), stream: true, stream_options: { include_usage: true } }, KEY);
  assert.equal(r.status, 200);
  assert.equal(r.headers['cache-status'], 'parrot; hit; detail=semantic');
  // The hit was answered while its audit is still held at the provider.
  await waitFor(() => fake.stats().auditHeld === 1, { what: 'the audit call reaching the fake' });
  assert.equal(fake.stats().auditCalls, 1);
  assert.equal((await admin(parrot, '/admin/audits')).inflight, 1);
  const seen = fake.stats().lastAudit;
  assert.equal(seen.headers.authorization, KEY.authorization);
  assert.equal(seen.headers['x-parrot-audit'], '1');
  assert.match(seen.headers['x-request-id'], /-audit$/);
  const body = JSON.parse(seen.body);
  assert.equal(body.stream, false);
  assert.equal(body.stream_options, undefined);
  assert.equal(body.messages[0].content, paraphrase(TOPICS[0]));
  fake.releaseAudits();
  const a = await settled(parrot, 1);
  // A disagreement, with its texts (--log-prompts).
  assert.equal(a.different, 1);
  assert.equal(a.disagreements[0].question, paraphrase(TOPICS[0]));
  assert.equal(a.disagreements[0].cached, 'Use form 1 for that.');
  assert.equal(a.disagreements[0].fresh, 'Use form 2 for that.');
  const line = parrot.logs().find((l) => l.msg === 'audit disagreement');
  assert.equal(line.question, paraphrase(TOPICS[0]));
  assert.equal(line.partition, a.disagreements[0].partition);
  // Exact hits are never audited.
  await chat(parrot, original(TOPICS[0]));
  assert.equal((await admin(parrot, '/admin/audits')).sampled, 1);
});

test('at most --audit-max-inflight audits at once; the rest are dropped as busy', T, async () => {
  const fake = await startFake();
  fake.chatScript({ holdAudits: true });
  const parrot = await auditParrot(fake, { args: ['--audit-max-inflight', '2'] });
  for (const t of TOPICS.slice(0, 4)) await chat(parrot, original(t));
  for (const t of TOPICS.slice(0, 4)) {
    const r = await chat(parrot, paraphrase(t));
    assert.equal(r.headers['cache-status'], 'parrot; hit; detail=semantic');
  }
  await waitFor(() => fake.stats().auditHeld === 2, { what: 'two audits held' });
  const a = await admin(parrot, '/admin/audits');
  assert.equal(a.sampled, 4);
  assert.equal(a.dropped.busy, 2);
  assert.equal(a.inflight, 2);
  fake.releaseAudits();
  await settled(parrot, 4);
});

test('a failing provider drops audits and never fails a client', T, async () => {
  const fake = await startFake();
  const parrot = await auditParrot(fake, { args: ['--retries', '0', '--breaker-failures', '1', '--breaker-cooldown', '60s'] });
  for (const t of TOPICS.slice(0, 3)) await chat(parrot, original(t));
  fake.chatScript({ status: 500 });
  for (const [i, t] of TOPICS.slice(0, 3).entries()) {
    const r = await chat(parrot, paraphrase(t)); // status 200 asserted
    assert.equal(r.headers['cache-status'], 'parrot; hit; detail=semantic');
    await settled(parrot, i + 1);
  }
  const a = await admin(parrot, '/admin/audits');
  // The first audit's call failed and opened the breaker; later offers
  // were not even sent.
  assert.equal(a.dropped.failed, 1);
  assert.equal(a.dropped.provider, 2);
  assert.equal(a.same + a.different, 0);
  assert.equal(a.audits, 0);
  assert.equal(a.disputed, 0);
  assert.equal(fake.stats().auditCalls, 1);
  const m = await metrics(parrot.base);
  assert.equal(m['parrot_audit_dropped_total{reason="failed"}'], 1);
  assert.equal(m['parrot_audit_dropped_total{reason="provider"}'], 2);
});

test('disputed flags and raised thresholds survive SIGKILL (the log) and SIGTERM (the snapshot)', T, async () => {
  const fake = await startFake();
  const topics = TOPICS.slice(0, 8);
  fake.chatScript({ answers: disagreeing(topics) });
  const dir = makeTmpDir('parrot-audit-');
  const args = ['--similarity-threshold', '0.88', '--wal-fsync', 'always'];
  let parrot = await auditParrot(fake, { dir, args });
  await workload(parrot, topics);
  const before = await admin(parrot, '/admin/audits');
  assert.equal(before.partitions_raised, 1);
  const disputed = (await admin(parrot, '/admin/entries?limit=100')).data.filter((e) => e.disputed).map((e) => e.id).sort();
  assert.equal(disputed.length, before.disputed);

  const check = async (what) => {
    const a = await admin(parrot, '/admin/audits');
    assert.equal(a.audits, before.audits, `${what}: audits`);
    assert.equal(a.wrong, before.wrong, `${what}: wrong`);
    assert.deepEqual(a.by_partition, before.by_partition, `${what}: the partition's tallies and threshold`);
    assert.equal(a.partitions_raised, 1, `${what}: raised`);
    const now = (await admin(parrot, '/admin/entries?limit=100')).data.filter((e) => e.disputed).map((e) => e.id).sort();
    assert.equal(now.length, disputed.length, `${what}: disputed entries`);
    // Still exact hits only: a paraphrase of a disputed entry's question
    // ("how could I ...") is never answered by it.
    const r = await chat(parrot, `How could I ${topics[0]}?`);
    assert.notEqual(JSON.parse(r.body).choices[0].message.content, 'Use form 1 for that.', `${what}: disputed entry served`);
  };
  // Verdicts are logged on the audit thread and made durable on the log's:
  // wait until every record handed to the log so far is on disk.
  const last = (await metrics(parrot.base)).parrot_wal_last_seq;
  await waitFor(async () => (await metrics(parrot.base)).parrot_wal_durable_seq >= last,
    { what: 'the audit records to be durable' });
  process.kill(parrot.pid, 'SIGKILL');
  await parrot.stop('SIGKILL');
  parrot = await auditParrot(fake, { dir, args });
  await check('after SIGKILL');
  assert.equal(await parrot.stop('SIGTERM'), 0);
  parrot = await auditParrot(fake, { dir, args });
  await check('after SIGTERM');
});
