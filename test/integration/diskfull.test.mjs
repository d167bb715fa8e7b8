// Disk full for real: the data directory is a small tmpfs that a filler
// file fills up. parrot keeps serving (answers, hits from memory), reports
// the problem on /readyz and in /metrics, and recovers by itself once space
// returns. Mounting needs root: as another user it goes through sudo
// (as deploy/install-deps.sh does).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startFake, startParrot, cleanup, makeTmpDir, metrics, request, chatBody, waitFor } from './helpers.mjs';

const mounts = [];

function asRoot(cmd, args) {
  if (process.getuid() === 0) execFileSync(cmd, args);
  else execFileSync('sudo', ['-n', cmd, ...args]);
}
after(async () => {
  await cleanup();
  for (const m of mounts) asRoot('umount', ['-l', m]);
});

const auth = { authorization: 'Bearer sk-full', 'content-type': 'application/json' };
const ask = (base, q) => request(base, { method: 'POST', path: '/v1/chat/completions', headers: auth, body: chatBody(q) });

function fill(file) {
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    assert.equal(e.code, 'ENOSPC');
  } finally {
    fs.closeSync(fd);
  }
}

test('disk full: serving goes on, /readyz and /metrics say so, recovery is automatic', { timeout: 60_000 }, async () => {
  const dir = makeTmpDir('parrot-full-');
  asRoot('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  mounts.push(dir);
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir, '--wal-fsync', 'always', '--snapshot-wal-size', '0'] });
  const base = parrot.base;
  assert.equal((await ask(base, 'before the disk fills')).headers['x-parrot-cache'], 'miss');

  const filler = path.join(dir, 'filler');
  fill(filler);
  // Misses keep being answered; the log degrades on its first failed write.
  for (let i = 0; i < 20; i++) assert.equal((await ask(base, `while full ${i} ${'x'.repeat(2000)}`)).status, 200);
  await waitFor(async () => (await metrics(base)).parrot_wal_degraded === 1, { what: 'the log to degrade' });
  const ready = await request(base, { path: '/readyz' });
  assert.equal(ready.status, 200);
  assert.match(JSON.parse(ready.body).detail, /disk full/);
  assert.ok((await metrics(base)).parrot_wal_dropped_total > 0);
  // Hits are still served from memory.
  assert.equal((await ask(base, 'before the disk fills')).headers['x-parrot-cache'], 'hit');

  fs.unlinkSync(filler);
  await waitFor(async () => (await metrics(base)).parrot_wal_degraded === 0, { what: 'the log to recover', timeoutMs: 15_000 });
  assert.equal(JSON.parse((await request(base, { path: '/readyz' })).body).detail, undefined);
  const m0 = await metrics(base);
  const r = await ask(base, 'after space returns');
  // Logged before the answer left, so its record is at most this last_seq.
  const m1 = await metrics(base);
  assert.equal(m1.parrot_wal_records_total, m0.parrot_wal_records_total + 1, 'stored answers are logged again');
  assert.equal(m1.parrot_wal_dropped_total, m0.parrot_wal_dropped_total);
  assert.equal(r.headers['x-parrot-wal-seq'], undefined, 'clients never see log sequence numbers');
  const seq = m1.parrot_wal_last_seq;
  await waitFor(async () => (await metrics(base)).parrot_wal_durable_seq >= seq, { what: 'the new record to be durable' });
  assert.equal(await parrot.stop('SIGTERM'), 0);
  const again = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });
  assert.equal((await ask(again.base, 'after space returns')).headers['x-parrot-cache'], 'hit');
  assert.equal((await ask(again.base, 'before the disk fills')).headers['x-parrot-cache'], 'hit');
  await again.stop('SIGTERM');
});
