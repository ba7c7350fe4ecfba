/** `ocivirt plan`: what a sync pass would do, per domain, without doing it. */
import { loadConfig, type Config } from '../config/index.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { createLogger, silentLogger, type EventLogger } from '../log.js';
import type { PlanItem } from '../reconcile/plan.js';
import { computeSyncPlan, syncOptionsFromConfig, type SyncOptions } from '../reconcile/sync.js';
import { checkDirectoryTrust } from '../spool/index.js';
import { UsageError } from '../errors.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';
import { printable } from './printable.js';

export const RECONCILE_FLAGS = {
  spool: { type: 'string' },
  state: { type: 'string' },
  uri: { type: 'string' },
  config: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
} as const;

export const RECONCILE_FLAGS_USAGE = `  --spool DIR     the spool directory (bundles, image layouts, .tar archives); required
                  unless the configuration file names one
  --state DIR     where images are unpacked and status.json is kept (default from the
                  configuration, /var/lib/ocivirt/state)
  --uri URI       libvirt connection URI (default lxc:///)
  --config FILE   configuration file (default /etc/ocivirt/ocivirt.json when it exists);
                  policies, name prefix, concurrency come from it
  -v, --verbose   log events (JSON lines) on stderr
  -h, --help      this text`;

export interface ReconcileSetup {
  config: Config;
  opts: SyncOptions;
}

/** Flags + configuration file + environment -> the pass options; refuses untrusted directories. */
export async function reconcileSetup(
  command: string,
  values: { spool?: string; state?: string; uri?: string; config?: string; verbose?: boolean },
  io: CommandIO,
): Promise<ReconcileSetup> {
  const { config } = await loadConfig({
    ...(values.config !== undefined ? { file: values.config } : {}),
    flags: {
      ...(values.spool !== undefined ? { spoolDir: values.spool } : {}),
      ...(values.state !== undefined ? { stateDir: values.state } : {}),
      ...(values.uri !== undefined ? { uri: values.uri } : {}),
    },
    flagNames: { spoolDir: '--spool', stateDir: '--state', uri: '--uri' },
  });
  if (values.spool === undefined && values.config === undefined && process.env.OCIVIRT_SPOOL === undefined)
    throw new UsageError(`--spool DIR is required (see 'ocivirt ${command} --help')`);
  const log: EventLogger = values.verbose ? createLogger({ destination: 2, level: config.logLevel }) : silentLogger();
  for (const dir of [config.spoolDir]) {
    const { warnings } = await checkDirectoryTrust(dir, { allowInsecure: config.allowInsecureDirs });
    for (const w of warnings) io.stderr.write(`warning: ${w}\n`);
  }
  return { config, opts: syncOptionsFromConfig(config, log) };
}

/** One line per item; names and reasons come from the spool, so they are printed escaped. */
export function formatPlan(plan: readonly PlanItem[]): string {
  const domains = plan.map((i) => printable(i.domain || '-'));
  const width = Math.max(6, ...domains.map((d) => d.length));
  return plan
    .map((i, n) => {
      const entry = i.entry !== i.domain ? ` (entry ${printable(i.entry)})` : '';
      const start = i.action === 'create' && i.start ? ' and start' : '';
      return `${i.action.padEnd(7)} ${domains[n]!.padEnd(width)}  ${printable(i.reason)}${start}${entry}`;
    })
    .join('\n');
}

const usage = `Usage: ocivirt plan --spool DIR [--state DIR] [--uri URI] [--config FILE] [--json]

Prints what 'ocivirt sync --once' would do, one line per domain: create, update, delete,
nothing or fail, and why. Reads the spool and libvirt; changes nothing, except that image
entries are unpacked into the state directory (the plan needs their config) and volumes an
entry needs are made there (a domain's definition names them).

Options:
${RECONCILE_FLAGS_USAGE}
  --json          the plan as JSON (domain, entry, action, reason, differences)

Exit codes: 0 plan printed (even when entries would fail), 2 bad usage or configuration,
1 libvirt unavailable or another failure.
`;

export const planCommand: Command = {
  name: 'plan',
  summary: 'print what a sync pass would do, without doing it',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values } = parseCommandArgs('plan', argv, { ...RECONCILE_FLAGS, json: { type: 'boolean' } }, { min: 0, max: 0 });
    const { config, opts } = await reconcileSetup('plan', values, io);
    return withLibvirt(config.uri, { logger: opts.log }, async (port) => {
      const plan = await computeSyncPlan(port, opts);
      if (values.json) {
        const out = plan.map(({ xml: _xml, ...rest }) => rest);
        io.stdout.write(JSON.stringify(out, null, 2) + '\n');
      } else if (plan.length) io.stdout.write(formatPlan(plan) + '\n');
      else io.stdout.write('nothing to do: the spool is empty and ocivirt manages no domain\n');
      return 0;
    });
  },
};
