import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { UsageError } from '../../src/errors.js';
import { openImageSource, normaliseDockerRef } from '../../src/image/source.js';
import { resolveImage } from '../../src/image/resolve.js';
import { hostPlatform, parsePlatform } from '../../src/image/platform.js';
import { file, tar } from '../helpers/tar.js';
import { archiveOf, baseLayerEntries, dockerLegacyArchive, ImageBuilder, sha256, writeFiles, type Desc, scratchDirs, expectInputError } from './fixtures.js';

const scratch = scratchDirs();

const amd64 = { platform: parsePlatform('linux/amd64'), explicitVariant: false };

async function resolveFrom(path: string, opts: { ref?: string; platform?: string } = {}) {
  const source = await openImageSource(path);
  try {
    const p = opts.platform ? parsePlatform(opts.platform) : amd64.platform;
    return { format: source.format, image: await resolveImage(source, { ...(opts.ref ? { ref: opts.ref } : {}), platform: p, explicitVariant: !!p.variant }) };
  } finally {
    await source.close();
  }
}


function oneImage(ref = 'demo:1') {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }] });
  const top: Desc = { ...stripExtras(m), annotations: { 'org.opencontainers.image.ref.name': ref } };
  return { b, m, top };
}

function stripExtras(d: Desc): Desc {
  const { mediaType, digest, size } = d;
  return { mediaType, digest, size };
}

test('an OCI layout directory is recognised by its oci-layout file and resolved', async () => {
  const { b, m, top } = oneImage();
  const d = writeFiles(scratch(), b.layoutFiles([top]));
  const { format, image } = await resolveFrom(d);
  assert.is(format, 'oci-layout');
  assert.is(image.manifestDigest.text, m.digest);
  assert.is(image.configDigest.text, m.config.digest);
  assert.is(image.layers.length, 1);
  assert.is(image.layers[0]?.diffId.text, m.diffIds[0]);
  assert.equal(image.refs, ['demo:1']);
});

test('the same layout as one tar (oci-archive) is read in place, whatever the file is called', async () => {
  const { b, m, top } = oneImage();
  const p = join(scratch(), 'image.bin');
  writeFileSync(p, archiveOf(b.layoutFiles([top])));
  const { format, image } = await resolveFrom(p);
  assert.is(format, 'oci-archive');
  assert.is(image.manifestDigest.text, m.digest);
});

test('an oci-archive whose members are prefixed with ./ still resolves', async () => {
  const { b, m, top } = oneImage();
  const files = new Map([...b.layoutFiles([top])].map(([k, v]) => [`./${k}`, v]));
  const p = join(scratch(), 'dotslash.tar');
  writeFileSync(p, tar([...files].map(([n, d]) => file(n, d))));
  const { image } = await resolveFrom(p);
  assert.is(image.manifestDigest.text, m.digest);
});

test('Docker 25+ docker save (OCI layout + manifest.json) matches --ref by RepoTag', async () => {
  const b = new ImageBuilder();
  const m1 = b.image({ layers: [{ entries: baseLayerEntries(), compression: 'none' }] });
  const m2 = b.image({ layers: [{ entries: [file('x', 'other')], compression: 'none' }] });
  const ann = (name: string) => ({ 'io.containerd.image.name': `docker.io/library/${name}`, 'org.opencontainers.image.ref.name': name.split(':')[1] as string });
  const files = b.layoutFiles([
    { ...stripExtras(m1), annotations: ann('busybox:latest') },
    { ...stripExtras(m2), annotations: ann('alpine:3') },
  ]);
  files.set('manifest.json', Buffer.from(JSON.stringify([
    { Config: `blobs/sha256/${m1.config.digest.slice(7)}`, RepoTags: ['busybox:latest'], Layers: [`blobs/sha256/${m1.layers[0]!.digest.slice(7)}`] },
    { Config: `blobs/sha256/${m2.config.digest.slice(7)}`, RepoTags: ['alpine:3'], Layers: [`blobs/sha256/${m2.layers[0]!.digest.slice(7)}`] },
  ])));
  const p = join(scratch(), 'docker25.tar');
  writeFileSync(p, archiveOf(files));
  const { format, image } = await resolveFrom(p, { ref: 'busybox' });
  assert.is(format, 'docker-oci-archive');
  assert.is(image.manifestDigest.text, m1.digest);
  assert.is((await resolveFrom(p, { ref: 'alpine:3' })).image.manifestDigest.text, m2.digest);
  await expectInputError(resolveFrom(p), /holds 2 images; choose one with --ref: .*busybox.*alpine/);
});

test('legacy docker save: manifest.json + <id>/layer.tar, duplicate layers as in-archive symlinks', async () => {
  const l1 = tar(baseLayerEntries());
  const l2 = tar([file('data', 'x')]);
  const p = join(scratch(), 'legacy.tar');
  writeFileSync(p, dockerLegacyArchive([{ tags: ['app:1'], layers: [l1, l2, l1] }]));
  const { format, image } = await resolveFrom(p);
  assert.is(format, 'docker-archive');
  assert.is(image.layers.length, 3);
  assert.is(image.layers[2]?.diffId.text, `sha256:${sha256(l1)}`);
  assert.is(image.layers[0]?.digest, undefined, 'legacy layers have no blob digest; the diffID covers them');
  assert.equal(image.refs, ['app:1']);
  // the derived manifest digest is stable across runs
  assert.is((await resolveFrom(p)).image.manifestDigest.text, image.manifestDigest.text);
});

test('an extracted docker save directory is recognised by its manifest.json', async () => {
  const l1 = tar(baseLayerEntries());
  const p = join(scratch(), 'legacy.tar');
  writeFileSync(p, dockerLegacyArchive([{ tags: ['app:1'], layers: [l1, l1] }]));
  const d = scratch();
  const r = spawnSync('tar', ['-xf', p, '-C', d]);
  assert.is(r.status, 0);
  const { format, image } = await resolveFrom(d);
  assert.is(format, 'docker-directory');
  assert.is(image.layers.length, 2);
});

test('legacy docker save: two images need --ref, matched by RepoTag with docker normalisation', async () => {
  const p = join(scratch(), 'legacy2.tar');
  writeFileSync(p, dockerLegacyArchive([
    { tags: ['app:1'], layers: [tar([file('a', '1')])] },
    { tags: ['quay.io/x/tool:2'], layers: [tar([file('b', '2')])] },
  ]));
  await expectInputError(resolveFrom(p), /choose one with --ref: app:1; quay.io\/x\/tool:2/);
  assert.is((await resolveFrom(p, { ref: 'docker.io/library/app:1' })).image.refs[0], 'app:1');
  await expectInputError(resolveFrom(p, { ref: 'nope' }), /no image with ref 'nope'; the image offers: app:1; quay.io\/x\/tool:2/);
});

test('legacy docker save: manifest.json paths that leave the archive are refused', async () => {
  for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../x']) {
    const p = join(scratch(), 'escape.tar');
    writeFileSync(p, dockerLegacyArchive([{ tags: ['a:1'], layers: [tar([file('a', '1')])] }], {
      mangleManifest: (m) => m.map((e) => ({ ...(e as object), Layers: [bad] })),
    }));
    await expectInputError(resolveFrom(p), /leaves the archive/);
  }
});

test('legacy docker save: a layer symlink pointing out of the archive is refused', async () => {
  const cfg = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${'0'.repeat(64)}`] } });
  const p = join(scratch(), 'symlink-escape.tar');
  writeFileSync(p, tar([
    file(`${sha256(cfg)}.json`, cfg),
    { name: 'x/layer.tar', type: '2', linkname: '../../../etc/shadow' },
    file('manifest.json', JSON.stringify([{ Config: `${sha256(cfg)}.json`, RepoTags: [], Layers: ['x/layer.tar'] }])),
  ]));
  await expectInputError(resolveFrom(p), /links outside the archive/);
});

test('legacy docker save: a config that does not match the digest in its name is refused', async () => {
  const cfg = JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } });
  const p = join(scratch(), 'cfg.tar');
  writeFileSync(p, tar([file(`${'a'.repeat(64)}.json`, cfg), file('manifest.json', JSON.stringify([{ Config: `${'a'.repeat(64)}.json`, RepoTags: ['x:1'], Layers: [] }]))]));
  await expectInputError(resolveFrom(p), /does not match the digest its name promises/);
});

test('what is not an image is refused by content, with a reason', async () => {
  const d = scratch();
  await expectInputError(resolveFrom(d), /no oci-layout file .* and no manifest.json/);
  const gz = join(d, 'x.tar.gz');
  writeFileSync(gz, gzipSync(archiveOf(new Map([['oci-layout', Buffer.from('{}')]]))));
  // gzip is looked through (docker save | gzip): what is inside decides
  await expectInputError(resolveFrom(gz), /x\.tar\.gz:oci-layout: imageLayoutVersion: required string/);
  const junk = join(d, 'junk');
  writeFileSync(junk, Buffer.alloc(2048, 7));
  await expectInputError(resolveFrom(junk), /not an image/);
  const plain = join(d, 'plain.tar');
  writeFileSync(plain, tar([file('hello', 'x')]));
  await expectInputError(resolveFrom(plain), /tar archive but not an image/);
  await expectInputError(resolveFrom(join(d, 'missing')), /cannot read image: ENOENT/);
});

test('one image and no --ref: it is taken; several tags of one digest count as one image', async () => {
  const { b, m, top } = oneImage('a');
  const d = writeFiles(scratch(), b.layoutFiles([top, { ...top, annotations: { 'org.opencontainers.image.ref.name': 'b' } }]));
  const { image } = await resolveFrom(d);
  assert.is(image.manifestDigest.text, m.digest);
  assert.equal(image.refs.sort(), ['a', 'b']);
});

function multiPlatform(b: ImageBuilder) {
  const mk = (architecture: string, variant?: string) => {
    const m = b.image({ layers: [{ entries: [file('arch', architecture + (variant ?? ''))] }], architecture, ...(variant ? { variant } : {}) });
    return { ...stripExtras(m), platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) } };
  };
  return { amd: mk('amd64'), arm64: mk('arm64', 'v8'), armv7: mk('arm', 'v7'), armv6: mk('arm', 'v6') };
}

test('an index: the host platform is chosen, or --platform; variants are matched', async () => {
  const b = new ImageBuilder();
  const ms = multiPlatform(b);
  const attestation = { ...b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: b.json({}, 'application/vnd.oci.image.config.v1+json'), layers: [] }, 'application/vnd.oci.image.manifest.v1+json'), platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } };
  const idx = b.index([attestation, ms.armv6, ms.armv7, ms.arm64, ms.amd]);
  const d = writeFiles(scratch(), b.layoutFiles([{ ...idx, annotations: { 'org.opencontainers.image.ref.name': 'multi' } }]));
  assert.is((await resolveFrom(d, { platform: 'linux/amd64' })).image.manifestDigest.text, ms.amd.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm64' })).image.manifestDigest.text, ms.arm64.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm64/v8' })).image.manifestDigest.text, ms.arm64.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm/v6' })).image.manifestDigest.text, ms.armv6.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm' })).image.manifestDigest.text, ms.armv7.digest, 'arm means arm/v7');
  await expectInputError(resolveFrom(d, { platform: 'linux/s390x' }), /no manifest for platform linux\/s390x .*offers: linux\/arm\/v6, linux\/arm\/v7, linux\/arm64\/v8, linux\/amd64/);
  await expectInputError(resolveFrom(d, { platform: 'linux/arm64/v9' }), /no manifest for platform linux\/arm64\/v9/);
});

test('nested indexes and Docker manifest lists are walked to the platform manifest', async () => {
  const b = new ImageBuilder();
  const ms = multiPlatform(b);
  const inner = b.index([ms.arm64, ms.amd], 'application/vnd.docker.distribution.manifest.list.v2+json');
  const middle = b.index([inner]);
  const outer = b.index([middle]);
  const d = writeFiles(scratch(), b.layoutFiles([outer]));
  assert.is((await resolveFrom(d)).image.manifestDigest.text, ms.amd.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm64' })).image.manifestDigest.text, ms.arm64.digest);
  await expectInputError(resolveFrom(d, { platform: 'linux/ppc64le' }), /offers: linux\/arm64\/v8, linux\/amd64/);
});

test('index.json listing per-platform manifests directly: the platform decides', async () => {
  const b = new ImageBuilder();
  const ms = multiPlatform(b);
  const d = writeFiles(scratch(), b.layoutFiles([ms.arm64, ms.amd]));
  assert.is((await resolveFrom(d)).image.manifestDigest.text, ms.amd.digest);
  assert.is((await resolveFrom(d, { platform: 'linux/arm64' })).image.manifestDigest.text, ms.arm64.digest);
});

test('a single manifest for another architecture is refused, naming its platform', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: [file('a')] }], architecture: 'riscv64' });
  const d = writeFiles(scratch(), b.layoutFiles([stripExtras(m)]));
  await expectInputError(resolveFrom(d), /the image is for linux\/riscv64, not linux\/amd64 \(choose it with --platform linux\/riscv64\)/);
  assert.is((await resolveFrom(d, { platform: 'linux/riscv64' })).image.manifestDigest.text, m.digest);
});

test('platforms: --platform parsing, and the host in OCI names', () => {
  assert.equal(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.equal(parsePlatform('Linux/AMD64'), { os: 'linux', architecture: 'amd64' });
  for (const bad of ['linux', 'linux/', '/amd64', 'linux/arm/v7/x', 'linux/am d64'])
    assert.throws(() => parsePlatform(bad), (e: Error) => e instanceof UsageError && /expected OS\/ARCH\[\/VARIANT\]/.test(e.message), bad);
  const host = hostPlatform();
  assert.is(host.os, 'linux');
  assert.is(host.architecture, ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch);
});

test('normaliseDockerRef spells references as Docker does', () => {
  assert.is(normaliseDockerRef('alpine'), 'docker.io/library/alpine:latest');
  assert.is(normaliseDockerRef('me/app:2'), 'docker.io/me/app:2');
  assert.is(normaliseDockerRef('localhost:5000/app'), 'localhost:5000/app:latest');
  assert.is(normaliseDockerRef('quay.io/a/b@sha256:00'), 'quay.io/a/b@sha256:00');
});

test('an oci-archive with a symlinked blob inside the archive resolves; a directory layout symlink out of it does not', async () => {
  const { b, m, top } = oneImage();
  const files = b.layoutFiles([top]);
  const cfgHex = m.config.digest.slice(7);
  const cfg = files.get(`blobs/sha256/${cfgHex}`) as Buffer;
  files.delete(`blobs/sha256/${cfgHex}`);
  files.set('other/cfg', cfg);
  const p = join(scratch(), 'link.tar');
  writeFileSync(p, archiveOf(files, [{ name: `blobs/sha256/${cfgHex}`, type: '2', linkname: '../../other/cfg' }]));
  assert.is((await resolveFrom(p)).image.configDigest.text, m.config.digest);

  // directory layout: a blob that is a symlink to a host file is resolved inside the layout
  const d = writeFiles(scratch(), b.layoutFiles([top]));
  const outside = scratch();
  writeFileSync(join(outside, 'cfg'), cfg);
  rmSync(join(d, 'blobs/sha256', cfgHex));
  mkdirSync(join(d, 'x'), { recursive: true });
  symlinkSync(join(outside, 'cfg'), join(d, 'blobs/sha256', cfgHex));
  await expectInputError(resolveFrom(d), /config blob sha256:[0-9a-f]+ is missing/);
});

test.run();
