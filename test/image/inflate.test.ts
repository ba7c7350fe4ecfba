/**
 * gzip-compressed archives (`docker save | gzip`, .tar.gz, .tgz): inflated once and read as any
 * archive, by content whatever the name; the inflated copy is cached by the archive's identity and
 * made again when the archive changes; a bomb, a corrupt stream and a full disk are refused; an
 * uncached copy is removed with its source.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { collectInflated } from '../../src/image/inflate.js';
import { openImageSource } from '../../src/image/source.js';
import { resolveImage } from '../../src/image/resolve.js';
import { unpackImage } from '../../src/image/unpack.js';
import { hostPlatform } from '../../src/image/platform.js';
import { tar } from '../helpers/tar.js';
import { baseLayerEntries, dockerLegacyArchive, expectInputError, ImageBuilder, archiveOf, scratchDirs } from './fixtures.js';

const scratch = scratchDirs();

function layoutArchive(): Buffer {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries(), compression: 'gzip' }], config: { Cmd: ['/bin/sh'] } });
  return archiveOf(b.layoutFiles([m]));
}

test('a gzip-compressed oci-archive named .tgz unpacks like the plain one, with the same digest', async () => {
  const d = scratch();
  const plain = layoutArchive();
  writeFileSync(join(d, 'plain.tar'), plain);
  writeFileSync(join(d, 'web.tgz'), gzipSync(plain));
  const a = await unpackImage(join(d, 'plain.tar'), join(d, 'a'));
  const b = await unpackImage(join(d, 'web.tgz'), join(d, 'b'));
  assert.is(b.manifestDigest, a.manifestDigest);
  assert.is(b.format, 'oci-archive');
  assert.ok(statSync(join(d, 'b', 'rootfs', 'bin', 'sh')).isFile());
});

test('a .tar.gz with bytes after its gzip stream: read to its end, the bytes ignored with a warning (as gzip(1)); two members are one stream', async () => {
  const d = scratch();
  const plain = layoutArchive();
  const half = Math.floor(plain.length / 2);
  const twoMembers = Buffer.concat([gzipSync(plain.subarray(0, half)), gzipSync(plain.subarray(half))]);
  writeFileSync(join(d, 'web.tar.gz'), Buffer.concat([twoMembers, Buffer.from('trailing garbage\n')]));
  const warnings: string[] = [];
  const r = await unpackImage(join(d, 'web.tar.gz'), join(d, 'out'), { onWarning: (m) => warnings.push(m) });
  assert.ok(statSync(join(d, 'out', 'rootfs', 'bin', 'sh')).isFile());
  assert.is(r.format, 'oci-archive');
  assert.equal(warnings.filter((w) => /17 bytes after the end of its gzip stream ignored/.test(w)).length, 1, warnings.join('\n'));
});

test('a .tar.gz cut short inside its gzip stream is refused, naming the file', async () => {
  const d = scratch();
  const gz = gzipSync(layoutArchive());
  writeFileSync(join(d, 'cut.tar.gz'), gz.subarray(0, gz.length - 100));
  await expectInputError(unpackImage(join(d, 'cut.tar.gz'), join(d, 'out')), /cut\.tar\.gz: is not a valid gzip file/);
});

test('a gzip-compressed multi-image docker archive (podman save -m | gzip) offers its refs', async () => {
  const d = scratch();
  const images = ['one', 'two'].map((t) => ({ tags: [`example.com/${t}:1`], config: { Cmd: [`/${t}`] }, layers: [tar(baseLayerEntries())] }));
  writeFileSync(join(d, 'all.tar.gz'), gzipSync(dockerLegacyArchive(images)));
  const source = await openImageSource(join(d, 'all.tar.gz'));
  try {
    await expectInputError(resolveImage(source, { platform: hostPlatform(), explicitVariant: false }), /all\.tar\.gz: holds 2 images/);
    const two = await resolveImage(source, { ref: 'example.com/two:1', platform: hostPlatform(), explicitVariant: false });
    assert.equal(two.config.config.Cmd, ['/two']);
  } finally {
    await source.close();
  }
});

test('cached by the archive identity: the same copy while unchanged, a new one when rewritten', async () => {
  const d = scratch();
  const cache = join(d, 'cache');
  const gz = join(d, 'web.tar.gz');
  writeFileSync(gz, gzipSync(layoutArchive()));
  const open = async () => {
    const s = await openImageSource(gz, { inflate: { cacheDir: cache } });
    await s.close();
    return readdirSync(cache).map((n) => `${n}:${statSync(join(cache, n)).ino}`);
  };
  const first = await open();
  assert.is(first.length, 1);
  assert.equal(await open(), first, 'inflated again although unchanged');
  writeFileSync(gz, gzipSync(layoutArchive()));
  const second = await open();
  assert.is(second.length, 2);
  assert.ok(second.includes(first[0]!));
  // the copy not used since a moment is collected
  const removed = await collectInflated(cache, Date.now() + 1000);
  assert.is(removed.length, 2);
  assert.equal(readdirSync(cache), []);
});

test('without a cache the copy lives as long as the source', async () => {
  const d = scratch();
  const gz = join(d, 'web.tar.gz');
  writeFileSync(gz, gzipSync(layoutArchive()));
  // a temporary directory of this test's own: other jobs' copies in /tmp are not counted
  const tmp = join(d, 'tmp');
  mkdirSync(tmp);
  const before = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    const s = await openImageSource(gz);
    const fd = (s.store as unknown as { fh: { fd: number } }).fh.fd;
    assert.ok(fd > 0);
    assert.is(readdirSync(tmp).filter((n) => n.startsWith('ocivirt-inflate-')).length, 1, 'the copy is made in TMPDIR');
    await s.close();
    assert.equal(readdirSync(tmp), [], 'the copy outlived its source');
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
  }
});

test('a corrupt gzip stream and a gzip bomb are refused, naming the archive', async () => {
  const d = scratch();
  const bad = gzipSync(layoutArchive());
  const at = Math.floor(bad.length / 2);
  bad[at] = bad[at]! ^ 0xff;
  writeFileSync(join(d, 'bad.tar.gz'), bad);
  await expectInputError(openImageSource(join(d, 'bad.tar.gz')), /bad\.tar\.gz: is not a valid gzip file/);
  writeFileSync(join(d, 'bomb.tar.gz'), gzipSync(Buffer.alloc(80 * 1024 * 1024)));
  await expectInputError(openImageSource(join(d, 'bomb.tar.gz'), { inflate: { maxRatio: 10, cacheDir: join(d, 'c') } }), /bomb\.tar\.gz: inflates more than 10 times/);
  assert.equal(readdirSync(join(d, 'c')), [], 'a half-inflated copy was left');
});

test('inflating stops before the reserve of free space', async () => {
  const d = scratch();
  writeFileSync(join(d, 'web.tar.gz'), gzipSync(layoutArchive()));
  const err = await openImageSource(join(d, 'web.tar.gz'), { inflate: { minFreeBytes: Number.MAX_SAFE_INTEGER, cacheDir: join(d, 'c') } }).then(
    () => undefined,
    (e: Error) => e,
  );
  assert.match(err?.message ?? '', /would leave less than \d+ bytes free \(unpackLimits\.minFreeBytes\)/);
  assert.not.ok(existsSync(join(d, 'c')) && readdirSync(join(d, 'c')).length > 0);
});

test.run();
