// streams.mjs - scenario 4 of make bench: N concurrent slow SSE streams
// through one parrot; do they all complete, with how many threads and how
// much memory?
//
//   node bench/streams.mjs [N=2000] [CHUNKS=20] [DELAY_MS=100]
//
// The scripted fake provider (test/fake/upstream.mjs) runs in its own
// process so the client's event loop does not slow the provider down. Every
// stream is a distinct question (a miss, relayed chunk by chunk, each chunk
// DELAY_MS apart), so all N are open at once for about CHUNKS x DELAY_MS.
// parrot's thread count and resident set are sampled from /proc every 20 ms,
// and its CPU time (user + system) over the streams is read from /proc too.
// $BENCH_PARROT names another binary to measure (as in bench/lib.sh).
// Prints `key value` lines for bench/run.sh.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const [n, chunks, delay] = [2000, 20, 100].map((d, i) => Number(process.argv[2 + i] ?? d));

if (process.argv[2] === 'fake') {
  const { startFake } = await import('../test/fake/upstream.mjs');
  const fake = await startFake();
  process.stdout.write(`${fake.port}\n`);
} else {
  await main();
}

function firstLine(child) {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += c;
      if (buf.includes('\n')) resolve(buf.split('\n')[0]);
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code}`)));
  });
}

// utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat,
// counted after the parenthesised command name, which may hold spaces).
function cpuSeconds(pid) {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function status(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const num = (k) => Number(text.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm'))[1]);
  return { threads: num('Threads'), rssKb: num('VmRSS') };
}

async function waitHealthy(base) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((r) => http.get(`${base}/healthz`, (res) => { res.resume(); r(res.statusCode === 200); })
      .on('error', () => r(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('parrot did not become healthy');
}

function stream(agent, base, i) {
  return new Promise((resolve) => {
    const req = http.request(`${base}/v1/chat/completions`, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'x-fake-chunks': String(chunks), 'x-fake-chunk-delay-ms': String(delay) },
    }, (res) => {
      let events = 0;
      res.setEncoding('utf8');
      res.on('data', (c) => { events += c.split('\n\n').length - 1; });
      res.on('end', () => resolve(res.statusCode === 200 && res.complete && events >= chunks + 1));
      res.on('error', () => resolve(false));
    });
    req.setTimeout(120_000, () => req.destroy());
    req.on('error', () => resolve(false));
    req.end(JSON.stringify({ model: 'gpt-fake', stream: true, messages: [{ role: 'user', content: `stream question ${i}` }] }));
  });
}

async function main() {
  const fakeProc = spawn(process.execPath, [fileURLToPath(import.meta.url), 'fake'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fakePort = await firstLine(fakeProc);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parrot-streams-'));
  const port = 18195;
  const bin = process.env.BENCH_PARROT ? path.resolve(process.env.BENCH_PARROT) : path.join(root, 'build/parrot');
  const parrot = spawn(bin, ['--listen', `127.0.0.1:${port}`,
    '--upstream', `http://127.0.0.1:${fakePort}/v1`, '--data-dir', dir, '--log-level', 'warn'],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base);
    const start = status(parrot.pid);
    const cpu0 = cpuSeconds(parrot.pid);
    const peak = { ...start };
    const timer = setInterval(() => {
      const s = status(parrot.pid);
      peak.threads = Math.max(peak.threads, s.threads);
      peak.rssKb = Math.max(peak.rssKb, s.rssKb);
    }, 20);
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const t0 = process.hrtime.bigint();
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => stream(agent, base, i)));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = cpuSeconds(parrot.pid) - cpu0;
    clearInterval(timer);
    agent.destroy();
    console.log(`streams ${n}`);
    console.log(`stream_seconds_each ${(chunks * delay) / 1000}`);
    console.log(`completed ${ok.filter(Boolean).length}`);
    console.log(`wall_seconds ${secs.toFixed(2)}`);
    console.log(`threads_start ${start.threads}`);
    console.log(`threads_max ${peak.threads}`);
    console.log(`rss_start_mb ${(start.rssKb / 1024).toFixed(1)}`);
    console.log(`rss_max_mb ${(peak.rssKb / 1024).toFixed(1)}`);
    console.log(`cpu_seconds ${cpu.toFixed(2)}`);
  } finally {
    // Let parrot finish its shutdown (it writes a snapshot) before its data
    // directory goes away.
    const gone = parrot.exitCode !== null || parrot.signalCode !== null;
    const exited = gone ? Promise.resolve() : new Promise((r) => parrot.once('exit', r));
    parrot.kill('SIGTERM');
    await exited;
    fakeProc.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
