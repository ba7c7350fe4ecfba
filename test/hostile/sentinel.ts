/**
 * A sentinel tree around a rootfs, and a byte-for-byte snapshot of it: every path beside and above
 * the rootfs (and a few host files a hostile layer would aim at) with type, mode, owner, size,
 * content hash, link target, mtime and xattrs. A hostile layer must leave it exactly as it was.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { listAttributesSync, getAttributeSync, setAttributeSync } from '@napi-rs/xattr';

/** Host files outside the sandbox a layer might aim at by absolute name (only read here). */
const HOST_FILES = ['/etc/passwd', '/etc/shadow', '/etc/hostname'];

/** Builds `base/outside/...` and `base/above-*` next to `base/rootfs`. */
export function plantSentinels(base: string): void {
  const out = join(base, 'outside');
  mkdirSync(join(out, 'dir/sub'), { recursive: true });
  writeFileSync(join(out, 'secret'), 'host secret\n');
  chmodSync(join(out, 'secret'), 0o600);
  writeFileSync(join(out, 'dir/file'), 'data');
  writeFileSync(join(out, 'dir/sub/deep'), 'deep');
  writeFileSync(join(out, 'suid'), 'x');
  chmodSync(join(out, 'suid'), 0o4755);
  chownSync(join(out, 'dir/file'), 123, 456);
  symlinkSync('/etc/passwd', join(out, 'link-to-host'));
  symlinkSync('secret', join(out, 'link-rel'));
  setAttributeSync(join(out, 'dir/file'), 'user.sentinel', 'keep');
  writeFileSync(join(base, 'above-secret'), 'above');
  symlinkSync('outside', join(base, 'above-link'));
  for (const p of ['secret', 'dir/file', 'dir/sub/deep', 'suid', 'dir/sub', 'dir', '']) {
    utimesSync(join(out, p), 1_000_000_000, 1_000_000_000);
  }
}

export type Snapshot = Map<string, string>;

function describe(path: string): string {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st === undefined) return 'absent';
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'other';
  let content = '';
  if (st.isFile()) content = createHash('sha256').update(readFileSync(path)).digest('hex');
  else if (st.isSymbolicLink()) content = readlinkSync(path);
  let xattrs = '';
  try {
    xattrs = listAttributesSync(path)
      .sort()
      .map((n) => `${n}=${getAttributeSync(path, n)?.toString('hex')}`)
      .join(',');
  } catch {
    // symlinks to nowhere etc.: no xattrs to compare
  }
  return [type, st.mode.toString(8), st.uid, st.gid, st.size, content, st.mtimeMs, st.ino, st.nlink, xattrs].join(' ');
}

/** Everything under `base` except the rootfs, plus the host files. */
export function snapshot(base: string, rootfsName = 'rootfs'): Snapshot {
  const snap: Snapshot = new Map();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (p === join(base, rootfsName)) continue;
      snap.set(p, describe(p));
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  snap.set(base, describe(base));
  walk(base);
  for (const f of HOST_FILES) snap.set(f, describe(f));
  return snap;
}
