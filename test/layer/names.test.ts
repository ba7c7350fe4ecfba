/**
 * Tar names are bytes: Latin-1 (and any other non-UTF-8) names, as GNU tar writes them for old
 * packages, are applied with exactly those bytes, as Go's archive/tar (umoci, containerd) does,
 * through every kind of entry; errors name such entries readably.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getAttributeSync } from '@napi-rs/xattr';
import { applyLayer } from '../../src/layer/index.js';
import { dir, fifo, file, hardlink, symlink, tarStream, whiteout, writeChecksum, type Entry } from '../helpers/tar.js';
import { apply, applyFails, sandbox, type Sandbox } from './util.js';

const L = (s: string) => Buffer.from(s, 'latin1');
/** `s` with its bytes as Latin-1, for a helper entry: the header is rewritten with those bytes. */
function latin1(e: Entry, name: string, linkname?: string): Entry {
  return {
    ...e,
    name: 'x'.repeat(L(name).length),
    ...(linkname !== undefined ? { linkname: 'y'.repeat(L(linkname).length) } : {}),
    mutate: (b) => {
      L(name).copy(b, 0);
      if (linkname !== undefined) L(linkname).copy(b, 157);
      writeChecksum(b);
    },
  };
}
/** A host path under `base` whose tail is Latin-1 bytes. */
const hostPath = (base: string, tail: string) => Buffer.concat([Buffer.from(base + '/'), L(tail)]);

let sb: Sandbox;
test.before.each(() => {
  sb = sandbox();
});
test.after.each(() => sb.cleanup());

test('Latin-1 names: files, directories, symlinks (name and target), hardlinks, fifos, xattrs, whiteouts', async () => {
  await apply(sb, [
    latin1(dir('r\xe9p/', { mode: 0o750, mtime: 1000 }), 'r\xe9p/'),
    latin1(file('f', 'donn\xe9es', { pax: { 'SCHILY.xattr.user.k': 'v' } }), 'r\xe9p/caf\xe9'),
    latin1(symlink('s', 't'), 'lien', 'r\xe9p/caf\xe9'),
    latin1(hardlink('h', 't'), 'dur', 'r\xe9p/caf\xe9'),
    latin1(fifo('p'), 'r\xe9p/tub\xe9'),
    file('ünïcode', 'utf-8 names are unchanged'),
    latin1(file('g', 'x'), 'r\xe9p/d\xe9j\xe0'),
  ]);
  const names = readdirSync(L(join(sb.root, 'r\xe9p')) as unknown as string, { encoding: 'buffer' }).map((b) => b.toString('latin1')).sort();
  assert.equal(names, ['caf\xe9', 'd\xe9j\xe0', 'tub\xe9']);
  assert.is(readFileSync(join(sb.root, 'ünïcode'), 'utf8'), 'utf-8 names are unchanged');
  const cafe = hostPath(sb.root, 'r\xe9p/caf\xe9');
  assert.is(readFileSync(cafe, 'utf8'), 'donn\xe9es');
  assert.is(readlinkSync(hostPath(sb.root, 'lien'), { encoding: 'buffer' }).toString('latin1'), 'r\xe9p/caf\xe9');
  assert.is(lstatSync(hostPath(sb.root, 'dur')).ino, lstatSync(cafe).ino);
  assert.ok(lstatSync(hostPath(sb.root, 'r\xe9p/tub\xe9')).isFIFO());
  const st = lstatSync(hostPath(sb.root, 'r\xe9p'));
  assert.is(st.mode & 0o7777, 0o750);
  assert.is(st.mtimeMs, 1_000_000);
  // no temporary name is left behind at the top
  assert.equal(readdirSync(sb.root).filter((n) => n.startsWith('.ocivirt-tmp')), []);
  // a second layer whites out a Latin-1 name
  await apply(sb, [latin1(whiteout('', 'x'), 'r\xe9p/.wh.d\xe9j\xe0')]);
  assert.is(lstatSync(hostPath(sb.root, 'r\xe9p/d\xe9j\xe0'), { throwIfNoEntry: false }), undefined);
});

test('the xattr of a Latin-1 file is set on that file', async () => {
  await apply(sb, [latin1(file('f', 'x', { pax: { 'SCHILY.xattr.user.k': 'v' } }), 'caf\xe9')]);
  const plain = join(sb.root, 'plain'); // a UTF-8 name for the same inode, for the xattr binding
  linkSync(hostPath(sb.root, 'caf\xe9'), plain);
  assert.is(getAttributeSync(plain, 'user.k')?.toString(), 'v');
});

test('GNU tar with a Latin-1 file name (made through a Buffer path) applies with the same bytes', async () => {
  const src = join(sb.base, 'src');
  mkdirSync(src);
  writeFileSync(hostPath(src, 'r\xe9sum\xe9.txt'), 'cv');
  mkdirSync(hostPath(src, '\xc9t\xe9'));
  writeFileSync(hostPath(src, '\xc9t\xe9/plage'), 'sable');
  const out = join(sb.base, 'out');
  mkdirSync(out);
  await applyLayer(out, tarStream(execFileSync('tar', ['-C', src, '--format=gnu', '-cf', '-', '.'])), { layer: 'gnu' });
  assert.is(readFileSync(hostPath(out, 'r\xe9sum\xe9.txt'), 'utf8'), 'cv');
  assert.is(readFileSync(hostPath(out, '\xc9t\xe9/plage'), 'utf8'), 'sable');
});

test('an error in a Latin-1 entry names it (readably), not the entry before', async () => {
  const e = await applyFails(sb, [file('first', 'x'), latin1(file('a', 'x'), 'caf\xe9'), latin1(file('z', 'y'), 'caf\xe9/plat')]);
  assert.match(e.reason, /is not a directory/);
  assert.is(e.field, 'caf\xe9/plat');
});

test.run();
