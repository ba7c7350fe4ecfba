/** `ocivirt start|stop|restart NAME`: an operator's lifecycle of one domain (reconcile/operator.ts). */
import { loadConfig } from '../config/load.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { createLogger, silentLogger } from '../log.js';
import { operatorRestart, operatorStart, operatorStop, resolveDomain } from '../reconcile/operator.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';
import { printable } from './printable.js';

type Verb = 'start' | 'stop' | 'restart';

const WHAT: Record<Verb, string> = {
  start: `Starts the domain of NAME and clears an operator's stop: the daemon's restart policy applies
to it again.`,
  stop: `Stops the domain of NAME as its image asks (the entry's stopSignal, else the image's
StopSignal, else SIGTERM to its init; after its stopTimeout, else stopTimeoutSec, destroyed) and
records that its operator stopped it (<state>/operator-stopped/): the daemon does not start it
again, whatever its restart policy, until 'ocivirt start NAME'.`,
  restart: `Stops the domain of NAME as 'ocivirt stop' does and starts it again.`,
};

const usageOf = (verb: Verb) => `Usage: ocivirt ${verb} NAME [--config FILE] [--state DIR] [--uri URI] [-v]

${WHAT[verb]}

NAME is a spool entry (web.tar, web.ocivirt.json, or its stem: web) as the last status knows it,
or a domain name; the domain must be one this ocivirt instance made.

Options:
  --config FILE   configuration file (state directory, URI, stopTimeoutSec)
  --state DIR     the state directory (default: the configuration's)
  --uri URI       libvirt connection URI (default: the configuration's)
  -v, --verbose   log events (JSON lines) on stderr
  -h, --help      this text

Exit codes: 0 done, 2 bad usage or NAME not found / not ocivirt's, 1 libvirt failed.
`;

function lifecycleCommand(verb: Verb, summary: string): Command {
  return {
    name: verb,
    summary,
    usage: usageOf(verb),
    async run(argv: string[], io: CommandIO): Promise<number> {
      const flags = { config: { type: 'string' }, state: { type: 'string' }, uri: { type: 'string' }, verbose: { type: 'boolean', short: 'v' } } as const;
      const { values, positionals } = parseCommandArgs(verb, argv, flags, { min: 1, max: 1 });
      const { config } = await loadConfig({
        ...(values.config !== undefined ? { file: values.config } : {}),
        flags: { ...(values.state !== undefined ? { stateDir: values.state } : {}), ...(values.uri !== undefined ? { uri: values.uri } : {}) },
        flagNames: { stateDir: '--state', uri: '--uri' },
      });
      const log = values.verbose ? createLogger({ destination: 2, level: config.logLevel }) : silentLogger();
      const opts = { stateDir: config.stateDir, log, defaultTimeoutMs: config.stopTimeoutSec * 1000 };
      return withLibvirt(config.uri, { logger: log }, async (port) => {
        const domain = await resolveDomain(port, config.stateDir, positionals[0]!);
        const shown = printable(domain);
        if (verb === 'start') io.stdout.write((await operatorStart(port, domain, opts)) ? `started ${shown}\n` : `${shown} is running\n`);
        else {
          const r = verb === 'stop' ? await operatorStop(port, domain, opts) : await operatorRestart(port, domain, opts);
          const how = !r.stopped ? 'was not running' : r.forced ? `destroyed after ${r.ms} ms (${r.signal} did not stop it)` : `stopped by ${r.signal} in ${r.ms} ms`;
          io.stdout.write(`${shown} ${how}${verb === 'restart' ? '; started' : ''}\n`);
        }
        return 0;
      });
    },
  };
}

export const startCommand = lifecycleCommand('start', 'start a domain (and clear an operator\'s stop)');
export const stopCommand = lifecycleCommand('stop', 'stop a domain as its image asks; the daemon leaves it stopped');
export const restartCommand = lifecycleCommand('restart', 'stop a domain as its image asks and start it again');
