import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readlinkSync, readdirSync, writeFileSync, mkdirSync, symlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { sandbox, apply, applyFails, type Sandbox } from './util.js';
import { file, dir, symlink, hardlink, fifo, chardev, whiteout, opaque, gnuSparse, paxSparse, tar, tarStream, writeChecksum } from '../helpers/tar.js';
import { applyLayer } from '../../src/layer/index.js';

let sb: Sandbox;
test.before.each(() => {
  sb = sandbox();
});
test.after.each(() => sb.cleanup());

const p = (rel: string) => join(sb.root, rel);
const read = (rel: string) => readFileSync(p(rel), 'utf8');
const ls = (rel: string) => readdirSync(p(rel)).sort();

test('regular files: content, mode, owner, mtime; stats', async () => {
  const stats = await apply(sb, [dir('etc'), file('etc/hosts', 'hello\n', { mode: 0o640, uid: 12, gid: 34, mtime: 1234567890 })]);
  const st = lstatSync(p('etc/hosts'));
  assert.is(read('etc/hosts'), 'hello\n');
  assert.is(st.mode & 0o7777, 0o640);
  assert.is(st.uid, 12);
  assert.is(st.gid, 34);
  assert.is(st.mtimeMs, 1234567890000);
  assert.is(stats.entries, 2);
  assert.is(stats.files, 1);
  assert.is(stats.dirs, 1);
  assert.is(stats.bytes, tar([dir('etc'), file('etc/hosts', 'hello\n')]).length);
});

test('setuid, setgid and sticky survive the ownership change (mode applied after lchown)', async () => {
  await apply(sb, [
    file('bin/su', 'x', { mode: 0o4755, uid: 1000, gid: 1000 }),
    file('bin/wall', 'x', { mode: 0o2755, uid: 0, gid: 5 }),
    dir('tmp', { mode: 0o1777 }),
    dir('srv', { mode: 0o2775, uid: 7, gid: 8 }),
  ]);
  assert.is(lstatSync(p('bin/su')).mode & 0o7777, 0o4755);
  assert.is(lstatSync(p('bin/su')).uid, 1000);
  assert.is(lstatSync(p('bin/wall')).mode & 0o7777, 0o2755);
  assert.is(lstatSync(p('tmp')).mode & 0o7777, 0o1777);
  assert.is(lstatSync(p('srv')).mode & 0o7777, 0o2775);
  assert.is(lstatSync(p('srv')).gid, 8);
});

test('missing parents are created as root-owned 0755 directories', async () => {
  await apply(sb, [file('a/b/c', 'x')]);
  assert.is(lstatSync(p('a/b')).mode & 0o7777, 0o755);
  assert.ok(lstatSync(p('a/b')).isDirectory());
});

test('whiteout removes a lower file', async () => {
  await apply(sb, [file('etc/a', '1'), file('etc/b', '2')]);
  const stats = await apply(sb, [whiteout('etc', 'a')]);
  assert.equal(ls('etc'), ['b']);
  assert.is(stats.whiteouts, 1);
});

test('whiteout removes a lower directory with its subtree', async () => {
  await apply(sb, [file('var/cache/apt/x', '1'), file('var/cache/apt/y/z', '2')]);
  await apply(sb, [whiteout('var/cache', 'apt')]);
  assert.equal(ls('var/cache'), []);
});

test('whiteout after a same-layer entry: the entry survives', async () => {
  await apply(sb, [file('etc/a', 'lower')]);
  await apply(sb, [file('etc/a', 'upper'), whiteout('etc', 'a')]);
  assert.is(read('etc/a'), 'upper');
});

test('whiteout before a same-layer entry: the entry survives', async () => {
  await apply(sb, [file('etc/a', 'lower')]);
  await apply(sb, [whiteout('etc', 'a'), file('etc/a', 'upper')]);
  assert.is(read('etc/a'), 'upper');
});

test('whiteout of a directory the same layer adds to: lower children go, new ones stay', async () => {
  await apply(sb, [file('d/old', '1')]);
  await apply(sb, [file('d/new', '2'), whiteout('', 'd')]);
  assert.equal(ls('d'), ['new']);
});

test('whiteouts inside directories this layer created spare their entries', async () => {
  await apply(sb, [file('x', 'lower file')]);
  await apply(sb, [dir('x'), file('x/a', 'a'), dir('n'), dir('n/m'), file('n/m/b', 'b'), whiteout('n/m', 'b'), whiteout('', 'x'), opaque('n')]);
  assert.equal(ls('x'), ['a']);
  assert.equal(ls('n/m'), ['b']);
});

test('a whiteout of a lower directory the layer only re-declares removes its lower children', async () => {
  await apply(sb, [file('d/old', '1'), file('d/sub/older', '2')]);
  await apply(sb, [dir('d'), file('d/new', 'n'), whiteout('', 'd')]);
  assert.equal(ls('d'), ['new']);
});

test('whiteout of something absent is a no-op', async () => {
  await apply(sb, [whiteout('nothing/here', 'x'), whiteout('', 'y')]);
  assert.equal(ls(''), []);
});

for (const order of ['opaque first', 'opaque last', 'opaque between']) {
  test(`opaque directory (${order}): lower children go, same-layer children stay`, async () => {
    await apply(sb, [file('d/a', '1'), file('d/sub/b', '2'), file('keep', 'k')]);
    const entries = {
      'opaque first': [dir('d'), opaque('d'), file('d/c', '3'), file('d/sub/e', '4')],
      'opaque last': [dir('d'), file('d/c', '3'), file('d/sub/e', '4'), opaque('d')],
      'opaque between': [file('d/c', '3'), opaque('d'), file('d/sub/e', '4')],
    }[order]!;
    await apply(sb, entries);
    assert.equal(ls('d'), ['c', 'sub']);
    assert.equal(ls('d/sub'), ['e']);
    assert.is(read('keep'), 'k');
  });
}

test('type replacement across layers: file -> dir -> symlink -> file', async () => {
  await apply(sb, [file('x', 'file')]);
  await apply(sb, [dir('x'), file('x/child', 'c')]);
  assert.ok(lstatSync(p('x')).isDirectory());
  await apply(sb, [symlink('x', '/etc')]);
  assert.is(readlinkSync(p('x')), '/etc');
  await apply(sb, [file('x', 'again')]);
  assert.is(read('x'), 'again');
});

test('a lower symlink to a directory is replaced by a directory entry, its target untouched', async () => {
  await apply(sb, [file('real/f', 'r'), symlink('lib', 'real')]);
  await apply(sb, [dir('lib'), file('lib/g', 'g')]);
  assert.ok(lstatSync(p('lib')).isDirectory());
  assert.equal(ls('real'), ['f']);
  assert.equal(ls('lib'), ['g']);
});

test('a parent symlink inside the root is followed, scoped to the root', async () => {
  await apply(sb, [dir('usr/lib'), symlink('lib', '/usr/lib')]);
  await apply(sb, [file('lib/libc.so', 'c')]);
  assert.is(read('usr/lib/libc.so'), 'c');
});

test('hardlinks within a layer share the inode', async () => {
  const stats = await apply(sb, [file('bin/a', 'same', { mode: 0o755 }), hardlink('bin/b', 'bin/a'), hardlink('/bin/c', '/bin/a')]);
  assert.is(lstatSync(p('bin/a')).ino, lstatSync(p('bin/b')).ino);
  assert.is(lstatSync(p('bin/c')).ino, lstatSync(p('bin/a')).ino);
  assert.is(lstatSync(p('bin/a')).nlink, 3);
  assert.is(stats.hardlinks, 2);
});

test('hardlinks across layers link to the lower inode; rewriting the target later splits them', async () => {
  await apply(sb, [file('a', 'lower')]);
  await apply(sb, [hardlink('b', 'a')]);
  assert.is(lstatSync(p('a')).ino, lstatSync(p('b')).ino);
  await apply(sb, [file('a', 'new')]);
  assert.is(read('a'), 'new');
  assert.is(read('b'), 'lower');
});

test('hardlink to a symlink links the symlink itself', async () => {
  await apply(sb, [symlink('s', '/etc/passwd'), hardlink('h', 's')]);
  assert.ok(lstatSync(p('h')).isSymbolicLink());
  assert.is(lstatSync(p('h')).ino, lstatSync(p('s')).ino);
});

test('hardlinks to directories and to missing targets are refused', async () => {
  let e = await applyFails(sb, [dir('d'), hardlink('l', 'd')]);
  assert.is(e.field, 'l');
  assert.match(e.reason, /is a directory/);
  e = await applyFails(sb, [hardlink('l2', 'nope')]);
  assert.match(e.reason, /does not exist/);
});

test('xattrs from PAX records, incl. security.capability; refused namespaces warn', async () => {
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  await apply(sb, [
    file('bin/ping', 'x', {
      mode: 0o755,
      uid: 0,
      pax: {
        'SCHILY.xattr.security.capability': cap,
        'SCHILY.xattr.user.note': 'hi',
        'SCHILY.xattr.trusted.overlay.opaque': 'y',
        'SCHILY.xattr.security.selinux': 'system_u:object_r:bin_t:s0',
      },
    }),
  ]);
  assert.equal(getAttributeSync(p('bin/ping'), 'security.capability'), cap);
  assert.is(getAttributeSync(p('bin/ping'), 'user.note')?.toString(), 'hi');
  assert.is(getAttributeSync(p('bin/ping'), 'trusted.overlay.opaque'), null);
  assert.is(getAttributeSync(p('bin/ping'), 'security.selinux')?.toString().includes('bin_t') ?? false, false);
  assert.ok(sb.warnings.some((w) => w.includes('trusted.overlay.opaque')));
  assert.ok(sb.warnings.some((w) => w.includes('security.selinux')));
});

test('libarchive xattr records (URL-encoded name, base64 value)', async () => {
  await apply(sb, [file('f', 'x', { pax: { 'LIBARCHIVE.xattr.user.a%20b': Buffer.from('value').toString('base64') } })]);
  assert.is(getAttributeSync(p('f'), 'user.a b')?.toString(), 'value');
  const e = await applyFails(sb, [file('g', 'x', { pax: { 'LIBARCHIVE.xattr.user.%E0%A4%A': 'eA==' } })]);
  assert.match(e.reason, /malformed LIBARCHIVE.xattr name/);
});

test('security.capability survives a later chown: xattrs are set after ownership', async () => {
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  await apply(sb, [file('bin/x', 'x', { uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.security.capability': cap } })]);
  assert.equal(getAttributeSync(p('bin/x'), 'security.capability'), cap);
});

test('a directory kept from a lower layer takes the xattrs of the new entry', async () => {
  await apply(sb, [dir('d', { pax: { 'SCHILY.xattr.user.old': '1' } })]);
  await apply(sb, [dir('d', { pax: { 'SCHILY.xattr.user.new': '2' } })]);
  assert.is(getAttributeSync(p('d'), 'user.old'), null);
  assert.is(getAttributeSync(p('d'), 'user.new')?.toString(), '2');
});

test('xattrs on a symlink are set on the link, never on its target', async () => {
  writeFileSync(join(sb.base, 'outside'), 'o');
  await apply(sb, [file('t', 't'), symlink('l', '/t', { pax: { 'SCHILY.xattr.trusted.x': 'a', 'SCHILY.xattr.user.y': 'b' } })]);
  assert.is(getAttributeSync(p('t'), 'user.y'), null);
  assert.ok(sb.warnings.some((w) => w.includes('user.y')), 'user.* on a symlink is not possible on Linux: warned');
});

test('fifos are created with mode and owner', async () => {
  const stats = await apply(sb, [fifo('run/initctl', { mode: 0o600, uid: 5, gid: 6 })]);
  const st = lstatSync(p('run/initctl'));
  assert.ok(st.isFIFO());
  assert.is(st.mode & 0o7777, 0o600);
  assert.is(st.uid, 5);
  assert.is(stats.fifos, 1);
});

test('device nodes are skipped with a warning by default', async () => {
  await apply(sb, [file('dev/keep', 'k')]);
  const stats = await apply(sb, [chardev('dev/mem', 1, 1), chardev('dev/keep', 1, 3)]);
  assert.not.ok(existsSync(p('dev/mem')));
  assert.is(read('dev/keep'), 'k', 'a skipped device does not remove what was there');
  assert.is(stats.skippedDevices, 2);
  assert.ok(sb.warnings.some((w) => w.includes('dev/mem') && w.includes('skipped')));
});

test('device nodes are created when allowed', async () => {
  const stats = await apply(sb, [chardev('dev/null', 1, 3, { mode: 0o666 }), { name: 'dev/loop0', type: '4', devmajor: 7, devminor: 0, mode: 0o660 }], { allowDevices: true });
  const st = lstatSync(p('dev/null'));
  assert.ok(st.isCharacterDevice());
  assert.is(st.rdev, (1 << 8) | 3);
  assert.is(st.mode & 0o7777, 0o666);
  assert.ok(lstatSync(p('dev/loop0')).isBlockDevice());
  assert.is(stats.devices, 2);
});

test('long names: PAX path and linkpath, GNU L and K, ustar prefix', async () => {
  const long = 'd'.repeat(120) + '/' + 'e'.repeat(150) + '/' + 'f'.repeat(200);
  const long2 = 'g'.repeat(130) + '/' + 'h'.repeat(140);
  const target = '/' + 't'.repeat(180);
  await apply(sb, [
    file('x', '', { pax: { path: long } }),
    file('x', 'gnu', { longName: long2 }),
    symlink('s', 'ignored', { longName: 'l'.repeat(150), longLink: target }),
    symlink('s2', 'ignored', { pax: { linkpath: target } }),
    file('name-in-field', 'ustar', { prefix: 'p'.repeat(150) }),
  ]);
  assert.ok(lstatSync(p(long)).isFile());
  assert.is(read(long2), 'gnu');
  assert.is(readlinkSync(p('l'.repeat(150))), target);
  assert.is(readlinkSync(p('s2')), target);
  assert.is(read('p'.repeat(150) + '/name-in-field'), 'ustar');
});

test('duplicate entries: the last one wins, whatever the types', async () => {
  await apply(sb, [file('a', '1'), file('a', '2'), file('b', 'f'), dir('b'), file('b/c', 'c'), dir('c'), file('c/x', 'x'), file('c', 'file'), symlink('d', '/a'), file('d', 'real')]);
  assert.is(read('a'), '2');
  assert.equal(ls('b'), ['c']);
  assert.is(read('c'), 'file');
  assert.not.ok(lstatSync(p('d')).isSymbolicLink());
  assert.is(read('d'), 'real');
  assert.is(read('a'), '2', 'the old symlink d was replaced, not followed');
});

test('directory times are set after their children, lower directories keep theirs', async () => {
  await apply(sb, [dir('lower', { mtime: 1000000000 })]);
  await apply(sb, [dir('d', { mtime: 1500000000, mode: 0o555 }), file('d/a', 'a'), dir('d/sub', { mtime: 1400000000 }), file('d/sub/b', 'b'), file('lower/new', 'n')]);
  assert.is(lstatSync(p('d')).mtimeMs, 1500000000000);
  assert.is(lstatSync(p('d')).mode & 0o7777, 0o555);
  assert.is(lstatSync(p('d/sub')).mtimeMs, 1400000000000);
  assert.is(lstatSync(p('lower')).mtimeMs, 1000000000000);
});

test('symlink times are set on the link (lutimes)', async () => {
  await apply(sb, [file('t', 't', { mtime: 1000 }), symlink('l', 't', { mtime: 2000 })]);
  assert.is(lstatSync(p('l')).mtimeMs, 2000000);
  assert.is(lstatSync(p('t')).mtimeMs, 1000000);
});

test('PAX mtime with a fraction', async () => {
  await apply(sb, [file('f', 'x', { pax: { mtime: '1600000000.25' } })]);
  assert.is(lstatSync(p('f')).mtimeMs, 1600000000250);
});

test('pre-1970 mtimes: GNU base-256 (ours and GNU tar\'s, from touch -d 1960-01-01) and PAX', async () => {
  const t1960 = -315619200;
  await apply(sb, [file('ours', 'x', { mtime: t1960 }), dir('d/', { mtime: -1 }), file('pax', 'x', { pax: { mtime: '-86400.5' } })]);
  assert.is(lstatSync(p('ours')).mtimeMs, t1960 * 1000);
  assert.is(lstatSync(p('d')).mtimeMs, -1000);
  assert.is(lstatSync(p('pax')).mtimeMs, -86400500);
  const src = join(sb.base, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'old'), 'sixties');
  execFileSync('touch', ['-d', '1960-01-01 00:00:00 UTC', join(src, 'old')]);
  const out = join(sb.base, 'out');
  mkdirSync(out);
  await applyLayer(out, tarStream(execFileSync('tar', ['-C', src, '--format=gnu', '-cf', '-', 'old'])), { layer: 'gnu' });
  assert.is(lstatSync(join(out, 'old')).mtimeMs, t1960 * 1000);
});

test('a bad field in a header names that entry, not the one before', async () => {
  const bad = file('second', 'x', { mutate: (b) => { b.write('9', 100, 'latin1'); writeChecksum(b); } });
  const e = await applyFails(sb, [file('first', 'x'), bad]);
  assert.match(e.reason, /invalid mode in header/);
  assert.is(e.field, 'second');
});

test('v7 archives: a type-NUL entry with a trailing slash is a directory', async () => {
  await apply(sb, [{ name: 'olddir/', type: '\0', mode: 0o750 }, { name: 'olddir/f', type: '\0', data: 'v7' }]);
  assert.ok(lstatSync(p('olddir')).isDirectory());
  assert.is(lstatSync(p('olddir')).mode & 0o7777, 0o750);
  assert.is(read('olddir/f'), 'v7');
});

test('absolute names and ./ prefixes are taken relative to the rootfs', async () => {
  await apply(sb, [file('/etc/abs', 'a'), file('./etc/dot', 'd'), file('//etc///x', 'x')]);
  assert.equal(ls('etc'), ['abs', 'dot', 'x']);
});

test('the root entry ./ sets the rootfs metadata', async () => {
  await apply(sb, [dir('./', { mode: 0o751, mtime: 1000 }), file('f', '')]);
  assert.is(lstatSync(sb.root).mode & 0o7777, 0o751);
  assert.is(lstatSync(sb.root).mtimeMs, 1000000);
});

test('sparse files: old GNU (with extension blocks) and PAX 1.0 from our writer', async () => {
  const segs: [number, Buffer][] = [];
  for (let i = 0; i < 30; i++) segs.push([i * 8192, Buffer.from(`seg${i}`)]);
  await apply(sb, [gnuSparse('g', 1 << 20, segs), paxSparse('p', 1 << 20, segs)]);
  for (const name of ['g', 'p']) {
    const buf = readFileSync(p(name));
    assert.is(buf.length, 1 << 20);
    for (const [off, d] of segs) assert.equal(buf.subarray(off, off + d.length), d);
    assert.is(buf.subarray(8, 8192).every((b) => b === 0), true);
  }
});

for (const format of ['gnu', 'posix']) {
  test(`sparse files written by GNU tar --sparse --format=${format} come out identical`, async () => {
    const src = join(sb.base, 'src');
    mkdirSync(src);
    const fd = join(src, 'holes');
    writeFileSync(fd, '');
    execFileSync('truncate', ['-s', '10M', fd]);
    execFileSync('dd', ['if=/dev/urandom', `of=${fd}`, 'bs=4096', 'count=3', 'seek=100', 'conv=notrunc'], { stdio: 'ignore' });
    execFileSync('dd', ['if=/dev/urandom', `of=${fd}`, 'bs=4096', 'count=1', 'seek=2000', 'conv=notrunc'], { stdio: 'ignore' });
    const archive = execFileSync('tar', ['-C', src, '--sparse', `--format=${format}`, '-cf', '-', 'holes'], { maxBuffer: 64 << 20 });
    await applyLayer(sb.root, tarStream(archive, 65536), { layer: 'gnu-tar' });
    assert.equal(readFileSync(p('holes')), readFileSync(fd));
  });
}

test('GNU tar archives with long names, hardlinks and a fifo apply like GNU tar extracts them', async () => {
  const src = join(sb.base, 'src');
  const deep = join(src, 'a'.repeat(90), 'b'.repeat(90), 'c'.repeat(90));
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, 'f'.repeat(120)), 'long');
  execFileSync('ln', [join(deep, 'f'.repeat(120)), join(src, 'hl')]);
  symlinkSync('x'.repeat(200), join(src, 'sl'));
  execFileSync('mkfifo', [join(src, 'ff')]);
  for (const format of ['gnu', 'posix']) {
    const archive = execFileSync('tar', ['-C', src, `--format=${format}`, '-cf', '-', '.']);
    const out = join(sb.base, `out-${format}`);
    mkdirSync(out);
    await applyLayer(out, tarStream(archive), { layer: format });
    assert.is(readFileSync(join(out, deep.slice(src.length), 'f'.repeat(120)), 'utf8'), 'long');
    assert.is(lstatSync(join(out, 'hl')).nlink, 2);
    assert.is(readlinkSync(join(out, 'sl')), 'x'.repeat(200));
    assert.ok(lstatSync(join(out, 'ff')).isFIFO());
  }
});

test('progress reports the bytes read; warnings name the layer', async () => {
  const seen: number[] = [];
  const layer = [file('big', Buffer.alloc(300_000, 1)), chardev('dev/x', 1, 1)];
  await apply(sb, layer, { onProgress: (n) => seen.push(n), layer: 'sha256:abc' });
  assert.is(seen[seen.length - 1], tar(layer).length);
  assert.ok(seen.length > 1);
  assert.ok(sb.warnings[0]?.startsWith('sha256:abc: dev/x:'));
});

test('a file larger than the in-flight window streams through intact (backpressure)', async () => {
  const big = Buffer.alloc(24 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
  await applyLayer(sb.root, tarStream(tar([file('big', big)]), 1 << 16), { layer: 'big' });
  assert.ok(readFileSync(p('big')).equals(big));
});

test('an error of the input stream (e.g. a bad gzip) rejects with that error', async () => {
  const bytes = tar([file('a', Buffer.alloc(100_000, 7))]);
  async function* failing() {
    yield bytes.subarray(0, 4096);
    throw new Error('unexpected end of gzip data');
  }
  const { Readable } = await import('node:stream');
  try {
    await applyLayer(sb.root, Readable.from(failing()), { layer: 'gz' });
    assert.unreachable('should have failed');
  } catch (e) {
    assert.match((e as Error).message, /unexpected end of gzip data/);
  }
});

test('an existing xattr on a kept lower file is not touched by an unrelated layer', async () => {
  await apply(sb, [file('f', 'x')]);
  setAttributeSync(p('f'), 'user.keep', 'k');
  await apply(sb, [file('g', 'y')]);
  assert.is(getAttributeSync(p('f'), 'user.keep')?.toString(), 'k');
});

test.run();
