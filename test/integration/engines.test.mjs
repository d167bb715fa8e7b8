// The test clients run on the Node.js that is installed: every package in
// test/node_modules (the pinned openai SDK first) must accept it in its
// "engines" field. A pin that needs a newer Node fails here, by name, rather
// than as an odd SDK error somewhere else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './helpers.mjs';

const modules = path.join(REPO_ROOT, 'test', 'node_modules');

const parse = (v) => v.replace(/^v/, '').split('.').map((x) => Number.parseInt(x, 10) || 0);
function cmp(a, b) {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}

/** Whether version `v` satisfies an npm range made of >=, >, <=, <, =, ^, ~, x, || and spaces. */
export function satisfies(v, range) {
  const ver = parse(v);
  return range.split('||').some((alt) => {
    const parts = alt.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1').split(/\s+/).filter(Boolean);
    if (parts.length === 3 && parts[1] === '-') return cmp(ver, parse(parts[0])) >= 0 && cmp(ver, parse(parts[2])) <= 0;
    return parts.every((p) => {
      const m = /^(>=|<=|>|<|=|\^|~)?v?([0-9x*]+)(?:\.([0-9x*]+))?(?:\.([0-9x*]+))?/.exec(p);
      if (!m) throw new Error(`range ${range}: cannot read ${p}`);
      const op = m[1] ?? '';
      const nums = [m[2], m[3], m[4]];
      const fixed = nums.findIndex((n) => n === undefined || n === 'x' || n === '*');
      const n = fixed < 0 ? 3 : fixed; // how many parts are given
      const base = nums.slice(0, n).map(Number);
      if (n === 0) return true; // * or x
      if (op === '' || op === '=') {
        return base.every((x, i) => ver[i] === x);
      }
      if (op === '^' || op === '~') {
        if (cmp(ver, base) < 0) return false;
        // ^1.2.3 < 2.0.0, ^0.2.3 < 0.3.0; ~1.2.3 < 1.3.0, ~1 < 2.0.0
        let k = op === '~' ? Math.min(n - 1, 1) : base.findIndex((x) => x !== 0);
        if (k < 0) k = n - 1;
        const upper = [...base.slice(0, k), base[k] + 1, 0, 0].slice(0, 3);
        return cmp(ver, upper) < 0;
      }
      const c = cmp(ver, base);
      return { '>=': c >= 0, '>': c > 0, '<=': c <= 0, '<': c < 0 }[op];
    });
  });
}

test('the range check reads npm ranges as npm does', () => {
  assert.equal(satisfies('20.20.2', '>=22.0.0'), false);
  assert.equal(satisfies('22.1.0', '>=22.0.0'), true);
  assert.equal(satisfies('20.20.2', '>= 14.6'), true);
  assert.equal(satisfies('20.20.2', '^18.17.0 || >=20.5.0'), true);
  assert.equal(satisfies('19.0.0', '^18.17.0 || >=20.5.0'), false);
  assert.equal(satisfies('20.20.2', '>=14 <20'), false);
  assert.equal(satisfies('20.20.2', '~20.20.0'), true);
  assert.equal(satisfies('20.20.2', '*'), true);
  assert.equal(satisfies('20.20.2', '20.x'), true);
});

test('the installed Node.js satisfies the engines of every test package', () => {
  const pkgs = [];
  const walk = (dir) => {
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      const p = path.join(dir, name);
      if (name.startsWith('@')) { walk(p); continue; }
      const manifest = path.join(p, 'package.json');
      if (fs.existsSync(manifest)) pkgs.push(JSON.parse(fs.readFileSync(manifest, 'utf8')));
      const nested = path.join(p, 'node_modules');
      if (fs.existsSync(nested)) walk(nested);
    }
  };
  walk(modules);
  const openai = pkgs.find((p) => p.name === 'openai');
  assert.ok(openai, 'the openai SDK is installed (deploy/install-deps.sh)');
  const pinned = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test', 'package.json'), 'utf8')).dependencies.openai;
  assert.equal(openai.version, pinned, 'the installed SDK is the pinned one (npm ci in test/)');
  const bad = pkgs.filter((p) => p.engines?.node && !satisfies(process.version, p.engines.node))
    .map((p) => `${p.name}@${p.version} needs node ${p.engines.node}`);
  assert.deepEqual(bad, [], `node ${process.version} is too old or too new for: ${bad.join(', ')}`);
});
