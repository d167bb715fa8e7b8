// make install into a staging tree (DESTDIR) with PREFIX=/usr, then check
// what a packager or an operator would: the files are where the FHS puts
// them, the installed systemd unit verifies and starts the installed binary,
// the man page renders and documents every option parrot --help lists, and
// make deb packs the same tree.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { REPO_ROOT, PARROT_BIN, cleanup, cleanEnv, makeTmpDir } from './helpers.mjs';

const T = { timeout: 300_000 };
// The build directory of the binary under test (build, build/asan, ...):
// make install must install that binary, not build another one.
const BUILD = path.relative(REPO_ROOT, path.dirname(PARROT_BIN));
const VECTORS = path.join(REPO_ROOT, 'build', 'word-vectors.bin');
let dest; // the DESTDIR
let help; // parrot --help of the binary under test

function make(args) {
  const r = spawnSync('make', ['--no-print-directory', `BUILD=${BUILD}`, ...args],
    { cwd: REPO_ROOT, encoding: 'utf8', timeout: 240_000, env: cleanEnv() });
  assert.equal(r.status, 0, `make ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Option names (--flag or file key) in parrot --help's options section. */
function helpOptions(text) {
  const opts = text.split('\n\n').find((s) => s.startsWith('options:'));
  assert.ok(opts, 'parrot --help has an options: section');
  return [...opts.matchAll(/^ {2}(\S+)\s+env (PARROT_[A-Z0-9_]+)/gm)].map((m) => ({ name: m[1], env: m[2] }));
}

before(() => {
  dest = makeTmpDir('parrot-install-');
  help = execFileSync(PARROT_BIN, ['--help'], { encoding: 'utf8', env: cleanEnv() });
  make(['install', `DESTDIR=${dest}`, 'PREFIX=/usr']);
});
after(cleanup);

const at = (p) => path.join(dest, p);

test('make install puts the binary, unit, man page and notices under DESTDIR/PREFIX', T, () => {
  const bin = at('usr/bin/parrot');
  fs.accessSync(bin, fs.constants.X_OK);
  // The usage lines name the program as it was run.
  const unnamed = (text, prog) => text.split(prog).join('parrot');
  assert.equal(unnamed(execFileSync(bin, ['--help'], { encoding: 'utf8', env: cleanEnv() }), bin),
    unnamed(help, PARROT_BIN), 'the installed binary is the one under test');
  for (const f of ['usr/lib/systemd/system/parrot.service', 'usr/share/man/man1/parrot.1',
    'usr/share/doc/parrot/LICENSE', 'usr/share/doc/parrot/NOTICE']) {
    assert.ok(fs.statSync(at(f)).isFile(), f);
    assert.equal(fs.statSync(at(f)).mode & 0o777, 0o644, `${f} is 0644`);
  }
  // The word-vector table goes along when it was built.
  assert.equal(fs.existsSync(at('usr/share/parrot/word-vectors.bin')), fs.existsSync(VECTORS));
  // Nothing outside PREFIX (a DESTDIR install must not touch /etc or /usr/local).
  assert.deepEqual(fs.readdirSync(dest), ['usr']);
  assert.deepEqual(fs.readdirSync(at('usr')).sort(), ['bin', 'lib', 'share']);
});

test('the installed unit runs the installed binary and passes systemd-analyze verify', T, () => {
  const unit = fs.readFileSync(at('usr/lib/systemd/system/parrot.service'), 'utf8');
  const exec = /^ExecStart=(\S+)(.*)$/m.exec(unit);
  assert.equal(exec[1], '/usr/bin/parrot', 'ExecStart follows PREFIX');
  assert.doesNotMatch(unit, /\/usr\/local\//, 'no /usr/local path left in a PREFIX=/usr install');
  const wv = /--word-vectors (\S+)/.exec(exec[2]);
  assert.equal(wv && wv[1], '/usr/share/parrot/word-vectors.bin', 'the unit reads the installed table');
  // The unit's arguments are a valid configuration of the installed binary.
  const args = exec[2].trim().split(/\s+/);
  const r = spawnSync(at('usr/bin/parrot'), [...args, '--print-config'], { encoding: 'utf8', env: cleanEnv() });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^word-vectors = \/usr\/share\/parrot\/word-vectors\.bin {2}# flag$/m);

  // systemd-analyze verify checks that ExecStart's binary exists on this
  // host: look at the staged unit through DESTDIR (--root would need a whole
  // systemd tree in DESTDIR for sysinit.target and friends).
  const dir = makeTmpDir('parrot-unit-');
  const staged = path.join(dir, 'parrot.service');
  fs.writeFileSync(staged, unit.replace(exec[0], `ExecStart=${at('usr/bin/parrot')}${exec[2]}`));
  const v = spawnSync('systemd-analyze', ['verify', '--man=no', staged], { encoding: 'utf8' });
  assert.ok(!v.error, `systemd-analyze is missing (deploy/install-deps.sh installs systemd): ${v.error}`);
  assert.equal(v.status, 0, `systemd-analyze verify:\n${v.stdout}${v.stderr}`);
  assert.equal(`${v.stdout}${v.stderr}`.trim(), '');
});

test('the man page renders without warnings and documents every option of parrot --help', T, () => {
  const page = at('usr/share/man/man1/parrot.1');
  const env = { ...cleanEnv(), MANWIDTH: '200', LC_ALL: 'C.UTF-8', MAN_KEEP_FORMATTING: '' };
  const r = spawnSync('man', ['--warnings', '-P', 'cat', '-l', page], { encoding: 'utf8', env });
  assert.ok(!r.error, `man is missing (deploy/install-deps.sh installs man-db): ${r.error}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'groff warnings');
  // Plain text: no overstrike, and option names with ASCII hyphens.
  const text = r.stdout.replace(/.\x08/g, '').replace(/[\u2010\u2212]/g, '-');
  for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'EXIT STATUS', 'SEE ALSO'])
    assert.match(text, new RegExp(`^${s}$`, 'm'), `section ${s}`);
  const opts = helpOptions(help);
  assert.ok(opts.length >= 30, `parsed ${opts.length} options from --help`);
  for (const { name, env: e } of opts) {
    assert.match(text, new RegExp(`^ +${name.replace(/[-]/g, '\\-')} .*${e}`, 'm'), `${name} (${e}) in the man page`);
  }
  for (const m of help.matchAll(/\[default: ([^\]]+)\]/g))
    assert.ok(text.includes(`Default: ${m[1]}`), `default ${m[1]}`);
  // whatis/apropos read the NAME line.
  const lex = execFileSync('lexgrog', [page], { encoding: 'utf8' });
  assert.match(lex, /"parrot - .*OpenAI/);
  // man finds it by name under the installed MANPATH.
  const w = execFileSync('man', ['-w', 'parrot'], { encoding: 'utf8', env: { ...env, MANPATH: at('usr/share/man') } });
  assert.equal(w.trim(), page);
});

test('make deb packs the same tree with dpkg-deb', T, (t) => {
  const r = spawnSync('dpkg-deb', ['--version'], { encoding: 'utf8' });
  if (r.error) { t.skip('dpkg-deb is not installed (not a Debian system)'); return; }
  make(['deb']);
  const debs = fs.readdirSync(path.join(REPO_ROOT, BUILD)).filter((f) => /^parrot_.*\.deb$/.test(f));
  assert.equal(debs.length >= 1, true, 'a .deb in the build directory');
  const deb = path.join(REPO_ROOT, BUILD, debs.sort((a, b) =>
    fs.statSync(path.join(REPO_ROOT, BUILD, b)).mtimeMs - fs.statSync(path.join(REPO_ROOT, BUILD, a)).mtimeMs)[0]);
  const info = execFileSync('dpkg-deb', ['--field', deb, 'Package', 'Version', 'Depends'], { encoding: 'utf8' });
  assert.match(info, /^Package: parrot$/m);
  assert.match(info, /^Version: \d+\.\d+\.\d+/m);
  assert.match(info, /libmicrohttpd12/);
  const files = execFileSync('dpkg-deb', ['--contents', deb], { encoding: 'utf8' });
  for (const f of ['./usr/bin/parrot', './usr/lib/systemd/system/parrot.service', './usr/share/man/man1/parrot.1'])
    assert.match(files, new RegExp(` ${f.replace(/\./g, '\\.')}$`, 'm'), f);
  assert.match(files, /^-rwxr-xr-x root\/root .* \.\/usr\/bin\/parrot$/m, 'owned by root');
});

test('make uninstall removes what make install put there', T, () => {
  make(['uninstall', `DESTDIR=${dest}`, 'PREFIX=/usr']);
  for (const f of ['usr/bin/parrot', 'usr/lib/systemd/system/parrot.service', 'usr/share/man/man1/parrot.1',
    'usr/share/doc/parrot', 'usr/share/parrot'])
    assert.equal(fs.existsSync(at(f)), false, f);
});
