/**
 * A per-entry pass reads only part of the spool and of libvirt: the entries in its scope (plus
 * any entry known to collide with them) and the domains those entries have or had. So its cost
 * does not grow with the size of the spool's other entries (the spool listing and cheap
 * fingerprints aside, needed to see name collisions).
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import type { LibvirtPort } from '../libvirt/port.js';
import { emptyActual, readDomainInto, type ActualState, type Instance } from './actual.js';
import { domainNameFor, entryStem, inspectEntry, namesOfStem, settle, type RefusedEntry, type SpoolEntry } from '../spool/index.js';

const CONCURRENCY = 8;

/**
 * The names a pass over `scope` must look at: every item sharing a stem with one in scope (a
 * settings file and its entry are one entry, and adding or removing either pairs or unpairs
 * them), and every settings entry that last named an image entry in scope (`uses`: settings
 * entry -> image entry), so a new image version reaches its containers.
 */
export function widenScope(scope: ReadonlySet<string>, uses: ReadonlyMap<string, string> = new Map()): Set<string> {
  const wide = new Set<string>();
  const add = (name: string) => {
    for (const n of namesOfStem(entryStem(name))) wide.add(n);
  };
  for (const name of scope) add(name);
  for (const [entry, image] of uses) if (wide.has(image)) add(entry);
  return wide;
}

/**
 * What `scanSpool` says about the entries in `scope` only, plus any other entry known to map to
 * the same domain name (so a collision is refused on both sides, as a full scan would). `scope`
 * is already widened (widenScope): names of it that are not there are simply not entries, and
 * only those `asked` about fail when they cannot be examined.
 */
export async function inspectSome(dir: string, scope: ReadonlySet<string>, prefix: string, known: ReadonlyMap<string, string>, asked: ReadonlySet<string> = scope) {
  const look = async (name: string): Promise<SpoolEntry | RefusedEntry | null> => {
    try {
      await lstat(join(dir, name));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null; // gone: not in the spool
      if (!asked.has(name)) return null; // a name the widening guessed: only the ones asked about fail
      // anything else (EACCES, EIO …) says nothing about the entry being gone: it fails, its domain stays
      return { name, path: join(dir, name), reason: `cannot be examined (${code ?? errorMessage(e)})`, ...domainNameOf(name, prefix) };
    }
    return inspectEntry(dir, name, { prefix });
  };
  const seen = new Map<string, SpoolEntry | RefusedEntry | null>();
  const names = [...scope];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, names.length) }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        seen.set(name, await look(name));
      }
    }),
  );
  const inScopeDomains = new Set([...seen.values()].filter((x): x is SpoolEntry => x !== null && !('reason' in x)).map((x) => x.domainName));
  for (const [other, domain] of known) if (!seen.has(other) && inScopeDomains.has(domain)) seen.set(other, await look(other));
  return settle([...seen.values()].filter((x): x is SpoolEntry | RefusedEntry => x !== null));
}

/**
 * The domains the entries in `scope` have or had: by their current name (`domainOf`, entry ->
 * domain), or by the name a gone entry maps to. A domain owned by an entry outside the scope is
 * not this pass's business and is left out.
 */
export async function domainsOfScope(
  port: LibvirtPort,
  self: Instance,
  scope: ReadonlySet<string>,
  domainOf: ReadonlyMap<string, string>,
  prefix: string,
): Promise<ActualState> {
  const names = new Set<string>(domainOf.values());
  for (const entry of scope) {
    if (domainOf.has(entry)) continue;
    const named = domainNameOf(entry, prefix).domainName;
    if (named !== undefined) names.add(named);
  }
  const have = await someDomains(port, [...names].filter((n) => n !== ''), self);
  const scopeDomains = new Set(domainOf.values());
  for (const [name, m] of have.managed) if (!scope.has(m.owner.entry) && !scopeDomains.has(name)) have.managed.delete(name);
  return have;
}

/** The domain an entry of that name maps to, when its name makes one. */
function domainNameOf(entry: string, prefix: string): { domainName?: string } {
  const named = domainNameFor(entryStem(entry), prefix);
  return 'name' in named ? { domainName: named.name } : {};
}

/** The domains among `names`, sorted by owner (missing ones are simply absent). */
async function someDomains(port: LibvirtPort, names: string[], self: Instance): Promise<ActualState> {
  const have = emptyActual();
  await Promise.all(
    names.map(async (name) => {
      const ref = await port.lookup(name);
      if (ref !== undefined) await readDomainInto(port, ref, self, have);
    }),
  );
  return have;
}
