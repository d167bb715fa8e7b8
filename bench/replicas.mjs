// bench/replicas.mjs - scenario 8 of make bench (docs/scale-out.md): what
// sharing the cache through Redis costs.
//
//   node bench/replicas.mjs [KV-FILE]
//
// Starts a redis-server (no persistence) on a free loopback port, the fake
// provider, two parrots sharing one namespace (A, B) and one without --redis
// (C), then measures:
//   - replication lag: questions stored through A at a steady rate
//     (BENCH_REPL_RATE per second for BENCH_REPL_SECONDS); for each, the time
//     from A's answer until B answers it from its cache (B is asked with
//     Cache-Control: only-if-cached in a tight loop, so the figure includes one
//     request's time); p50 and p99;
//   - exact-hit throughput on B (--redis) and on C (no --redis), wrk -t2 -c64,
//     alternating BENCH_ROUNDS times with the same wrk command; medians.
// Prints a markdown table; writes `key value` lines to KV-FILE when given.
// Needs redis-server and wrk (deploy/install-deps.sh --bench), build/parrot.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFake } from '../test/fake/upstream.mjs';

const root = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const bin = process.env.PARROT_BIN || path.join(root, 'build', 'parrot');
const shared = process.env.SHARED_BENCH || path.join(root, '..', 'shared', 'bench');
const rate = Number(process.env.BENCH_REPL_RATE || 50);
const seconds = Number(process.env.BENCH_REPL_SECONDS || 10);
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const wrkSecs = Number(process.env.BENCH_SECONDS || 5);
const kvFile = process.argv[2];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'parrot-bench-replicas-'));
const children = [];
const auth = { authorization: 'Bearer sk-bench', 'content-type': 'application/json' };

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' });
  children.push(proc);
  for (let i = 0; i < 200; i++) {
    try {
      if (execFileSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8' }).trim() === 'PONG') return port;
    } catch { /* not up yet */ }
    await sleep(50);
  }
  throw new Error('redis-server did not start');
}

/** A parrot with args; resolves its base URL once it logged "listening". */
function startParrot(args, name) {
  return new Promise((resolve, reject) => {
    const dir = path.join(tmp, name);
    const proc = spawn(bin, ['--listen', '127.0.0.1:0', '--data-dir', dir, '--log-level', 'warn', ...args],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } });
    children.push(proc);
    let err = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (c) => {
      err += c;
      const m = /"msg":"listening".*?"addr":"127\.0\.0\.1:(\d+)"/.exec(err);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
    proc.on('exit', (code) => reject(new Error(`parrot ${name} exited ${code}: ${err}`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function post(base, text, headers = {}) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });
    const req = http.request(`${base}/v1/chat/completions`, { method: 'POST', agent, headers: { ...auth, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs) => pct(xs, 50);

async function lag(a, b) {
  const lags = [];
  const pending = new Map(); // question -> time A answered
  let stop = false;
  const watcher = (async () => {
    while (!stop || pending.size) {
      if (!pending.size) { await sleep(1); continue; }
      for (const [q, t0] of pending) {
        if ((await post(b, q, { 'cache-control': 'only-if-cached' })) === 200) {
          lags.push(performance.now() - t0);
          pending.delete(q);
        }
      }
    }
  })();
  const n = rate * seconds;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const q = `replication lag question number ${i} ${process.pid}`;
    if ((await post(a, q)) !== 200) throw new Error('a store through A failed');
    pending.set(q, performance.now());
  }
  stop = true;
  await watcher;
  return { p50: pct(lags, 50), p99: pct(lags, 99), n: lags.length };
}

function wrk(base, body) {
  const out = execFileSync('wrk', ['-t2', '-c64', `-d${wrkSecs}s`, '-s', path.join(shared, 'post.lua'),
    `${base}/v1/chat/completions`], { encoding: 'utf8', env: { ...process.env, BENCH_REQUEST: body } });
  const m = /RESULT rps=(\d+) p50_us=(\d+) p90_us=\d+ p99_us=(\d+) p999_us=\d+ errors=(\d+)/.exec(out);
  if (!m || m[4] !== '0') throw new Error(`wrk: ${out}`);
  return { rps: Number(m[1]), p99: Number(m[3]) };
}

const fake = await startFake();
const redisPort = await startRedis();
const redis = ['--redis', `redis://127.0.0.1:${redisPort}`, '--redis-namespace', 'bench'];
const up = ['--upstream', fake.url];
const a = await startParrot([...up, ...redis], 'a');
const b = await startParrot([...up, ...redis], 'b');
const c = await startParrot(up, 'c');

const l = await lag(a, b);
const body = path.join(tmp, 'hit.json');
fs.writeFileSync(body, JSON.stringify({ model: 'gpt-fake', messages: [{ role: 'user', content: 'What is the capital of France?' }] }));
for (const base of [b, c]) await post(base, 'What is the capital of France?');
const on = [];
const off = [];
for (let r = 0; r < rounds; r++) {
  on.push(wrk(b, body).rps);
  off.push(wrk(c, body).rps);
}
const ratio = median(on) / median(off);
const lines = [
  `| measure | value |`,
  `|---|---|`,
  `| replication lag p50, ${rate} inserts/s for ${seconds} s (${l.n} entries) | ${l.p50.toFixed(2)} ms |`,
  `| replication lag p99 | ${l.p99.toFixed(2)} ms |`,
  `| exact-hit req/s with --redis (median of ${rounds}) | ${median(on)} |`,
  `| exact-hit req/s without --redis | ${median(off)} |`,
  `| ratio (target >= 0.95) | ${ratio.toFixed(3)} |`,
];
console.log(lines.join('\n'));
if (kvFile) {
  fs.appendFileSync(kvFile, [`repl_lag_p50_ms ${l.p50.toFixed(2)}`, `repl_lag_p99_ms ${l.p99.toFixed(2)}`,
    `repl_hit_rps_on ${median(on)}`, `repl_hit_rps_off ${median(off)}`, `repl_hit_ratio ${ratio.toFixed(3)}`].join('\n') + '\n');
}
await fake.close();
process.exit(0);
