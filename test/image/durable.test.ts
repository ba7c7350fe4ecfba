/**
 * Crash consistency of an unpack: every file and directory of the new bundle is on disk before
 * the rename that puts it (and its record, which makes the next pass skip the unpack) in place.
 * Seen from outside, with strace (counted as skipped where strace is not installed).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RECORD_FILE } from '../../src/image/bundle-dir.js';
import { dir, file, hardlink, symlink } from '../helpers/tar.js';
import { baseLayerEntries, ImageBuilder, scratchDirs, writeFiles } from './fixtures.js';

const scratch = scratchDirs();
const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
const haveStrace = spawnSync('strace', ['-V']).status === 0;

/** Every path under `root` that is a regular file or a directory, relative to it ('' for root). */
function tree(root: string): string[] {
  const out = [''];
  for (const e of readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[]) {
    if (e.isFile() || e.isDirectory()) out.push(relative(root, join(e.parentPath ?? e.path, e.name)));
  }
  return out.sort();
}

// strace is in scripts/setup-libvirt.sh's packages; elsewhere the test counts as skipped
(haveStrace ? test : test.skip)('unpack: every file and directory reaches the disk before the bundle is renamed into place', () => {
  const b = new ImageBuilder();
  const m = b.image({
    layers: [
      { entries: baseLayerEntries() },
      { entries: [dir('srv/'), file('srv/a', 'one'), file('srv/b', 'two', { mode: 0 }), hardlink('srv/c', 'srv/a'), symlink('srv/d', 'a')] },
    ],
    config: { Cmd: ['/bin/sh'] },
  });
  const src = writeFiles(scratch(), b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]));
  const target = join(scratch(), 'bundle');
  const log = join(scratch(), 'strace.log');
  const r = spawnSync('strace', ['-f', '-y', '-qq', '-e', 'trace=fsync,syncfs,rename,renameat,renameat2', '-o', log, bin, 'unpack', src, target], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const lines = readFileSync(log, 'utf8').split('\n');
  const staging = join(target, '..', '.bundle.ocivirt-staging');
  const swap = lines.findIndex((l) => /rename/.test(l) && l.includes(`"${staging}"`) && l.includes(`"${target}"`));
  assert.ok(swap > 0, 'the staging directory is renamed into place');
  // the whole file system holding the staging tree (syncfs), or each of its files and directories (fsync)
  const synced = new Set<string>();
  let wholeFs = false;
  for (const l of lines.slice(0, swap)) {
    const f = /(fsync|syncfs)\(\d+<([^>]*)>/.exec(l); // "= 0" or "<unfinished ...>": a failure fails the unpack
    if (f && f[2]!.startsWith(staging)) {
      if (f[1] === 'syncfs') wholeFs = true;
      else synced.add(relative(staging, f[2]!));
    }
  }
  const want = tree(target);
  assert.ok(want.includes(RECORD_FILE) && want.includes('rootfs/srv/b'));
  if (!wholeFs) assert.equal(want.filter((p) => !synced.has(p)), [], 'not synced before the rename');
});

test.run();
