// kill -9 at random moments under concurrent inserts, 50 times over one data
// directory, with snapshots and log compactions happening in between.
//
// "Acknowledged durable": a miss is stored after its answer is sent, and an
// identical request asked meanwhile waits for that store (single-flight), so
// once the question asked again is an exact hit its log record is appended
// and the record's sequence number is at most the parrot_wal_last_seq of a
// /metrics scrape begun after that hit (clients are never shown sequence
// numbers). Once a scrape taken before the
// kill shows parrot_wal_durable_seq at or past that bound, with no record
// dropped (parrot_wal_dropped_total 0), the record was synced, so the entry
// must be served as an exact hit after every later restart, with the very
// answer the provider gave. Entries whose durability
// was not seen before the kill may or may not come back; whatever is served
// must still be a whole, correct answer. parrot must start every time.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFake, startParrot, cleanup, makeTmpDir, metrics, request, chatBody } from './helpers.mjs';

after(cleanup);

const ITERATIONS = 50;
const WRITERS = 4;
const auth = { authorization: 'Bearer sk-crash', 'content-type': 'application/json' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo));

// Check questions eight at a time.
async function checkAll(base, qs, what) {
  for (let i = 0; i < qs.length; i += 8) {
    await Promise.all(qs.slice(i, i + 8).map(async (q) => {
      const r = await ask(base, q);
      assertAnswer(r, q, `${what} "${q}"`);
      assert.equal(r.headers['x-parrot-cache'], 'hit', `${what} "${q}" lost`);
    }));
  }
}

function ask(base, q) {
  return request(base, { method: 'POST', path: '/v1/chat/completions', headers: auth, body: chatBody(q), timeoutMs: 10_000 });
}

// An answer that is whole and is the provider's answer to q.
function assertAnswer(r, q, what) {
  assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 200)}`);
  const doc = JSON.parse(r.body);
  assert.equal(doc.choices[0].message.content, `echo: ${q}`, what);
}

test('SIGKILL loop: every acknowledged-durable entry comes back, nothing corrupt is served', { timeout: 170_000 }, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-crash-');
  const args = ['--upstream', fake.url, '--data-dir', dir, '--wal-fsync', 'always',
    '--snapshot-wal-size', '8k', '--snapshot-interval', '0', '--verifier', 'true'];
  const durable = new Map(); // question -> log seq, confirmed synced before a kill
  let fresh = [];            // confirmed in the previous iteration: checked right away
  let snapshots = 0;

  for (let it = 0; it < ITERATIONS; it++) {
    const parrot = await startParrot({ args });
    const base = parrot.base;
    await checkAll(base, fresh, `iteration ${it}: durable entry`);
    fresh = [];

    const answered = [];       // stored, its record's bound not yet known
    const pending = new Map(); // question -> seq bound, durability not yet seen
    let stop = false;
    const writer = async (w) => {
      for (let n = 0; !stop; n++) {
        const q = `crash ${it} writer ${w} question ${n} ${Math.random().toString(36).slice(2, 10)}`;
        let r;
        try {
          r = await ask(base, q);
        } catch {
          return; // killed mid-request
        }
        assertAnswer(r, q, `iteration ${it}: live answer`);
        try {
          r = await ask(base, q);
        } catch {
          return;
        }
        assertAnswer(r, q, `iteration ${it}: live answer asked again`);
        if (r.headers['x-parrot-cache'] === 'hit') answered.push(q);
      }
    };
    const poller = async () => {
      while (!stop) {
        let m;
        const before = answered.splice(0); // answered before this scrape began
        try {
          m = await metrics(base);
        } catch {
          return;
        }
        if (m.parrot_wal_dropped_total === 0) for (const q of before) pending.set(q, m.parrot_wal_last_seq);
        const upto = m.parrot_wal_durable_seq;
        snapshots = Math.max(snapshots, m.parrot_snapshots_total);
        for (const [q, seq] of pending) {
          if (seq <= upto) {
            durable.set(q, seq);
            fresh.push(q);
            pending.delete(q);
          }
        }
        await sleep(15);
      }
    };
    const work = [...Array.from({ length: WRITERS }, (_, w) => writer(w)), poller()];
    await sleep(rand(30, 600));
    if (it % 10 === 9) {
      stop = true; // now and then a graceful stop, which snapshots
      await Promise.all(work);
      assert.equal(await parrot.stop('SIGTERM'), 0);
      continue;
    }
    process.kill(parrot.pid, 'SIGKILL');
    stop = true;
    await Promise.all(work);
    await parrot.stop('SIGKILL');
  }

  // Every entry ever confirmed, after one last restart.
  const parrot = await startParrot({ args });
  await checkAll(parrot.base, [...durable.keys()], 'final check: durable entry');
  assert.ok(durable.size > 100, `only ${durable.size} entries were confirmed durable`);
  assert.ok(snapshots > 0 || parrot.logs().some((l) => /snapshot/.test(l.detail || '')),
    'the loop should have taken snapshots');
  const loaded = parrot.logs().find((l) => l.msg === 'cache loaded');
  assert.match(loaded.detail, /snapshot .*entries loaded/);
  await parrot.stop('SIGTERM');
});
