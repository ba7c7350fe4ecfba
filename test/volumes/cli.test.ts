/**
 * `ocivirt volume` refuses bad usage and hostile names (exit 2, one line) before it reads the
 * spool or connects to libvirt.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
const run = (...args: string[]) => spawnSync(bin, ['volume', ...args], { encoding: 'utf8', env: { ...process.env, OCIVIRT_DEBUG: '' }, timeout: 60_000 });

test('bad usage and hostile names: exit 2 with one line, nothing read', () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown action 'frobnicate'/],
    [['remove', '--spool', '/nonexistent'], /which volume\?/],
    [['list', 'x', '--spool', '/nonexistent'], /takes no NAME/],
    [['remove', '../etc', '--spool', '/nonexistent'], /NAME: "\.\.\/etc" is not a volume name/],
    [['remove', '..', '--spool', '/nonexistent'], /NAME: "\.\." is not a volume name/],
    [['remove', 'a/b', '--spool', '/nonexistent'], /is not a volume name/],
  ];
  for (const [args, re] of cases) {
    const r = run(...args);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test.run();
