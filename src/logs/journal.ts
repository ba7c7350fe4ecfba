/**
 * `logsToJournal`: the daemon follows every container log directory under
 * `<stateDir>/containers/` and writes each line to journald, through journald's stdout stream
 * protocol (the one `systemd-cat` speaks, on /run/systemd/journal/stdout; no child process):
 * one connection per container with SYSLOG_IDENTIFIER = the domain name (`journalctl -t DOMAIN`),
 * each line prefixed with its priority (stderr err, stdout info, the shim's notices warning), so
 * whatever the container prints is never taken for a prefix of its own.
 *
 * Where each container's forwarding stands (file inode and offset) is kept in
 * `<stateDir>/containers/<domain>/journal-position`, so a daemon restart resumes there: what the
 * container printed meanwhile is forwarded then, nothing twice (unless it rotated out of both files).
 */
import { readdir, readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import { writeFileAtomically } from '../fsroot/atomic.js';
import type { EventLogger } from '../log.js';
import { isValidDomainName } from '../spool/names.js';
import { containerDir } from '../shim/domain.js';
import { containerLogDir, LogDir, LogReader, watchDir } from './read.js';
import type { LogLine } from './records.js';

export const JOURNAL_STDOUT_SOCKET = '/run/systemd/journal/stdout';
const PRIORITY = { stdout: '<6>', stderr: '<3>', ocivirt: '<4>' } as const;
const SCAN_MS = 5_000;
const POLL_MS = 1_000;

export interface ForwarderOptions {
  stateDir: string;
  /** Bytes of a log file read at most (logFileBytes + 1 MiB). */
  limit: number;
  log: EventLogger;
  socketPath?: string;
}

interface Followed {
  dir: LogDir;
  reader: LogReader;
  journal: Socket;
  stopWatch: () => void;
  busy: Promise<void>;
}

export class JournalForwarder {
  private readonly followed = new Map<string, Followed>();
  private scanTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: ForwarderOptions) {}

  async start(): Promise<void> {
    await this.scan();
    this.scanTimer = setInterval(() => void this.scan(), SCAN_MS);
  }

  /** Finds log directories not followed yet (new containers); stops following removed ones. */
  async scan(): Promise<void> {
    const root = join(this.opts.stateDir, 'containers');
    const domains = (await readdir(root).catch(() => [] as string[])).filter(isValidDomainName);
    for (const domain of domains) {
      if (this.followed.has(domain) || this.stopped) continue;
      try {
        await this.follow(domain);
      } catch (e) {
        this.opts.log.warn('logs.journal.failed', { domain, err: errorMessage(e) }, 'cannot forward this container\'s output to the journal');
      }
    }
    const present = new Set(domains);
    for (const [domain, f] of this.followed) if (!present.has(domain)) await this.drop(domain, f);
  }

  private async follow(domain: string): Promise<void> {
    const dir = await LogDir.open(containerLogDir(this.opts.stateDir, domain));
    if (!dir) return;
    const warn = (m: string) => this.opts.log.warn('logs.journal.failed', { domain, err: m }, m);
    const reader = new LogReader(dir, { limit: this.opts.limit, warn });
    const journal = journalStream(this.opts.socketPath ?? JOURNAL_STDOUT_SOCKET, domain);
    const f: Followed = { dir, reader, journal, stopWatch: () => undefined, busy: Promise.resolve() };
    this.followed.set(domain, f);
    // journald gone or refusing: this container is followed again from its saved position at the next scan
    journal.on('error', (e) => {
      warn(`journald: ${errorMessage(e)} (tried again in ${SCAN_MS / 1000} s)`);
      if (this.followed.get(domain) === f) void this.drop(domain, f);
    });
    const posFile = join(containerDir(this.opts.stateDir, domain), 'journal-position');
    const sink = async (lines: LogLine[]) => {
      for (const l of lines) {
        if (journal.destroyed) throw new Error('the journald connection is closed');
        if (!journal.write(journalLines(PRIORITY[l.stream], l.data))) {
          await new Promise((r) => {
            journal.once('drain', r);
            journal.once('close', r);
          });
        }
      }
    };
    const save = async () => {
      const pos = reader.position();
      if (journal.destroyed) return;
      if (pos) await writeFileAtomically(posFile, JSON.stringify(pos) + '\n', 0o600);
    };
    const saved = await readFile(posFile, 'utf8').then((t) => JSON.parse(t) as unknown, () => undefined);
    if (this.followed.get(domain) !== f) return; // dropped meanwhile (journald refused at once)
    f.busy = reader.resume(isPosition(saved) ? saved : undefined, sink).then(save).catch((e) => warn(errorMessage(e)));
    f.stopWatch = watchDir(dir, POLL_MS, () => {
      f.busy = f.busy.then(() => reader.poll(sink)).then(save).catch((e) => warn(errorMessage(e)));
    });
    this.opts.log.info('logs.journal.following', { domain });
  }

  private async drop(domain: string, f: Followed): Promise<void> {
    this.followed.delete(domain);
    f.stopWatch();
    await f.busy.catch(() => undefined);
    if (!f.journal.destroyed) await new Promise<void>((r) => f.journal.end(r));
    await f.reader.close();
    await f.dir.close();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scanTimer) clearInterval(this.scanTimer);
    for (const [domain, f] of this.followed) await this.drop(domain, f);
  }
}

/** Below journald's LineMax (48K by default): a longer line is cut by journald itself. */
const JOURNAL_PIECE = 32 * 1024;
const NUL = Buffer.from([0]);
const NUL_SHOWN = Buffer.from('\\x00');

/**
 * One container line as journald stream lines, each with our priority prefix. journald also ends a
 * line at a NUL byte and at LineMax, and reads a `<N>` after either as the next line's priority: so
 * NULs are shown as `\x00` and a long line is cut into pieces here, each carrying our prefix; a
 * container's output can never choose its own priority (emerg is sent to every terminal).
 */
export function journalLines(priority: string, data: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = data.indexOf(NUL), from = 0; ; at = data.indexOf(NUL, from)) {
    parts.push(data.subarray(from, at < 0 ? data.length : at));
    if (at < 0) break;
    parts.push(NUL_SHOWN);
    from = at + 1;
  }
  const clean = parts.length === 1 ? data : Buffer.concat(parts);
  const out: Buffer[] = [];
  const prefix = Buffer.from(priority);
  for (let i = 0; i < clean.length || i === 0; i += JOURNAL_PIECE) out.push(prefix, clean.subarray(i, i + JOURNAL_PIECE), Buffer.from('\n'));
  return Buffer.concat(out);
}

function isPosition(v: unknown): v is { ino: number; offset: number } {
  const p = v as { ino?: unknown; offset?: unknown } | undefined;
  return typeof p?.ino === 'number' && Number.isSafeInteger(p.offset) && (p.offset as number) >= 0;
}

/**
 * A journald stdout stream: the header (identifier, unit id, priority, level prefix, forward to
 * syslog, kmsg, console), then lines.
 */
export function journalStream(socketPath: string, identifier: string): Socket {
  const s = connect({ path: socketPath });
  s.write(`${identifier}\n\n6\n1\n0\n0\n0\n`);
  return s;
}
