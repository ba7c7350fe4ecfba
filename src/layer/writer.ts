/**
 * Applies the entries of one layer to a rootfs, synchronously (it runs in a worker thread, see
 * apply.ts), exactly as image-spec layer.md says, and never outside the rootfs.
 *
 * Safety model: every parent path is resolved by fsroot (component by component, symlinks scoped
 * to the root), and the last component is never followed: it is lstat'ed, removed if it has the
 * wrong type and created fresh (O_EXCL|O_NOFOLLOW for files; symlink/link/mkfifo/mkdir never
 * follow). Metadata goes through the fd of the file we just created, or l* calls. This is sound
 * with path strings only because we own the staging directory: nothing else writes there while a
 * layer is applied, so what lstat saw is what the next syscall finds.
 *
 * Nothing is ever applied through a host path remembered from an earlier entry: later entries
 * of the same layer may have turned a directory on that path into a symlink. Deferred directory
 * metadata (finish) resolves its path again and checks the directory's identity; the parent
 * cache holds only paths made of real directories and is dropped whenever one of those could
 * go (removeExisting); the whiteout bookkeeping (newDirs, touched) only ever narrows what a
 * whiteout removes, on a path resolved afresh.
 *
 * Whiteouts only hit lower layers: every path this layer creates is remembered (with its
 * ancestors), and a whiteout or an opaque marker removes only what this layer did not create,
 * whatever the order of the entries.
 */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { listAttributesSync, removeAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { mkfifoSync } from 'mkfifo';
import { InputError } from '../errors.js';
import { asUtf8, display, fsPath as P, resolveInRootSync, toBinary } from '../fsroot/index.js';
import type { TarEntry, TarSink } from './tar-reader.js';

export interface LayerStats {
  /** Tar entries (PAX and GNU meta headers not counted). */
  entries: number;
  /** Uncompressed bytes of the tar stream. */
  bytes: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  devices: number;
  /** Whiteout files and opaque markers. */
  whiteouts: number;
  skippedDevices: number;
}

export function emptyStats(): LayerStats {
  return { entries: 0, bytes: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, fifos: 0, devices: 0, whiteouts: 0, skippedDevices: 0 };
}

export interface WriterOptions {
  allowDevices: boolean;
  onWarning: (msg: string) => void;
  /** The process umask (a worker cannot read it), to know when open()'s mode needs an fchmod. */
  umask: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const MAX_WARNINGS = 100;
/** mknod(1) takes a few ms; one still running after this is hung (it runs while the worker cannot be terminated). */
export const MKNOD_TIMEOUT_MS = 5_000;

/**
 * Which xattrs a layer may set. user.*: ordinary data. security.capability: file capabilities
 * are part of the image (ping, etc.). system.posix_acl_*: ACLs are permissions like the mode.
 * Everything else is skipped with a warning: trusted.* is where overlayfs keeps its own
 * whiteout/opaque/redirect markers (an image must not plant those for a later overlay mount on
 * the host); security.selinux, security.ima/evm/apparmor/SMACK* are labels of the host's policy,
 * not the image's (umoci drops security.selinux for the same reason); other namespaces are
 * unknown to the kernel or filesystem-specific (system.nfs4_acl).
 */
export function xattrAllowed(name: string): boolean {
  return (
    (name.startsWith('user.') && name.length > 5) ||
    name === 'security.capability' ||
    name === 'system.posix_acl_access' ||
    name === 'system.posix_acl_default'
  );
}

interface ParentDir {
  path: string;
  /** New files in a setgid directory take its group, so their owner must always be set. */
  setgid: boolean;
}

/**
 * A directory's mode and times, set after its children. Kept by the directory's identity, never
 * applied through the host path it had: by `finish()` a later entry may have replaced one of its
 * ancestors with a symlink (`a/`, `a/etc/`, then `a -> /`), and the old host path would now
 * reach the host's `/etc`.
 */
interface DirFinal {
  dev: number;
  ino: number;
  mode: number | undefined;
  atime: number;
  mtime: number;
}

/** Seconds for the *utimes calls: Node turns a negative number into "now", a Date it keeps (pre-1970 mtimes). */
function time(seconds: number): number | Date {
  return seconds < 0 ? new Date(seconds * 1000) : seconds;
}

/** errno values of the xattr binding's errors, which carry only Rust's "... (os error N)" text. */
const EPERM = 1;
const E2BIG = 7;
const EINVAL = 22;
const ERANGE = 34;
const ENOTSUP = 95;

function osErrno(err: unknown): number | undefined {
  const m = /\(os error (\d+)\)/.exec((err as Error)?.message ?? '');
  return m ? Number(m[1]) : undefined;
}

/** The names in a directory, as binary strings. */
function readdirBinary(dir: string): string[] {
  return fs.readdirSync(P(dir), { encoding: 'buffer' }).map((b) => b.toString('latin1'));
}

/** fs errors that mean "the layer asks for something impossible", as opposed to a host failure. */
const INPUT_CODES = new Set(['ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'EEXIST', 'ELOOP', 'ENOTEMPTY', 'EINVAL', 'EMLINK']);

export class LayerWriter implements TarSink {
  readonly stats = emptyStats();
  /**
   * What this layer created or replaced, for whiteouts: directories it created (everything in
   * them is this layer's, so their entries need no record: a base layer records nothing), names
   * it put into directories that existed before, by host parent path, and every directory above
   * them. Memory stays small whatever the number of entries in new directories.
   */
  private readonly newDirs = new Set<string>();
  private readonly touched = new Map<string, Set<string>>();
  private readonly touchedAncestors = new Set<string>();
  /** The rootfs as a binary string (every path here is one: fsroot/binary.ts), and as given. */
  private readonly root: string;
  private readonly hostRoot: string;
  /** Tar parent path -> resolved host directory; cleared whenever a directory or symlink goes away. */
  private readonly parentCache = new Map<string, ParentDir>();
  /** Directories whose mode and times are set at the end, after their children. */
  private readonly dirFinal = new Map<string, DirFinal>();
  private file: { fd: number; path: string; entry: TarEntry; parent: ParentDir } | undefined;
  private readonly asRoot = process.getuid?.() === 0;
  private readonly uid = process.getuid?.() ?? -1;
  private readonly gid = process.getgid?.() ?? -1;
  private warnings = 0;
  private current = '';

  constructor(
    root: string,
    private readonly opts: WriterOptions,
  ) {
    this.hostRoot = resolve(root);
    this.root = toBinary(this.hostRoot); // the same normalized form fsroot returns, so paths compare as strings
  }

  private fail(reason: string): never {
    throw new InputError(reason, { field: this.current });
  }

  private warn(msg: string): void {
    if (++this.warnings <= MAX_WARNINGS) this.opts.onWarning(`${this.current}: ${msg}`);
    else if (this.warnings === MAX_WARNINGS + 1) this.opts.onWarning('further warnings for this layer are not shown');
  }

  entry(e: TarEntry): void {
    this.current = display(e.name);
    this.stats.entries++;
    try {
      this.apply(e);
    } catch (err) {
      this.closeFile();
      throw this.asInputError(err);
    }
  }

  data(chunk: Buffer, position: number): void {
    if (this.file === undefined) return; // data of an entry we do not write (whiteout, skipped device)
    let off = 0;
    while (off < chunk.length) off += fs.writeSync(this.file.fd, chunk, off, chunk.length - off, position + off);
  }

  entryEnd(): void {
    const f = this.file;
    if (f === undefined) return;
    try {
      this.finishFile(f);
    } catch (err) {
      throw this.asInputError(err);
    } finally {
      this.closeFile();
    }
  }

  /** Owner, xattrs, mode and times of the file just written (through its fd where Node has the call). */
  private finishFile(f: NonNullable<LayerWriter['file']>): void {
    const e = f.entry;
    if (e.sparse !== undefined) fs.ftruncateSync(f.fd, e.sparse.realSize);
    // The file was created by us with mode & 0777: owner and mode calls are only made when they
    // change something (most files of a layer are root's and plain 0644/0755).
    if (this.asRoot && (e.uid !== this.uid || e.gid !== this.gid || f.parent.setgid)) fs.fchownSync(f.fd, e.uid, e.gid);
    this.setXattrs(f.path, e, false, false);
    const mode = e.mode & 0o7777;
    if ((mode & 0o7000) !== 0 || (mode & this.opts.umask) !== 0) fs.fchmodSync(f.fd, mode); // after chown, which clears setuid/setgid
    fs.futimesSync(f.fd, time(e.atime ?? e.mtime), time(e.mtime));
  }

  /**
   * After the last entry: directory modes and times, now that their children are in place. Each
   * path is resolved again inside the root (a symlink put on the way since is followed inside the
   * root, never on the host), opened without following, and changed through that fd only if it is
   * still the very directory the entry named; one that was replaced or moved away keeps its mode.
   * Deepest first, so a parent's final mode never stands in the way of its children.
   */
  finish(): void {
    const paths = [...this.dirFinal.keys()].sort((a, b) => b.length - a.length);
    for (const path of paths) {
      const d = this.dirFinal.get(path) as DirFinal;
      const host = resolveInRootSync(this.root, path.slice(this.root.length), { followFinal: false, binary: true });
      let fd: number;
      try {
        fd = fs.openSync(P(host), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') continue; // gone, or a symlink now
        throw err;
      }
      try {
        const st = fs.fstatSync(fd);
        if (st.ino !== d.ino || st.dev !== d.dev) continue; // another directory took the name
        if (d.mode !== undefined) fs.fchmodSync(fd, d.mode);
        fs.futimesSync(fd, time(d.atime), time(d.mtime));
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** Closes a half-written file after an error. */
  abort(): void {
    this.closeFile();
  }

  private closeFile(): void {
    if (this.file !== undefined) {
      const fd = this.file.fd;
      this.file = undefined;
      fs.closeSync(fd);
    }
  }

  private asInputError(err: unknown): unknown {
    if (err instanceof InputError) {
      // Always name the tar entry; a path the resolver choked on goes into the reason.
      const via = err.field !== undefined && err.field !== this.current ? ` (resolving "${display(err.field)}")` : '';
      return new InputError(err.reason + via, { field: this.current });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && INPUT_CODES.has(code)) {
      return new InputError(`cannot apply entry (${code}: ${(err as Error).message})`, { field: this.current });
    }
    if (err instanceof Error) err.message = `${this.current}: ${err.message}`;
    return err;
  }

  /** The entry's path as components: leading `/` and `./` dropped (as GNU tar, containerd and umoci do), `..` refused. */
  private components(name: string, what: string): string[] {
    const comps = name.split('/').filter((c) => c !== '' && c !== '.');
    if (comps.includes('..')) this.fail(`${what} contains ".." (path traversal)`);
    return comps;
  }

  private apply(e: TarEntry): void {
    const comps = this.components(e.name, 'name');
    const base = comps[comps.length - 1];
    if (base === undefined) {
      if (e.type !== '5') this.fail('entry would change the type of the rootfs itself');
      this.applyDirMetadata(this.root, e, true);
      return;
    }
    const parentComps = comps.slice(0, -1);
    if (base.startsWith(WHITEOUT)) {
      this.stats.whiteouts++;
      if (base === OPAQUE) return this.opaque(parentComps);
      if (base.startsWith(WHITEOUT + WHITEOUT)) this.fail('malformed whiteout: the ".wh..wh." prefix is reserved');
      const victim = base.slice(WHITEOUT.length);
      if (victim === '' || victim === '.' || victim === '..') this.fail(`malformed whiteout "${base}": it names no file`);
      return this.whiteout(parentComps, victim);
    }
    switch (e.type) {
      case '0':
      case '5':
      case '2':
      case '1':
      case '6':
        break;
      case '3':
      case '4':
        if (!this.opts.allowDevices) {
          this.stats.skippedDevices++;
          this.warn(`device node ${e.devmajor}:${e.devminor} skipped (devices are not allowed in layers)`);
          return;
        }
        break;
      default:
        this.fail(`unsupported entry type "${e.type}"`);
    }
    const parent = this.parentDir(parentComps);
    const target = `${parent.path}/${base}`; // parent is a normalized absolute path, base a plain name
    this.markTouched(parent.path, base);
    switch (e.type) {
      case '0': return this.regular(target, e, parent);
      case '5': return this.directory(target, e);
      case '2': return this.symlink(target, e);
      case '1': return this.hardlink(target, e);
      case '6': return this.fifo(target, e);
      default: return this.device(target, e);
    }
  }

  private markTouched(parent: string, name: string): void {
    if (!this.newDirs.has(parent)) {
      let names = this.touched.get(parent);
      if (names === undefined) this.touched.set(parent, (names = new Set()));
      names.add(name);
    }
    for (let p = parent; !this.touchedAncestors.has(p); p = dirname(p)) {
      this.touchedAncestors.add(p);
      if (p === this.root || p.length <= this.root.length) break;
    }
  }

  /** The host directory for a parent path inside the root, creating missing directories (0755, root-owned). */
  private parentDir(parentComps: string[]): ParentDir {
    const key = parentComps.join('/');
    const cached = this.parentCache.get(key);
    if (cached !== undefined) return cached;
    const host = resolveInRootSync(this.root, key, { binary: true });
    const missing: string[] = [];
    let p = host;
    let setgid = false;
    for (;;) {
      const st = fs.lstatSync(P(p), { throwIfNoEntry: false });
      if (st === undefined) {
        missing.push(p);
        p = dirname(p);
        continue;
      }
      if (!st.isDirectory()) this.fail(`a parent of this entry (${display(p.slice(this.root.length)) || '/'}) is not a directory`);
      // The first existing directory is about to change: its times come back at the end.
      this.rememberDirTimes(p, st);
      setgid = missing.length === 0 && (st.mode & 0o2000) !== 0;
      break;
    }
    for (let i = missing.length - 1; i >= 0; i--) {
      const dir = missing[i] as string;
      fs.mkdirSync(P(dir), 0o755);
      fs.chmodSync(P(dir), 0o755); // whatever the umask or a setgid parent
      this.newDirs.add(dir);
    }
    const parent = { path: host, setgid };
    this.parentCache.set(key, parent);
    return parent;
  }

  /** Removes whatever is at `path` (not following it); a directory goes with its subtree. */
  private removeExisting(path: string, st: fs.Stats | undefined = fs.lstatSync(P(path), { throwIfNoEntry: false })): void {
    if (st === undefined) return;
    if (st.isDirectory()) {
      fs.rmSync(P(path), { recursive: true, force: true });
      this.parentCache.clear();
    } else {
      fs.unlinkSync(P(path));
      if (st.isSymbolicLink()) this.parentCache.clear();
    }
  }

  /**
   * Runs `create` (which must fail with EEXIST rather than follow or reuse what is there); if
   * something is in the way, removes it and tries once more. Trying first saves an lstat per
   * entry in the common case of a fresh path.
   */
  private createFresh<T>(target: string, create: () => T): T {
    try {
      return create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    this.removeExisting(target);
    return create();
  }

  private regular(target: string, e: TarEntry, parent: ParentDir): void {
    // Always a new inode: a file hardlinked from a lower layer is split, not rewritten for both.
    // Created with its final permission bits: our fd stays writable whatever they are.
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    const fd = this.createFresh(target, () => fs.openSync(P(target), flags, e.mode & 0o777));
    this.file = { fd, path: target, entry: e, parent };
    this.stats.files++;
  }

  private directory(target: string, e: TarEntry): void {
    let existed = false;
    try {
      fs.mkdirSync(P(target), 0o700);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = fs.lstatSync(P(target));
      existed = st.isDirectory();
      if (!existed) {
        this.removeExisting(target, st);
        fs.mkdirSync(P(target), 0o700);
      }
    }
    if (!existed) this.newDirs.add(target);
    this.applyDirMetadata(target, e, existed);
    this.stats.dirs++;
  }

  private applyDirMetadata(path: string, e: TarEntry, existed: boolean): void {
    if (this.asRoot) fs.lchownSync(P(path), e.uid, e.gid);
    this.setXattrs(path, e, existed, false);
    const st = fs.lstatSync(P(path));
    this.dirFinal.set(path, { dev: st.dev, ino: st.ino, mode: e.mode & 0o7777, atime: e.atime ?? e.mtime, mtime: e.mtime });
  }

  private symlink(target: string, e: TarEntry): void {
    if (e.linkname === '') this.fail('symlink with an empty target');
    // The link's text is stored as is: it is only ever followed through fsroot, scoped to the root.
    // A new link where nothing was cannot change a cached parent (those are all real directories).
    this.createFresh(target, () => fs.symlinkSync(P(e.linkname), P(target)));
    if (this.asRoot) fs.lchownSync(P(target), e.uid, e.gid);
    this.setXattrs(target, e, false, true);
    fs.lutimesSync(P(target), time(e.atime ?? e.mtime), time(e.mtime));
    this.stats.symlinks++;
  }

  private hardlink(target: string, e: TarEntry): void {
    const linkComps = this.components(e.linkname, 'hardlink target');
    if (linkComps.length === 0) this.fail('hardlink to the rootfs itself');
    // Parents scoped to the root; the last component not followed (link(2) links a symlink itself).
    const source = resolveInRootSync(this.root, linkComps.join('/'), { followFinal: false, binary: true });
    const st = fs.lstatSync(P(source), { throwIfNoEntry: false });
    if (st === undefined) this.fail(`hardlink target "${display(e.linkname)}" does not exist`);
    if (st.isDirectory()) this.fail(`hardlink target "${display(e.linkname)}" is a directory`);
    this.stats.hardlinks++;
    if (source === target) return; // a link to itself: already there
    this.createFresh(target, () => fs.linkSync(P(source), P(target)));
  }

  private fifo(target: string, e: TarEntry): void {
    this.removeExisting(target); // the addon's errors carry no code, so no try-first here (fifos are rare)
    this.makeAt(target, (p) => mkfifoSync(p, 0o600));
    this.applyNodeMetadata(target, e);
    this.stats.fifos++;
  }

  private device(target: string, e: TarEntry): void {
    // Node has no mknod; devices are opt-in and rare, so one mknod(1) process each is fine.
    if (e.devmajor > 4095 || e.devminor > 0xfffff) this.fail(`device number ${e.devmajor}:${e.devminor} out of range`);
    this.removeExisting(target);
    this.makeAt(target, (p) => this.mknod(p, e));
    this.applyNodeMetadata(target, e);
    this.stats.devices++;
  }

  private mknod(target: string, e: TarEntry): void {
    // bounded: while the worker waits here it cannot be terminated, so a hung mknod would keep
    // the layer (and the abort of its step) waiting with it
    const args = ['-m', '0600', '--', target, e.type === '3' ? 'c' : 'b', String(e.devmajor), String(e.devminor)];
    const r = spawnSync('mknod', args, { encoding: 'utf8', timeout: MKNOD_TIMEOUT_MS, killSignal: 'SIGKILL' });
    if (r.status !== 0) throw new Error(`mknod failed: ${r.error?.message ?? (r.signal ? `killed after ${MKNOD_TIMEOUT_MS} ms` : r.stderr.trim())}`);
  }

  /**
   * Runs `make(path)` for a call that only takes UTF-8 paths (the mkfifo addon, mknod(1)): a
   * target whose bytes are not UTF-8 is made under a temporary name in the root and renamed.
   */
  private makeAt(target: string, make: (path: string) => void): void {
    const utf8 = asUtf8(target);
    if (utf8 !== undefined) return make(utf8);
    const tmp = this.tempName();
    make(tmp);
    fs.renameSync(tmp, P(target));
  }

  /**
   * Runs `use(path)` for the xattr calls, which only take UTF-8 paths: a node whose path is not
   * UTF-8 is renamed to a temporary name in the root for the call, and back.
   */
  private viaUtf8<T>(path: string, use: (path: string) => T): T {
    const utf8 = asUtf8(path);
    if (utf8 !== undefined) return use(utf8);
    const tmp = this.tempName();
    fs.renameSync(P(path), tmp);
    try {
      return use(tmp);
    } finally {
      fs.renameSync(tmp, P(path));
    }
  }

  /** A free name at the top of the root (a layer may hold any name, so it is checked). */
  private tempName(): string {
    for (let i = 0; ; i++) {
      const p = join(this.hostRoot, `.ocivirt-tmp-${process.pid}-${i}`);
      if (fs.lstatSync(p, { throwIfNoEntry: false }) === undefined) return p;
    }
  }

  /** Owner, xattrs, then mode (after chown, which clears setuid/setgid), then times; never following. */
  private applyNodeMetadata(path: string, e: TarEntry): void {
    if (this.asRoot) fs.lchownSync(P(path), e.uid, e.gid);
    this.setXattrs(path, e, false, false);
    fs.chmodSync(P(path), e.mode & 0o7777); // path is the node we just made, not a symlink
    fs.lutimesSync(P(path), time(e.atime ?? e.mtime), time(e.mtime));
  }

  /** @napi-rs/xattr uses the l*xattr calls: a symlink's own xattrs, never its target's. */
  private setXattrs(binaryPath: string, e: TarEntry, existed: boolean, isSymlink: boolean): void {
    if (e.xattrs.size === 0 && !existed) return;
    this.viaUtf8(binaryPath, (path) => this.setXattrsAt(path, e, existed, isSymlink));
  }

  private setXattrsAt(path: string, e: TarEntry, existed: boolean, isSymlink: boolean): void {
    if (existed) {
      // A directory kept from a lower layer takes the xattrs of this entry, not a mix.
      for (const name of listAttributesSync(path)) {
        if (xattrAllowed(name) && !e.xattrs.has(name)) removeAttributeSync(path, name);
      }
    }
    for (const [name, value] of e.xattrs) {
      if (!xattrAllowed(name)) {
        this.warn(`xattr ${name} skipped (namespace not allowed in layers)`);
        continue;
      }
      if (name.length > 255 || value.length > 65536) this.fail(`xattr ${name.slice(0, 60)} is too large`);
      try {
        setAttributeSync(path, name, value);
      } catch (err) {
        const msg = (err as Error).message;
        const errno = osErrno(err);
        // user.* on a symlink is EPERM on Linux; filesystems without xattrs say ENOTSUP.
        if (isSymlink || errno === EPERM || errno === ENOTSUP) this.warn(`xattr ${name} not set: ${msg}`);
        // the kernel checks some values (security.capability, ACLs): a malformed one is the layer's fault
        else if (errno === EINVAL || errno === ERANGE || errno === E2BIG) this.fail(`xattr ${name}: the kernel refused its value as malformed (${msg})`);
        else throw err;
      }
    }
  }

  private whiteout(parentComps: string[], victim: string): void {
    const parent = resolveInRootSync(this.root, parentComps.join('/'), { binary: true });
    const st = fs.lstatSync(P(parent), { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) return; // nothing below to hide
    this.rememberDirTimes(parent, st);
    this.removeLower(parent, victim);
  }

  private opaque(dirComps: string[]): void {
    const dir = resolveInRootSync(this.root, dirComps.join('/'), { binary: true });
    const st = fs.lstatSync(P(dir), { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) return;
    this.rememberDirTimes(dir, st);
    for (const child of readdirBinary(dir)) this.removeLower(dir, child);
  }

  private rememberDirTimes(dir: string, st: fs.Stats): void {
    const known = this.dirFinal.get(dir);
    if (known === undefined || known.ino !== st.ino || known.dev !== st.dev) {
      this.dirFinal.set(dir, { dev: st.dev, ino: st.ino, mode: undefined, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 });
    }
  }

  /** Removes what lower layers left at `dir/name`, keeping everything this layer put there. */
  private removeLower(dir: string, name: string): void {
    const path = join(dir, name);
    const st = fs.lstatSync(P(path), { throwIfNoEntry: false });
    if (st === undefined) return;
    const sameLayer = this.newDirs.has(dir) || this.touched.get(dir)?.has(name) === true || this.touchedAncestors.has(path);
    if (!sameLayer) return this.removeExisting(path, st);
    if (!st.isDirectory()) return;
    for (const child of readdirBinary(path)) this.removeLower(path, child);
  }
}
