/**
 * Stopping a domain as its image asks: the stop signal goes to the container's init (pid 1), the
 * domain gets its stop timeout to shut off, and is killed after it (logged as forced): SIGKILL to
 * its init, whose pid namespace dies with it, then libvirt's destroy if it is still not down.
 * SIGKILL first because libvirt-lxc's destroy spends its first ~2 s sending SIGTERM once more to
 * every process of the container's cgroup (which a stubborn container ignores) while it holds a
 * libvirtd worker and one of ours: twenty stubborn removals would queue on those.
 *
 * The policy is read from the definition the domain runs with (its ocivirt metadata):
 *   signal:  the entry's settings `stopSignal` (org.ocivirt.settings.stopSignal), else the image's
 *            StopSignal (org.opencontainers.image.stopSignal), else SIGTERM;
 *   timeout: the settings `stopTimeout` in seconds (org.ocivirt.settings.stopTimeout), else the
 *            daemon's `stopTimeoutSec`.
 * A signal name comes from an image's label, i.e. from whoever built it: only the fixed list of
 * signals below (Linux numbers 1 to 31, libvirt's names for them) is sent; anything else is
 * replaced by SIGTERM, with a warning.
 */
import { sleep, systemClock, type Clock } from '../clock.js';
import { DomainNotFoundError, LibvirtUnavailableError, type DomainState, type LibvirtPort } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import { RECORDED_PREFIX } from '../settings/keys.js';
import { parseDomainXml } from '../xml/parse.js';

export const IMAGE_STOP_SIGNAL_ANNOTATION = 'org.opencontainers.image.stopSignal';
export const SETTINGS_STOP_SIGNAL_ANNOTATION = `${RECORDED_PREFIX}stopSignal`;
export const SETTINGS_STOP_TIMEOUT_ANNOTATION = `${RECORDED_PREFIX}stopTimeout`;
const DEFAULT_SIGNAL: NodeJS.Signals = 'SIGTERM';
/** How often the domain's state is checked while it has time to stop. */
export const STOP_POLL_MS = 100;
/** How long a domain whose init got SIGKILL has to shut off before it is destroyed. */
export const KILL_GRACE_MS = 2_000;

/** Signals by their Linux number (index + 1); libvirt's VIR_DOMAIN_PROCESS_SIGNAL_* has each. */
const SIGNALS = [
  'HUP', 'INT', 'QUIT', 'ILL', 'TRAP', 'ABRT', 'BUS', 'FPE', 'KILL', 'USR1', 'SEGV', 'USR2', 'PIPE', 'ALRM', 'TERM', 'STKFLT',
  'CHLD', 'CONT', 'STOP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'XCPU', 'XFSZ', 'VTALRM', 'PROF', 'WINCH', 'POLL', 'PWR', 'SYS',
] as const;
const ALIASES: Record<string, string> = { IOT: 'ABRT', IO: 'POLL', CLD: 'CHLD' };

/**
 * `SIGTERM`, `TERM`, `sigterm` or `15` -> 'SIGTERM'; undefined when it is no signal of the list
 * (real-time signals such as SIGRTMIN+3 included: not sent).
 */
export function signalOf(text: string): NodeJS.Signals | undefined {
  const t = text.trim().toUpperCase();
  if (/^[0-9]{1,2}$/.test(t)) {
    const name = SIGNALS[Number(t) - 1];
    return name === undefined ? undefined : (`SIG${name}` as NodeJS.Signals);
  }
  const bare = t.startsWith('SIG') ? t.slice(3) : t;
  const name = ALIASES[bare] ?? bare;
  return (SIGNALS as readonly string[]).includes(name) ? (`SIG${name}` as NodeJS.Signals) : undefined;
}

export interface StopPolicy {
  signal: NodeJS.Signals;
  timeoutMs: number;
  /** Where the signal came from. */
  from: 'settings' | 'image' | 'default';
  /** What was asked for and not honoured (an unknown signal, a bad timeout). */
  warnings: string[];
}

/** The stop policy of a domain, from its definition's XML (`defaultTimeoutMs`: the daemon's). */
export function stopPolicyOf(xml: string | undefined, defaultTimeoutMs: number): StopPolicy {
  const policy: StopPolicy = { signal: DEFAULT_SIGNAL, timeoutMs: defaultTimeoutMs, from: 'default', warnings: [] };
  if (xml === undefined) return policy;
  let annotations: Map<string, string>;
  try {
    annotations = new Map((parseDomainXml(xml).metadata.ours?.annotations ?? []).map((a) => [a.key, a.value]));
  } catch {
    return policy; // not readable as ocivirt's: the defaults
  }
  for (const [from, key] of [
    ['settings', SETTINGS_STOP_SIGNAL_ANNOTATION],
    ['image', IMAGE_STOP_SIGNAL_ANNOTATION],
  ] as const) {
    const asked = annotations.get(key);
    if (asked === undefined || asked === '') continue;
    const signal = signalOf(asked);
    if (signal === undefined) {
      policy.warnings.push(`stop signal ${JSON.stringify(asked.slice(0, 40))} (${from === 'settings' ? 'the entry\'s settings' : 'the image\'s StopSignal'}) is not a signal ocivirt sends; ${DEFAULT_SIGNAL} instead`);
      break;
    }
    policy.signal = signal;
    policy.from = from;
    break;
  }
  const timeout = annotations.get(SETTINGS_STOP_TIMEOUT_ANNOTATION);
  if (timeout !== undefined) {
    if (/^[0-9]{1,4}$/.test(timeout) && Number(timeout) <= 3600) policy.timeoutMs = Number(timeout) * 1000;
    else policy.warnings.push(`stop timeout ${JSON.stringify(timeout.slice(0, 40))} (the entry's settings) is not 0 to 3600 seconds; ${defaultTimeoutMs / 1000} s instead`);
  }
  return policy;
}

export interface StopOptions {
  log: EventLogger;
  /** The daemon's stopTimeoutSec, in ms. */
  defaultTimeoutMs: number;
  clock?: Clock;
  /** The step's signal: no further wait begins once it fired. */
  signal?: AbortSignal;
  /** Logged with `domain.stopped` (entry, digest, reason). */
  fields?: Record<string, unknown>;
}

export interface StopOutcome {
  /** It was running and is shut off now (false: it was not running). */
  stopped: boolean;
  signal: NodeJS.Signals;
  forced: boolean;
  ms: number;
}

/** Polls until `name` is down (true) or `ms` have passed (false). */
async function shutOffWithin(port: LibvirtPort, name: string, ms: number, clock: Clock, signal: AbortSignal | undefined): Promise<boolean> {
  const deadline = clock.now() + ms;
  for (;;) {
    if (down(await stateOrGone(port, name))) return true;
    const left = deadline - clock.now();
    if (left <= 0) return false;
    await sleep(clock, Math.min(STOP_POLL_MS, left), signal);
  }
}

/** SIGKILL to the init; true when the domain is down within KILL_GRACE_MS of it. */
async function killed(port: LibvirtPort, name: string, clock: Clock, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    await port.sendSignal(name, 'SIGKILL');
  } catch (e) {
    if (e instanceof LibvirtUnavailableError) throw e;
    return down(await stateOrGone(port, name)); // down meanwhile, or refused: destroy decides
  }
  return shutOffWithin(port, name, KILL_GRACE_MS, clock, signal);
}

/** A domain undefined while running is transient and vanishes when it stops: that is stopped too. */
async function stateOrGone(port: LibvirtPort, name: string): Promise<DomainState | 'gone'> {
  try {
    return await port.state(name);
  } catch (e) {
    if (e instanceof DomainNotFoundError) return 'gone';
    throw e;
  }
}

const down = (s: DomainState | 'gone') => s === 'shutoff' || s === 'gone';

/**
 * Stops `name` by its policy: signal, up to the timeout for it to shut off, then SIGKILL and destroy.
 * Logs `domain.stopped` { domain, signal, forced, ms } when it was running.
 */
export async function stopDomain(port: LibvirtPort, name: string, opts: StopOptions): Promise<StopOutcome> {
  const clock = opts.clock ?? systemClock;
  if (down(await stateOrGone(port, name))) return { stopped: false, signal: DEFAULT_SIGNAL, forced: false, ms: 0 };
  let xml: string | undefined;
  try {
    xml = await port.liveXml(name); // the definition it runs with: its image's wishes
  } catch (e) {
    if (e instanceof LibvirtUnavailableError) throw e;
  }
  const policy = stopPolicyOf(xml, opts.defaultTimeoutMs);
  for (const w of policy.warnings) opts.log.warn('domain.stopping', { ...opts.fields, domain: name, warning: w }, `${name}: ${w}`);
  const t0 = clock.now();
  let delivered = true;
  try {
    await port.sendSignal(name, policy.signal);
  } catch (e) {
    if (e instanceof LibvirtUnavailableError) throw e;
    delivered = false; // stopped meanwhile, or the signal was refused: destroy decides below
  }
  opts.log.debug('domain.stopping', { ...opts.fields, domain: name, signal: policy.signal, from: policy.from, timeoutMs: policy.timeoutMs });
  // not delivered: no wait, only a look (it may have stopped meanwhile)
  let forced = !(await shutOffWithin(port, name, delivered ? policy.timeoutMs : 0, clock, opts.signal));
  if (forced && !(await killed(port, name, clock, opts.signal))) {
    try {
      await port.destroy(name);
    } catch (e) {
      if (!down(await stateOrGone(port, name))) throw e;
      forced = false; // it went down on its own just before the destroy
    }
  }
  const ms = clock.now() - t0;
  const fields = { ...opts.fields, domain: name, signal: policy.signal, forced, ms };
  if (forced)
    opts.log.warn('domain.stopped', fields, `${name} did not stop within ${policy.timeoutMs} ms of ${policy.signal}${delivered ? '' : ' (the signal was not delivered)'}; killed`);
  else opts.log.info('domain.stopped', fields);
  return { stopped: true, signal: policy.signal, forced, ms };
}
