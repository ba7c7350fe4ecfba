import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/ocivirt', import.meta.url));
const run = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8' });

test('ocivirt --help lists the commands and exits 0', () => {
  const r = run('--help');
  assert.is(r.status, 0);
  assert.match(r.stdout, /Usage: ocivirt <command>/);
});

test('no command is a usage error (exit 2)', () => {
  const r = run();
  assert.is(r.status, 2);
});

test('an unknown command exits 2 with a one-line reason', () => {
  const r = run('frobnicate');
  assert.is(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
  assert.is(r.stderr.trim().split('\n').length, 1);
});

test.run();
