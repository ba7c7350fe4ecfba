/**
 * When is a spool entry complete? Two answers, both from lstat only (nothing is opened):
 *
 * - Whole: the entry's last change was to its own attributes, not to its content, and nothing
 *   inside changed after it. Writing a file, or adding or removing a directory's child, sets its
 *   mtime and ctime to one and the same instant; rename(2), chmod, chown and utimes set the ctime
 *   alone. So an entry whose ctime differs from its mtime was last renamed (in), or had its
 *   attributes set, and if every descendant's last change is no later than that, the entry is
 *   as it will stay. A copy in place fails this until it is finished: each file written or child
 *   added at the top sets mtime = ctime again, and a deep file written later is newer than the
 *   top (`cp -a` and `tar -x` set the top directory's attributes last, which passes, correctly:
 *   they are done). A file created at the top and not yet written already fails (it set the
 *   top's mtime), so no time margin is needed and an entry renamed in right after it was built
 *   (`cp -a b .incoming && mv .incoming spool/b`) is whole at once. Only a rename within the same
 *   clock tick as the last write leaves mtime = ctime; such an entry waits for quiet. What this
 *   cannot see is a writer that sets the top's attributes in the middle of its copy and then
 *   pauses before writing anything more: looked at in that pause, the entry is taken as it is
 *   (and looked at again when the copy goes on at its top level).
 * - Quiet: the sizes and times of everything in it did not change for the quiet time. This is the
 *   fallback that always holds; the first test only makes the common case fast.
 *
 * A file with more than one link (rootfs trees made with `cp -al` from one template) gets a new
 * ctime whenever a link to it is made or removed anywhere, in another entry or outside the spool;
 * for such files only the mtime (and size) count, so one entry's links do not make another look
 * changed. Links made or removed inside the entry change their directory, which is still seen.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats, Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { openSpoolEntry, type HeldEntry } from '../spool/read.js';

/** More than any real bundle or layout holds; past it the entry is judged on what was seen. */
export const MAX_WALK_ENTRIES = 2_000_000;

export interface Snapshot {
  /** False when the entry is gone. */
  exists: boolean;
  /** Hash of every path's inode/size/times (see above), in walk order; compared as a whole. */
  signature: string;
  /** The "whole" test above. */
  whole: boolean;
}

/** A file whose ctime other entries' links move. */
const shared = (st: BigIntStats): boolean => !st.isDirectory() && st.nlink > 1n;
/** When the file last changed in a way that matters to the entry holding it. */
const changedAt = (st: BigIntStats): bigint => (shared(st) ? st.mtimeNs : st.ctimeNs);
const describe = (st: BigIntStats): string => `${st.ino}:${st.size}:${st.mtimeNs}:${shared(st) ? 'linked' : st.ctimeNs}`;

export async function snapshotEntry(path: string): Promise<Snapshot> {
  const seen = await lstat(path, { bigint: true }).catch(() => null);
  if (seen === null) return { exists: false, signature: '', whole: false };
  if (!seen.isDirectory()) return { exists: true, signature: describe(seen), whole: seen.mtimeNs !== seen.ctimeNs };
  // walked through the directory held open: an entry swapped for a symlink is never followed
  let held: HeldEntry;
  try {
    held = await openSpoolEntry(path, 'directory');
  } catch {
    return { exists: true, signature: `${describe(seen)}:replaced`, whole: false }; // the next look sees what it became
  }
  try {
    return await snapshotDirectory(held.at, await held.handle.stat({ bigint: true }));
  } finally {
    await held.close();
  }
}

/** The directory at `at` (`top` its stat), walked; paths are hashed relative to it. */
async function snapshotDirectory(at: string, top: BigIntStats): Promise<Snapshot> {
  const attributesLast = top.mtimeNs !== top.ctimeNs;
  const hash = createHash('sha256').update(describe(top));
  const note = (line: string) => hash.update('\n').update(line);

  const changedAfterTop = top.ctimeNs + 1n;
  let newestInside = -1n;
  let seen = 0;
  const walk = async (dir: string): Promise<void> => {
    let children: Dirent[];
    try {
      children = await readdir(join(at, dir), { withFileTypes: true });
    } catch {
      note(`${dir}:unreadable`); // vanished or replaced mid-walk: the next look sees it
      newestInside = changedAfterTop;
      return;
    }
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of children) {
      if (++seen > MAX_WALK_ENTRIES) return;
      const p = join(dir, c.name);
      const st = await lstat(join(at, p), { bigint: true }).catch(() => null);
      if (st === null) {
        note(`${p}:gone`);
        newestInside = changedAfterTop;
        continue;
      }
      note(`${p}:${describe(st)}`);
      if (changedAt(st) > newestInside) newestInside = changedAt(st);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk('.');
  return { exists: true, signature: hash.digest('hex'), whole: attributesLast && newestInside <= top.ctimeNs };
}
