// Command line, environment and config-file handling.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  runCli, cleanup, writeTmpFile, startParrot, startFake, curl, chatBody,
} from './helpers.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

const OPTIONS = [
  'listen', 'upstream', 'data-dir', 'max-body-size', 'connect-timeout', 'upstream-timeout',
  'idle-timeout', 'shutdown-timeout', 'log-level', 'threads', 'max-connections',
  'audit-rate', 'audit-max-inflight', 'max-wrong-hit-rate',
];

/** Parse --print-config output into {name: {value, source}}. */
function parseConfig(stdout) {
  const out = {};
  for (const line of stdout.split('\n')) {
    // "name = value  # source", "name =  # default (unset)", or a secret
    // commented out: "# name = ********  # env (set; a secret, not printed)".
    const m = /^(?:# )?([a-z][a-z0-9-]*) =(?: (.*?))? {2}# (default|file|env|flag)\b/.exec(line);
    if (m) out[m[1]] = { value: m[2] ?? '', source: m[3] };
    else assert.ok(line.trim() === '' || line.startsWith('#'), `bad line ${JSON.stringify(line)}`);
  }
  return out;
}

async function printConfig(args = [], env = {}) {
  const r = await runCli(['--print-config', ...args], env);
  assert.equal(r.code, 0, `--print-config exit ${r.code}; stderr: ${r.stderr}`);
  return { ...r, cfg: parseConfig(r.stdout) };
}

async function expectUsageError(args, env, names) {
  const r = await runCli(args, env, { timeoutMs: 5_000 });
  assert.equal(r.code, 2, `expected exit 2 for ${JSON.stringify(args)} ${JSON.stringify(env)}, got ${r.code}; stderr: ${r.stderr}`);
  const needles = Array.isArray(names) ? names : [names];
  assert.ok(needles.some((n) => r.stderr.toLowerCase().includes(n.toLowerCase())),
    `stderr should name ${needles.join(' or ')}: ${JSON.stringify(r.stderr)}`);
  return r;
}

test('--help prints usage mentioning every option and exits 0', { timeout: TEST_TIMEOUT_MS }, async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0, r.stderr);
  const text = r.stdout;
  for (const o of [...OPTIONS, 'config', 'help', 'print-config']) {
    assert.ok(text.includes(`--${o}`), `--help does not mention --${o}`);
  }
});

test('--print-config lists every option with its source; defaults', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { cfg, stdout, stderr } = await printConfig();
  for (const o of OPTIONS) assert.ok(cfg[o], `--print-config lacks ${o}: ${stdout}`);
  assert.ok(cfg['upstream-key'], 'upstream-key line missing');
  for (const o of OPTIONS) assert.equal(cfg[o].source, 'default', `${o} source`);
  assert.equal(cfg.listen.value, '127.0.0.1:8080');
  assert.ok(!stdout.includes('sk-') && !stderr.includes('sk-'));
});

test('--print-config shows flag, env and file sources', { timeout: TEST_TIMEOUT_MS }, async () => {
  const file = writeTmpFile('parrot.conf', [
    '# a comment line',
    '',
    'upstream = http://127.0.0.1:1234/v1',
    '   # indented comment',
    'max-connections = 77',
    '',
  ].join('\n'));
  const { cfg } = await printConfig(
    ['--config', file, '--listen', '127.0.0.1:9999', '--threads', '3'],
    { PARROT_LOG_LEVEL: 'debug', PARROT_IDLE_TIMEOUT: '7s' },
  );
  assert.deepEqual(cfg.listen, { value: '127.0.0.1:9999', source: 'flag' });
  assert.deepEqual(cfg.threads, { value: '3', source: 'flag' });
  assert.deepEqual(cfg['log-level'], { value: 'debug', source: 'env' });
  assert.equal(cfg['idle-timeout'].source, 'env');
  assert.deepEqual(cfg.upstream, { value: 'http://127.0.0.1:1234/v1', source: 'file' });
  assert.deepEqual(cfg['max-connections'], { value: '77', source: 'file' });
  assert.equal(cfg['data-dir'].source, 'default');
});

test('the upstream key is masked in --print-config (file and env)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fileKey = 'sk-file-VERYSECRET-1234567890';
  const envKey = 'sk-env-TOPSECRET-0987654321';
  const file = writeTmpFile('k.conf', `upstream-key = ${fileKey}\n`);
  fs.chmodSync(file, 0o600); // a config file holding a secret must not be group/other readable

  const a = await printConfig(['--config', file]);
  assert.equal(a.cfg['upstream-key'].source, 'file');
  assert.ok(!a.stdout.includes(fileKey) && !a.stderr.includes(fileKey), 'file key leaked');
  assert.ok(!a.cfg['upstream-key'].value.includes('VERYSECRET'), `masked value: ${a.cfg['upstream-key'].value}`);
  // The secret is commented out, so the printed config is still a valid file.
  assert.match(a.stdout, /^# upstream-key = \*+ {2}# file\b/m);

  const b = await printConfig(['--config', file], { PARROT_UPSTREAM_KEY: envKey });
  assert.equal(b.cfg['upstream-key'].source, 'env', 'env overrides file');
  assert.ok(!b.stdout.includes(envKey) && !b.stderr.includes(envKey), 'env key leaked');
  assert.ok(!b.stdout.includes(fileKey));
  assert.ok(!b.cfg['upstream-key'].value.includes('TOPSECRET'));

  const none = await printConfig();
  assert.equal(none.cfg['upstream-key'].source, 'default');
});

test('precedence: defaults < file < env < flags', { timeout: TEST_TIMEOUT_MS }, async () => {
  const file = writeTmpFile('p.conf', 'log-level = warn\nthreads = 5\n');
  const all = await printConfig(['--config', file, '--log-level', 'debug'], { PARROT_LOG_LEVEL: 'error' });
  assert.deepEqual(all.cfg['log-level'], { value: 'debug', source: 'flag' });
  assert.deepEqual(all.cfg.threads, { value: '5', source: 'file' });

  const envFile = await printConfig(['--config', file], { PARROT_LOG_LEVEL: 'error', PARROT_THREADS: '6' });
  assert.deepEqual(envFile.cfg['log-level'], { value: 'error', source: 'env' });
  assert.deepEqual(envFile.cfg.threads, { value: '6', source: 'env' });

  const fileOnly = await printConfig(['--config', file]);
  assert.deepEqual(fileOnly.cfg['log-level'], { value: 'warn', source: 'file' });

  const def = await printConfig();
  assert.equal(def.cfg['log-level'].source, 'default');
  assert.notEqual(def.cfg['log-level'].value, 'warn');

  // The config file itself can come from the environment.
  const viaEnv = await printConfig([], { PARROT_CONFIG: file });
  assert.deepEqual(viaEnv.cfg['log-level'], { value: 'warn', source: 'file' });

  // Flags win regardless of their position relative to --config.
  const order = await printConfig(['--log-level', 'error', '--config', file]);
  assert.deepEqual(order.cfg['log-level'], { value: 'error', source: 'flag' });
});

test('usage errors exit 2 and name the offending key', { timeout: TEST_TIMEOUT_MS }, async () => {
  await expectUsageError(['--bogus-flag'], {}, 'bogus-flag');
  await expectUsageError(['--upstream-key', 'sk-nope'], {}, 'upstream-key');
  await expectUsageError(['--config', writeTmpFile('u.conf', 'listen = 127.0.0.1:1\nbogus_key = 1\n')], {}, 'bogus_key');
  await expectUsageError(['--print-config'], { PARROT_FOO: '1' }, ['PARROT_FOO']);
  await expectUsageError(['--max-body-size', 'abc'], {}, 'max-body-size');
  await expectUsageError(['--max-body-size', '-1k'], {}, 'max-body-size');
  await expectUsageError(['--header-buffer', '4k'], {}, 'header-buffer');
  await expectUsageError(['--header-buffer', '2m'], {}, 'header-buffer');
  await expectUsageError(['--listen', 'not-an-address'], {}, 'listen');
  await expectUsageError(['--listen', '127.0.0.1:99999'], {}, 'listen');
  await expectUsageError(['--upstream-timeout', 'soon'], {}, 'upstream-timeout');
  await expectUsageError(['--log-level', 'chatty'], {}, 'log-level');
  await expectUsageError(['--threads', 'many'], {}, 'threads');
  await expectUsageError([], { PARROT_MAX_BODY_SIZE: 'abc' }, ['max-body-size', 'MAX_BODY_SIZE']);
  await expectUsageError(['--config', writeTmpFile('v.conf', 'idle-timeout = forever\n')], {}, 'idle-timeout');
  // Errors are reported even when --print-config is given.
  await expectUsageError(['--print-config', '--connect-timeout', 'x'], {}, 'connect-timeout');
});

test('a missing config file is an error', { timeout: TEST_TIMEOUT_MS }, async () => {
  const r = await runCli(['--config', '/nonexistent/parrot-test.conf', '--print-config']);
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes('/nonexistent/parrot-test.conf'), r.stderr);
});

test('values from a config file and the environment are actually used', { timeout: TEST_TIMEOUT_MS }, async () => {
  const fake = await startFake();
  const file = writeTmpFile('run.conf', `# run config\nupstream = ${fake.url}\nmax-body-size = 1k\n`);
  const parrot = await startParrot({ args: ['--config', file], env: { PARROT_UPSTREAM_KEY: 'sk-from-env-123' } });
  const ok = await curl(['-H', 'content-type: application/json', '--data-binary', '@-',
    `${parrot.base}/v1/chat/completions`], { input: chatBody('via config') });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(fake.stats().last.headers.authorization, 'Bearer sk-from-env-123');
  const big = await curl(['-H', 'content-type: application/json', '--data-binary', '@-',
    `${parrot.base}/v1/chat/completions`], { input: chatBody('z'.repeat(3000)) });
  assert.equal(big.status, 413);
  assert.equal(fake.stats().total, 1);
});
