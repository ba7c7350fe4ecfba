/**
 * Versioned unpacks (what the reconciler uses): each image version gets its own directory under
 * the domain's, so a new version never replaces a tree a running container may use; the same
 * version is not unpacked again; a staging directory a crash left is cleared.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleVersionName, unpackImage } from '../../src/image/unpack.js';
import { parseDigest } from '../../src/image/digest.js';
import { dir, file } from '../helpers/tar.js';
import { baseLayerEntries, ImageBuilder, writeFiles, scratchDirs } from './fixtures.js';

const scratch = scratchDirs();

function imageWith(version: string) {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: [...baseLayerEntries(), dir('srv/'), file('srv/version', version)] }], config: { Cmd: ['/bin/sh'] } });
  return { digest: m.digest, dir: writeFiles(scratch(), b.layoutFiles([m])) };
}

test('a new version goes to its own directory; the old tree is left exactly as it was', async () => {
  const parent = join(scratch(), 'web');
  const v1 = imageWith('one');
  const v2 = imageWith('two');
  const r1 = await unpackImage(v1.dir, parent, { versioned: true });
  assert.is(r1.bundleDir, join(parent, bundleVersionName(parseDigest(v1.digest))));
  assert.is(r1.bundleDir, join(parent, v1.digest.slice('sha256:'.length, 'sha256:'.length + 16)));
  const oldFile = join(r1.bundleDir, 'rootfs', 'srv', 'version');
  const inode = statSync(oldFile).ino;

  const r2 = await unpackImage(v2.dir, parent, { versioned: true });
  assert.is.not(r2.bundleDir, r1.bundleDir);
  assert.is(readFileSync(join(r2.bundleDir, 'rootfs', 'srv', 'version'), 'utf8'), 'two');
  assert.is(readFileSync(oldFile, 'utf8'), 'one');
  assert.is(statSync(oldFile).ino, inode, 'the old tree was rewritten');
  assert.equal(readdirSync(parent).sort(), [r1.bundleDir, r2.bundleDir].map((p) => p.slice(parent.length + 1)).sort());

  const again = await unpackImage(v2.dir, parent, { versioned: true });
  assert.ok(again.skipped, 'an unchanged version was unpacked again');
  assert.is(again.bundleDir, r2.bundleDir);
});

test('options that change the tree make another version; the default version is untouched', async () => {
  const parent = join(scratch(), 'web');
  const v1 = imageWith('one');
  const plain = await unpackImage(v1.dir, parent, { versioned: true });
  const devices = await unpackImage(v1.dir, parent, { versioned: true, allowDevices: true });
  assert.is.not(devices.bundleDir, plain.bundleDir);
  assert.match(devices.bundleDir, /\/[0-9a-f]{16}-[0-9a-f]{8}$/);
  assert.ok(statSync(join(plain.bundleDir, 'config.json')).isFile());
});

test('a staging directory a crash left for the version is removed, the parent keeps its other versions', async () => {
  const parent = join(scratch(), 'web');
  const v1 = imageWith('one');
  const v2 = imageWith('two');
  const r1 = await unpackImage(v1.dir, parent, { versioned: true });
  const name2 = bundleVersionName(parseDigest(v2.digest));
  mkdirSync(join(parent, `.${name2}.ocivirt-staging`, 'rootfs'), { recursive: true });
  writeFileSync(join(parent, `.${name2}.ocivirt-staging`, 'rootfs', 'half'), 'x');
  const r2 = await unpackImage(v2.dir, parent, { versioned: true });
  assert.equal(readdirSync(parent).sort(), [bundleVersionName(parseDigest(v1.digest)), name2].sort());
  assert.is(readFileSync(join(r1.bundleDir, 'rootfs', 'srv', 'version'), 'utf8'), 'one');
  assert.is(readFileSync(join(r2.bundleDir, 'rootfs', 'srv', 'version'), 'utf8'), 'two');
});

test('the parent must be a directory', async () => {
  const root = scratch();
  writeFileSync(join(root, 'web'), 'not a directory');
  try {
    await unpackImage(imageWith('one').dir, join(root, 'web'), { versioned: true });
    assert.unreachable('a file as the versions parent was accepted');
  } catch (e) {
    assert.match((e as Error).message, /not a directory/);
  }
});

test.run();
