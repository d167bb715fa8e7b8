// Issue #14: one parrot per data directory, `wal repair` keeps a backup and
// refuses a live directory, `wal check` checks the snapshot too and fails on
// a missing directory (issue #20).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startFake, startParrot, curlChat, cleanup, makeTmpDir, metrics, runCli, waitFor,
} from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const auth = { authorization: 'Bearer sk-datadir' };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

test('a second parrot on the same data-dir refuses to start, naming the first one\'s pid', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-shared-');
  const first = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });

  const second = await runCli(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir]);
  assert.notEqual(second.code, 0, 'the second parrot started on a data-dir in use');
  assert.match(second.stderr, new RegExp(`pid ${first.pid}\\b`), second.stderr);
  assert.ok(second.stderr.includes(dir), second.stderr);

  // Without persistence nothing is written there: sharing is harmless.
  const volatile = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir, '--persist', 'false'] });
  assert.equal(await volatile.stop(), 0);

  // Once the first is gone, the directory is free again.
  assert.equal(await first.stop(), 0);
  const third = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });
  assert.equal(await third.stop(), 0);
});

test('wal repair refuses a directory a running parrot uses', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-live-');
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });
  const before = fs.readFileSync(path.join(dir, 'wal.log'));
  const r = await runCli(['wal', 'repair', '--data-dir', dir]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /refusing to repair/);
  assert.match(r.stderr, new RegExp(`pid ${parrot.pid}\\b`));
  assert.deepEqual(fs.readFileSync(path.join(dir, 'wal.log')), before, 'the live log was touched');
  // A check only reads: it may run against a live directory.
  const check = await runCli(['wal', 'check', '--data-dir', dir]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
});

test('wal repair keeps the original file as a backup and says where', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-backup-');
  const noSnap = ['--snapshot-on-shutdown', 'false'];
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir, '--wal-fsync', 'always', ...noSnap] });
  for (let i = 0; i < 3; i++) {
    const r = await curlChat(parrot.base, ask(`record ${i} kept by the backup`), auth);
    assert.equal(r.status, 200, r.body);
  }
  await waitFor(async () => (await metrics(parrot.base)).parrot_wal_durable_seq >= 3, { what: 'durable records' });
  assert.equal(await parrot.stop(), 0);
  const log = path.join(dir, 'wal.log');
  const damaged = fs.readFileSync(log);
  damaged[120] ^= 0xff; // inside the first record: the two after it are valid
  fs.writeFileSync(log, damaged);

  const r = await runCli(['wal', 'repair', '--data-dir', dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const baks = fs.readdirSync(dir).filter((n) => /^wal\.log\..*\.bak$/.test(n));
  assert.equal(baks.length, 1, `one backup in ${fs.readdirSync(dir)}`);
  assert.deepEqual(fs.readFileSync(path.join(dir, baks[0])), damaged, 'the backup is the original');
  assert.ok(r.stdout.includes(baks[0]), `the output names the backup: ${r.stdout}`);
  assert.ok(fs.readFileSync(log).length < damaged.length, 'the log itself was repaired');
});

test('wal check checks the snapshot too', T, async () => {
  const fake = await startFake();
  const dir = makeTmpDir('parrot-snapcheck-');
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--data-dir', dir] });
  for (const q of ['first question for the snapshot', 'second question for the snapshot']) {
    const r = await curlChat(parrot.base, ask(q), auth);
    assert.equal(r.status, 200, r.body);
  }
  assert.equal(await parrot.stop(), 0); // writes snapshot.bin on SIGTERM
  const snap = path.join(dir, 'snapshot.bin');
  assert.ok(fs.existsSync(snap), 'no snapshot written at shutdown');

  const good = await runCli(['wal', 'check', '--data-dir', dir]);
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.match(good.stdout, /snapshot:.*valid: 2 entries/);

  const bytes = fs.readFileSync(snap);
  bytes[bytes.length - 10] ^= 0xff;
  fs.writeFileSync(snap, bytes);
  const bad = await runCli(['wal', 'check', '--data-dir', dir]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, /snapshot:.*snapshot\.bin.*offset \d+/);
});

test('wal check and repair fail on a data-dir that does not exist', T, async () => {
  const missing = path.join(makeTmpDir('parrot-missing-'), 'nope');
  for (const cmd of ['check', 'repair']) {
    const r = await runCli(['wal', cmd, '--data-dir', missing]);
    assert.notEqual(r.code, 0, `wal ${cmd} on a missing dir exited 0: ${r.stdout}`);
    assert.ok(r.stderr.includes(missing), r.stderr);
    assert.match(r.stderr, /No such file or directory/);
    assert.ok(!fs.existsSync(missing), 'the directory was created');
  }
});
