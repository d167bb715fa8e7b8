// `parrot replay` (docs/audit.md): a generated log whose repeats are known
// by construction, run through the binary; the report's numbers must match.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { cleanup, runCli, makeTmpDir } from './helpers.mjs';

after(cleanup);
const T = { timeout: 60_000 };
const ask = (text) => ({ model: 'gpt-fake', messages: [{ role: 'user', content: text }] });
const answer = (content, p, c) => ({
  id: 'chatcmpl-x', object: 'chat.completion', created: 1700000000, model: 'gpt-fake',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c },
});

/**
 * The log: 8 arithmetic questions that differ only in a number (never a
 * semantic hit of each other: the verifier checks numbers), question i
 * asked i + 1 times in a row (exact repeats: 0 + 1 + ... + 7 = 28); then 5
 * "How do I X?" / "how can I X" pairs (semantic hits), the paraphrase's
 * logged answer agreeing for 3 and naming another number for 2; then two
 * lines that are not requests. Every answer bills 10 prompt and 4
 * completion tokens.
 */
function generate() {
  const lines = [];
  let ts = 1700000000;
  const rec = (text, content) => JSON.stringify({ request: ask(text), response: answer(content, 10, 4), ts: ts++ });
  for (let i = 0; i < 8; i++) {
    for (let k = 0; k <= i; k++) lines.push(rec(`What is ${i + 11} plus 3?`, `${i + 14}.`));
  }
  const topics = ['reset my password', 'export my data', 'invite a teammate', 'rename a project', 'add a payment method'];
  topics.forEach((t, i) => {
    lines.push(rec(`How do I ${t}?`, `Open settings and use form ${i + 1}.`));
    lines.push(rec(`how can I ${t}`, i < 3 ? `Open settings and use form ${i + 1}.` : `Call support on line ${i + 70}.`));
  });
  lines.push('this is not json');
  lines.push(JSON.stringify({ model: 'gpt-fake' })); // no messages
  return lines;
}

function writeLog(lines, name = 'log.jsonl') {
  const dir = makeTmpDir('parrot-replay-');
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

const TABLES = ['--word-vectors', '', '--wordnet', ''];

test('exact and semantic shares, tokens, money and wrong hits match the log', T, async () => {
  const file = writeLog(generate());
  const dataDir = path.join(makeTmpDir('parrot-replay-dd-'), 'never-created');
  const r = await runCli(['replay', '--json', ...TABLES, '--prices', 'gpt-fake=1/2', '--data-dir', dataDir, file]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const requests = 36 + 10;
  // The documented shape.
  assert.equal(j.object, 'parrot.replay');
  assert.deepEqual(j.files, [file]);
  assert.equal(j.lines, requests + 2);
  assert.equal(j.requests, requests);
  assert.deepEqual(j.skipped, { not_json: 1, not_a_chat_request: 1 });
  for (const k of ['exact', 'semantic', 'misses']) {
    assert.equal(typeof j[k].count, 'number', k);
    assert.ok(Math.abs(j[k].share - j[k].count / requests) < 1e-12, `${k} share`);
  }
  assert.equal(j.exact.count, 28);
  assert.equal(j.semantic.count, 5);
  assert.equal(j.semantic.threshold, 0.7);
  assert.equal(j.misses.count, requests - 28 - 5);
  assert.equal(j.misses.unkeyable, 0);
  assert.equal(j.exact.count + j.semantic.count + j.misses.count, j.requests);
  // Every hit saved its cached answer's usage; prices are USD per 1M tokens.
  assert.equal(j.saved.prompt_tokens, 33 * 10);
  assert.equal(j.saved.completion_tokens, 33 * 4);
  assert.ok(Math.abs(j.saved.usd - (33 * 10 * 1 + 33 * 4 * 2) / 1e6) < 1e-12, `usd ${j.saved.usd}`);
  // The judge finds the two paraphrases whose logged answers differ.
  assert.equal(j.wrong.judged, 5);
  assert.equal(j.wrong.different, 2);
  assert.equal(j.wrong.share, 0.4);
  assert.ok(j.wrong.upper > 0.4 && j.wrong.upper < 1);
  // The curve: 10 points from 0.50 to 0.95, never rising with the threshold,
  // and at the configured threshold the semantic share itself.
  assert.equal(j.curve.length, 10);
  assert.deepEqual(j.curve.map((p) => p.threshold), [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]);
  for (let k = 1; k < 10; k++) assert.ok(j.curve[k].semantic_share <= j.curve[k - 1].semantic_share);
  assert.ok(Math.abs(j.curve[4].semantic_share - j.semantic.share) < 1e-12);
  // Largest clusters first: question 8 (7 exact repeats), then 7 (6).
  assert.deepEqual(j.clusters.slice(0, 2).map((c) => [c.size, c.exact, c.semantic, c.text]),
    [[8, 7, 0, 'What is 18 plus 3?'], [7, 6, 0, 'What is 17 plus 3?']]);
  assert.ok(j.clusters.length <= 10);
  // It never touches the server's data directory.
  assert.equal(fs.existsSync(dataDir), false);

  // The same numbers as a table.
  const t = await runCli(['replay', ...TABLES, '--prices', 'gpt-fake=1/2', file]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^exact repeats\s+28\s+60\.87%$/m);
  assert.match(t.stdout, /^semantic hits\s+5\s+10\.87%\s+at threshold 0\.70$/m);
  assert.match(t.stdout, /^wrong semantic hits\s+2\s+of 5 judged/m);
  assert.match(t.stdout, /^money saved\s+0\.000594 USD$/m);
  assert.match(t.stdout, /What is 18 plus 3\?/);
});

test('bare request bodies: repeats found, nothing saved or judged without answers; progress on stderr', T, async () => {
  const lines = [];
  for (let i = 0; i < 10001; i++) lines.push(JSON.stringify(ask(`Question number ${i % 2 ? 'one' : 'two'}?`)));
  const file = writeLog(lines);
  const r = await runCli(['replay', '--json', ...TABLES, file], {}, { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.requests, 10001);
  assert.equal(j.exact.count, 9999);
  assert.deepEqual(j.saved, { prompt_tokens: 0, completion_tokens: 0, usd: null });
  assert.equal(j.wrong, null);
  assert.match(r.stderr, /parrot replay: .*log\.jsonl: 10000 lines, 10000 requests/);
});

test('bad usage and unreadable files', T, async () => {
  let r = await runCli(['replay']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /usage: .* replay/);
  r = await runCli(['replay', '--no-such-option', 'x', '/nonexistent.jsonl']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--no-such-option'/);
  r = await runCli(['replay', ...TABLES, '/nonexistent/log.jsonl']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\/nonexistent\/log\.jsonl: No such file or directory/);
  r = await runCli(['replay', '--embedder', 'openai', '--embed-url', 'http://127.0.0.1:9/v1', '/dev/null']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /builtin embedder only/);
});
