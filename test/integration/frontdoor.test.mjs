// The front door (issue #14, docs/security.md): what a hostile client can
// send and what must come of it. Raw sockets where a client library would
// normalise the input away; a lenient keep-alive provider for smuggling.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import {
  startParrot, startFake, cleanup, request, errorShape, closedPort, waitFor, PARROT_BIN, cleanEnv, runCli,
} from './helpers.mjs';

after(cleanup);

const T = { timeout: 90_000 };
const CLIENT_KEY = 'sk-front-door-client-0001';
const ADMIN_KEY = 'admin-front-door-key-0001';

/** Send raw bytes; resolve everything read until the server closes or
 * quietMs pass without data. */
function raw(port, bytes, { quietMs = 1500 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const parts = [];
    let timer;
    const done = () => { clearTimeout(timer); s.destroy(); resolve(Buffer.concat(parts).toString('latin1')); };
    const arm = () => { clearTimeout(timer); timer = setTimeout(done, quietMs); };
    s.on('data', (d) => { parts.push(d); arm(); });
    s.on('end', done);
    s.on('error', done);
    s.on('connect', () => { s.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1')); arm(); });
  });
}

const statusOf = (text) => Number((/^HTTP\/1\.1 (\d{3})/.exec(text) || [])[1]);
const bodyOf = (text) => text.slice(text.indexOf('\r\n\r\n') + 4);

// code null: libmicrohttpd refused the head itself (its own HTML 400).
function expectRefused(text, status, code) {
  assert.equal(statusOf(text), status, text);
  if (code === null) return null;
  const e = errorShape(assert, bodyOf(text));
  if (code) assert.equal(e.code, code, text);
  return e;
}

// A provider that reads HTTP as leniently as any real one might: bare CR
// ends a line, white space around a header name is ignored, any
// Transfer-Encoding naming chunked is chunked, and connections are kept
// alive. Every request it parses is answered with the path it saw.
async function startLenient() {
  const seen = [];
  const socks = new Set();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const text = buf.toString('latin1');
        const end = text.search(/\r?\n\r?\n/);
        if (end < 0) return;
        const headEnd = end + (/^\r?\n\r?\n/.exec(text.slice(end))[0].length);
        const lines = text.slice(0, end).split(/\r\n|\r|\n/);
        const [method, target] = lines[0].split(' ');
        const headers = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        let rest = text.slice(headEnd);
        if (/chunked/i.test(headers['transfer-encoding'] || '')) {
          const z = rest.indexOf('0\r\n\r\n');
          if (z < 0) return;
          rest = rest.slice(z + 5);
        } else {
          const n = Number(headers['content-length'] || 0);
          if (rest.length < n) return;
          rest = rest.slice(n);
        }
        buf = Buffer.from(rest, 'latin1');
        seen.push({ method, target, headers });
        const body = JSON.stringify({ object: 'list', data: [], path: target });
        sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return { url: `http://127.0.0.1:${port}/internal/openai/v1`, seen, close: () => new Promise((r) => {
    for (const k of socks) k.destroy(); // parrot keeps its pooled connection alive
    server.close(r);
  }) };
}

test('smuggling: malformed headers and framing are refused and never reach the shared pool', T, async () => {
  const up = await startLenient();
  try {
    const parrot = await startParrot({ args: ['--upstream', up.url, '--persist', 'false'] });
    const smuggled = 'GET /internal/admin/secret HTTP/1.1\r\nHost: x\r\n\r\n';
    const body = `0\r\n\r\n${smuggled}`;
    const attacks = [
      [`POST /v1/models HTTP/1.1\r\nHost: a\r\nX-Request-Id: a\rContent-Length: 0\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400, 'invalid_header'],
      [`POST /v1/models HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400, 'invalid_header'],
      ['GET /v1/models HTTP/1.1\r\nHost : evil.example\r\nHost: a\r\n\r\n', 400, 'invalid_header'],
      ['GET /v1/models HTTP/1.1\r\nHost: a\r\nX Forwarded: z\r\n\r\n', 400, 'invalid_header'],
      [`POST /v1/models HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`, 400, 'ambiguous_framing'],
      [`POST /v1/models HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'ambiguous_framing'],
      ['POST /v1/models HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\nabc', 501, 'unsupported_transfer_encoding'],
      ['POST /v1/models HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', 501, 'unsupported_transfer_encoding'],
      ['POST /v1/models HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nabcde', 400, null],
      ['POST /v1/models HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nabcde', 400, null],
      ['GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'invalid_header'],
      ['GET /v1/models HTTP/1.1\r\n\r\n', 400, 'invalid_header'],
    ];
    for (const [req, status, code] of attacks) {
      const text = await raw(parrot.port, req);
      expectRefused(text, status, code);
      assert.match(text, /\r\nConnection: close\r\n/i, 'a refused head closes the connection');
    }
    assert.equal(up.seen.length, 0, `nothing of the attacks reached the provider: ${JSON.stringify(up.seen)}`);
    // Another client's request on the same pool gets its own answer.
    const r = await request(parrot.base, { path: '/v1/models' });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).path, '/internal/openai/v1/models');
    assert.equal(up.seen.length, 1);
  } finally {
    await up.close();
  }
});

test('a request head of 8 KB is served, 14 KB is refused 431 before the provider hears of it, unless --header-buffer is raised', T, async () => {
  const up = await startLenient();
  try {
    const head = (n) => `GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Trace: ${'t'.repeat(n)}\r\n` +
      `Cookie: ${'c'.repeat(n)}\r\n\r\n`;
    const parrot = await startParrot({ args: ['--upstream', up.url, '--persist', 'false'] });
    const ok = await raw(parrot.port, head(4000));
    assert.equal(statusOf(ok), 200, ok.slice(0, 200));
    assert.equal(up.seen.length, 1);
    const big = await raw(parrot.port, head(7000));
    assert.equal(statusOf(big), 431, big.slice(0, 200));
    assert.equal(up.seen.length, 1, 'the refused head never reached the provider');
    const roomy = await startParrot({ args: ['--upstream', up.url, '--persist', 'false', '--header-buffer', '64k'] });
    const served = await raw(roomy.port, head(7000));
    assert.equal(statusOf(served), 200, served.slice(0, 200));
    assert.equal(up.seen.length, 2);
    assert.equal(up.seen[1].headers.cookie.length, 7000, 'the header went upstream whole');
  } finally {
    await up.close();
  }
});

test('framing headers, Proxy-* and headers named by Connection are not forwarded', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false'] });
  const text = await raw(parrot.port, 'GET /v1/models HTTP/1.1\r\nHost: a\r\n' +
    'Connection: keep-alive, X-Internal-Secret\r\nX-Internal-Secret: s3cr3t\r\n' +
    'Proxy-Foo: bar\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n' +
    // libmicrohttpd ends a value at a NUL: what follows is never forwarded.
    'X-Nul: b\x00Injected: 1\r\n\r\n');
  assert.equal(statusOf(text), 200, text);
  const h = fake.stats().last.headers;
  for (const name of ['x-internal-secret', 'proxy-foo', 'keep-alive', 'te', 'upgrade'])
    assert.equal(h[name], undefined, `${name} must not be forwarded: ${JSON.stringify(h)}`);
  assert.equal(h['x-kept'], 'yes', 'ordinary headers still go through');
  assert.equal(h.injected, undefined);
  assert.ok(!Object.values(h).some((v) => /Injected/.test(String(v))), JSON.stringify(h));
  assert.notEqual(h.host, 'a', 'Host is the provider\'s, not the client\'s');
});

test('paths: dot segments, encoded dots, slashes, NULs and backslashes are refused; the rest is normalised once', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false'] });
  const bad = [
    'GET /v1/../../admin/x',
    'DELETE /v1/../../../billing',
    'POST /v1/chat/completions%00/../../models',
    'GET /v1/%2e%2e/%2E%2E/admin',
    'GET /v1/models%2f..%2fsecret',
    'GET /v1/models%5c..%5csecret',
    'GET /v1/models\\..\\secret',
    'GET /v1/./models',
    'GET /v1/models/..',
    'GET /v1/mod%zzels',
    'GET /v1/models?x=%00',
  ];
  for (const line of bad) {
    const text = await raw(parrot.port, `${line} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n`);
    expectRefused(text, 400, 'invalid_path');
  }
  assert.equal(fake.stats().total, 0, 'no refused path reached the provider');
  // What is routed is what is forwarded: repeated slashes folded, escaped
  // unreserved characters decoded, the query kept as sent.
  let text = await raw(parrot.port, 'GET /v1//mo%64els?limit=2&after=a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal(statusOf(text), 200, text);
  assert.equal(fake.stats().last.url, '/v1/models?limit=2&after=a%2Fb');
  // A path that decodes to the chat route is the chat route, forwarded as such.
  const chat = '{"model":"gpt-fake","messages":[{"role":"user","content":"hi"}]}';
  text = await raw(parrot.port, 'POST /v1/chat/%63ompletions HTTP/1.1\r\nHost: a\r\n' +
    `Content-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n${chat}`);
  assert.equal(statusOf(text), 200, text);
  assert.match(text, /x-parrot-cache: miss/i, 'keyed as a chat completion');
  assert.equal(fake.stats().last.path, '/v1/chat/completions');
});

test('keys are checked before the body: unauthenticated uploads cost no memory and still read their 401', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--persist', 'false'],
    env: { PARROT_CLIENT_KEYS: `${CLIENT_KEY} team-a`, PARROT_UPSTREAM_KEY: 'sk-provider' },
  });
  const hwm = () => Number(/^VmHWM:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${parrot.pid}/status`, 'utf8'))[1]);
  const before = hwm();
  const size = 29 << 20;
  const chunk = Buffer.alloc(1 << 20, 0x20);
  const upload = () => new Promise((resolve, reject) => {
    const req = http.request(`${parrot.base}/v1/chat/completions`, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': size },
    }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
      req.end();
    };
    pump();
  });
  const results = await Promise.all(Array.from({ length: 10 }, upload));
  for (const r of results) {
    assert.equal(r.status, 401, r.body);
    assert.equal(errorShape(assert, r.body).code, 'invalid_api_key');
  }
  const grewMb = (hwm() - before) / 1024;
  assert.ok(grewMb < 40, `peak RSS grew by ${grewMb.toFixed(1)} MB for 290 MB of unauthenticated uploads`);
  assert.equal(fake.stats().total, 0);
});

test('a dense JSON body is refused by the parse budget, not parsed into a gigabyte', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false'] });
  const hwm = () => Number(/^VmHWM:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${parrot.pid}/status`, 'utf8'))[1]);
  const before = hwm();
  const head = '{"model":"gpt-fake","messages":[{"role":"user","content":"hi"}],"x":[';
  const n = (30 << 20) / 2;
  const body = Buffer.alloc(head.length + 2 * n + 1, '0,');
  body.write(head, 0, 'latin1');
  body.write(']}', head.length + 2 * n - 1, 'latin1');
  const r = await request(parrot.base, {
    method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body,
  });
  assert.equal(r.status, 400, r.body.slice(0, 300));
  assert.match(errorShape(assert, r.body).message, /JSON values/);
  const grewMb = (hwm() - before) / 1024;
  // The body itself is held (30 MiB), its parse is not.
  assert.ok(grewMb < 120, `peak RSS grew by ${grewMb.toFixed(1)} MB for a 30 MiB dense array`);
  // Before the body: a wrong content type is a 415, and nothing was buffered for it.
  const ct = await request(parrot.base, {
    method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'text/plain' }, body: '{}',
  });
  assert.equal(ct.status, 415);
  assert.equal(errorShape(assert, ct.body).code, 'unsupported_media_type');
  assert.equal(fake.stats().total, 0);
});

test('413 is readable by a client that does not wait for 100-continue (the official SDK)', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false', '--max-body-size', '1m'] });
  const client = new OpenAI({ baseURL: `${parrot.base}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-fake', messages: [{ role: 'user', content: 'x'.repeat(20 << 20) }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError, `an API error, not ${err.constructor.name}: ${err.message}`);
      assert.equal(err.status, 413, err.message);
      assert.equal(err.code, 'request_too_large');
      return true;
    });
  assert.equal(fake.stats().total, 0);
});

test('rate limits key the credential, not its spelling', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false', '--rate-limit-rpm', '2'] });
  const spellings = ['Bearer sk-respelt', 'bearer sk-respelt', 'Bearer   sk-respelt  '];
  const statuses = [];
  for (const a of spellings)
    statuses.push((await request(parrot.base, { path: '/v1/models', headers: { authorization: a } })).status);
  assert.deepEqual(statuses, [200, 200, 429]);
  assert.equal((await request(parrot.base, { path: '/v1/models', headers: { authorization: 'Bearer sk-other' } })).status, 200);
});

test('a duplicated tenant header is refused', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false', '--tenant-header', 'x-tenant'] });
  const text = await raw(parrot.port, 'GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Tenant: mine\r\nx-tenant: theirs\r\n\r\n');
  expectRefused(text, 400, 'invalid_header');
  assert.equal(fake.stats().total, 0);
  assert.equal(statusOf(await raw(parrot.port, 'GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Tenant: mine\r\n\r\n')), 200);
});

test('slow clients: a late head or a trickling body is cut off, and health probes still answer', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--persist', 'false', '--max-connections', '6', '--header-timeout', '2s'],
  });
  const head = 'GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: ' + 'a'.repeat(200);
  const slow = [];
  const closedByServer = [];
  for (let i = 0; i < 40; i++) {
    const s = net.connect(parrot.port, '127.0.0.1');
    let k = 0;
    const iv = setInterval(() => { if (!s.destroyed) s.write(head[k++ % head.length]); }, 400);
    s.on('error', () => {});
    s.on('close', () => { clearInterval(iv); closedByServer.push(i); });
    slow.push({ s, iv });
  }
  // A body that trickles after a complete head.
  const body = net.connect(parrot.port, '127.0.0.1');
  let bodyClosed = false;
  body.on('error', () => {});
  body.on('close', () => { bodyClosed = true; });
  body.write('POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n');
  const biv = setInterval(() => { if (!body.destroyed) body.write(' '); }, 300);
  try {
    const ok = await waitFor(async () => {
      try {
        return (await request(parrot.base, { path: '/healthz', timeoutMs: 1000 })).status === 200;
      } catch { return false; }
    }, { timeoutMs: 30_000, intervalMs: 200, what: '/healthz while slow clients hold the slots' });
    assert.ok(ok);
    await waitFor(() => closedByServer.length === slow.length, { timeoutMs: 30_000, what: 'every slow head cut off' });
    await waitFor(() => bodyClosed, { timeoutMs: 30_000, what: 'the trickling body cut off' });
    assert.ok(parrot.logs().some((l) => l.msg === 'slow clients cut off'));
  } finally {
    for (const { s, iv } of slow) { clearInterval(iv); s.destroy(); }
    clearInterval(biv);
    body.destroy();
  }
});

test('dashboard needs the admin key when client keys are on; Basic works for a browser', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({
    args: ['--upstream', fake.url, '--persist', 'false'],
    env: { PARROT_CLIENT_KEYS: `${CLIENT_KEY} team-a`, PARROT_ADMIN_KEY: ADMIN_KEY, PARROT_UPSTREAM_KEY: 'sk-provider' },
  });
  for (const p of ['/dashboard', '/dashboard/stats.json']) {
    const r = await request(parrot.base, { path: p });
    assert.equal(r.status, 401, p);
    assert.match(r.headers['www-authenticate'] || '', /^Basic realm=/);
    const c = await request(parrot.base, { path: p, headers: { authorization: `Bearer ${CLIENT_KEY}` } });
    assert.equal(c.status, 401, `a client key is not enough for ${p}`);
    assert.equal((await request(parrot.base, { path: p, headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status, 200);
    const basic = Buffer.from(`admin:${ADMIN_KEY}`).toString('base64');
    assert.equal((await request(parrot.base, { path: p, headers: { authorization: `Basic ${basic}` } })).status, 200);
  }
});

test('/metrics off loopback needs the admin key unless --metrics-open (in a network namespace)', T, async () => {
  // 192.0.2.1 (TEST-NET-1) on the namespace's own loopback device: a
  // non-loopback peer address without leaving this machine.
  const port = await closedPort();
  const script = (extra) => `
    ip link set lo up && ip addr add 192.0.2.1/32 dev lo || exit 90
    PARROT_ADMIN_KEY=${ADMIN_KEY} ${PARROT_BIN} --listen 192.0.2.1:18080 --insecure-open true \\
      --upstream http://127.0.0.1:${port}/v1 --persist false ${extra} >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 100); do curl -s -o /dev/null http://192.0.2.1:18080/healthz && break; sleep 0.1; done
    printf '%s ' $(curl -s -o /dev/null -w '%{http_code}' http://192.0.2.1:18080/metrics) \\
      $(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer ${ADMIN_KEY}' http://192.0.2.1:18080/metrics) \\
      $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/metrics 2>/dev/null || echo 000)
    kill -TERM $pid; wait $pid`;
  const run = (extra) => spawnSync('unshare', ['-n', 'sh', '-c', script(extra)],
    { encoding: 'utf8', timeout: 60_000, env: cleanEnv() });
  let r = run('');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(' ').slice(0, 2), ['401', '200'], r.stdout);
  r = run('--metrics-open true');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(' ').slice(0, 2), ['200', '200'], r.stdout);
});

test('papercuts: 405 names its methods, a base URL without /v1 gets a hint, a bad x-parrot-ttl is a 400', T, async () => {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, '--persist', 'false'] });
  const r = await request(parrot.base, { method: 'POST', path: '/healthz' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'GET, HEAD');
  const nf = await request(parrot.base, { method: 'POST', path: '/chat/completions', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(nf.status, 404);
  assert.match(errorShape(assert, nf.body).message, /\/v1/);
  const ttl = await request(parrot.base, {
    method: 'POST', path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', 'x-parrot-ttl': '1h' },
    body: JSON.stringify({ model: 'gpt-fake', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(ttl.status, 400);
  assert.equal(errorShape(assert, ttl.body).code, 'invalid_header');
  // /metrics names the build, as --version does.
  const version = (await runCli(['--version'])).stdout.trim().split(' ').pop();
  const m = await request(parrot.base, { path: '/metrics' });
  assert.match(m.body, new RegExp(`^parrot_build_info\\{version="${version.replace(/\./g, '\\.')}",revision="[0-9a-f]*"\\} 1$`, 'm'));
  assert.equal(fake.stats().total, 0);
});

test('/readyz stays ready with every provider down; /readyz?upstream=1 says so', T, async () => {
  const port = await closedPort();
  const parrot = await startParrot({
    args: ['--upstream', `http://127.0.0.1:${port}/v1`, '--persist', 'false', '--retries', '0', '--breaker-failures', '1'],
  });
  assert.equal((await request(parrot.base, { path: '/v1/models' })).status, 502);
  assert.equal((await request(parrot.base, { path: '/readyz' })).status, 200);
  const up = await request(parrot.base, { path: '/readyz?upstream=1' });
  assert.equal(up.status, 503);
  assert.equal(JSON.parse(up.body).status, 'no_upstream');
});
