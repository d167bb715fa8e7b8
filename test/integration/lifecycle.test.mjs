// Graceful shutdown on SIGTERM.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  PARROT_BIN, startParrot, startPair, cleanup, within, openStream, sseData, tryConnect, request, joinDeltas,
} from './helpers.mjs';

after(cleanup);

// Upper bound for one test, so a hung proxy fails the test instead of the run.
const TEST_TIMEOUT_MS = 60_000;

const streamBody = () => JSON.stringify({ model: 'gpt-fake', messages: [{ role: 'user', content: 'bye' }], stream: true });

test('SIGTERM with no traffic: exits 0 and stops listening', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const code = await within(parrot.stop('SIGTERM'), 15_000, 'parrot exit after SIGTERM');
  assert.equal(code, 0);
  assert.equal(await tryConnect(parrot.port), 'ECONNREFUSED');
});

test('SIGINT also shuts down cleanly', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { parrot } = await startPair();
  const code = await within(parrot.stop('SIGINT'), 15_000, 'parrot exit after SIGINT');
  assert.equal(code, 0);
});

test('SIGTERM lets an in-flight stream finish, then exits 0', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const s = openStream(parrot.base, {
    headers: { 'x-fake-chunks': '20', 'x-fake-chunk-delay-ms': '50' },
    body: streamBody(),
  });
  await s.waitFor((t) => sseData(t).length >= 2, 10_000, 'first SSE events');
  assert.equal(fake.stats().completed, 0, 'the stream must still be in flight when SIGTERM is sent');
  parrot.proc.kill('SIGTERM');
  const out = await within(s.done, 15_000, 'in-flight stream to finish');
  assert.equal(out.status, 200);
  assert.equal(out.error, null, `stream error: ${out.error?.message}`);
  assert.equal(out.complete, true);
  assert.ok(out.text.endsWith('data: [DONE]\n\n'));
  assert.equal(out.text, fake.stats().lastBody, 'stream relayed byte for byte to the end');
  assert.equal(joinDeltas(out.text), Array.from({ length: 20 }, (_, i) => `w${i + 1}`).join(' '));
  const code = await within(parrot.stop(), 15_000, 'parrot exit after draining');
  assert.equal(code, 0);
  assert.equal(await tryConnect(parrot.port), 'ECONNREFUSED', 'new connections after exit are refused');
});

test('while draining, new connections are refused or /readyz says 503', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair();
  const s = openStream(parrot.base, {
    headers: { 'x-fake-chunks': '40', 'x-fake-chunk-delay-ms': '100' },
    body: streamBody(),
  });
  await s.waitFor((t) => sseData(t).length >= 2, 10_000, 'first SSE events');
  assert.equal(fake.stats().completed, 0, 'the stream must still be in flight when SIGTERM is sent');
  parrot.proc.kill('SIGTERM');
  // Poll with fresh connections until parrot shows it is draining.
  const deadline = Date.now() + 3_000;
  let seen = null;
  while (Date.now() < deadline && seen === null) {
    try {
      const r = await request(parrot.base, { path: '/readyz', timeoutMs: 2_000 });
      if (r.status === 503) seen = 'readyz 503';
      else assert.equal(r.status, 200);
    } catch (e) {
      if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET') seen = e.code;
      else throw e;
    }
    if (seen === null) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(seen, 'parrot kept accepting and reporting ready after SIGTERM');
  assert.equal(s.bytes() > 0, true);
  const out = await within(s.done, 15_000, 'in-flight stream to finish');
  assert.equal(out.complete, true);
  assert.ok(out.text.endsWith('data: [DONE]\n\n'));
  assert.equal(await within(parrot.stop(), 15_000, 'exit'), 0);
});

test('--shutdown-timeout bounds how long a stream may hold shutdown', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { fake, parrot } = await startPair({ args: ['--shutdown-timeout', '1s'] });
  const s = openStream(parrot.base, {
    headers: { 'x-fake-chunks': '300', 'x-fake-chunk-delay-ms': '100' }, // ~30 s stream
    body: streamBody(),
  });
  await s.waitFor((t) => sseData(t).length >= 2, 10_000, 'first SSE events');
  assert.equal(fake.stats().completed, 0, 'the stream must still be in flight when SIGTERM is sent');
  parrot.proc.kill('SIGTERM');
  const code = await within(parrot.exited, 12_000, 'parrot to exit after the shutdown timeout');
  const out = await within(s.done, 10_000, 'client stream to end');
  assert.ok(!out.text.includes('[DONE]'), 'the 30 s stream cannot have finished');
  assert.equal(fake.stats().completed, 0);
  assert.notEqual(code.code, null, `killed by signal ${code.signal}`);
  assert.equal(await tryConnect(parrot.port), 'ECONNREFUSED');
});

// Each of parrot's own threads carries a name (top -H, ps -L, perf and
// bench/scaling.sh read /proc/PID/task/TID/comm).
test('parrot\'s threads are named after their work', { timeout: TEST_TIMEOUT_MS }, async () => {
  const parrot = await startParrot({ args: ['--threads', '2'] });
  const names = fs.readdirSync(`/proc/${parrot.proc.pid}/task`)
    .map((t) => fs.readFileSync(`/proc/${parrot.proc.pid}/task/${t}/comm`, 'utf8').trim());
  assert.equal(names.filter((n) => n === 'parrot-worker').length, 2, names.join(' '));
  for (const want of ['parrot-store', 'parrot-wal', 'parrot-reaper']) {
    assert.ok(names.includes(want), `${want} in ${names.join(' ')}`);
  }
  assert.equal(await within(parrot.stop('SIGTERM'), 15_000, 'parrot exit'), 0);
});

// The server starts itself again once with glibc's per-thread cache raised
// (proxy/main.c, tune_malloc): same pid, the tunable added to what was
// there, and an operator's own tcache_count left alone (no second exec),
// as is a run with LD_PRELOAD.
// glibc's loader writes a NUL after each tunable's value into the original
// environment block, so /proc/<pid>/environ shows only the first of them.
test('the server runs with glibc.malloc.tcache_count, the operator\'s tunables kept', { timeout: TEST_TIMEOUT_MS }, async () => {
  const tunables = (pid) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
    .filter((kv) => kv.startsWith('GLIBC_TUNABLES=')).map((kv) => kv.slice('GLIBC_TUNABLES='.length));
  // With LD_PRELOAD set (here libm, which parrot links anyway) there is no exec.
  // ASan insists on coming first among the preloaded libraries unless told.
  const preload = {
    LD_PRELOAD: 'libm.so.6',
    ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':'),
  };
  const cases = [
    [{}, ['glibc.malloc.tcache_count=64']],
    [{ GLIBC_TUNABLES: 'glibc.malloc.tcache_count=7' }, ['glibc.malloc.tcache_count=7']],
    [{ GLIBC_TUNABLES: 'glibc.malloc.mxfast=0' }, ['glibc.malloc.mxfast=0']],
    [preload, []],
  ];
  for (const [env, want] of cases) {
    const parrot = await startParrot({ env });
    assert.deepEqual(tunables(parrot.proc.pid), want, JSON.stringify(env));
    // Named as its binary again after the exec (not "exe"), for ps and pgrep.
    assert.equal(fs.readFileSync(`/proc/${parrot.proc.pid}/comm`, 'utf8').trim(),
      path.basename(PARROT_BIN).slice(0, 15));
    const r = await request(parrot.base, { path: '/healthz' });
    assert.equal(r.status, 200);
    assert.equal(await within(parrot.stop('SIGTERM'), 15_000, 'parrot exit'), 0);
  }
});
