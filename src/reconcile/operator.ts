/**
 * An operator's start, stop and restart of one domain (`ocivirt start|stop|restart NAME`), and the
 * intent they leave: a stopped domain is marked in `<state>/operator-stopped/<domain>` before it is
 * stopped, so neither the reconciler (a start it never finished) nor a restart policy starts it
 * again; a start clears the mark. A `virsh destroy` the daemon hears is marked the same way
 * (daemon/restarts.ts). The stop itself is the one every stop is (stop.ts): the image's StopSignal,
 * its timeout, then destroy.
 */
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { readOwnership } from '../convert/ownership.js';
import { InputError } from '../errors.js';
import type { LibvirtPort, PortEvent } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import { parseDomainXml } from '../xml/parse.js';
import { entryStem } from '../spool/names.js';
import { readInstanceId } from './instance.js';
import { Markers } from './pending.js';
import { STATUS_FILE } from './sync.js';
import { restartRecordsOf } from './restarts.js';
import { startChecked } from './start-check.js';
import { stopDomain, type StopOutcome } from './stop.js';

export const OPERATOR_STOPPED_DIR = 'operator-stopped';

export function operatorStopsOf(stateDir: string): Markers {
  return new Markers(join(stateDir, OPERATOR_STOPPED_DIR));
}

export interface OperatorOptions {
  stateDir: string;
  log: EventLogger;
  /** The daemon's stopTimeoutSec, in ms. */
  defaultTimeoutMs: number;
}

/** Marks the domain stopped by its operator, then stops it as its image asks. */
export async function operatorStop(port: LibvirtPort, domain: string, opts: OperatorOptions): Promise<StopOutcome> {
  await operatorStopsOf(opts.stateDir).add(domain);
  return stopDomain(port, domain, { log: opts.log, defaultTimeoutMs: opts.defaultTimeoutMs, fields: { reason: 'operator stop' } });
}

/** Clears the operator's stop and starts the domain unless it runs; true when it was started. */
export async function operatorStart(port: LibvirtPort, domain: string, opts: OperatorOptions): Promise<boolean> {
  await operatorStopsOf(opts.stateDir).remove(domain);
  if ((await port.state(domain)) === 'running') return false;
  await restartRecordsOf(opts.stateDir).remove(domain); // an operator's start: the restart count begins again
  await startChecked(port, domain); // the one start every start is: checked, shim made ready

  opts.log.info('domain.started', { domain, reason: 'operator start' });
  return true;
}

/** Stops (marked meanwhile, so nothing restarts it behind the operator's back) and starts again. */
export async function operatorRestart(port: LibvirtPort, domain: string, opts: OperatorOptions): Promise<StopOutcome> {
  const stopped = await operatorStop(port, domain, opts);
  await operatorStart(port, domain, opts);
  return stopped;
}

/**
 * NAME as an operator types it: a spool entry (`web.tar`, `web.ocivirt.json`, or its stem `web`)
 * as the last status file knows it, or a domain name. Either way the domain must be one this
 * instance made: another's, or one without ocivirt's metadata, is refused.
 */
export async function resolveDomain(port: LibvirtPort, stateDir: string, name: string): Promise<string> {
  const entries = await statusEntries(stateDir);
  const byEntry = entries.find((e) => e.entry === name) ?? entries.find((e) => entryStem(e.entry) === name);
  const domain = byEntry?.domain || name;
  if ((await port.lookup(domain)) === undefined)
    throw new InputError(byEntry ? `entry '${name}' has no domain in libvirt (${domain})` : `no entry or domain named '${name}'`);
  const owner = readOwnership(parseDomainXml(await port.inactiveXml(domain)));
  const instance = await readInstanceId(stateDir);
  if (owner === undefined || (owner.instance !== undefined && owner.instance !== instance))
    throw new InputError(`domain '${domain}' is not managed by this ocivirt (${owner === undefined ? 'no ocivirt metadata' : 'another instance made it'}); use virsh`);
  return domain;
}

async function statusEntries(stateDir: string): Promise<{ entry: string; domain: string }[]> {
  try {
    const status = JSON.parse(await readFile(join(stateDir, STATUS_FILE), 'utf8')) as { entries?: { entry: string; domain: string }[] };
    return Array.isArray(status.entries) ? status.entries : [];
  } catch {
    return []; // no pass has run yet: domain names only
  }
}

/**
 * A lifecycle event the daemon heard: a domain destroyed by someone else than ocivirt (`virsh
 * destroy`: ocivirt's own stops run under the domain's lock, `busy`) is an operator's stop and
 * marked as one; a start by anyone (`virsh start`) clears the mark. A shutdown is not marked:
 * libvirt-lxc reports a `virsh shutdown` and the container's process ending alike ("shutdown").
 * Returns 'held' when it marked the domain, 'released' when it cleared a mark.
 */
export async function heardLifecycle(port: LibvirtPort, stops: Markers, e: PortEvent, busy: (domain: string) => boolean): Promise<'held' | 'released' | undefined> {
  if (e.type !== 'lifecycle') return undefined;
  if (e.kind === 'started') {
    if (!(await stops.has(e.name))) return undefined;
    await stops.remove(e.name);
    return 'released';
  }
  if (e.kind !== 'stopped' || e.detail !== 'destroyed' || busy(e.name) || (await stops.has(e.name))) return undefined;
  // started again meanwhile (the event came late): nothing to hold
  if ((await port.state(e.name).catch(() => 'gone')) === 'running') return undefined;
  await stops.add(e.name);
  return 'held';
}
