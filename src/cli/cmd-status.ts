/** `ocivirt status`: every entry, its domain, last result and error, from the daemon's status file. */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../config/load.js';
import { InputError } from '../errors.js';
import { STATUS_FILE, type EntryStatus } from '../reconcile/sync.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';
import { printable } from './printable.js';
import { connectLibvirt } from '../libvirt/adapter.js';
import { errorMessage } from '../errors.js';
import { formatNetwork, networksOf, type ShownNetwork } from '../network/show.js';

const usage = `Usage: ocivirt status [--config FILE] [--state DIR] [--json]

Shows every spool entry the daemon (or 'ocivirt sync --once') last looked at: its domain,
the last action and result (ok, pending, failed), what the domain is doing (STATE: running,
pending-change, restarting, crash-looping, exited, gave-up, setup-failed, stopped, absent,
unknown), the process's last exit code (or sig N: killed by signal N), the restarts its restart
policy made since it was last started otherwise, how long it has been in that state, and the
error or reason. In --json: "state", "exitCode", "signal", "restarts", "since" (ISO time),
"nextRestart" and "stateReason" per entry. Read from
<state>/status.json, which the daemon rewrites atomically after every pass. Each domain's
interfaces (libvirt network or host bridge, address, MAC) and published ports are read from
libvirt (the configuration's uri): shown under its row, and as "networks" and "ports" in --json;
when libvirt cannot be reached, the rest is shown and stderr says so.

Options:
  --config FILE   configuration file (for the state directory)
  --state DIR     the state directory (default: the configuration's)
  --json          print the status file as it is
  -h, --help      this text

Exit codes: 0 shown (whatever the entries' results), 2 no status file or usage, 1 other.
`;

interface StatusFile {
  updated: string;
  entries: EntryStatus[];
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'show every spool entry, its domain, last result and error',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values } = parseCommandArgs('status', argv, { config: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 0 });
    const { config } = await loadConfig({
      ...(values.config !== undefined ? { file: values.config } : {}),
      ...(values.state !== undefined ? { flags: { stateDir: values.state } } : {}),
      flagNames: { stateDir: '--state' },
    });
    const file = join(config.stateDir, STATUS_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new InputError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? ''}): has the daemon run with this state directory?`, { file });
    }
    let status: StatusFile;
    try {
      status = JSON.parse(text) as StatusFile;
      if (!Array.isArray(status.entries)) throw new Error('no entries');
    } catch (e) {
      throw new InputError(`is not a status file (${(e as Error).message})`, { file });
    }
    const shown = await networksFromLibvirt(config.uri, status.entries, io);
    if (values.json) {
      const entries = status.entries.map((e) => {
        const n = shown.get(e.domain);
        return n === undefined ? e : { ...e, networks: n.networks, ports: n.ports };
      });
      io.stdout.write(JSON.stringify({ ...status, entries }, null, 2) + '\n');
      return 0;
    }
    const age = Math.round((Date.now() - (await stat(file)).mtimeMs) / 1000);
    // names and reasons come from the spool: escaped, so one entry is always one line
    const now = Date.now();
    const rows = status.entries.map((e) =>
      [e.entry, e.domain || '-', e.action, e.result, e.state ?? '-', exitText(e), String(e.restarts ?? 0), ago(e.since, now), oneLine(e.error ?? withPending(e))].map((c) => printable(String(c))),
    );
    const head = ['ENTRY', 'DOMAIN', 'ACTION', 'RESULT', 'STATE', 'EXIT', 'RESTARTS', 'SINCE', 'ERROR / REASON'];
    const last = head.length - 1;
    const widths = head.slice(0, last).map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.slice(0, last).map((c, i) => c.padEnd(widths[i]!)).join('  ') + '  ' + r[last] + '\n';
    io.stdout.write(line(head));
    rows.forEach((r, i) => {
      io.stdout.write(line(r));
      const n = shown.get(status.entries[i]!.domain);
      const text = n === undefined ? '' : formatNetwork(n);
      if (text !== '') io.stdout.write(`  ${printable(text)}\n`);
    });
    io.stdout.write(`${status.entries.length} entries, ${status.entries.filter((e) => e.result === 'failed').length} failed; updated ${status.updated} (${age}s ago)\n`);
    return 0;
  },
};

/** A change waiting for the domain's next start, and why the domain is in its state, are said after the reason. */
function withPending(e: EntryStatus): string {
  const reason = e.pendingChange?.length ? `${e.reason}; pending until the next start: ${e.pendingChange.join(', ')}` : e.reason;
  const next = e.nextRestart !== undefined ? `; next restart at ${e.nextRestart}` : '';
  return e.stateReason !== undefined ? `${reason}; ${e.state}: ${e.stateReason}${next}` : `${reason}${next}`;
}

/** The last exit: its code, or the signal that killed the process; `-` when none is known. */
function exitText(e: Partial<EntryStatus>): string {
  if (typeof e.exitCode === 'number') return String(e.exitCode);
  if (typeof e.signal === 'number') return `sig${e.signal}`;
  return '-';
}

/** How long ago `since` was, shortly (`42s`, `5m`, `3h`, `2d`); `-` when unknown. */
function ago(since: string | null | undefined, now: number): string {
  const t = since ? Date.parse(since) : NaN;
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.round((now - t) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172_800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`;
}

/** The entries' domains' networks, from libvirt; none (said on stderr) when it cannot be reached. */
async function networksFromLibvirt(uri: string, entries: readonly EntryStatus[], io: CommandIO): Promise<Map<string, ShownNetwork>> {
  const domains = [...new Set(entries.map((e) => e.domain).filter((d) => d !== ''))];
  if (!domains.length) return new Map();
  try {
    const port = await connectLibvirt(uri);
    try {
      return await networksOf(port, domains);
    } finally {
      await port.close();
    }
  } catch (e) {
    io.stderr.write(`ocivirt status: interfaces and ports not shown: libvirt (${uri}) cannot be reached: ${printable(errorMessage(e))}\n`);
    return new Map();
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
