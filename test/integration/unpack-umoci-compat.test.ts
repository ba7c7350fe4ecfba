/**
 * Compatibility with a tool nobody here wrote: images built by Debian's umoci (init/new/repack
 * with files, dirs, symlinks, hardlinks, fifos, setuid/setgid/sticky, owners, xattrs incl.
 * security.capability, deletions between repacks that become whiteouts, file <-> dir <-> symlink
 * replacements, a hardlinked file rewritten in place), then layers added by `umoci insert` (a
 * file, an opaque directory, a whiteout: tar streams without end-of-archive blocks), and the same
 * image as a skopeo oci-archive unpack with `ocivirt unpack` to the tree `umoci unpack` gives:
 * path, type, mode, uid, gid, size, content hash, link target, xattrs, hardlink groups, and
 * mtimes (directories included).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { setAttributeSync } from '@napi-rs/xattr';
import { tmp } from '../image/fixtures.js';
import { describeTree } from '../image/tree.js';

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
const work = tmp('ocivirt-umoci-');
test.after(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, ...args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: work });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (is it installed? scripts/setup-libvirt.sh installs umoci and skopeo)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** VFS capability data v2 with CAP_NET_BIND_SERVICE permitted + effective (what `setcap cap_net_bind_service+ep` writes). */
function fileCapability(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000001, 0); // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
  b.writeUInt32LE(1 << 10, 4); // permitted (low word): CAP_NET_BIND_SERVICE
  return b;
}

/** Uncompressed size of each layer of the tagged image (gzip layers, as umoci writes them). */
function layerSizes(layout: string, tag: string): number[] {
  const blob = (d: string) => join(layout, 'blobs/sha256', d.slice('sha256:'.length));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const tagged = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  const manifest = JSON.parse(readFileSync(blob(tagged.digest), 'utf8'));
  return manifest.layers.map((l: { digest: string }) => gunzipSync(readFileSync(blob(l.digest))).length);
}

function populateFirst(rootfs: string): void {
  const p = (x: string) => join(rootfs, x);
  mkdirSync(p('etc'), { mode: 0o755 });
  writeFileSync(p('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nsvc:x:500:500::/srv:/bin/sh\n');
  writeFileSync(p('etc/group'), 'root:x:0:\nsvc:x:500:\n');
  mkdirSync(p('bin'));
  writeFileSync(p('bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
  writeFileSync(p('bin/suid'), 'setuid binary', { mode: 0o755 });
  chmodSync(p('bin/suid'), 0o4755);
  writeFileSync(p('bin/sgid'), 'setgid binary');
  chownSync(p('bin/sgid'), 0, 500);
  chmodSync(p('bin/sgid'), 0o2711);
  writeFileSync(p('bin/ping'), 'capable binary', { mode: 0o755 });
  setAttributeSync(p('bin/ping'), 'security.capability', fileCapability());
  symlinkSync('tool', p('bin/relative-link'));
  symlinkSync('/bin/tool', p('bin/absolute-link'));
  symlinkSync('../nowhere', p('bin/dangling-link'));
  mkdirSync(p('srv/data/deep/er'), { recursive: true });
  chownSync(p('srv/data'), 500, 500);
  chmodSync(p('srv/data'), 0o2775);
  writeFileSync(p('srv/data/deep/er/file'), 'x'.repeat(70_000));
  chownSync(p('srv/data/deep/er/file'), 500, 500);
  writeFileSync(p('srv/shared'), 'hardlinked content');
  linkSync(p('srv/shared'), p('srv/shared-link1'));
  linkSync(p('srv/shared'), p('srv/data/shared-link2'));
  mkdirSync(p('tmp'));
  chmodSync(p('tmp'), 0o1777);
  writeFileSync(p('srv/xattr-file'), 'with xattrs');
  setAttributeSync(p('srv/xattr-file'), 'user.comment', 'hello');
  setAttributeSync(p('srv/xattr-file'), 'user.binary', Buffer.from([0, 1, 2, 255]));
  setAttributeSync(p('srv/data'), 'user.dir-attr', 'on a directory');
  run('mkfifo', '-m', '0620', p('srv/fifo'));
  writeFileSync(p('srv/empty'), '');
  writeFileSync(p('srv/unicodé ☃ name'), 'unicode');
  const long = 'a-rather-long-directory-name-that-goes-on/'.repeat(4);
  mkdirSync(p(`srv/${long}`), { recursive: true });
  writeFileSync(p(`srv/${long}file-with-a-long-name-${'z'.repeat(80)}`), 'long path');
  mkdirSync(p('to-be-deleted/sub'), { recursive: true });
  writeFileSync(p('to-be-deleted/sub/f'), 'gone later');
  writeFileSync(p('file-becomes-dir'), 'was a file');
  mkdirSync(p('dir-becomes-symlink'));
  writeFileSync(p('dir-becomes-symlink/inner'), 'inner');
  writeFileSync(p('mode-changes'), 'mode', { mode: 0o600 });
}

function changeSecond(rootfs: string): void {
  const p = (x: string) => join(rootfs, x);
  rmSync(p('to-be-deleted'), { recursive: true });
  rmSync(p('srv/empty'));
  rmSync(p('file-becomes-dir'));
  mkdirSync(p('file-becomes-dir'));
  writeFileSync(p('file-becomes-dir/now'), 'a dir now');
  rmSync(p('dir-becomes-symlink'), { recursive: true });
  symlinkSync('srv', p('dir-becomes-symlink'));
  chmodSync(p('mode-changes'), 0o640);
  chownSync(p('mode-changes'), 500, 0);
  writeFileSync(p('srv/shared'), 'hardlinked content, rewritten in place'); // same inode: all names change
  writeFileSync(p('bin/new-in-layer-2'), 'new');
  setAttributeSync(p('srv/xattr-file'), 'user.comment', 'changed');
}

test('umoci-built image (3 repacks, 3 inserts) and its skopeo oci-archive unpack to the same tree as umoci unpack', () => {
  run('umoci', 'init', '--layout', 'layout');
  run('umoci', 'new', '--image', 'layout:t');
  run('umoci', 'unpack', '--image', 'layout:t', 'build');
  populateFirst(join(work, 'build/rootfs'));
  run('umoci', 'repack', '--refresh-bundle', '--image', 'layout:t', 'build');
  changeSecond(join(work, 'build/rootfs'));
  run('umoci', 'repack', '--refresh-bundle', '--image', 'layout:t', 'build');
  rmSync(join(work, 'build/rootfs/bin/tool'));
  mkdirSync(join(work, 'build/rootfs/srv/data/sub'));
  run('umoci', 'repack', '--refresh-bundle', '--image', 'layout:t', 'build');
  // three more layers by `umoci insert`: umoci 0.4.7 writes them without the last entry's padding
  // and without the end-of-archive blocks (Go's archive/tar and GNU tar read them)
  writeFileSync(join(work, 'inserted'), 'added in layer 4');
  mkdirSync(join(work, 'insert-dir/nested'), { recursive: true });
  writeFileSync(join(work, 'insert-dir/nested/replacement'), 'the opaque insert');
  symlinkSync('nested/replacement', join(work, 'insert-dir/link'));
  run('umoci', 'insert', '--image', 'layout:t', join(work, 'inserted'), '/srv/data/sub/inserted');
  run('umoci', 'insert', '--image', 'layout:t', '--opaque', join(work, 'insert-dir'), '/srv/data/deep');
  run('umoci', 'insert', '--image', 'layout:t', '--whiteout', '/bin/relative-link');
  const insertedLayers = layerSizes(join(work, 'layout'), 't').slice(-3);
  assert.equal(insertedLayers.map((n) => n % 1024 !== 0 || n === 0), [true, true, true], `not the umoci insert shape: ${insertedLayers}`);
  assert.ok(insertedLayers.some((n) => n % 512 !== 0), `no layer cut inside its padding: ${insertedLayers}`);
  run('umoci', 'config', '--image', 'layout:t', '--config.cmd', '/bin/sh', '--config.user', 'svc');
  run('skopeo', 'copy', '--quiet', 'oci:layout:t', 'oci-archive:image.tar:demo:1');

  run('umoci', 'unpack', '--image', 'layout:t', 'by-umoci');
  const ours = spawnSync(bin, ['unpack', '--ref', 't', join(work, 'layout'), join(work, 'by-ocivirt')], { encoding: 'utf8' });
  assert.is(ours.status, 0, ours.stderr);
  const fromArchive = spawnSync(bin, ['unpack', '--ref', 'demo:1', join(work, 'image.tar'), join(work, 'by-ocivirt-archive')], { encoding: 'utf8' });
  assert.is(fromArchive.status, 0, fromArchive.stderr);

  const reference = describeTree(join(work, 'by-umoci/rootfs'), { mtimes: true });
  // the tree is not trivially empty or equal: the whiteouts, opaque dir and replacements happened
  const paths = reference.map((l) => l.split(' ')[0]);
  for (const expected of ['file-becomes-dir/now', 'srv/data/sub/inserted', 'srv/data/deep/nested/replacement', 'srv/data/deep/link', 'bin/ping', 'srv/fifo'])
    assert.ok(paths.includes(expected), expected);
  for (const gone of ['to-be-deleted', 'srv/empty', 'bin/tool', 'dir-becomes-symlink/inner', 'srv/data/deep/er', 'bin/relative-link']) assert.not.ok(paths.includes(gone), gone);
  assert.ok(reference.some((l) => l.startsWith('bin/ping ') && /security.capability=/.test(l)), 'the capability survived');
  assert.ok(reference.some((l) => l.startsWith('srv/shared ') && /link-group=/.test(l)), 'hardlinks kept');

  assert.equal(describeTree(join(work, 'by-ocivirt/rootfs'), { mtimes: true }), reference);
  assert.equal(describeTree(join(work, 'by-ocivirt-archive/rootfs'), { mtimes: true }), reference);

  // and the user from the image config was resolved in the unpacked rootfs
  const cfg = JSON.parse(run('cat', join(work, 'by-ocivirt/config.json')));
  assert.equal(cfg.process.user, { uid: 500, gid: 500 });
  assert.equal(cfg.process.args, ['/bin/sh']);
});

test('a multi-platform index copied by skopeo (--all) into an oci-archive: each platform unpacks to its umoci tree', () => {
  // an arm64 variant of the image: same base, its own config and one more layer
  run('umoci', 'tag', '--image', 'layout:t', 'arm');
  run('umoci', 'config', '--image', 'layout:arm', '--architecture', 'arm64');
  run('umoci', 'unpack', '--image', 'layout:arm', 'build-arm');
  writeFileSync(join(work, 'build-arm/rootfs/arch'), 'arm64 only');
  run('umoci', 'repack', '--image', 'layout:arm', 'build-arm');
  // an index naming both manifests with their platforms, tagged 'multi'
  const layout = join(work, 'layout');
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const byTag = (tag: string) => index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  const entry = (tag: string, architecture: string) => {
    const { mediaType, digest, size } = byTag(tag);
    return { mediaType, digest, size, platform: { os: 'linux', architecture } };
  };
  const multi = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry('t', 'amd64'), entry('arm', 'arm64')] }));
  const hex = createHash('sha256').update(multi).digest('hex');
  writeFileSync(join(layout, 'blobs/sha256', hex), multi);
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: multi.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  run('skopeo', 'copy', '--quiet', '--all', 'oci:layout:multi', 'oci-archive:multi.tar:multi');

  run('umoci', 'unpack', '--image', 'layout:arm', 'umoci-arm');
  run('umoci', 'unpack', '--image', 'layout:t', 'umoci-amd');
  const arm = spawnSync(bin, ['unpack', '--platform', 'linux/arm64', join(work, 'multi.tar'), join(work, 'ours-arm')], { encoding: 'utf8' });
  assert.is(arm.status, 0, arm.stderr);
  const amd = spawnSync(bin, ['unpack', '--platform', 'linux/amd64', join(work, 'multi.tar'), join(work, 'ours-amd')], { encoding: 'utf8' });
  assert.is(amd.status, 0, amd.stderr);
  assert.equal(describeTree(join(work, 'ours-arm/rootfs')), describeTree(join(work, 'umoci-arm/rootfs')));
  assert.equal(describeTree(join(work, 'ours-amd/rootfs')), describeTree(join(work, 'umoci-amd/rootfs')));
  assert.ok(readFileSync(join(work, 'ours-arm/rootfs/arch'), 'utf8') === 'arm64 only');
  const none = spawnSync(bin, ['unpack', '--platform', 'linux/s390x', join(work, 'multi.tar'), join(work, 'ours-s390x')], { encoding: 'utf8' });
  assert.is(none.status, 2);
  assert.match(none.stderr, /no manifest for platform linux\/s390x .*offers: linux\/amd64, linux\/arm64/);
});

test('the same image with its layers recompressed by the zstd CLI (+zstd media types) unpacks to the same tree', () => {
  // builds on the first test's layout and umoci tree (uvu runs tests in order). Debian's umoci
  // 0.4.7 cannot write zstd layers; zstd(1) can, and the diffIDs do not change
  const layout = join(work, 'layout');
  const blob = (d: string) => join(layout, 'blobs/sha256', d.slice(7));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const tagged = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === 't');
  const manifest = JSON.parse(readFileSync(blob(tagged.digest), 'utf8'));
  const store = (bytes: Buffer) => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(layout, 'blobs/sha256', hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  manifest.layers = manifest.layers.map((l: { digest: string; mediaType: string }) => {
    const z = spawnSync('sh', ['-c', 'gzip -dc "$0" | zstd -q -19 -c', blob(l.digest)], { maxBuffer: 256 << 20 });
    assert.is(z.status, 0, String(z.stderr));
    return { ...l, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', ...store(z.stdout) };
  });
  const m = store(Buffer.from(JSON.stringify(manifest)));
  index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': 'zstd' } });
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  const r = spawnSync(bin, ['unpack', '--json', '--ref', 'zstd', layout, join(work, 'ours-zstd')], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.ok((JSON.parse(r.stdout).layers as { compression: string }[]).every((l) => l.compression === 'zstd'));
  assert.equal(describeTree(join(work, 'ours-zstd/rootfs'), { mtimes: true }), describeTree(join(work, 'by-umoci/rootfs'), { mtimes: true }));
});

test.run();
