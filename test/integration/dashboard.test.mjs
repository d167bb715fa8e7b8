// /dashboard (docs/metrics.md): the stats document it polls, and the page
// itself rendered by headless Chromium (Debian's chromium) after traffic:
// the DOM shows non-zero numbers, and a screenshot is a real picture.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  startPair, cleanup, curlChat, request, makeTmpDir, errorShape, waitFor,
} from './helpers.mjs';

after(cleanup);

const TEST_TIMEOUT_MS = 180_000;
const KEY = { authorization: 'Bearer sk-dashboard' };
const SECRET = 'What is the name of my first pet';
const WIDTH = 1200;
const HEIGHT = 900;
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });

/** A parrot with hits of both kinds, a miss and a bypass behind it. */
async function busyParrot() {
  const { parrot } = await startPair({ args: ['--prices', 'gpt-fake=2.5/10'] });
  for (const [text, headers] of [
    ['How do I reset my password?', {}],
    ['How do I reset my password?', {}],
    ['how can I reset my password', {}],
    [SECRET, {}],
    ['Fetched fresh', { 'cache-control': 'no-cache' }],
  ]) {
    const r = await curlChat(parrot.base, ask(text), { ...KEY, ...headers });
    assert.equal(r.status, 200, r.body);
  }
  // Requests are counted when libmicrohttpd reports them complete, just
  // after the client has its answer; their log lines come right after.
  await waitFor(() => parrot.logs().filter((l) => l.msg === 'request').length >= 5, { what: 'five request log lines' });
  return parrot;
}

test('/dashboard/stats.json: the numbers the page shows', { timeout: TEST_TIMEOUT_MS }, async () => {
  const parrot = await busyParrot();
  const r = await request(parrot.base, { path: '/dashboard/stats.json' });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/json/);
  const s = JSON.parse(r.body);
  assert.equal(s.cache.enabled, true);
  assert.equal(s.cache.hits_exact, 1);
  assert.equal(s.cache.hits_semantic, 1);
  assert.equal(s.cache.misses, 2);
  assert.equal(s.cache.bypasses, 1);
  assert.equal(s.cache.hit_rate, 0.5);
  assert.equal(s.cache.entries, 3);
  assert.ok(s.saved.prompt_tokens > 0 && s.saved.completion_tokens > 0);
  assert.ok(s.saved.usd > 0 && s.saved.priced);
  assert.equal(s.latency.hit.count, 2);
  assert.ok(s.latency.hit.p50 > 0 && s.latency.hit.p99 >= s.latency.hit.p50);
  assert.equal(s.latency.miss.count, 2);
  assert.equal(s.latency.first_byte.count, 3);
  assert.equal(s.providers.length, 1);
  assert.equal(s.providers[0].breaker, 'closed');
  assert.equal(s.providers[0].attempts, 3);
  // Both misses share a partition: one tenant, one model, no earlier turns.
  assert.equal(s.top_misses.length, 1);
  assert.match(s.top_misses[0].partition, /^[0-9a-f]{16}$/);
  assert.equal(s.top_misses[0].model, 'gpt-fake');
  assert.equal(s.top_misses[0].count, 2);
  assert.ok(!r.body.includes('first pet'), 'no question in the stats');
  assert.equal(s.requests.total, 5);
  assert.ok(s.now >= s.start_time);

  const page = await request(parrot.base, { path: '/dashboard' });
  assert.equal(page.status, 200);
  assert.match(page.headers['content-type'], /^text\/html/);
  assert.equal((await request(parrot.base, { path: '/dashboard/' })).body, page.body);
  // Self-contained: nothing loaded from elsewhere.
  assert.doesNotMatch(page.body, /\s(src|href)\s*=|@import|url\(|<link/i);
  const post = await request(parrot.base, { method: 'POST', path: '/dashboard/stats.json', body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(errorShape(assert, post.body).code, 'method_not_allowed');
  const missing = await request(parrot.base, { path: '/dashboard/nothing' });
  assert.equal(missing.status, 404);
  assert.equal(errorShape(assert, missing.body).code, 'unknown_url');
});

/** Run Debian's chromium headless; resolves {stdout, stderr}. */
function chromium(args) {
  const profile = makeTmpDir('parrot-chromium-');
  return new Promise((resolve, reject) => {
    execFile('chromium', [
      '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
      `--user-data-dir=${profile}`, `--window-size=${WIDTH},${HEIGHT}`,
      '--virtual-time-budget=5000', ...args,
    ], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** The text content of the element with id `id` in an HTML dump. */
function textOf(html, id) {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html);
  assert.ok(m, `no element #${id} in the rendered DOM`);
  return m[1];
}

const num = (s) => Number(s.replace(/[^0-9.]/g, ''));

test('headless Chromium renders the dashboard with live, non-zero numbers', { timeout: TEST_TIMEOUT_MS }, async () => {
  const parrot = await busyParrot();
  const { stdout: dom } = await chromium(['--dump-dom', `${parrot.base}/dashboard`]);
  assert.match(dom, /<body[^>]*data-loaded="1"/, 'the page never loaded its stats');
  assert.equal(textOf(dom, 'status'), 'live');
  assert.equal(textOf(dom, 'hit-rate'), '50.0%');
  assert.equal(num(textOf(dom, 'hits')), 2);
  assert.equal(num(textOf(dom, 'hits-semantic')), 1);
  assert.equal(num(textOf(dom, 'misses')), 2);
  assert.ok(num(textOf(dom, 'tokens-saved')) > 0);
  assert.match(textOf(dom, 'usd-saved'), /^\$0\.\d+$/);
  assert.ok(num(textOf(dom, 'usd-saved')) > 0);
  assert.ok(num(textOf(dom, 'requests')) >= 5);
  assert.equal(num(textOf(dom, 'entries')), 3);
  // Latency rows: a p50 with a unit for hits; the provider is healthy.
  assert.match(dom, /<td>cache hit<\/td><td class="n">2<\/td><td class="n">[\d.]+ (µs|ms)<\/td>/);
  assert.match(dom, /<td>http:\/\/127\.0\.0\.1:\d+\/v1<\/td><td class="ok">closed<\/td><td class="n">3<\/td>/);
  assert.match(dom, /<code>[0-9a-f]{16}<\/code><\/td><td>gpt-fake<\/td><td class="n">2<\/td>/);
  assert.ok(!dom.includes('first pet'), 'no question on the page');
});

/** Decode an 8-bit RGB/RGBA non-interlaced PNG: {width, height, channels, pixels}. */
function decodePng(buf) {
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
  let off = 8;
  let ihdr = null;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString('latin1');
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      ihdr = {
        width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8], color: data[9], interlace: data[12],
      };
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    off += 12 + len;
  }
  assert.ok(ihdr, 'no IHDR');
  assert.equal(ihdr.depth, 8);
  assert.equal(ihdr.interlace, 0);
  const channels = { 2: 3, 6: 4 }[ihdr.color];
  assert.ok(channels, `colour type ${ihdr.color}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = ihdr.width * channels;
  assert.equal(raw.length, ihdr.height * (stride + 1));
  const pixels = Buffer.alloc(ihdr.height * stride);
  for (let y = 0; y < ihdr.height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y ? pixels.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = prev[i];
      const c = i >= channels ? prev[i - channels] : 0;
      let v;
      switch (filter) {
        case 0: v = 0; break;
        case 1: v = a; break;
        case 2: v = b; break;
        case 3: v = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`PNG filter ${filter}`);
      }
      row[i] = (src[i] + v) & 0xff;
    }
  }
  return { width: ihdr.width, height: ihdr.height, channels, pixels };
}

test('a Chromium screenshot of the dashboard is a real picture', { timeout: TEST_TIMEOUT_MS }, async () => {
  const parrot = await busyParrot();
  const file = path.join(makeTmpDir('parrot-shot-'), 'dashboard.png');
  await chromium([`--screenshot=${file}`, `${parrot.base}/dashboard`]);
  const png = decodePng(fs.readFileSync(file));
  assert.equal(png.width, WIDTH);
  assert.equal(png.height, HEIGHT);
  const counts = new Map();
  for (let i = 0; i < png.pixels.length; i += png.channels) {
    const rgb = png.pixels.readUIntBE(i, 3);
    counts.set(rgb, (counts.get(rgb) || 0) + 1);
  }
  const total = png.width * png.height;
  const top = Math.max(...counts.values());
  // Text, cards and the hit bar: many colours, no single one filling the frame.
  assert.ok(counts.size > 50, `only ${counts.size} colours`);
  assert.ok(top / total < 0.9, `one colour covers ${(100 * top / total).toFixed(1)}%`);
  // The hit-mix bar's green (#3fb950) is drawn: the stats arrived.
  assert.ok(counts.get(0x3fb950) > 100, 'no hit bar in the screenshot');
});
