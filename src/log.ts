/**
 * The one pino logger and the list of event names: operators alert on these from journald,
 * so names and fields are a stable contract (documented in the README). Add, never rename.
 */
import { pino, type Logger } from 'pino';

export const EVENTS = [
  // spool and pipeline
  'entry.detected',
  'entry.removed',
  'entry.failed',
  'entry.refused',
  'image.verified',
  'image.unpacked',
  'image.unchanged',
  'image.reconverted',
  'image.repaired',
  'bundle.copied',
  'image.warning',
  'layer.progress',
  'layer.applied',
  'layer.trailing',
  // reconciler
  'plan.computed',
  'domain.defined',
  'domain.redefined',
  'domain.undefined',
  'domain.started',
  'domain.stopping',
  'domain.stopped',
  'domain.pending',
  'domain.updated',
  'domain.held',
  'domain.released',
  'domain.exited',
  'domain.crashlooping',
  'domain.gaveup',
  'domain.drifted',
  'domain.unchanged',
  'domain.foreign',
  'sync.completed',
  // export
  'export.written',
  'export.failed',
  'export.removed',
  'export.watching',
  // libvirt connection
  'libvirt.connected',
  'libvirt.disconnected',
  'libvirt.reconnected',
  'libvirt.events.subscribed',
  'libvirt.events.failed',
  // daemon lifecycle
  'daemon.started',
  'daemon.insecure',
  'daemon.reloaded',
  'daemon.stopping',
  'daemon.stopped',
  'config.invalid',
  // conversion
  'convert.warning',
  // published ports (network/ports.ts)
  'ports.applied',
  'ports.refused',
  'ports.failed',
  // DNS names of containers on networks (network/dns.ts)
  'dns.updated',
  'dns.refused',
  'dns.failed',
  // container output to the journal (logs/journal.ts)
  'logs.journal.following',
  'logs.journal.failed',
] as const;
export type EventName = (typeof EVENTS)[number];

/** Stable fields; anything else an event carries is extra detail. */
export interface EventFields {
  entry?: string;
  domain?: string;
  digest?: string;
  durationMs?: number;
  err?: unknown;
  [extra: string]: unknown;
}

export type EventLogger = {
  info(event: EventName, fields?: EventFields, msg?: string): void;
  warn(event: EventName, fields?: EventFields, msg?: string): void;
  error(event: EventName, fields?: EventFields, msg?: string): void;
  debug(event: EventName, fields?: EventFields, msg?: string): void;
  readonly pino: Logger;
};

export interface LogOptions {
  level?: string;
  /** Where JSON lines go; stdout (fd 1) by default, as journald expects. */
  destination?: NodeJS.WritableStream | number;
}

export function createLogger(opts: LogOptions = {}): EventLogger {
  const dest =
    typeof opts.destination === 'object'
      ? opts.destination
      : pino.destination({ fd: opts.destination ?? 1, sync: true });
  const base = pino(
    {
      level: opts.level ?? process.env.OCIVIRT_LOG_LEVEL ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    dest as pino.DestinationStream,
  );
  const emit =
    (level: 'info' | 'warn' | 'error' | 'debug') =>
    (event: EventName, fields: EventFields = {}, msg?: string): void => {
      base[level]({ event, ...fields }, msg ?? event);
    };
  return { info: emit('info'), warn: emit('warn'), error: emit('error'), debug: emit('debug'), pino: base };
}

/** A logger that drops everything (CLI one-shots that print their result instead). */
export function silentLogger(): EventLogger {
  return createLogger({ level: 'silent' });
}
