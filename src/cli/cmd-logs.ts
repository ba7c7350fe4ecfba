/** `ocivirt logs NAME [-f] [--since T] [--tail N]`: a container's output, kept by the init shim. */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadConfig } from '../config/load.js';
import { InputError, UsageError } from '../errors.js';
import { containerLogDir, LogDir, logReadLimit, LogReader, processEnded, watchDir } from '../logs/read.js';
import { parseSince, type LogLine } from '../logs/records.js';
import { STATUS_FILE, type EntryStatus } from '../reconcile/sync.js';
import { domainNameFor, isValidDomainName } from '../spool/names.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt logs NAME [-f] [--since T] [--tail N] [--timestamps] [--config FILE] [--state DIR]

Prints what a container printed (stdout to stdout, stderr to stderr, as written: bytes, not
escaped), kept by its init shim in <state>/containers/<domain>/run/log/ whether or not the
daemon ran (at most 2 x logFileBytes per container; see docs/logs.md). NAME is a spool entry
or a domain name.

Options:
  -f, --follow      keep printing as the container prints, until its process ends
  --since T         only lines from T on: an RFC 3339 time (2026-11-30T00:50:00Z) or a
                    duration back from now (90s, 10m, 2h, 1d)
  --tail N          only the last N lines (then, with -f, everything new)
  -t, --timestamps  each line prefixed with its time (UTC, nanoseconds)
  --config FILE     configuration file (for the state directory and logFileBytes)
  --state DIR       the state directory (default: the configuration's)
  -h, --help        this text

Lines the shim wrote itself (output dropped because the log's disk was stuck, write errors)
go to stderr prefixed with the time.

Exit codes: 0 printed, 2 no such container log or bad usage, 1 other.
`;

const FOLLOW_POLL_MS = 1000;

export const logsCommand: Command = {
  name: 'logs',
  summary: "print a container's output (stdout/stderr), optionally following it",
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('logs', argv, {
      follow: { type: 'boolean', short: 'f' },
      since: { type: 'string' },
      tail: { type: 'string' },
      timestamps: { type: 'boolean', short: 't' },
      config: { type: 'string' },
      state: { type: 'string' },
    }, { min: 1, max: 1 });
    const since = values.since === undefined ? undefined : parseSince(values.since);
    if (values.since !== undefined && since === undefined) throw new UsageError(`logs: --since ${JSON.stringify(values.since)} is not a time (2026-11-30T00:50:00Z) or a duration (10m)`);
    const tail = values.tail === undefined ? undefined : Number(values.tail);
    if (tail !== undefined && !(Number.isSafeInteger(tail) && tail >= 0)) throw new UsageError(`logs: --tail ${JSON.stringify(values.tail)} is not a number of lines`);
    const { config } = await loadConfig({
      ...(values.config !== undefined ? { file: values.config } : {}),
      ...(values.state !== undefined ? { flags: { stateDir: values.state } } : {}),
      flagNames: { stateDir: '--state' },
    });
    const domain = await resolveDomain(config.stateDir, config.namePrefix, positionals[0]!);
    const path = containerLogDir(config.stateDir, domain);
    const dir = await LogDir.open(path);
    if (!dir) throw new InputError(`no log for ${JSON.stringify(positionals[0])} (its container has not run with output capture)`, { file: path });
    try {
      const reader = new LogReader(dir, { limit: logReadLimit(config.logFileBytes), warn: (m) => io.stderr.write(`ocivirt logs: ${m}\n`) });
      const out = new Printer(io, values.timestamps === true);
      const wanted = (l: LogLine) => since === undefined || l.ns >= since;
      // --tail: the last N wanted lines of what is there now (held: at most N lines)
      let held: LogLine[] = [];
      await reader.readAll(async (lines) => {
        const keep = lines.filter(wanted);
        if (tail === undefined) return out.print(keep);
        held = lastOf(held.concat(keep), tail);
      });
      if (values.follow) {
        await out.print(held.splice(0));
        await follow(reader, dir, dirname(path), (lines) => out.print(lines.filter(wanted)));
      }
      await reader.finish(async (lines) => {
        const keep = lines.filter(wanted);
        if (tail === undefined || values.follow) return out.print(keep);
        held = lastOf(held.concat(keep), tail);
      });
      await out.print(held);
      return 0;
    } finally {
      await dir.close();
    }
  },
};

const lastOf = <T>(a: T[], n: number): T[] => (n === 0 ? [] : a.slice(-n));

/** Prints new lines as they come, until the shim's status file says the process ended. */
async function follow(reader: LogReader, dir: LogDir, runDir: string, sink: (lines: LogLine[]) => Promise<void>): Promise<void> {
  let wake: () => void = () => undefined;
  const stop = watchDir(dir, FOLLOW_POLL_MS, () => wake());
  try {
    for (;;) {
      const woken = new Promise<void>((r) => (wake = r));
      // read before deciding: the shim writes the status after the last output is read
      const ended = await processEnded(runDir);
      await reader.poll(sink);
      if (ended) return;
      await woken;
    }
  } finally {
    stop();
  }
}

class Printer {
  constructor(private readonly io: CommandIO, private readonly timestamps: boolean) {}

  async print(lines: LogLine[]): Promise<void> {
    for (const l of lines) {
      const to = l.stream === 'stdout' ? this.io.stdout : this.io.stderr;
      const head = this.timestamps || l.stream === 'ocivirt' ? `${l.time} ` : '';
      const ok = to.write(head ? Buffer.concat([Buffer.from(head), l.data, NL(l)]) : Buffer.concat([l.data, NL(l)]));
      if (!ok) await new Promise((r) => to.once('drain', r));
    }
  }
}
const NEWLINE = Buffer.from('\n');
const NL = (l: LogLine) => (l.complete ? NEWLINE : Buffer.alloc(0));

/**
 * NAME to a domain: the entry of that name in the daemon's status file, else the domain an entry
 * of that name would get, else NAME itself as a domain name.
 */
async function resolveDomain(stateDir: string, prefix: string, name: string): Promise<string> {
  try {
    const status = JSON.parse(await readFile(join(stateDir, STATUS_FILE), 'utf8')) as { entries?: EntryStatus[] };
    const hit = status.entries?.find((e) => e.entry === name && e.domain);
    if (hit && isValidDomainName(hit.domain)) return hit.domain;
  } catch {
    // no status file yet: the name alone decides
  }
  const derived = domainNameFor(name, prefix);
  if ('name' in derived && (await hasLogDir(stateDir, derived.name))) return derived.name;
  if (isValidDomainName(name)) return name;
  throw new InputError(`${JSON.stringify(name)} is neither a spool entry nor a domain name`, { field: 'NAME' });
}

async function hasLogDir(stateDir: string, domain: string): Promise<boolean> {
  const dir = await LogDir.open(containerLogDir(stateDir, domain)).catch(() => undefined);
  await dir?.close();
  return dir !== undefined;
}
