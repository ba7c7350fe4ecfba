/**
 * copyTree: a container tree or a volume seed is a copy of hostile content, so it keeps the
 * state filesystem's free-space reserve as an unpack does: refused before it starts when the
 * reserve is not there, and the copy itself otherwise as cp(1) makes it (owners, links kept).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyTree } from '../../src/fsroot/copy.js';

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocivirt-copy-'));
  mkdirSync(join(dir, 'src', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'src', 'etc', 'owned'), 'x');
  chownSync(join(dir, 'src', 'etc', 'owned'), 1000, 1001);
  symlinkSync('/etc/shadow', join(dir, 'src', 'link'));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('a copy keeps owners and copies a symlink as a symlink (never what it points at)', async () => {
  await copyTree(join(dir, 'src'), join(dir, 'dst'));
  const owned = lstatSync(join(dir, 'dst', 'etc', 'owned'));
  assert.equal([owned.uid, owned.gid], [1000, 1001]);
  assert.ok(lstatSync(join(dir, 'dst', 'link')).isSymbolicLink());
  assert.is(readlinkSync(join(dir, 'dst', 'link')), '/etc/shadow');
});

test('a copy that would go below the free-space reserve is refused, nothing copied', async () => {
  const fs = statfsSync(dir);
  const reserve = fs.bavail * fs.bsize + 1; // one byte more than there is
  let err: Error | undefined;
  await copyTree(join(dir, 'src'), join(dir, 'dst'), undefined, reserve).catch((e: Error) => (err = e));
  assert.match(err?.message ?? 'copied', /would leave less than \d+ bytes free \(unpackLimits\.minFreeBytes\)/);
  assert.not.ok(existsSync(join(dir, 'dst')));
});

test.run();
