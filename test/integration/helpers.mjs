// Shared helpers for parrot's integration tests: start/stop the real
// binary, drive it with the real curl, plain HTTP helpers, polling.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeEach, afterEach } from 'node:test';
import { startFake as startFakeRaw } from '../fake/upstream.mjs';

export const REPO_ROOT = path.resolve(fileURLToPath(new URL('../../', import.meta.url)));
export const PARROT_BIN = process.env.PARROT_TEST_BIN
  ? path.resolve(process.env.PARROT_TEST_BIN)
  : path.join(REPO_ROOT, 'build', 'parrot');

const live = new Set(); // { kill(), close() } things to clean up
const tmpDirs = new Set();

// ---------------------------------------------------------------- sanitizers
//
// A parrot built with ASan/UBSan reports problems on its stderr; LeakSanitizer
// only runs when the process exits normally. So every parrot started by
// startParrot is stopped, at the latest after the test that started it (or by
// cleanup() for one started outside a test), and its stderr is searched for
// these markers: a report fails the test with the excerpt. Under a sanitizer
// build parrots are stopped with SIGTERM (parrot drains and exits 0) rather
// than SIGKILL, and waited for.

export const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
  'WARNING: ThreadSanitizer'];
// How long a sanitized parrot may take to exit after SIGTERM: more than the
// default shutdown-timeout (30 s), so a slow drain is not mistaken for a hang.
const SANITIZED_EXIT_MS = 45_000;

/**
 * The first sanitizer report in `text` (from the start of the line holding
 * the first marker to the end of its SUMMARY line, at most 8000 characters),
 * or null when there is none.
 */
export function sanitizerReport(text) {
  let first = -1;
  for (const m of SANITIZER_MARKERS) {
    const i = text.indexOf(m);
    if (i >= 0 && (first < 0 || i < first)) first = i;
  }
  if (first < 0) return null;
  const start = text.lastIndexOf('\n', first) + 1;
  let end = text.length;
  const summary = text.indexOf('SUMMARY:', first);
  if (summary >= 0) {
    const nl = text.indexOf('\n', summary);
    end = nl >= 0 ? nl : text.length;
  }
  return text.slice(start, Math.min(end, start + 8000));
}

// Parrots started during the current test carry its generation and are
// stopped after it; parrots started in a before() hook outlive it.
let testGeneration = 0;
beforeEach(() => { testGeneration += 1; });
afterEach(async (t) => {
  const mine = [...live].filter((h) => h.isParrot && h.generation === testGeneration);
  const errors = await stopAll(mine);
  if (errors.length) {
    // A test that already failed hides its afterEach error: say it here too.
    for (const e of errors) t.diagnostic(e.message);
    throw combined(errors);
  }
});

function combined(errors) {
  if (errors.length === 1) return errors[0];
  return new Error(errors.map((e) => e.message).join('\n\n'));
}

/** Stop every parrot in `handles` (sanitizer-aware); resolves the errors found. */
async function stopAll(handles) {
  const results = await Promise.allSettled(handles.map((h) => h.shutdown()));
  return results.filter((r) => r.status === 'rejected').map((r) => r.reason);
}

/** process.env without any PARROT_* variable, plus `extra`. */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('PARROT_')) env[k] = v;
  }
  return { ...env, ...extra };
}

export function makeTmpDir(prefix = 'parrot-test-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.add(d);
  return d;
}

/** Write `text` to a fresh temporary file and return its path. */
export function writeTmpFile(name, text) {
  const d = makeTmpDir('parrot-file-');
  const p = path.join(d, name);
  fs.writeFileSync(p, text);
  return p;
}

function parseLogLine(line) {
  try {
    const v = JSON.parse(line);
    if (v && typeof v === 'object') return v;
  } catch { /* not JSON */ }
  return { raw: line };
}

/**
 * Spawn build/parrot listening on an ephemeral port with a fresh data dir.
 * Resolves once it logged {"msg":"listening","addr":"127.0.0.1:PORT"}.
 */
export async function startParrot({ args = [], env = {}, timeoutMs = 10_000 } = {}) {
  if (!fs.existsSync(PARROT_BIN)) {
    throw new Error(`parrot binary not found at ${PARROT_BIN} (run make, or set PARROT_TEST_BIN)`);
  }
  const dataDir = makeTmpDir('parrot-data-');
  const fullArgs = ['--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args];
  // Audits are off unless a test asks for them (a flag or env wins): one
  // in a hundred semantic hits calling the provider again would make every
  // count of provider calls a coin toss.
  const proc = spawn(PARROT_BIN, fullArgs, {
    env: cleanEnv({ PARROT_AUDIT_RATE: '0', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  let stderrText = '';
  let stdoutText = '';
  let partial = '';
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  // 'close' comes after 'exit' once stdout and stderr are drained: only
  // then is the whole sanitizer report in stderrText.
  const closed = new Promise((resolve) => { proc.on('close', () => resolve()); });
  let reported = false;
  proc.on('error', () => {}); // surfaced through 'exit' / the listening wait
  const listeners = new Set();
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderrText += chunk;
    partial += chunk;
    let nl;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (line.trim() === '') continue;
      const obj = parseLogLine(line);
      lines.push(obj);
      for (const fn of listeners) fn(obj);
    }
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (c) => { stdoutText += c; });

  const handle = {
    proc,
    pid: proc.pid,
    dataDir,
    port: 0,
    base: '',
    logs: () => lines.slice(),
    stderr: () => stderrText,
    stdout: () => stdoutText,
    exited,
    get exitInfo() { return exitInfo; },
    isParrot: true,
    generation: testGeneration,
    sanitized: false,
    /**
     * Send `signal` and wait for the exit (SIGKILL after waitMs); resolves
     * the exit code, or the signal name. Rejects with the excerpt when the
     * stderr holds a sanitizer report. Under a sanitizer build SIGKILL is
     * replaced by SIGTERM so that LeakSanitizer runs at exit.
     */
    async stop(signal = 'SIGTERM', waitMs = 15_000) {
      let hung = false;
      if (!exitInfo) {
        const sig = handle.sanitized && signal === 'SIGKILL' ? 'SIGTERM' : signal;
        const limit = handle.sanitized ? Math.max(waitMs, SANITIZED_EXIT_MS) : waitMs;
        proc.kill(sig);
        const t = setTimeout(() => { if (!exitInfo) { hung = true; proc.kill('SIGKILL'); } }, limit);
        await exited;
        clearTimeout(t);
      }
      await drained();
      live.delete(handle);
      handle.assertNoSanitizerReport();
      if (hung && handle.sanitized) throw hungError();
      return exitInfo.code !== null ? exitInfo.code : exitInfo.signal;
    },
    /**
     * Used after each test and by cleanup(): stop the process if it still runs
     * (SIGTERM and a wait under a sanitizer build, SIGKILL otherwise) and check
     * its stderr. A sanitized parrot that has to be killed is an error too:
     * LeakSanitizer could not run.
     */
    async shutdown() {
      live.delete(handle);
      let hung = false;
      if (!exitInfo) {
        if (handle.sanitized) {
          proc.kill('SIGTERM');
          const t = setTimeout(() => { if (!exitInfo) { hung = true; proc.kill('SIGKILL'); } }, SANITIZED_EXIT_MS);
          await exited;
          clearTimeout(t);
        } else {
          proc.kill('SIGKILL');
          await exited;
        }
      }
      await drained();
      handle.assertNoSanitizerReport();
      if (hung) throw hungError();
    },
    /** The sanitizer report in this parrot's stderr so far, or null. */
    sanitizerReport: () => sanitizerReport(stderrText),
    /** Throw (once per parrot) if its stderr holds a sanitizer report. */
    assertNoSanitizerReport() {
      const rep = sanitizerReport(stderrText);
      if (rep && !reported) {
        reported = true;
        throw new Error(`sanitizer report from parrot (pid ${proc.pid}, args ${JSON.stringify(fullArgs)}):\n${rep}`);
      }
    },
    kill() { if (!exitInfo) proc.kill('SIGKILL'); },
  };
  // Bounded: a grandchild holding the pipes must not hang a test.
  const drained = () => within(closed, 5_000, 'parrot stderr to close').catch(() => {});
  const hungError = () => new Error(`parrot (pid ${proc.pid}) did not exit within ${SANITIZED_EXIT_MS} ms of SIGTERM `
    + `and was killed, so LeakSanitizer could not run; stderr tail:\n${stderrText.slice(-2000)}`);
  live.add(handle);

  const listening = await new Promise((resolve, reject) => {
    const done = (err, v) => {
      clearTimeout(timer);
      listeners.delete(onLine);
      if (err) reject(err); else resolve(v);
    };
    const onLine = (obj) => {
      if (obj.msg === 'listening') done(null, obj);
    };
    const already = lines.find((l) => l.msg === 'listening');
    if (already) return resolve(already);
    listeners.add(onLine);
    const timer = setTimeout(() => {
      handle.kill();
      done(new Error(`parrot did not log "listening" within ${timeoutMs} ms; stderr:\n${stderrText}`));
    }, timeoutMs);
    exited.then((info) => {
      // let pending stderr data arrive first
      setImmediate(() => done(new Error(
        `parrot exited (code ${info.code}, signal ${info.signal}) before listening; args ${JSON.stringify(fullArgs)}; stderr:\n${stderrText}`)));
    });
  });
  const m = /:(\d+)$/.exec(String(listening.addr || ''));
  if (!m) {
    handle.kill();
    throw new Error(`cannot parse addr from listening log line: ${JSON.stringify(listening)}`);
  }
  handle.port = Number(m[1]);
  handle.base = `http://127.0.0.1:${handle.port}`;
  handle.sanitized = isSanitized(proc.pid);
  return handle;
}

/** Start the fake upstream in-process; it is closed by cleanup(). */
export async function startFake(opts) {
  const f = await startFakeRaw(opts);
  const h = { kill: () => { f.close(); } };
  live.add(h);
  const close = f.close;
  f.close = async () => { live.delete(h); await close(); };
  return f;
}

/**
 * Stop every parrot (checking its stderr for sanitizer reports, see above)
 * and close every fake started by this test file. Rejects with the
 * sanitizer reports found, after everything was cleaned up.
 */
export async function cleanup() {
  const parrots = [...live].filter((h) => h.isParrot);
  const errors = await stopAll(parrots);
  for (const h of [...live]) {
    try { h.kill(); } catch { /* already gone */ }
  }
  live.clear();
  for (const d of tmpDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
  tmpDirs.clear();
  if (errors.length) throw combined(errors);
}
process.on('exit', () => {
  for (const h of live) { try { h.kill(); } catch { /* ignore */ } }
});

/** Parse curl -i output: skips 1xx blocks. */
function parseCurlOutput(buf) {
  let rest = buf;
  for (;;) {
    const sep = rest.indexOf('\r\n\r\n');
    if (sep < 0 || !rest.subarray(0, 5).toString('latin1').startsWith('HTTP/')) {
      return { status: 0, headers: {}, headerList: [], raw: rest };
    }
    const head = rest.subarray(0, sep).toString('latin1').split('\r\n');
    const statusLine = head.shift();
    const status = Number((/^HTTP\/[\d.]+\s+(\d{3})/.exec(statusLine) || [])[1] || 0);
    const body = rest.subarray(sep + 4);
    if (status >= 100 && status < 200 && body.subarray(0, 5).toString('latin1') === 'HTTP/') {
      rest = body;
      continue;
    }
    const headers = {};
    const headerList = [];
    for (const line of head) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      const k = line.slice(0, i).trim().toLowerCase();
      const v = line.slice(i + 1).trim();
      headerList.push([k, v]);
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    return { status, headers, headerList, raw: body };
  }
}

/**
 * Run the real curl with `-s -S -i` plus `args`. `input` (string/Buffer) is
 * fed on stdin (use `--data-binary @-`). Never rejects on HTTP errors;
 * resolves {status, headers, body (utf8 string), raw (Buffer), code, stderr}.
 */
export function curl(args, { input, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile('curl', ['-s', '-S', '-i', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], {
      encoding: 'buffer',
      maxBuffer: 256 * 1024 * 1024,
      timeout: timeoutMs + 5_000,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && typeof err.code !== 'number' && !stdout?.length) return reject(err);
      const parsed = parseCurlOutput(stdout);
      resolve({
        status: parsed.status,
        headers: parsed.headers,
        headerList: parsed.headerList,
        raw: parsed.raw,
        body: parsed.raw.toString('utf8'),
        code,
        stderr: stderr.toString('utf8'),
      });
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** Run build/parrot to completion; resolves {code, signal, stdout, stderr}. */
export function runCli(args, env = {}, { timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(PARROT_BIN)) {
      reject(new Error(`parrot binary not found at ${PARROT_BIN}`));
      return;
    }
    // A temporary working directory: a default data-dir must not land in the tree.
    const child = spawn(PARROT_BIN, args, {
      env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], cwd: makeTmpDir('parrot-cli-'),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && code === null) {
        reject(new Error(`parrot ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr:\n${stderr}`));
        return;
      }
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Plain node:http request. Resolves {status, headers, body (string), raw}
 * after the whole body arrived. `agent` defaults to a fresh non-keep-alive one.
 */
export function request(base, { method = 'GET', path: p = '/', headers = {}, body, agent = false, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const url = new URL(p, base);
    const req = http.request(url, { method, headers, agent }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(parts);
        resolve({ status: res.statusCode, headers: res.headers, raw, body: raw.toString('utf8'), complete: res.complete });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request ${method} ${p} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body); else req.end();
  });
}

export function chatBody(text = 'hello there', extra = {}) {
  return JSON.stringify({ model: 'gpt-fake', messages: [{ role: 'user', content: text }], ...extra });
}

/** Poll `fn` until it returns a truthy value; rejects with `what` after timeoutMs. */
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Reject if `promise` does not settle within ms. */
export async function within(promise, ms, what = 'operation') {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** {threads, rssKb} from /proc/<pid>/status, or null when the process is gone. */
export function procStatus(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const threads = Number((/^Threads:\s+(\d+)/m.exec(text) || [])[1]);
  const rssKb = Number((/^VmRSS:\s+(\d+)\s+kB/m.exec(text) || [])[1]);
  return { threads, rssKb };
}

/** Sample procStatus(pid) every intervalMs until stop() is called. */
export function sampleProc(pid, intervalMs = 25) {
  const s = { maxThreads: 0, maxRssKb: 0, samples: 0 };
  const take = () => {
    const st = procStatus(pid);
    if (!st) return;
    s.samples += 1;
    if (st.threads > s.maxThreads) s.maxThreads = st.threads;
    if (st.rssKb > s.maxRssKb) s.maxRssKb = st.rssKb;
  };
  take();
  const timer = setInterval(take, intervalMs);
  return {
    stats: s,
    stop() { clearInterval(timer); take(); return s; },
  };
}

/** A 127.0.0.1 port that nothing listens on (bound then closed). */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Try a TCP connect; resolves 'connected' or the error code (e.g. ECONNREFUSED). */
export function tryConnect(port, timeoutMs = 3_000) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const t = setTimeout(() => { s.destroy(); resolve('timeout'); }, timeoutMs);
    s.on('connect', () => { clearTimeout(t); s.destroy(); resolve('connected'); });
    s.on('error', (e) => { clearTimeout(t); resolve(e.code || 'error'); });
  });
}

/** Split an SSE byte string into the data payloads (strings). */
export function sseData(text) {
  return text
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => e.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'));
}

/** Join the delta contents of a chat SSE body. */
export function joinDeltas(text) {
  let out = '';
  for (const d of sseData(text)) {
    if (d === '[DONE]') continue;
    const j = JSON.parse(d);
    for (const c of j.choices || []) out += c.delta?.content ?? '';
  }
  return out;
}

/** Assert helper: OpenAI-shaped error object; returns body.error. */
export function errorShape(assert, bodyText) {
  let body;
  assert.doesNotThrow(() => { body = JSON.parse(bodyText); }, `error body is not JSON: ${bodyText}`);
  assert.equal(typeof body, 'object');
  assert.ok(body && body.error && typeof body.error === 'object', `no "error" object in ${bodyText}`);
  const e = body.error;
  assert.equal(typeof e.message, 'string', `error.message not a string in ${bodyText}`);
  assert.ok(e.message.length > 0, 'error.message is empty');
  assert.equal(typeof e.type, 'string', `error.type not a string in ${bodyText}`);
  assert.ok(e.param === null || typeof e.param === 'string', `error.param neither null nor string in ${bodyText}`);
  assert.ok(e.code === null || typeof e.code === 'string', `error.code neither null nor string in ${bodyText}`);
  for (const k of ['message', 'type', 'param', 'code']) assert.ok(k in e, `error.${k} missing in ${bodyText}`);
  return e;
}

/** Wait for a {"msg":"request"} log line satisfying pred. */
export function waitForLog(parrot, pred, what = 'log line', timeoutMs = 5_000) {
  return waitFor(() => parrot.logs().find((l) => l.msg === 'request' && pred(l)), { timeoutMs, what });
}

/** A fresh fake upstream plus a parrot pointed at it. */
export async function startPair({ args = [], env = {} } = {}) {
  const fake = await startFake();
  const parrot = await startParrot({ args: ['--upstream', fake.url, ...args], env });
  return { fake, parrot };
}

/**
 * Start a POST /v1/chat/completions (or other) request and expose the
 * response progressively. Returns:
 *   req            the ClientRequest (destroy() it to disconnect)
 *   response       Promise of the IncomingMessage (rejects on request error)
 *   text()         bytes received so far (utf8)
 *   bytes()        number of body bytes received so far
 *   done           Promise resolving {status, headers, text, bytes, complete, error}
 *                  once the response ended, errored or closed (never rejects)
 *   waitFor(pred)  resolves once pred(text) is true
 */
export function openStream(base, {
  method = 'POST', path: p = '/v1/chat/completions', headers = {}, body, agent = false, keepText = true,
} = {}) {
  const url = new URL(p, base);
  let text = '';
  let count = 0;
  let status = 0;
  let resHeaders = {};
  let res = null;
  const waiters = new Set();
  const notify = () => { for (const w of waiters) w(); };
  let resolveResp;
  let rejectResp;
  const response = new Promise((resolve, reject) => { resolveResp = resolve; rejectResp = reject; });
  response.catch(() => {});
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  let finished = false;
  const end = (error) => {
    if (finished) return;
    finished = true;
    notify();
    finish({ status, headers: resHeaders, text, bytes: count, complete: res ? res.complete : false, error });
  };
  const req = http.request(url, { method, headers: { 'content-type': 'application/json', ...headers }, agent }, (r) => {
    res = r;
    status = r.statusCode;
    resHeaders = r.headers;
    resolveResp(r);
    r.on('data', (c) => {
      count += c.length;
      if (keepText) text += c.toString('utf8');
      notify();
    });
    r.on('end', () => end(null));
    r.on('error', (e) => end(e));
    r.on('close', () => end(r.complete ? null : new Error('response closed before completion')));
  });
  req.on('error', (e) => { rejectResp(e); end(e); });
  if (body !== undefined) req.end(body); else req.end();
  return {
    req,
    response,
    done,
    text: () => text,
    bytes: () => count,
    waitFor(pred, timeoutMs = 10_000, what = 'stream condition') {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pred(text, count)) { cleanupW(); resolve(text); } else if (finished) { cleanupW(); reject(new Error(`stream ended before ${what}; got: ${text.slice(0, 500)}`)); }
        };
        const t = setTimeout(() => { cleanupW(); reject(new Error(`timed out waiting for ${what}`)); }, timeoutMs);
        const cleanupW = () => { clearTimeout(t); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * True when the parrot process runs a sanitizer build (ASan's quarantine and
 * shadow memory make RSS numbers meaningless).
 */
export function isSanitized(pid) {
  if (process.env.ASAN_OPTIONS !== undefined || process.env.TSAN_OPTIONS !== undefined) return true;
  try {
    return /lib[at]san|libubsan/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- cache

/**
 * GET /metrics, parsed: {'name' or 'name{labels}': number}. Rejects when
 * the status is not 200.
 */
export async function metrics(base) {
  const r = await request(base, { path: '/metrics' });
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.body.slice(0, 300)}`);
  const out = {};
  for (const line of r.body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable /metrics line: ${JSON.stringify(line)}`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

/**
 * POST /v1/chat/completions with the real curl. `body` is an object (sent
 * as JSON) or a string sent as is; `headers` is {name: value}. Resolves like
 * curl() above.
 */
export function curlChat(base, body, headers = {}, opts = {}) {
  const args = ['-H', 'content-type: application/json'];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push('--data-binary', '@-', `${base}/v1/chat/completions`);
  return curl(args, { input: typeof body === 'string' ? body : JSON.stringify(body), ...opts });
}

/**
 * Parse a chat SSE body into its chunk objects (the [DONE] sentinel
 * excluded) and rebuild the answer: {chunks, done, content, role, finish,
 * toolCalls (by index: id, type, function.name, function.arguments joined),
 * usage (of the chunk with empty choices, else null)}. Throws on an event
 * that is not JSON.
 */
export function parseChatSse(text) {
  const chunks = [];
  let done = false;
  for (const d of sseData(text)) {
    if (d === '[DONE]') { done = true; continue; }
    chunks.push(JSON.parse(d));
  }
  let content = null;
  let role = null;
  let finish = null;
  let usage = null;
  const calls = [];
  for (const ch of chunks) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices || []) {
      const dl = c.delta || {};
      if (dl.role) role = dl.role;
      if (typeof dl.content === 'string') content = (content ?? '') + dl.content;
      for (const tc of dl.tool_calls || []) {
        const cur = calls[tc.index] || (calls[tc.index] = { id: undefined, type: undefined, function: { name: '', arguments: '' } });
        if (tc.id) cur.id = tc.id;
        if (tc.type) cur.type = tc.type;
        if (tc.function?.name) cur.function.name += tc.function.name;
        if (tc.function?.arguments) cur.function.arguments += tc.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { chunks, done, content, role, finish, toolCalls: calls, usage };
}

// ---------------------------------------------------------------- redis
//
// A real redis-server (Debian's package, deploy/install-deps.sh) on a free
// loopback port, for the scale-out tests (docs/scale-out.md). No RDB
// snapshots; with aof: true an append-only file fsynced on every write, in
// its own temporary directory, so that a restart on the same port finds
// what it had. Stopped by cleanup() at the latest.

/** Run redis-cli against port; resolves its stdout (trimmed). */
export function redisCli(port, args, { timeoutMs = 5_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: timeoutMs },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
        else resolve(stdout.trim());
      });
  });
}

/**
 * Start redis-server (extra args: args; redis-cli's credentials for its
 * PING: cliAuth); resolves {port, url, dir, stop(signal), restart()}.
 * restart() starts it again on the same port and directory.
 */
export async function startRedis({ aof = false, port: wanted, args: extra = [], cliAuth = [] } = {}) {
  const dir = makeTmpDir('parrot-redis-');
  const port = wanted || await closedPort();
  const h = { port, url: `redis://127.0.0.1:${port}`, dir, proc: null };
  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'always', '--daemonize', 'no', ...extra];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (c) => { stderr += c; });
    h.proc = proc;
    h.exited = new Promise((resolve) => proc.on('exit', resolve));
    await waitFor(async () => {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
      try { return (await redisCli(port, [...cliAuth, 'PING'])) === 'PONG'; } catch { return false; }
    }, { timeoutMs: 10_000, what: 'redis-server to answer PING' });
  };
  h.stop = async (signal = 'SIGTERM') => {
    if (h.proc && h.proc.exitCode === null && h.proc.signalCode === null) {
      h.proc.kill(signal);
      await h.exited;
    }
  };
  h.restart = launch;
  await launch();
  const handle = { kill: () => { if (h.proc && h.proc.exitCode === null) h.proc.kill('SIGKILL'); } };
  live.add(handle);
  return h;
}
