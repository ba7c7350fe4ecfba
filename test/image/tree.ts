/**
 * A filesystem tree as comparable text: one line per path with type, mode, owner, size, content
 * hash, link target, xattrs and hardlink group (inodes numbered in walk order, so two trees with
 * the same link structure compare equal).
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';

export interface TreeOptions {
  /** Compare mtimes (whole seconds) of every path too. */
  mtimes?: boolean;
  /** Xattr names to leave out (e.g. ones a tool adds for its own bookkeeping). */
  ignoreXattrs?: (name: string) => boolean;
}

function typeOf(st: Stats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isSocket()) return 'socket';
  return 'other';
}

function xattrsOf(p: string, ignore?: (n: string) => boolean): string {
  let names: string[];
  try {
    names = listAttributesSync(p);
  } catch {
    return '';
  }
  return names
    .filter((n) => !ignore?.(n))
    .sort()
    .map((n) => {
      let v: Buffer | null;
      try {
        v = getAttributeSync(p, n);
      } catch {
        v = null;
      }
      return `${n}=${v ? createHash('sha256').update(v).digest('hex').slice(0, 16) : '?'}`;
    })
    .join(',');
}

export function describeTree(root: string, opts: TreeOptions = {}): string[] {
  const lines: string[] = [];
  const inodes = new Map<number, number>();
  const walk = (rel: string) => {
    const p = rel === '' ? root : join(root, rel);
    const st = lstatSync(p);
    const type = typeOf(st);
    const fields = [rel === '' ? '.' : rel, type, (st.mode & 0o7777).toString(8), `${st.uid}:${st.gid}`];
    if (type === 'file') {
      fields.push(String(st.size), createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16));
      if (st.nlink > 1) {
        if (!inodes.has(st.ino)) inodes.set(st.ino, inodes.size + 1);
        fields.push(`link-group=${inodes.get(st.ino)}`);
      }
    }
    if (type === 'symlink') fields.push(`-> ${readlinkSync(p)}`);
    if (type === 'char' || type === 'block') fields.push(`dev=${st.rdev}`);
    if (opts.mtimes) fields.push(`mtime=${Math.floor(st.mtimeMs / 1000)}`);
    if (type !== 'symlink') {
      const x = xattrsOf(p, opts.ignoreXattrs);
      if (x) fields.push(`xattrs=${x}`);
    }
    lines.push(fields.join(' '));
    if (type === 'dir') for (const name of readdirSync(p).sort()) walk(rel === '' ? name : `${rel}/${name}`);
  };
  walk('');
  return lines;
}
