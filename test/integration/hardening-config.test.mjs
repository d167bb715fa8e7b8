// Issue #14 (credentials in upstream URLs, config files holding secrets) and
// issue #20 (CLI papercuts): each test runs the real binary.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  runCli, cleanup, writeTmpFile, startParrot, startFake, curlChat, request,
} from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const PASS = 'hunter2-upstream-password';

/** A config file with mode `mode`. */
function configFile(text, mode = 0o600) {
  const p = writeTmpFile('parrot.conf', text);
  fs.chmodSync(p, mode);
  return p;
}

test('credentials in an upstream URL appear in no log line, --print-config or /metrics label', T, async () => {
  const fake = await startFake();
  const { port } = new URL(fake.url);
  const upstream = `http://user:${PASS}@127.0.0.1:${port}/v1`;

  const printed = await runCli(['--upstream', upstream, '--print-config']);
  assert.equal(printed.code, 0, printed.stderr);
  assert.ok(!printed.stdout.includes(PASS), printed.stdout);
  assert.match(printed.stdout, /^# upstream = http:\/\/\*\*\*@127\.0\.0\.1:\d+\/v1 /m);

  const parrot = await startParrot({ args: ['--upstream', upstream] });
  const r = await curlChat(parrot.base, { model: 'gpt-fake', messages: [{ role: 'user', content: 'hi there' }] },
    { authorization: 'Bearer sk-test' });
  assert.equal(r.status, 200, r.body);
  const m = await request(parrot.base, { path: '/metrics' });
  assert.equal(m.status, 200);
  assert.ok(!m.body.includes(PASS), 'the password leaks into /metrics');
  assert.ok(!m.body.includes('user@') && !m.body.includes('user:'), 'the user name leaks into /metrics');
  assert.ok(m.body.includes(`provider="http://127.0.0.1:${port}/v1"`),
    `providers are labelled scheme://host:port/path: ${m.body.match(/provider="[^"]*"/)}`);
  const listening = parrot.logs().find((l) => l.msg === 'listening');
  assert.equal(listening.upstream, `http://***@127.0.0.1:${port}/v1`);
  assert.equal(await parrot.stop(), 0);
  assert.ok(!parrot.stderr().includes(PASS), 'the password leaks into the log');

  // A refused URL is named in the error without its credentials.
  const bad = await runCli(['--upstream', `ftp://user:${PASS}@example.com/v1`]);
  assert.equal(bad.code, 2);
  assert.ok(!bad.stderr.includes(PASS), bad.stderr);
});

test('a config file holding a secret must not be readable by others', T, async () => {
  for (const secret of ['admin-key = adm-0123456789abcdef', 'upstream-key = sk-0123456789',
    `upstream = http://u:${PASS}@127.0.0.1:9/v1`]) {
    const loose = configFile(`${secret}\n`, 0o644);
    const r = await runCli(['--config', loose, '--print-config']);
    assert.equal(r.code, 2, `${secret}: exit ${r.code}; ${r.stderr}`);
    assert.match(r.stderr, /chmod 600/);
    assert.ok(r.stderr.includes(loose), r.stderr);
    assert.ok(!r.stderr.includes('0123456789') && !r.stderr.includes(PASS), r.stderr);
    fs.chmodSync(loose, 0o640);
    assert.equal((await runCli(['--config', loose, '--print-config'])).code, 2, 'group-readable');
    fs.chmodSync(loose, 0o600);
    assert.equal((await runCli(['--config', loose, '--print-config'])).code, 0, 'private');
  }
  // Without a secret, the mode does not matter.
  const plain = configFile('cache-ttl = 2h\n', 0o644);
  assert.equal((await runCli(['--config', plain, '--print-config'])).code, 0);
});

test('--print-config output is a config file that reads back to the same configuration', T, async () => {
  const args = ['--cache-ttl', '90m', '--max-body-size', '3m', '--similarity-threshold', '0.8125',
    '--tenant-header', 'x-team #1', '--prices', 'gpt-4o=2.5/10', '--log-level', 'warn'];
  const first = await runCli([...args, '--print-config'], { PARROT_ADMIN_KEY: 'adm-secret-value-1' });
  assert.equal(first.code, 0, first.stderr);
  assert.ok(!first.stdout.includes('adm-secret-value-1'), 'secret printed');
  assert.match(first.stdout, /^# admin-key = \*+ {2}# env/m);
  assert.match(first.stdout, /^cache-ttl = 90m {2}# flag$/m);
  assert.match(first.stdout, /^listen = 127\.0\.0\.1:8080 {2}# default$/m);

  const file = configFile(first.stdout);
  // Secrets are not printed, so they come from elsewhere (here the env) again.
  const again = await runCli(['--config', file, '--print-config'], { PARROT_ADMIN_KEY: 'adm-secret-value-1' });
  assert.equal(again.code, 0, `print-config output refused as a config file: ${again.stderr}`);
  // Same values; only the sources (now "file") and the config-file line differ.
  const values = (text) => text.split('\n').filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/ {2}# .*$/, ''));
  assert.deepEqual(values(again.stdout), values(first.stdout));
  assert.match(again.stdout, /^cache-ttl = 90m {2}# file$/m);
});

test('a config file may carry trailing comments; quotes keep a #', T, async () => {
  const file = configFile([
    'cache-ttl = 1h # one hour',
    'retries = 3\t# tab before the comment',
    'tenant-header = "x-team #2"  # quoted: the # is part of it',
    'shared-tenant =   # empty: not set',
    '',
  ].join('\n'));
  const r = await runCli(['--config', file, '--print-config']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^cache-ttl = 1h {2}# file$/m);
  assert.match(r.stdout, /^retries = 3 {2}# file$/m);
  assert.match(r.stdout, /^tenant-header = "x-team #2" {2}# file$/m);
  assert.match(r.stdout, /^shared-tenant = {2}# file \(unset\)$/m);

  const open = configFile('tenant-header = "x-team\n');
  const bad = await runCli(['--config', open, '--print-config']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /closing/);
});

test('every configuration error exits 2 with one plain line on stderr, before start-up', T, async () => {
  const cases = [
    [['--wal-fsync', 'sometimes'], /wal-fsync.*always\|batch\|everysec\|off/],
    [['--embedder', 'openai'], /embed-url/],
    [['--embedder', 'nonsense'], /embedder/],
  ];
  for (const [args, re] of cases) {
    for (const extra of [[], ['--print-config']]) {
      const r = await runCli(['--listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:9/v1', ...args, ...extra]);
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}; ${r.stderr}`);
      assert.match(r.stderr, re);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${r.stderr}`);
      assert.match(lines[0], /^parrot: /, 'plain text, not a JSON log line');
    }
  }
});

test('--version and -V print the one version; --help shows it and the wal commands', T, async () => {
  const v = await runCli(['--version']);
  assert.equal(v.code, 0, v.stderr);
  const m = /^parrot (?:\(git \S+\) )?(\d+\.\d+\.\d+)\n$/.exec(v.stdout);
  assert.ok(m, `--version output: ${JSON.stringify(v.stdout)}`);
  const header = fs.readFileSync(new URL('../../config/version.h', import.meta.url), 'utf8');
  assert.ok(header.includes(`#define PARROT_VERSION "${m[1]}"`), 'the version comes from config/version.h');
  assert.equal((await runCli(['-V'])).stdout, v.stdout);

  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  assert.ok(help.stdout.includes(m[1]), 'the version in --help');
  assert.match(help.stdout, /wal check/);
  assert.match(help.stdout, /wal repair/);
  assert.match(help.stdout, /--version/);

  const parrot = await startParrot({ args: ['--upstream', 'http://127.0.0.1:9/v1'] });
  assert.equal(parrot.logs().find((l) => l.msg === 'listening').version, m[1]);
});
