/**
 * Hostile layers. Each case applies its lower layers (if any), takes a snapshot of the sentinel
 * tree around the rootfs, applies the hostile layer, then asserts the specific error (or, for
 * attacks we contain instead of refusing, where the write actually landed inside the rootfs), and
 * that the sentinel tree is byte-for-byte unchanged.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { applyLayer, type ApplyLayerOptions } from '../../src/layer/index.js';
import { InputError } from '../../src/errors.js';
import { MAX_TRAILING_BYTES } from '../../src/layer/tar-reader.js';
import { sandbox, apply, layerBytes, type Layer, type Sandbox } from '../layer/util.js';
import { file, dir, symlink, hardlink, whiteout, opaque, fifo, header, entryBlocks, gnuSparse, paxRecords, paxSparse, pad, tar, tarStream, writeChecksum } from '../helpers/tar.js';
import { plantSentinels, snapshot } from './sentinel.js';

interface Case {
  name: string;
  lower?: (sb: Sandbox) => Layer[];
  layer: (sb: Sandbox) => Layer;
  opts?: Partial<ApplyLayerOptions>;
  /** Apply to this path instead of the rootfs. */
  target?: (sb: Sandbox) => string;
  /** The InputError reason, or for contained attacks a check of where things landed. */
  expect: RegExp | ((sb: Sandbox) => void);
  /** The entry the error must name (default: not checked). */
  field?: string;
}

const out = (sb: Sandbox) => join(sb.base, 'outside');
const inRoot = (sb: Sandbox, rel: string) => join(sb.root, rel);
const MiB = 1024 * 1024;

const cases: Case[] = [
  // --- traversal and absolute names
  { name: 'traversal: ../ in a file name', layer: () => [file('../outside/secret', 'pwned')], expect: /contains "\.\."/, field: '../outside/secret' },
  { name: 'traversal: .. in the middle of a name', layer: () => [file('a/b/../../../outside/secret', 'pwned')], expect: /contains "\.\."/ },
  { name: 'traversal: a directory entry named ..', layer: () => [dir('..', { mode: 0o777 })], expect: /contains "\.\."/ },
  { name: 'traversal: absolute name with ..', layer: () => [file('/../outside/secret', 'pwned')], expect: /contains "\.\."/ },
  { name: 'traversal: PAX path overrides a harmless name', layer: () => [file('harmless', 'pwned', { pax: { path: '../../outside/secret' } })], expect: /contains "\.\."/ },
  { name: 'traversal: GNU long name', layer: () => [file('harmless', 'pwned', { longName: '../'.repeat(40) + 'outside/secret' })], expect: /contains "\.\."/ },
  {
    name: 'absolute host path as a name is taken inside the rootfs',
    layer: (sb) => [file(join(out(sb), 'secret'), 'pwned', { mode: 0o777 })],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, join(out(sb), 'secret')), 'utf8'), 'pwned'),
  },
  // --- symlink parents
  {
    name: 'symlink parent escape (absolute host path) in the same layer is contained',
    layer: (sb) => [symlink('esc', out(sb)), file('esc/secret', 'pwned'), dir('esc/dir', { mode: 0o777, uid: 99 })],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, join(out(sb), 'secret')), 'utf8'), 'pwned'),
  },
  {
    name: 'symlink parent escape (relative ../../..) in the same layer is contained',
    layer: () => [symlink('a/esc', '../../../../../../../../outside'), file('a/esc/secret', 'pwned')],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, 'outside/secret'), 'utf8'), 'pwned'),
  },
  {
    name: 'symlink parent escape across layers is contained',
    lower: (sb) => [[symlink('usr/lib', join(out(sb), 'dir'))]],
    layer: () => [file('usr/lib/file', 'pwned'), file('usr/lib/sub/deep', 'pwned')],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, join(out(sb), 'dir/sub/deep')), 'utf8'), 'pwned'),
  },
  {
    name: 'chained symlinks (link -> link -> outside) as parents are contained',
    lower: (sb) => [[symlink('one', '/two'), symlink('two', `../../${out(sb)}`)]],
    layer: () => [file('one/secret', 'pwned')],
    expect: (sb) => assert.ok(existsSync(inRoot(sb, join(out(sb), 'secret')))),
  },
  { name: 'symlink loop in a parent is refused', layer: () => [symlink('a', 'b'), symlink('b', 'a'), file('a/x', 'x')], expect: /too many levels of symbolic links/, field: 'a/x' },
  // --- the final component is never followed
  {
    name: 'a file over a lower symlink pointing outside replaces the link',
    lower: (sb) => [[symlink('etc/passwd', join(out(sb), 'secret'))]],
    layer: () => [file('etc/passwd', 'pwned', { mode: 0o4777 })],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'etc/passwd')).isFile()),
  },
  {
    name: 'chmod/chown through a symlink: a directory entry over a link to an outside dir',
    lower: (sb) => [[symlink('d', join(out(sb), 'dir'))]],
    layer: () => [dir('d', { mode: 0o777, uid: 4242, gid: 4242 })],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'd')).isDirectory()),
  },
  {
    name: 'chmod/chown through a symlink: a fifo over a link to an outside file',
    lower: (sb) => [[symlink('f', join(out(sb), 'suid'))]],
    layer: () => [fifo('f', { mode: 0o777, uid: 4242 })],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'f')).isFIFO()),
  },
  {
    name: 'a symlink over a lower symlink does not write through it',
    lower: (sb) => [[symlink('x', join(out(sb), 'secret'))]],
    layer: () => [symlink('x', '/somewhere-else')],
    expect: (sb) => assert.is(readlinkSync(inRoot(sb, 'x')), '/somewhere-else'),
  },
  // --- deferred directory metadata (mode and times are set after the children, at the end of the
  // layer): a later entry turns an ancestor into a symlink to the sentinels, absolute or relative
  ...deferredMetadataCases(),
  // --- hardlinks
  { name: 'hardlink target with ..', layer: () => [hardlink('h', '../outside/secret')], expect: /hardlink target contains "\.\."/, field: 'h' },
  { name: 'hardlink target as an absolute host path resolves inside the rootfs (absent)', layer: (sb) => [hardlink('h', join(out(sb), 'secret'))], expect: /does not exist/ },
  {
    name: 'hardlink target through a symlink pointing outside',
    lower: (sb) => [[symlink('esc', out(sb))]],
    layer: () => [hardlink('h', 'esc/secret')],
    expect: /does not exist/,
  },
  {
    name: 'hardlink to a symlink pointing outside links the symlink, and a later write replaces it',
    layer: (sb) => [symlink('s', join(out(sb), 'secret')), hardlink('h', 's'), file('h', 'pwned')],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, 'h'), 'utf8'), 'pwned'),
  },
  { name: 'hardlink to a directory', layer: () => [dir('d'), hardlink('h', 'd')], expect: /is a directory/ },
  { name: 'hardlink to the rootfs itself', layer: () => [hardlink('h', './')], expect: /hardlink to the rootfs itself/ },
  // --- whiteouts
  { name: 'malformed whiteout ".wh."', layer: () => [file('etc/.wh.')], expect: /malformed whiteout/, field: 'etc/.wh.' },
  { name: 'malformed whiteout ".wh.."', layer: () => [file('etc/.wh..')], expect: /malformed whiteout/ },
  { name: 'malformed whiteout ".wh..." (would remove the parent)', layer: () => [file('etc/.wh...')], expect: /malformed whiteout/ },
  { name: 'malformed whiteout at the top ".wh..." (would remove the rootfs\'s parent)', layer: () => [file('.wh...')], expect: /malformed whiteout/ },
  { name: 'reserved whiteout prefix ".wh..wh.x"', layer: () => [file('etc/.wh..wh.x')], expect: /reserved/ },
  {
    name: 'whiteout through a symlink pointing outside is contained',
    lower: (sb) => [[symlink('esc', out(sb))]],
    layer: () => [whiteout('esc', 'secret'), whiteout('esc', 'dir')],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'esc')).isSymbolicLink()),
  },
  {
    name: 'whiteout through a relative symlink climbing out only hits the rootfs',
    lower: () => [[file('outside/secret', 'in-root'), symlink('a/up', '../../../..')]],
    layer: () => [whiteout('a/up', 'outside')],
    expect: (sb) => assert.not.ok(existsSync(inRoot(sb, 'outside'))),
  },
  {
    name: 'opaque marker through a symlink pointing outside is contained',
    lower: (sb) => [[symlink('esc', join(out(sb), 'dir'))]],
    layer: () => [opaque('esc')],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'esc')).isSymbolicLink()),
  },
  {
    name: 'replacing a lower directory that holds a symlink to an outside dir removes the link, not its target',
    lower: (sb) => [[dir('d'), symlink('d/link', join(out(sb), 'dir')), symlink('d/abs', '/')]],
    layer: () => [file('d', 'now a file')],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, 'd'), 'utf8'), 'now a file'),
  },
  {
    name: 'whiteout of a lower directory holding a symlink to an outside dir',
    lower: (sb) => [[dir('d'), symlink('d/link', join(out(sb), 'dir'))]],
    layer: () => [whiteout('', 'd')],
    expect: (sb) => assert.not.ok(existsSync(inRoot(sb, 'd'))),
  },
  {
    name: 'opaque marker in a lower directory holding a relative symlink that climbs out',
    lower: () => [[dir('d'), symlink('d/up', '../../../outside'), file('d/f', 'x')]],
    layer: () => [opaque('d')],
    expect: (sb) => assert.equal(readdirSync(inRoot(sb, 'd')), []),
  },
  {
    name: 'a file over a hardlink to a lower file replaces the name, not the shared inode',
    lower: () => [[file('etc/shadow', 'root:*:'), hardlink('x', 'etc/shadow')]],
    layer: () => [file('x', 'pwned')],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, 'etc/shadow'), 'utf8'), 'root:*:'),
  },
  // --- the root itself
  { name: 'non-directory root: "./" as a file', layer: () => [file('./', 'x')], expect: /type of the rootfs itself/ },
  { name: 'non-directory root: "." as a symlink to outside', layer: (sb) => [symlink('.', out(sb))], expect: /type of the rootfs itself/ },
  { name: 'non-directory root: "/" as a hardlink', layer: () => [file('a'), hardlink('/', 'a')], expect: /type of the rootfs itself/ },
  {
    name: 'rootfs path is a symlink to an outside directory',
    target: (sb) => {
      symlinkSync(out(sb), join(sb.base, 'rootlink'));
      return join(sb.base, 'rootlink');
    },
    layer: () => [file('secret', 'pwned')],
    expect: /rootfs is not a directory/,
  },
  { name: 'rootfs path is a file', target: (sb) => join(out(sb), 'secret'), layer: () => [file('x', 'pwned')], expect: /rootfs is not a directory/ },
  { name: 'a parent that is a file', layer: () => [file('f', 'x'), file('f/child', 'y')], expect: /is not a directory/ },
  // --- broken streams
  { name: 'truncated inside file data', layer: () => tar([file('a', Buffer.alloc(5000, 1))]).subarray(0, 2048), expect: /truncated/ },
  { name: 'truncated inside a header', layer: () => tar([file('a', 'x'), file('b', 'y')]).subarray(0, 1024 + 100), expect: /truncated/ },
  // no end-of-archive blocks is accepted (umoci insert writes layers so), a cut entry is not
  {
    name: 'no end-of-archive block and the last entry cut inside its data',
    layer: () => tar([file('a', 'x'), file('b', Buffer.alloc(3000, 1))], { endBlocks: 0 }).subarray(0, 4 * 512 + 100),
    expect: /truncated: the stream ends inside an entry/,
  },
  {
    name: 'no end-of-archive block and a header cut short',
    layer: () => tar([file('a', 'x'), file('b', 'y')], { endBlocks: 0 }).subarray(0, 2 * 512 + 511),
    expect: /truncated: the stream ends inside an entry/,
  },
  {
    name: 'no end-of-archive block, garbage after the last entry',
    layer: () => Buffer.concat([tar([file('a', 'x')], { endBlocks: 0 }), Buffer.alloc(512, 0x41)]),
    expect: /bad checksum/,
  },
  { name: 'truncated after a PAX header', layer: () => entryBlocks({ ...file('a', 'x'), pax: { path: 'b' } }).subarray(0, 1024), expect: /truncated/ },
  {
    name: 'bomb: gigabytes of zero padding after the end-of-archive block stop at the trailing limit',
    layer: () => tar([file('a', 'x')], { trailing: Buffer.alloc(MAX_TRAILING_BYTES + 4096) }),
    expect: /more than \d+ bytes after the end-of-archive block/,
  },
  { name: 'garbage instead of a header (bad checksum)', layer: () => tar([file('a', 'x', { badChecksum: true })]), expect: /bad checksum/ },
  {
    name: 'header with a non-octal size',
    layer: () => tar([file('a', 'x', { mutate: (b) => { b.write('99999999999', 124, 'latin1'); writeChecksum(b); } })]),
    expect: /invalid size/,
  },
  {
    name: 'negative base-256 size',
    layer: () => tar([file('a', 'x', { mutate: (b) => { b.fill(0xff, 124, 136); writeChecksum(b); } })]),
    expect: /negative size/,
  },
  { name: 'NUL byte inside a PAX path', layer: () => [file('a', 'x', { pax: { path: 'etc/passwd\0../../x' } })], expect: /NUL/ },
  { name: 'malformed PAX record', layer: () => [Buffer.concat([header({ name: 'p', type: 'x', size: 12 }), pad(Buffer.from('99 path=abc\n'))]), file('a')], expect: /malformed PAX record/ },
  {
    name: 'a name that is not UTF-8 is kept as bytes, inside the rootfs',
    layer: () => [file('ab', 'bytes', { mutate: (b) => { b[0] = 0xff; b[1] = 0xfe; writeChecksum(b); } })],
    expect: (sb) => assert.is(readFileSync(Buffer.concat([Buffer.from(sb.root + '/'), Buffer.from([0xff, 0xfe])]), 'utf8'), 'bytes'),
  },
  {
    name: 'a non-UTF-8 symlink parent pointing outside is contained',
    layer: (sb) => [symlink('xx', out(sb), { mutate: (b) => { b[0] = 0xe9; b[1] = 0xe9; writeChecksum(b); } }), file('xx/secret', 'pwned', { mutate: (b) => { b[0] = 0xe9; b[1] = 0xe9; writeChecksum(b); } })],
    expect: (sb) => assert.is(readFileSync(inRoot(sb, join(out(sb), 'secret')), 'utf8'), 'pwned'),
  },
  // --- xattrs the kernel checks: a malformed value names the entry and the xattr
  { name: 'malformed security.capability on a file', layer: () => [file('a'), file('bin/ping', 'x', { pax: { 'SCHILY.xattr.security.capability': 'garbage' } })], expect: /xattr security.capability: the kernel refused its value as malformed/, field: 'bin/ping' },
  { name: 'malformed security.capability on a directory', layer: () => [file('a'), dir('d/', { pax: { 'SCHILY.xattr.security.capability': 'x' } })], expect: /xattr security.capability: the kernel refused/, field: 'd/' },
  { name: 'unsupported entry type (GNU volume header)', layer: () => [{ name: 'vol', type: 'V' }], expect: /unsupported entry type "V"/ },
  // --- bombs
  {
    name: 'bomb: more uncompressed bytes than allowed fails at the header, before the data',
    layer: () => tar([file('big', Buffer.alloc(MiB))]),
    opts: { limits: { maxBytes: 256 * 1024 } },
    expect: /over the limit of 262144 bytes/,
  },
  {
    name: 'bomb: a header lying about a huge size',
    layer: () => tar([file('big', 'x', { size: 2 ** 45 })]),
    expect: /would take the layer over the limit/,
  },
  {
    name: 'bomb: too many entries',
    layer: () => Array.from({ length: 120 }, (_, i) => file(`f${i}`)),
    opts: { limits: { maxEntries: 100 } },
    expect: /more entries than the limit of 100/,
  },
  { name: 'bomb: a PAX name longer than the limit', layer: () => [file('a', '', { pax: { path: 'n/'.repeat(3000) } })], expect: /name is longer than the limit of 4096/ },
  { name: 'bomb: a PAX link name longer than the limit', layer: () => [symlink('a', 'x', { pax: { linkpath: 'l'.repeat(5000) } })], expect: /link name is longer than the limit/ },
  { name: 'bomb: a GNU long name of 1 MiB', layer: () => [file('a', '', { longName: 'x'.repeat(MiB) })], expect: /GNU long name of \d+ bytes is over the limit/ },
  { name: 'bomb: a PAX header of 2 MiB', layer: () => [file('a', '', { pax: { comment: 'x'.repeat(2 * MiB) } })], expect: /PAX header of \d+ bytes is over the limit/ },
  { name: 'bomb: old GNU sparse file with a 1 TiB real size', layer: () => [gnuSparse('s', 2 ** 40, [[0, Buffer.from('x')]])], expect: /sparse file of 1099511627776 bytes is over the limit/ },
  { name: 'bomb: PAX 1.0 sparse file over the limit', layer: () => [paxSparse('s', 2 ** 37, [[0, Buffer.from('x')]])], opts: { limits: { maxSparseRealSize: 2 ** 30 } }, expect: /sparse file of \d+ bytes is over the limit/ },
  {
    name: 'bomb: a chain of PAX headers before one entry',
    layer: () => {
      const one = paxRecords({ comment: 'x'.repeat(700_000) });
      const two = paxRecords({ other: 'y'.repeat(700_000) });
      return [header({ name: 'p1', type: 'x', size: one.length }), pad(one), header({ name: 'p2', type: 'x', size: two.length }), pad(two), file('a')];
    },
    expect: /extended headers before one entry exceed/,
  },
  {
    name: 'bomb: a PAX 1.0 sparse map of 2 MiB',
    layer: () => [entryBlocks({ name: 'GNUSparseFile.0/s', type: '0', data: '60000\n' + '1234567890123\n'.repeat(150_000), pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 's', 'GNU.sparse.realsize': '100' } })],
    expect: /sparse map is too large/,
  },
  {
    name: 'PAX 1.0 sparse map with a count that is not a number',
    layer: () => [entryBlocks({ name: 'GNUSparseFile.0/s', type: '0', data: 'lots\n0\n1\n' + 'x'.repeat(1000), pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 's', 'GNU.sparse.realsize': '100' } })],
    expect: /malformed sparse map/,
  },
  { name: 'sparse map outside the file', layer: () => [gnuSparse('s', 100, [[4096, Buffer.from('x')]])], expect: /sparse map is out of order or outside the file/ },
  { name: 'sparse map that does not add up to the data', layer: () => [corruptPaxSparse(paxSparse('s', 1000, [[0, Buffer.from('abc')]])), file('x')], expect: /sparse map/ },
];

/**
 * `a/dir/` gets a mode or times that the writer only applies at the end of the layer; then `a`
 * becomes a link to the sentinel tree. Applied through the old host path, the mode or times land
 * on `outside/dir`. Every variant twice: the link absolute and relative (`../outside` from the
 * rootfs's top level reaches the sentinels when the host follows it).
 */
function deferredMetadataCases(): Case[] {
  const links: [string, (sb: Sandbox) => string][] = [
    ['absolute', (sb) => out(sb)],
    ['relative', () => '../outside'],
  ];
  const cases: Case[] = [];
  const isLink = (sb: Sandbox) => assert.ok(lstatSync(inRoot(sb, 'a')).isSymbolicLink(), 'a is the link now');
  for (const [kind, to] of links) {
    const variants: Omit<Case, 'expect'>[] = [
      { name: 'mode 0777 in one layer', layer: (sb) => [dir('a'), dir('a/dir', { mode: 0o777 }), symlink('a', to(sb))] },
      { name: 'setuid mode 04777 in one layer', layer: (sb) => [dir('a'), dir('a/dir', { mode: 0o4777 }), symlink('a', to(sb))] },
      { name: 'setgid mode 02775, the link made after a whiteout', layer: (sb) => [dir('a/dir', { mode: 0o2775 }), whiteout('', 'a'), symlink('a', to(sb))] },
      { name: 'times only (mode as the sentinel has it) in one layer', layer: (sb) => [dir('a/dir', { mode: 0o755, mtime: 12345 }), symlink('a', to(sb))] },
      { name: 'mode across two layers', lower: () => [[dir('a/dir')]], layer: (sb) => [dir('a/dir', { mode: 0o4777 }), symlink('a', to(sb))] },
      { name: 'parent times across two layers (a file added)', lower: () => [[dir('a/dir')]], layer: (sb) => [file('a/dir/new', 'x'), symlink('a', to(sb))] },
      { name: 'parent times across two layers (a whiteout)', lower: () => [[dir('a/dir'), file('a/dir/old')]], layer: (sb) => [whiteout('a/dir', 'old'), symlink('a', to(sb))] },
      { name: 'parent times across two layers (an opaque marker)', lower: () => [[dir('a/dir'), file('a/dir/old')]], layer: (sb) => [opaque('a/dir'), whiteout('', 'a'), symlink('a', to(sb))] },
      {
        name: 'mode across two layers, the link made by a hardlink to a lower symlink',
        lower: (sb) => [[dir('a/dir'), symlink('s', to(sb))]],
        layer: () => [dir('a/dir', { mode: 0o777 }), hardlink('a', 's')],
      },
      { name: 'chained links (a -> b -> sentinels)', layer: (sb) => [dir('a/dir', { mode: 0o777, mtime: 1 }), symlink('b', to(sb)), symlink('a', 'b')] },
    ];
    for (const v of variants) cases.push({ ...v, name: `deferred metadata (${kind} link): ${v.name}`, expect: isLink });
  }
  // Deeper: the link sits three levels down and climbs back out.
  cases.push({
    name: 'deferred metadata (relative link three levels down): mode across two layers',
    lower: () => [[dir('x/y/a/dir')]],
    layer: () => [dir('x/y/a/dir', { mode: 0o777, mtime: 7 }), symlink('x/y/a', '../../../outside')],
    expect: (sb) => assert.ok(lstatSync(inRoot(sb, 'x/y/a')).isSymbolicLink()),
  });
  // The link leads to a directory of the rootfs with the same name: that one is not the entry's either.
  cases.push({
    name: 'deferred metadata: a link to another rootfs directory does not take the mode',
    lower: () => [[dir('a/dir'), dir('other/dir', { mode: 0o750, mtime: 99 })]],
    layer: () => [dir('a/dir', { mode: 0o4777, mtime: 5 }), symlink('a', '/other')],
    expect: (sb) => {
      const st = lstatSync(inRoot(sb, 'other/dir'));
      assert.is(st.mode & 0o7777, 0o750);
      assert.is(st.mtimeMs, 99_000);
    },
  });
  return cases;
}

/** Rewrites the PAX 1.0 map so it claims more data than the entry holds. */
function corruptPaxSparse(buf: Buffer): Buffer {
  const copy = Buffer.from(buf);
  const at = copy.indexOf('1\n0\n3\n');
  copy.write('1\n0\n9\n', at, 'latin1');
  return copy;
}

for (const c of cases) {
  test(`hostile: ${c.name}`, async () => {
    const sb = sandbox();
    try {
      plantSentinels(sb.base);
      for (const lower of c.lower?.(sb) ?? []) await apply(sb, lower);
      const target = c.target?.(sb) ?? sb.root;
      const before = snapshot(sb.base);
      let error: unknown;
      try {
        await applyLayer(target, tarStream(layerBytes(c.layer(sb))), { layer: 'sha256:hostile', onWarning: () => {}, ...c.opts });
      } catch (e) {
        error = e;
      }
      if (c.expect instanceof RegExp) {
        assert.instance(error, InputError, `expected an InputError, got ${String(error)}`);
        const ie = error as InputError;
        assert.match(ie.reason, c.expect, `reason was: ${ie.reason}`);
        assert.is(ie.file, 'sha256:hostile', 'the error names the layer');
        if (c.field !== undefined) assert.is(ie.field, c.field, 'the error names the entry');
      } else {
        assert.is(error, undefined, `contained attack should apply cleanly, got ${String(error)}`);
        c.expect(sb);
      }
      const after = snapshot(sb.base);
      assert.equal([...after.entries()], [...before.entries()], 'the sentinel tree is unchanged');
    } finally {
      sb.cleanup();
    }
  });
}

test('the suite has at least 30 hostile layers', () => {
  assert.ok(cases.length >= 30, `${cases.length} cases`);
});

test.run();
