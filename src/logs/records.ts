/**
 * The container log records the init shim writes (shim/log.c, format in shim/README.md):
 *
 *     2026-11-30T00:50:23.123456789Z stdout F the line
 *
 * parsed from bytes (the content is whatever the container printed: never decoded) and joined
 * back into lines (P records are parts of the line the next F record of the same stream ends).
 * The container can write its log directory, so a line that is not a record is counted and
 * skipped, never trusted.
 */
export type LogStream = 'stdout' | 'stderr' | 'ocivirt';

export interface LogLine {
  /** The time of the line's first record, as written (RFC 3339, UTC, nanoseconds). */
  time: string;
  /** The same, in nanoseconds since the epoch (for --since). */
  ns: bigint;
  stream: LogStream;
  /** The bytes printed, without the newline. */
  data: Buffer;
  /** false: the output had not ended the line (the last record was a P). */
  complete: boolean;
}

const STAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z$/;
const STREAMS: readonly LogStream[] = ['stdout', 'stderr', 'ocivirt'];
const SPACE = 0x20;
const NEWLINE = 0x0a;

/** Nanoseconds since the epoch of a shim timestamp, or undefined. */
export function stampNs(stamp: string): bigint | undefined {
  const m = STAMP.exec(stamp);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}Z`);
  return Number.isNaN(ms) ? undefined : BigInt(ms) * 1_000_000n + BigInt(m[2]!);
}

interface Record {
  time: string;
  ns: bigint;
  stream: LogStream;
  full: boolean;
  content: Buffer;
}

/** One record from one line (without its newline), or undefined when it is not one. */
export function parseRecord(line: Buffer): Record | undefined {
  const s1 = line.indexOf(SPACE);
  if (s1 !== 30) return undefined;
  const time = line.toString('latin1', 0, 30);
  const ns = stampNs(time);
  if (ns === undefined) return undefined;
  const s2 = line.indexOf(SPACE, 31);
  const stream = line.toString('latin1', 31, s2) as LogStream;
  if (s2 < 0 || !STREAMS.includes(stream)) return undefined;
  const tag = line[s2 + 1];
  if ((tag !== 0x46 && tag !== 0x50) || line[s2 + 2] !== SPACE) return undefined; // F or P
  return { time, ns, stream, full: tag === 0x46, content: line.subarray(s2 + 3) };
}

/**
 * What one line may hold in memory. The container writes these files: bytes that never end a
 * record, or P records that never reach their F, must not grow a long-running reader (the
 * journal forwarder) without bound. A longer line goes out in pieces marked incomplete.
 */
export const MAX_OPEN_LINE = 1024 * 1024;

/**
 * Bytes in, lines out: feed chunks of a log file in order (records may straddle chunks); every
 * completed line goes to `emit`. `bad` counts lines that were not records.
 */
export class LineAssembler {
  bad = 0;
  private rest: Buffer = Buffer.alloc(0);
  private readonly parts = new Map<LogStream, { time: string; ns: bigint; chunks: Buffer[]; size: number }>();

  constructor(private readonly emit: (line: LogLine) => void) {}

  push(chunk: Buffer): void {
    let buf = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(NEWLINE); nl >= 0; nl = buf.indexOf(NEWLINE, start)) {
      this.record(buf.subarray(start, nl));
      start = nl + 1;
    }
    buf = buf.subarray(start);
    if (buf.length > MAX_OPEN_LINE) {
      // no record is this long (the shim's are a few KiB): not a record, dropped
      this.bad++;
      buf = buf.subarray(0, 0);
    }
    // copied: the caller may reuse its buffer
    this.rest = Buffer.from(buf);
  }

  /** Bytes held that do not end a record yet (a file being written, or cut short). */
  get pending(): number {
    return this.rest.length;
  }

  /** Lines still open (P without their F): out as they are, marked incomplete. */
  end(): void {
    for (const [stream, p] of this.parts) this.emit({ time: p.time, ns: p.ns, stream, data: Buffer.concat(p.chunks), complete: false });
    this.parts.clear();
  }

  private record(line: Buffer): void {
    const r = parseRecord(line);
    if (!r) {
      this.bad++;
      return;
    }
    const open = this.parts.get(r.stream);
    const part = open ?? { time: r.time, ns: r.ns, chunks: [], size: 0 };
    part.chunks.push(Buffer.from(r.content));
    part.size += r.content.length;
    if (!r.full) {
      if (!open) this.parts.set(r.stream, part);
      if (part.size >= MAX_OPEN_LINE) {
        this.parts.delete(r.stream);
        this.emit({ time: part.time, ns: part.ns, stream: r.stream, data: Buffer.concat(part.chunks), complete: false });
      }
      return;
    }
    this.parts.delete(r.stream);
    this.emit({ time: part.time, ns: part.ns, stream: r.stream, data: part.chunks.length === 1 ? part.chunks[0]! : Buffer.concat(part.chunks), complete: true });
  }
}

const UNITS: Readonly<{ [unit: string]: number }> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `--since`: an RFC 3339 time (`2026-11-30T00:50:00Z`, a date) or a duration back from now (`90s`, `10m`, `2h`, `1d`). */
export function parseSince(text: string, now = Date.now()): bigint | undefined {
  const rel = /^(\d+(?:\.\d+)?)([smhd])$/.exec(text);
  if (rel) return BigInt(Math.round(now - Number(rel[1]) * UNITS[rel[2]!]! * 1000)) * 1_000_000n;
  const m = /^(\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?$/.exec(text);
  if (!m || (m[2] !== undefined && !m[1]!.includes(':'))) return undefined;
  // the fraction apart: Date keeps milliseconds only, records carry nanoseconds
  const ms = Date.parse(m[1]! + (m[3] ?? ''));
  return Number.isNaN(ms) ? undefined : BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}
