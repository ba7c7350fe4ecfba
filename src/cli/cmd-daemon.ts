/** `ocivirt daemon`: the long-running service (see src/daemon). */
import { Daemon, StartAbortedError } from '../daemon/daemon.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt daemon [--config FILE] [--spool DIR] [--state DIR] [--export DIR] [--uri URI]

Keeps libvirt-lxc in step with the spool: every bundle directory (config.json), OCI image
layout and .tar image archive in the spool becomes a domain named after it. An entry renamed
into the spool is taken at once; one copied in place once it has not changed for quietMs;
names starting with '.' are ignored. A full resync runs at start and every resyncIntervalSec.
Domains changed in libvirt (virsh edit, memtune --config, define) are exported to
<export>/<domain>/config.json. Logs are JSON lines on stdout, one event per transition
(docs/logging.md).

Settings: defaults, then the file (--config, $OCIVIRT_CONFIG, or /etc/ocivirt/ocivirt.json
when it exists), then OCIVIRT_* variables, then these flags (docs/configuration.md).

Options:
  --config FILE   configuration file (JSON)
  --spool DIR     the spool (read only)
  --state DIR     unpacked images and the status file
  --export DIR    exported bundles
  --uri URI       libvirt connection URI (default lxc:///)
  -h, --help      this text

Signals: SIGHUP reloads the configuration file (an invalid one is logged and ignored);
SIGTERM/SIGINT finish in-flight work within shutdownTimeoutSec, then abort what is left and
exit 0 (137 when a call stuck inside libvirt or the kernel cannot be cut). Running containers
are never stopped by the daemon stopping.

Exit codes: 0 stopped by a signal, 2 invalid configuration or an untrusted directory (group
or other writable), 1 any other failure (libvirtd unreachable at start).
`;

export const daemonCommand: Command = {
  name: 'daemon',
  summary: 'run the spool watcher, reconciler and exporter until stopped',
  usage,
  async run(argv: string[], _io: CommandIO): Promise<number> {
    const { values } = parseCommandArgs(
      'daemon',
      argv,
      { config: { type: 'string' }, spool: { type: 'string' }, state: { type: 'string' }, export: { type: 'string' }, uri: { type: 'string' } },
      { min: 0, max: 0 },
    );
    const flags = {
      ...(values.spool !== undefined ? { spoolDir: values.spool } : {}),
      ...(values.state !== undefined ? { stateDir: values.state } : {}),
      ...(values.export !== undefined ? { exportDir: values.export } : {}),
      ...(values.uri !== undefined ? { uri: values.uri } : {}),
    };
    // Signals are taken from the start: a SIGTERM while starting stops the daemon once it runs.
    let daemon: Daemon | undefined;
    let stopRequested = false;
    let markStopped: (r: { stuck: boolean }) => void = () => undefined;
    const stopped = new Promise<{ stuck: boolean }>((resolve) => (markStopped = resolve));
    const starting = new AbortController();
    const stop = () => {
      stopRequested = true;
      if (daemon) void daemon.stop().then(markStopped);
      else starting.abort();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.on('SIGHUP', () => void daemon?.reload());
    try {
      daemon = await Daemon.start({
        load: {
          ...(values.config !== undefined ? { file: values.config } : {}),
          flags,
          flagNames: { spoolDir: '--spool', stateDir: '--state', exportDir: '--export', uri: '--uri' },
        },
        signal: starting.signal,
      });
    } catch (e) {
      if (!(e instanceof StartAbortedError)) throw e;
      markStopped({ stuck: e.stuck });
    }
    if (stopRequested) void daemon?.stop().then(markStopped);
    const { stuck } = await stopped;
    if (stuck) {
      // A thread stuck inside libvirt or a blocking read keeps Node from exiting at all (even
      // process.exit waits for it), so the process ends itself; the log is already written.
      process.stderr.write('ocivirt: a call stuck inside libvirt or the kernel could not be cut; ending with SIGKILL (exit 137)\n');
      process.kill(process.pid, 'SIGKILL');
    }
    // Whatever an abandoned call still holds must not keep the process alive past its exit.
    setTimeout(() => process.exit(0), 200).unref();
    return 0;
  },
};
