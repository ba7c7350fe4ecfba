/**
 * Actual state: the domains libvirt has, sorted by who owns them. Only this instance's domains
 * (`managed`) are ever changed or deleted; the rest are left alone: another instance's
 * (`foreign`), domains without our metadata (`unmanaged`) and domains whose definition cannot be
 * read (`unreadable`, which may be anyone's).
 *
 * Ownership: a domain carrying an instance id is this instance's when the id is ours. One made
 * by an ocivirt older than instance ids carries none: it is adopted when the bundle it was made
 * from is this instance's (an entry of this spool, or an image unpacked into this state
 * directory), and left alone otherwise (with a warning), since any instance on the host may
 * have made it.
 */
import { join, resolve } from 'node:path';
import { readOwnership, type Ownership } from '../convert/ownership.js';
import { errorMessage } from '../errors.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import type { Domain } from '../xml/domain.js';
import { parseDomainXml } from '../xml/parse.js';

export interface ManagedDomain {
  name: string;
  uuid: string;
  owner: Ownership;
  /** The inactive (persistent) definition: what a redefine replaces. */
  domain: Domain;
}

/** A domain ocivirt made, but another instance (or an older ocivirt for another spool). */
export interface ForeignDomain {
  name: string;
  owner: Ownership;
}

export interface ActualState {
  managed: Map<string, ManagedDomain>;
  /** Names of domains without our ownership metadata. */
  unmanaged: Set<string>;
  foreign: Map<string, ForeignDomain>;
  /** Domains whose definition does not parse, with the reason: whose they are is unknown. */
  unreadable: Map<string, string>;
}

/** Who this instance is: its id (none yet for a `plan` before the first sync) and what it reads. */
export interface Instance {
  id: string | undefined;
  spoolDir: string;
  /** Image bundles are unpacked under it (`<stateDir>/bundles/…`). */
  stateDir?: string;
}

export function emptyActual(): ActualState {
  return { managed: new Map(), unmanaged: new Set(), foreign: new Map(), unreadable: new Map() };
}

/** Is a domain with this ownership this instance's? */
export function ownedBy(owner: Ownership, self: Instance): boolean {
  if (owner.instance !== undefined) return owner.instance === self.id;
  if (owner.bundle === undefined) return false;
  if (owner.bundle === join(resolve(self.spoolDir), owner.entry)) return true;
  return self.stateDir !== undefined && owner.bundle.startsWith(join(resolve(self.stateDir), 'bundles') + '/');
}

/** Why a domain of that name is left alone, for the plan and the log. */
export function foreignReason(f: ForeignDomain): string {
  const from = f.owner.bundle !== undefined ? ` from ${JSON.stringify(f.owner.bundle)}` : '';
  if (f.owner.instance !== undefined)
    return `domain '${f.name}' belongs to another ocivirt instance (id ${f.owner.instance}, made${from}); it is left alone: rename the entry, or give each instance its own namePrefix`;
  return `domain '${f.name}' was made by an ocivirt without instance ids${from}, which is not this instance's spool or state directory; it is left alone: rename the entry, or remove that domain if it is stale`;
}

/** Files the domain read into `have`; a domain undefined meanwhile is simply absent. */
export async function readDomainInto(port: LibvirtPort, ref: { name: string; uuid: string }, self: Instance, have: ActualState): Promise<void> {
  let xml: string;
  try {
    xml = await port.inactiveXml(ref.name);
  } catch (e) {
    if (e instanceof DomainNotFoundError) return; // undefined meanwhile (a transient domain that stopped)
    throw e;
  }
  let domain: Domain;
  try {
    domain = parseDomainXml(xml, `domain ${ref.name}`);
  } catch (e) {
    have.unreadable.set(ref.name, errorMessage(e));
    return;
  }
  const owner = readOwnership(domain);
  if (owner === undefined) have.unmanaged.add(ref.name);
  else if (ownedBy(owner, self)) have.managed.set(ref.name, { name: ref.name, uuid: ref.uuid, owner, domain });
  else have.foreign.set(ref.name, { name: ref.name, owner });
}

const CONCURRENCY = 8;

/**
 * With a name prefix, only domains whose names carry it are even read (instances with their own
 * prefixes never meet); without one, every domain is read and sorted by owner.
 */
export async function actualState(port: LibvirtPort, self: Instance, prefix = ''): Promise<ActualState> {
  const refs = (await port.listDomains()).filter((r) => r.name.startsWith(prefix));
  const have = emptyActual();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, refs.length) }, async () => {
      while (next < refs.length) await readDomainInto(port, refs[next++]!, self, have);
    }),
  );
  return have;
}
