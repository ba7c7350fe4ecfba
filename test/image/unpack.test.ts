/**
 * unpackImage end to end (with the real layer applier): every input shape gives the same tree,
 * re-unpack is skipped, failures leave the parent directory exactly as it was (old bundle
 * included), and a crash between the two renames is repaired by the next run.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RECORD_FILE } from '../../src/image/bundle-dir.js';
import { unpackImage, type UnpackOptions } from '../../src/image/unpack.js';
import { validateRuntimeConfig } from '../../src/oci/validate.js';
import { dir, file, hardlink, opaque, symlink, tar, whiteout, type Entry } from '../helpers/tar.js';
import { archiveOf, baseLayerEntries, dockerLegacyArchive, ImageBuilder, writeFiles, type Desc, type LayerInput, scratchDirs, expectInputError } from './fixtures.js';
import { describeTree } from './tree.js';

const scratch = scratchDirs();

const strip = ({ mediaType, digest, size }: Desc): Desc => ({ mediaType, digest, size });

const layer2: Entry[] = [
  dir('srv/'),
  file('srv/data', 'v2'),
  hardlink('srv/data-link', 'srv/data'),
  whiteout('home', 'app'),
  symlink('bin/ash', 'sh'),
  file('etc/motd', 'hi', { mode: 0o4755 }),
];
const layer3: Entry[] = [file('srv/new', 'v3'), opaque('srv'), file('etc/gone-soon', 'x'), whiteout('etc', 'gone-soon')];

function layersWith(c: LayerInput['compression'][]): LayerInput[] {
  return [
    { entries: baseLayerEntries(), compression: c[0] },
    { entries: layer2, compression: c[1] },
    { entries: layer3, compression: c[2] },
  ];
}

function layout(layers: LayerInput[], config: Record<string, unknown> = { Cmd: ['/bin/sh'], User: 'app' }) {
  const b = new ImageBuilder();
  const m = b.image({ layers, config });
  const top = { ...strip(m), annotations: { 'org.opencontainers.image.ref.name': 'demo:1' } };
  return { b, m, top, dir: writeFiles(scratch(), b.layoutFiles([top])) };
}


const opts: UnpackOptions = {};

test('a layout with gzip, zstd and plain layers unpacks to the expected tree and a valid config', async () => {
  const { m, dir: src } = layout(layersWith(['gzip', 'zstd', 'none']));
  const target = join(scratch(), 'bundle');
  const r = await unpackImage(src, target, opts);
  assert.is(r.skipped, false);
  assert.is(r.manifestDigest, m.digest);
  assert.is(r.configDigest, m.config.digest);
  assert.equal(r.layers.map((l) => l.compression), ['gzip', 'zstd', 'none']);
  assert.equal(r.refs, ['demo:1']);
  assert.is(r.platform, 'linux/amd64');
  const rootfs = join(target, 'rootfs');
  assert.not.ok(existsSync(join(rootfs, 'home/app')), 'whiteout of a lower dir');
  assert.ok(existsSync(join(rootfs, 'home')));
  assert.not.ok(existsSync(join(rootfs, 'srv/data')), 'opaque dir hides lower entries');
  assert.is(readFileSync(join(rootfs, 'srv/new'), 'utf8'), 'v3');
  assert.ok(existsSync(join(rootfs, 'etc/gone-soon')), 'a whiteout hits only lower layers, not an entry of its own layer');
  const config = validateRuntimeConfig(JSON.parse(readFileSync(join(target, 'config.json'), 'utf8')), 'config.json');
  assert.equal(config.process?.user, { uid: 1000, gid: 1000, additionalGids: [10, 29] });
  assert.is(config.root?.path, 'rootfs');
  const record = JSON.parse(readFileSync(join(target, RECORD_FILE), 'utf8'));
  assert.is(record.manifestDigest, m.digest);
  assert.equal(readdirNoHidden(join(target, '..')), ['bundle']);
});

function readdirNoHidden(d: string): string[] {
  return spawnSync('ls', ['-A', d], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
}

test('layout dir, oci-archive, docker save (legacy and Docker 25+) give the same tree', async () => {
  const raw = [tar(baseLayerEntries()), tar(layer2), tar(baseLayerEntries())];
  const b = new ImageBuilder();
  const m = b.image({ layers: raw.map((t) => ({ tar: t, compression: 'none' as const })), config: { Cmd: ['/bin/sh'] } });
  const layoutDir = writeFiles(scratch(), b.layoutFiles([strip(m)]));
  const archive = join(scratch(), 'oci.tar');
  writeFileSync(archive, archiveOf(b.layoutFiles([strip(m)])));
  const legacy = join(scratch(), 'legacy.tar');
  writeFileSync(legacy, dockerLegacyArchive([{ tags: ['x:1'], layers: raw }]));
  const d25files = b.layoutFiles([{ ...strip(m), annotations: { 'io.containerd.image.name': 'docker.io/library/x:1', 'org.opencontainers.image.ref.name': '1' } }]);
  d25files.set('manifest.json', Buffer.from(JSON.stringify([{ Config: `blobs/sha256/${m.config.digest.slice(7)}`, RepoTags: ['x:1'], Layers: m.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`) }])));
  const d25 = join(scratch(), 'd25.tar');
  writeFileSync(d25, archiveOf(d25files));
  const trees: string[][] = [];
  for (const src of [layoutDir, archive, legacy, d25]) {
    const target = join(scratch(), 'b');
    const r = await unpackImage(src, target, {});
    assert.is(r.layers.length, 3, src);
    trees.push(describeTree(join(target, 'rootfs')));
  }
  for (const t of trees.slice(1)) assert.equal(t, trees[0]);
});

test('re-unpack: the same manifest is skipped; --force unpacks again; a new manifest replaces the bundle', async () => {
  const { dir: src } = layout(layersWith(['gzip', 'gzip', 'gzip']));
  const target = join(scratch(), 'bundle');
  await unpackImage(src, target, {});
  writeFileSync(join(target, 'rootfs', 'marker'), 'left by a test');
  const again = await unpackImage(src, target, {});
  assert.is(again.skipped, true);
  assert.ok(existsSync(join(target, 'rootfs', 'marker')), 'skipped: nothing rewritten');
  const forced = await unpackImage(src, target, { force: true });
  assert.is(forced.skipped, false);
  assert.not.ok(existsSync(join(target, 'rootfs', 'marker')));
  const { dir: src2, m: m2 } = layout(layersWith(['gzip', 'gzip', 'gzip']), { Cmd: ['/bin/other'] });
  const next = await unpackImage(src2, target, {});
  assert.is(next.skipped, false);
  assert.is(JSON.parse(readFileSync(join(target, RECORD_FILE), 'utf8')).manifestDigest, m2.digest);
  assert.equal(readdirNoHidden(join(target, '..')), ['bundle'], 'no staging or old copy left');
});

/** Runs a failing unpack and checks the parent of the target is byte-for-byte as before. */
async function failsCleanly(src: string, target: string, pattern: RegExp, o: UnpackOptions = {}): Promise<void> {
  const parent = join(target, '..');
  const before = describeTree(parent);
  await expectInputError(unpackImage(src, target, o), pattern);
  assert.equal(describeTree(parent), before, 'the parent directory (sentinels, old bundle) is unchanged');
}

test('a tampered layer in the middle: error names the blob; nothing left beside the target, old bundle intact', async () => {
  const good = layout(layersWith(['gzip', 'gzip', 'gzip']));
  const parent = scratch();
  writeFileSync(join(parent, 'sentinel'), 'must survive');
  const target = join(parent, 'bundle');
  await unpackImage(good.dir, target, {});
  const bad = layout(layersWith(['gzip', 'gzip', 'gzip']), { Cmd: ['/x'] });
  const p = join(bad.dir, 'blobs/sha256', bad.m.layers[1]!.digest.slice(7));
  const bytes = readFileSync(p);
  bytes[bytes.length - 9] = (bytes[bytes.length - 9] as number) ^ 1; // in the gzip trailer (CRC)
  writeFileSync(p, bytes);
  await failsCleanly(bad.dir, target, /layer 2\/3 \(sha256:[0-9a-f]{12}\)/);
  // and into a fresh target: nothing at all is created
  await failsCleanly(bad.dir, join(parent, 'fresh'), /layer 2\/3/);
});

test('a diffID mismatch fails after the layer streamed, and nothing is left', async () => {
  const { dir: src } = layout([{ entries: baseLayerEntries(), diffId: `sha256:${'1'.repeat(64)}` }]);
  await failsCleanly(src, join(scratch(), 'bundle'), /layer 1\/1 .*diffID sha256:1{64}\) does not match/);
});

test('a hostile entry (traversal) fails naming the layer and the entry; nothing is left', async () => {
  const { dir: src } = layout([{ entries: [...baseLayerEntries(), file('../../escape', 'x')] }]);
  const parent = scratch();
  await failsCleanly(src, join(parent, 'bundle'), /layer 1\/1 \(sha256:[0-9a-f]{12}\).*\.\.\/\.\.\/escape/);
  assert.not.ok(existsSync(join(parent, '..', 'escape')));
});

test('an unknown user in the image config fails after the layers, and nothing is left', async () => {
  const { dir: src } = layout([{ entries: baseLayerEntries() }], { Cmd: ['/bin/sh'], User: 'ghost' });
  await failsCleanly(src, join(scratch(), 'bundle'), /user "ghost" is not in the image's \/etc\/passwd/);
});

test('/etc/passwd as a symlink out of the rootfs is not followed to the host', async () => {
  // a host file with a root user: following the link on the host would make the lookup succeed
  const hostPasswd = join(scratch(), 'passwd');
  writeFileSync(hostPasswd, 'root:x:0:0:root:/root:/bin/sh\n');
  const { dir: src } = layout([{ entries: [dir('etc/'), symlink('etc/passwd', hostPasswd), dir('bin/'), file('bin/sh', 'x')] }], { Cmd: ['/bin/sh'], User: 'root' });
  await failsCleanly(src, join(scratch(), 'bundle'), /user "root" cannot be resolved: the image has no \/etc\/passwd/);
});

test('a target that holds something else is refused and left alone', async () => {
  const { dir: src } = layout([{ entries: baseLayerEntries() }]);
  const target = join(scratch(), 'bundle');
  mkdirSync(target);
  writeFileSync(join(target, 'precious'), 'user data');
  await failsCleanly(src, target, /was not made by 'ocivirt unpack'/);
});

test('crash recovery: a leftover staging dir is removed; a crash between the renames is rolled back', async () => {
  const { dir: src } = layout([{ entries: baseLayerEntries() }]);
  const parent = scratch();
  const target = join(parent, 'bundle');
  await unpackImage(src, target, {});
  const tree = describeTree(target);
  // the state after "rename target -> old" and before "rename staging -> target"
  renameSync(target, join(parent, '.bundle.ocivirt-old'));
  mkdirSync(join(parent, '.bundle.ocivirt-staging/rootfs'), { recursive: true });
  writeFileSync(join(parent, '.bundle.ocivirt-staging/rootfs/half'), 'x');
  const r = await unpackImage(src, target, {});
  assert.is(r.skipped, true, 'the restored bundle already holds this manifest');
  assert.equal(describeTree(target), tree);
  assert.equal(readdirNoHidden(parent), ['bundle']);
  // the state after both renames but before the old copy was removed
  mkdirSync(join(parent, '.bundle.ocivirt-old/rootfs'), { recursive: true });
  await unpackImage(src, target, {});
  assert.equal(readdirNoHidden(parent), ['bundle']);
});

test('a lock keeps two runs off one bundle; a lock file nobody holds (a crash) is taken over', async () => {
  const { dir: src } = layout([{ entries: baseLayerEntries() }]);
  const parent = scratch();
  const target = join(parent, 'bundle');
  const lockFile = join(parent, '.bundle.ocivirt-lock');
  // another process holds the lock while its stdin is open
  const holder = spawn('flock', ['--exclusive', lockFile, '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((r) => holder.stdout.once('data', r));
  try {
    await unpackImage(src, target, {});
    assert.unreachable('a held lock must stop the run');
  } catch (e) {
    assert.match((e as Error).message, /another unpack \(process \w+\) is working on this bundle/);
  } finally {
    holder.stdin.end();
    await new Promise((r) => holder.once('exit', r));
  }
  assert.not.ok(existsSync(target));
  writeFileSync(lockFile, '4194303\n'); // what a crashed run leaves
  await unpackImage(src, target, {});
  assert.equal(readdirNoHidden(parent), ['bundle'], 'left-over lock taken over and released');
  // two runs at once in one process: one works, the other is told the bundle is busy
  const results = await Promise.allSettled([unpackImage(src, target, { force: true }), unpackImage(src, target, { force: true })]);
  assert.equal(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.match((failed.reason as Error).message, /another unpack/);
  assert.equal(readdirNoHidden(parent), ['bundle']);
});

test('the bundle directory is private (0700): setuid files in the rootfs are not reachable by host users', async () => {
  const { dir: src } = layout(layersWith(['gzip', 'gzip', 'gzip']));
  const target = join(scratch(), 'bundle');
  await unpackImage(src, target, {});
  const mode = spawnSync('stat', ['-c', '%a', target], { encoding: 'utf8' }).stdout.trim();
  assert.is(mode, '700');
});

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));

test('CLI: an image with neither Entrypoint nor Cmd unpacks (exit 0) with a warning; its config.json has no args', () => {
  const { dir: src } = layout([{ entries: baseLayerEntries() }], {});
  const target = join(scratch(), 'bundle');
  const r = spawnSync(bin, ['unpack', src, target], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const warnings = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.event === 'image.warning');
  assert.ok(warnings.some((e) => /neither Entrypoint nor Cmd/.test(e.warning)), r.stderr);
  const config = JSON.parse(readFileSync(join(target, 'config.json'), 'utf8'));
  assert.is(config.process.args, undefined);
  assert.ok(existsSync(join(target, 'rootfs/etc/passwd')));
});

test('CLI: unpack prints a summary, logs progress events off a terminal, exits 2 with one line on a bad image', () => {
  const { dir: src, m } = layout(layersWith(['gzip', 'zstd', 'none']));
  const target = join(scratch(), 'bundle');
  const ok = spawnSync(bin, ['unpack', src, target], { encoding: 'utf8' });
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`unpacked demo:1 \\(linux/amd64\\) manifest ${m.digest}`));
  const events = ok.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l).event);
  for (const e of ['layer.progress', 'layer.applied', 'image.verified', 'image.unpacked']) assert.ok(events.includes(e), e);
  const again = spawnSync(bin, ['unpack', '--json', src, target], { encoding: 'utf8' });
  assert.is(JSON.parse(again.stdout).skipped, true);
  const bad = spawnSync(bin, ['unpack', '--platform', 'linux/s390x', src, join(scratch(), 'x')], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /^ocivirt unpack: .*the image is for linux\/amd64, not linux\/s390x/);
  assert.is(bad.stderr.trim().split('\n').length, 1);
  const limited = spawnSync(bin, ['unpack', '--max-entries', '3', src, join(target, '..', 'limited')], { encoding: 'utf8' });
  assert.is(limited.status, 2);
  assert.match(limited.stderr, /layer 1\/3 .*more entries than the limit of 3/);
  assert.not.ok(existsSync(join(target, '..', 'limited')));
  const badFlag = spawnSync(bin, ['unpack', '--max-layer-size', 'lots', src, join(target, '..', 'x')], { encoding: 'utf8' });
  assert.is(badFlag.status, 2);
  assert.match(badFlag.stderr, /--max-layer-size: expected a size/);
  const usage = spawnSync(bin, ['unpack', src], { encoding: 'utf8' });
  assert.is(usage.status, 2);
  const help = spawnSync(bin, ['unpack', '--help'], { encoding: 'utf8' });
  assert.is(help.status, 0);
  assert.match(help.stdout, /--platform OS\/ARCH/);
});

test.run();
