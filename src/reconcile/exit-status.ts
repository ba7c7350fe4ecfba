/**
 * A container's process status as its init shim records it (shim/README.md), read from the host:
 * `<stateDir>/containers/<domain>/run/status` holds `running`, `exited N`, `signaled N` or
 * `setup-failed`, and after an exit `outside-signal S` when a signal was sent to the shim from
 * outside the container (libvirt: `virsh shutdown`, a stop). libvirt-lxc reports every end of the
 * init as "shutdown", so this file is where the exit code comes from.
 *
 * The container writes that directory: the file is opened without following a symlink, only a
 * regular file is read (never a FIFO), at most a few bytes, and anything not in the exact format
 * is "unknown", never trusted further. Its mtime is when the shim wrote it (the exit's time).
 */
import { join } from 'node:path';
import { containerDir } from '../shim/domain.js';
import { LogDir, openRegular } from '../logs/read.js';

export type ProcessState =
  | { kind: 'running' }
  | { kind: 'exited'; code: number }
  | { kind: 'signaled'; signal: number }
  | { kind: 'setup-failed'; reason?: string }
  | { kind: 'unknown' };

export interface ProcessStatus {
  state: ProcessState;
  /** The last signal sent to the shim from outside the container before the process ended. */
  outsideSignal?: number;
  /** When the shim wrote it (ms since the epoch). */
  at: number;
}

const MAX_STATUS = 128;
const MAX_REASON = 300;

/** The status text as the shim writes it; anything else is `unknown`. */
export function parseProcessStatus(text: string): Pick<ProcessStatus, 'state' | 'outsideSignal'> {
  const m = /^(running|setup-failed|exited ([0-9]{1,3})|signaled ([0-9]{1,2}))\n(?:outside-signal ([0-9]{1,2})\n)?$/.exec(text);
  if (!m) return { state: { kind: 'unknown' } };
  if (m[4] !== undefined && !(Number(m[4]) >= 1 && Number(m[4]) <= 64)) return { state: { kind: 'unknown' } };
  const outside = m[4] !== undefined ? { outsideSignal: Number(m[4]) } : {};
  if (m[1] === 'running') return { state: { kind: 'running' } };
  if (m[1] === 'setup-failed') return { state: { kind: 'setup-failed' } };
  if (m[2] !== undefined) return Number(m[2]) <= 255 ? { state: { kind: 'exited', code: Number(m[2]) }, ...outside } : { state: { kind: 'unknown' } };
  const signal = Number(m[3]);
  return signal >= 1 && signal <= 64 ? { state: { kind: 'signaled', signal }, ...outside } : { state: { kind: 'unknown' } };
}

/** The process status of `domain`'s container; undefined when the shim never wrote one. */
export async function readProcessStatus(stateDir: string, domain: string): Promise<ProcessStatus | undefined> {
  const runDir = join(containerDir(stateDir, domain), 'run');
  const f = await openRegular(join(runDir, 'status')).catch(() => undefined);
  if (f === undefined) return undefined;
  let parsed: Pick<ProcessStatus, 'state' | 'outsideSignal'>;
  let at: number;
  try {
    const { buffer, bytesRead } = await f.fh.read(Buffer.alloc(MAX_STATUS + 1), 0, MAX_STATUS + 1, 0);
    at = (await f.fh.stat()).mtimeMs;
    parsed = bytesRead > MAX_STATUS ? { state: { kind: 'unknown' } } : parseProcessStatus(buffer.toString('latin1', 0, bytesRead));
  } finally {
    await f.fh.close();
  }
  if (parsed.state.kind === 'setup-failed') {
    const reason = await setupFailure(join(runDir, 'log')).catch(() => undefined);
    if (reason !== undefined) parsed = { state: { kind: 'setup-failed', reason } };
  }
  return { ...parsed, at: Math.round(at) };
}

/**
 * Why the shim refused to run the process: its last `ocivirt-init: <step>: <reason>` line, which
 * it prints on stderr and so into the container's log (the last 8 KiB of `current` are read).
 */
async function setupFailure(logDir: string): Promise<string | undefined> {
  const dir = await LogDir.open(logDir);
  if (dir === undefined) return undefined;
  try {
    const f = await dir.file('current');
    if (f === undefined) return undefined;
    try {
      const n = Math.min(f.size, 8192);
      const { buffer, bytesRead } = await f.fh.read(Buffer.alloc(n), 0, n, f.size - n);
      const lines = buffer.toString('utf8', 0, bytesRead).split('\n').reverse();
      for (const line of lines) {
        const m = /^\S+ stderr F (ocivirt-init: [^\x00-\x1f\x7f]*)$/.exec(line);
        if (m) return m[1]!.slice(0, MAX_REASON);
      }
      return undefined;
    } finally {
      await f.fh.close();
    }
  } finally {
    await dir.close();
  }
}

/** `exited 3`, `signaled 9`, ... as shown (status, logs). */
export function describeState(s: ProcessState): string {
  switch (s.kind) {
    case 'exited':
      return `exited ${s.code}`;
    case 'signaled':
      return `killed by signal ${s.signal}`;
    case 'setup-failed':
      return `the init shim refused to run the process${s.reason !== undefined ? ` (${s.reason})` : ''}`;
    default:
      return s.kind;
  }
}
