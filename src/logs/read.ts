/**
 * Reading a container's log directory (`<stateDir>/containers/<domain>/run/log/`, written by the
 * init shim) from the host. The container can write that directory, so nothing in it is trusted:
 * the directory and the files are opened without following symlinks (O_PATH|O_NOFOLLOW, then
 * reopened through /proc/self/fd: what was checked is what is read), only regular files are read
 * (a FIFO or a device is never opened for reading), and at most `limit` bytes of each.
 */
import { containerDir } from '../shim/domain.js';
import { constants, watch, type FSWatcher } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { LineAssembler, type LogLine } from './records.js';

/** Linux's O_PATH (the same on x86_64, arm64, and every asm-generic architecture); not in fs.constants. */
const O_PATH = 0o10000000;
const { O_NOFOLLOW, O_DIRECTORY, O_CLOEXEC, O_RDONLY, O_NOCTTY, O_NONBLOCK } = constants as typeof constants & { O_CLOEXEC: number };
const CHUNK = 1 << 20;

/** The per-container log directory on the host (the shim's `/.ocivirt/run/log`). */
export function containerLogDir(stateDir: string, domain: string): string {
  return join(containerDir(stateDir, domain), 'run', 'log');
}

/** Bytes of one log file read at most: past the cap, a file is not the shim's alone (the container can write there). */
export const logReadLimit = (fileBytes: number) => fileBytes + 1024 * 1024;

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

interface LogFile {
  fh: FileHandle;
  ino: number;
  size: number;
}

/**
 * `path` opened for reading when it is a regular file, its last component not followed;
 * undefined when missing or anything else (a symlink, FIFO or device is never opened for reading).
 */
export async function openRegular(path: string): Promise<LogFile | undefined> {
  let pathFh: FileHandle;
  try {
    pathFh = await open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  } catch (e) {
    if (errno(e) === 'ENOENT' || errno(e) === 'ELOOP' || errno(e) === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
    const st = await pathFh.stat();
    if (!st.isFile()) return undefined;
    const fh = await open(`/proc/self/fd/${pathFh.fd}`, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    return { fh, ino: st.ino, size: st.size };
  } finally {
    await pathFh.close();
  }
}

export class LogDir {
  private constructor(readonly path: string, private readonly fh: FileHandle) {}

  /** undefined when there is no log directory; an InputError when something else is in its place. */
  static async open(path: string): Promise<LogDir | undefined> {
    try {
      return new LogDir(path, await open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    } catch (e) {
      if (errno(e) === 'ENOENT') return undefined;
      if (errno(e) === 'ELOOP' || errno(e) === 'ENOTDIR') throw new InputError('is not a directory (a symlink or file the container put there): not read', { file: path });
      throw e;
    }
  }

  /** Where the directory is, as this process can reach it without resolving the path again. */
  get fdPath(): string {
    return `/proc/self/fd/${this.fh.fd}`;
  }

  /** `name` in the directory, when it is a regular file (openRegular). */
  file(name: 'current' | 'previous'): Promise<LogFile | undefined> {
    return openRegular(`${this.fdPath}/${name}`);
  }

  /** The inode now at `current` (undefined: none, or not a regular file). */
  async currentIno(): Promise<number | undefined> {
    const f = await this.file('current');
    await f?.fh.close();
    return f?.ino;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export interface ReadLogOptions {
  /** At most this many bytes of each file are read (its end); more is not the shim's doing. */
  limit: number;
  /** Something worth saying on stderr (a file cut short, lines that are not records). */
  warn: (message: string) => void;
}

/**
 * A log directory read from its start (`previous`, then `current`) and, with `follow`, as it
 * grows and rotates. Lines come out through the callback given to `next`.
 */
export class LogReader {
  private cur: LogFile | undefined;
  private offset = 0;
  private readonly asm: LineAssembler;
  private lines: LogLine[] = [];
  private reportedBad = 0;

  constructor(private readonly dir: LogDir, private readonly opts: ReadLogOptions) {
    this.asm = new LineAssembler((l) => this.lines.push(l));
  }

  /** Everything there now, oldest first, in batches (each an array of lines) through `sink`. */
  readAll(sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
    return this.resume(undefined, sink);
  }

  /** Like readAll, from a position() saved earlier: in `current`, or in the file that is `previous` now. */
  async resume(pos: { ino: number; offset: number } | undefined, sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
    this.cur = await this.dir.file('current');
    if (this.cur && pos?.ino === this.cur.ino) {
      this.offset = await this.drain(this.cur, Math.max(pos.offset, this.start(this.cur)), sink);
      return;
    }
    // current first: if a rotation comes between the two opens, previous is that same file
    const prev = await this.dir.file('previous');
    try {
      if (prev && prev.ino !== this.cur?.ino) await this.drain(prev, pos?.ino === prev.ino ? pos.offset : this.start(prev), sink);
    } finally {
      await prev?.fh.close();
    }
    if (this.cur) this.offset = await this.drain(this.cur, this.start(this.cur), sink);
  }

  /** Where reading stands: `current`'s inode and the offset of the first byte not yet part of a whole record. */
  position(): { ino: number; offset: number } | undefined {
    return this.cur ? { ino: this.cur.ino, offset: this.offset - this.asm.pending } : undefined;
  }

  /** What was added since (following a rotation to the new `current`). */
  async poll(sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
    const ino = await this.dir.currentIno();
    if (this.cur && ino === this.cur.ino) {
      this.offset = await this.drain(this.cur, this.offset, sink);
      return;
    }
    if (this.cur) {
      // rotated: the old current (now previous) may have got its last records before the rename
      await this.drain(this.cur, this.offset, sink);
      await this.cur.fh.close();
      this.cur = undefined;
    }
    if (ino === undefined) return;
    this.cur = await this.dir.file('current');
    this.offset = this.cur ? await this.drain(this.cur, 0, sink) : 0;
  }

  /** Lines left open (a P without its F) at the very end. */
  async finish(sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
    this.asm.end();
    await this.flush(sink);
    await this.cur?.fh.close();
    this.cur = undefined;
  }

  /** Closes the file being followed (lines left open are not emitted: see finish). */
  async close(): Promise<void> {
    await this.cur?.fh.close();
    this.cur = undefined;
  }

  private start(f: LogFile): number {
    if (f.size <= this.opts.limit) return 0;
    this.opts.warn(`${this.dir.path}: a log file of ${f.size} bytes (not the shim's doing: it stays under the cap); only its last ${this.opts.limit} are read`);
    return f.size - this.opts.limit;
  }

  /** Reads `f` from `from` to its end now; returns the new offset. */
  private async drain(f: LogFile, from: number, sink: (lines: LogLine[]) => Promise<void>): Promise<number> {
    const size = (await f.fh.stat()).size;
    let offset = from;
    if (size < offset) offset = 0; // truncated under us (by the container): start over
    if (size - offset > this.opts.limit) {
      this.opts.warn(`${this.dir.path}: ${size - offset} new bytes at once (more than the cap): only the last ${this.opts.limit} are read`);
      offset = size - this.opts.limit;
    }
    const buf = Buffer.allocUnsafe(CHUNK);
    while (offset < size) {
      const { bytesRead } = await f.fh.read(buf, 0, Math.min(CHUNK, size - offset), offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      this.asm.push(buf.subarray(0, bytesRead));
      await this.flush(sink);
    }
    if (this.asm.bad > this.reportedBad) {
      this.opts.warn(`${this.dir.path}: ${this.asm.bad - this.reportedBad} lines that are not log records skipped`);
      this.reportedBad = this.asm.bad;
    }
    return offset;
  }

  private async flush(sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
    if (!this.lines.length) return;
    const lines = this.lines;
    this.lines = [];
    await sink(lines);
  }
}

/** The shim's status file next to the log directory says the process ended (`exited N`, `signaled N`, `setup-failed`). */
export async function processEnded(runDir: string): Promise<boolean> {
  const f = await openRegular(join(runDir, 'status')).catch(() => undefined);
  if (!f) return false;
  try {
    const { buffer, bytesRead } = await f.fh.read(Buffer.alloc(64), 0, 64, 0);
    return /^(exited|signaled|setup-failed)\b/.test(buffer.toString('latin1', 0, bytesRead));
  } finally {
    await f.fh.close();
  }
}

/** Calls `wake` when the directory changes (inotify) and at least every `intervalMs` (a missed event costs that much). */
export function watchDir(dir: LogDir, intervalMs: number, wake: () => void): () => void {
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir.fdPath, { persistent: false }, wake);
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined; // polling alone
  }
  const timer = setInterval(wake, intervalMs);
  return () => {
    clearInterval(timer);
    watcher?.close();
  };
}
