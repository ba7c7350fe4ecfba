/**
 * When is a spool entry complete? Two answers, both from lstat only (nothing is opened):
 *
 * - Renamed in whole: rename(2) sets the moved inode's ctime, while everything inside was
 *   written before, so every descendant's ctime is strictly older than the entry's (for an
 *   archive: its mtime is older than its ctime). A copy in place keeps touching things after
 *   the entry's last direct change, so it fails this test until it is finished (`cp -a` and
 *   `tar -x` set the top directory's times last, which also passes, correctly: they are done).
 *   Everything inside must be older by a margin, not just older: a file created in the entry gets
 *   its ctime a moment before the directory does (a clock tick can fall between the two), so a
 *   file created and not yet written can look older than the entry; the margin is above a tick
 *   (10 ms at HZ=100). An entry renamed in within the margin of its last write waits for quiet.
 * - Quiet: the sizes, mtimes and ctimes of everything in it did not change for the quiet time.
 *   This is the fallback that always holds; the first test only makes the common case fast.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** How much older than the entry's last change everything in it must be to count as renamed in whole. */
export const RENAME_MARGIN_NS = 20_000_000n;

/** More than any real bundle or layout holds; past it the entry is judged on what was seen. */
export const MAX_WALK_ENTRIES = 2_000_000;

export interface Snapshot {
  /** False when the entry is gone. */
  exists: boolean;
  /** Hash of every path's inode/size/mtime/ctime, in walk order; compared as a whole. */
  signature: string;
  /** The renamed-in test above. */
  renamedInWhole: boolean;
}

export async function snapshotEntry(path: string): Promise<Snapshot> {
  const top = await lstat(path, { bigint: true }).catch(() => null);
  if (top === null) return { exists: false, signature: '', renamedInWhole: false };
  const topLine = `${top.ino}:${top.size}:${top.mtimeNs}:${top.ctimeNs}`;
  if (!top.isDirectory()) return { exists: true, signature: topLine, renamedInWhole: top.mtimeNs + RENAME_MARGIN_NS < top.ctimeNs };
  const hash = createHash('sha256').update(topLine);
  const note = (line: string) => hash.update("\n").update(line);

  let newestInside = -1n;
  let seen = 0;
  const walk = async (dir: string): Promise<void> => {
    let children: Dirent[];
    try {
      children = await readdir(dir, { withFileTypes: true });
    } catch {
      note(`${dir}:unreadable`); // vanished or replaced mid-walk: the next look sees it
      newestInside = top.ctimeNs;
      return;
    }
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of children) {
      if (++seen > MAX_WALK_ENTRIES) return;
      const p = join(dir, c.name);
      const st = await lstat(p, { bigint: true }).catch(() => null);
      if (st === null) {
        note(`${p}:gone`);
        newestInside = top.ctimeNs;
        continue;
      }
      note(`${p}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`);
      if (st.ctimeNs > newestInside) newestInside = st.ctimeNs;
      if (st.mtimeNs > newestInside) newestInside = st.mtimeNs;
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(path);
  return { exists: true, signature: hash.digest('hex'), renamedInWhole: newestInside + RENAME_MARGIN_NS < top.ctimeNs };
}
