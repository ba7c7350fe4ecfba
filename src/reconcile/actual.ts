/**
 * Actual state: every domain libvirt has, split into those ocivirt manages (its metadata carries
 * our ownership) and the rest, which ocivirt never changes.
 */
import { readOwnership, type Ownership } from '../convert/ownership.js';
import type { LibvirtPort } from '../libvirt/port.js';
import type { Domain } from '../xml/domain.js';
import { parseDomainXml } from '../xml/parse.js';

export interface ManagedDomain {
  name: string;
  uuid: string;
  owner: Ownership;
  /** The inactive (persistent) definition: what a redefine replaces. */
  domain: Domain;
}

export interface ActualState {
  managed: Map<string, ManagedDomain>;
  /** Names of domains without our ownership (or whose XML we cannot read as ours). */
  unmanaged: Set<string>;
}

const CONCURRENCY = 8;

/**
 * With a name prefix, only domains whose names carry it belong to this ocivirt (several
 * instances, or tests, can share one libvirtd); the others are not even read.
 */
export async function actualState(port: LibvirtPort, prefix = ''): Promise<ActualState> {
  const refs = (await port.listDomains()).filter((r) => r.name.startsWith(prefix));
  const managed = new Map<string, ManagedDomain>();
  const unmanaged = new Set<string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, refs.length) }, async () => {
      while (next < refs.length) {
        const ref = refs[next++]!;
        let xml: string;
        try {
          xml = await port.inactiveXml(ref.name);
        } catch (e) {
          // undefined meanwhile (a transient domain that stopped): it no longer exists
          if (/not found/i.test((e as Error).message)) continue;
          throw e;
        }
        let domain: Domain;
        try {
          domain = parseDomainXml(xml, `domain ${ref.name}`);
        } catch {
          unmanaged.add(ref.name); // not something we could have written: not ours
          continue;
        }
        const owner = readOwnership(domain);
        if (owner) managed.set(ref.name, { name: ref.name, uuid: ref.uuid, owner, domain });
        else unmanaged.add(ref.name);
      }
    }),
  );
  return { managed, unmanaged };
}
