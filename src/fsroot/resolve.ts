/**
 * The one resolver that keeps every path inside a root: a path is walked component by component,
 * a symlink met on the way is read and its target spliced into the rest of the path as if `root`
 * were `/` (absolute targets restart at the root, `..` never climbs above it). The result is a
 * host path inside `root` that names the same object a process chrooted into `root` would reach.
 *
 * Why path strings and lstat are enough here: Node has no openat(O_NOFOLLOW) walk, so this is not
 * safe against a second writer swapping a component for a symlink between our lstat and the
 * caller's syscall. Callers use it on trees they own (the unpack staging directory, a rootfs
 * nobody runs yet), where nothing else writes during the walk; under that condition the per
 * component resolution is exact.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { fsPath } from './binary.js';

/** Links followed in one resolution before giving up (Linux allows 40; continuity uses 255). */
export const MAX_SYMLINKS = 255;

export interface ResolveOptions {
  /** Follow a symlink in the last component (default true). False resolves the parents only. */
  followFinal?: boolean;
  /** Root, path and result are binary strings (see binary.ts): names that are not UTF-8 work. */
  binary?: boolean;
}

/** Splits a path into its components, dropping empty and `.` ones. */
export function pathComponents(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** The state of one resolution; `step` is fed the lstat result of the next candidate. */
class Walk {
  readonly resolved: string[] = [];
  /** Components still to resolve, the next one last (a stack, so splicing a link is cheap). */
  readonly pending: string[];
  private links = 0;

  constructor(
    readonly root: string,
    readonly unsafePath: string,
    readonly followFinal: boolean,
  ) {
    this.pending = pathComponents(unsafePath).reverse();
  }

  /**
   * Takes the next component off the stack. Returns the host path to lstat, or undefined when
   * the component was consumed without a filesystem look (`..`, or a final one not followed).
   */
  next(): string | undefined {
    const comp = this.pending.pop() as string;
    if (comp === '..') {
      this.resolved.pop(); // clamped: popping an empty list is a no-op, i.e. `/..` is `/`
      return undefined;
    }
    this.resolved.push(comp);
    if (this.pending.length === 0 && !this.followFinal) return undefined;
    return join(this.root, ...this.resolved);
  }

  /** Called with the lstat of the path `next` returned (undefined if absent); may need readlink. */
  isLink(st: Stats | undefined): boolean {
    return st !== undefined && st.isSymbolicLink();
  }

  /** Replaces the link just pushed with its target's components. */
  splice(target: string): void {
    if (++this.links > MAX_SYMLINKS) {
      throw new InputError(`too many levels of symbolic links (more than ${MAX_SYMLINKS})`, {
        field: this.unsafePath,
      });
    }
    this.resolved.pop();
    if (target.startsWith('/')) this.resolved.length = 0;
    const comps = pathComponents(target);
    for (let i = comps.length - 1; i >= 0; i--) this.pending.push(comps[i] as string);
  }

  result(): string {
    return join(this.root, ...this.resolved);
  }
}

function lstatOrUndefinedSync(p: string | Buffer): Stats | undefined {
  try {
    return lstatSync(p, { throwIfNoEntry: false }); // no exception for ENOENT: this is the hot path
  } catch (e) {
    // ENOENT: not there (yet); ENOTDIR: a non-directory in the middle, which the caller's own
    // syscall will report. Neither is a link to follow.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await lstat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/**
 * Resolves `unsafePath` inside `root` (an absolute host path of a directory we trust) and returns
 * an absolute host path inside `root`. Throws InputError (field = the path) on a symlink loop.
 */
export function resolveInRootSync(root: string, unsafePath: string, opts: ResolveOptions = {}): string {
  const walk = new Walk(root, unsafePath, opts.followFinal ?? true);
  const binary = opts.binary === true;
  // Every component is looked at, even below an absent one: `missing/../link` must still follow
  // `link` inside the root rather than hand it back unresolved.
  while (walk.pending.length > 0) {
    const candidate = walk.next();
    if (candidate === undefined) continue;
    const p = binary ? fsPath(candidate) : candidate;
    if (walk.isLink(lstatOrUndefinedSync(p))) walk.splice(binary ? readlinkSync(p, { encoding: 'latin1' }) : readlinkSync(p));
  }
  return walk.result();
}

/** The asynchronous twin of `resolveInRootSync`. */
export async function resolveInRoot(root: string, unsafePath: string, opts: ResolveOptions = {}): Promise<string> {
  const walk = new Walk(root, unsafePath, opts.followFinal ?? true);
  while (walk.pending.length > 0) {
    const candidate = walk.next();
    if (candidate === undefined) continue;
    if (walk.isLink(await lstatOrUndefined(candidate))) walk.splice(await readlink(candidate));
  }
  return walk.result();
}
