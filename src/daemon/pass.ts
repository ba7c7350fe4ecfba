/**
 * A daemon pass: the reconciler's plan and apply over the spool, limited to what the watcher has
 * seen complete. An entry that is new or changing and not yet reported complete is "settling":
 * it is not read, and its domain (if it has one) is left exactly as it is. So a half-copied
 * bundle is never defined, and an entry being rewritten in place never loses its domain.
 *
 * Scope `all` is the full resync (every entry, every managed domain, unused image bundles
 * collected); a set of names is the per-entry pass the watcher triggers, which reads only those
 * entries and their domains, so its cost does not grow with the size of the spool's other
 * entries (the spool listing and cheap fingerprints aside, needed to see name collisions).
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { readOwnership } from '../convert/ownership.js';
import { detectCgroupVersion } from '../convert/host.js';
import { errorMessage } from '../errors.js';
import type { LibvirtPort } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import { actualState, type ActualState } from '../reconcile/actual.js';
import { applyPlan, type DomainLocks, type ItemResult } from '../reconcile/apply.js';
import { desiredDomain, type DesiredOptions, type DesiredState } from '../reconcile/desired.js';
import { computePlan, type PlanItem } from '../reconcile/plan.js';
import { collectImageBundles, handEditsOf, pendingStartsOf, type SyncOptions } from '../reconcile/sync.js';
import { domainNameFor, inspectEntry, refuseCollisions, scanSpool, type RefusedEntry, type SpoolEntry } from '../spool/index.js';
import { parseDomainXml } from '../xml/parse.js';

export type PassScope = 'all' | ReadonlySet<string>;

export interface PassInput {
  port: LibvirtPort;
  sync: SyncOptions;
  locks: DomainLocks;
  scope: PassScope;
  /** May this entry be read now? (reported complete by the watcher, not changing since). */
  settled: (entry: string) => boolean;
  log: EventLogger;
  /**
   * Entry -> domain name, as last seen; the pass keeps it up to date. A per-entry pass uses it to
   * find name collisions without listing the whole spool.
   */
  known: Map<string, string>;
}

export interface PassOutput {
  results: ItemResult[];
  /** Entries in scope left alone because they are still settling. */
  settling: { entry: string; domain: string }[];
}

const CONCURRENCY = 8;

export async function runPass(input: PassInput): Promise<PassOutput> {
  const { sync, scope } = input;
  const prefix = sync.prefix ?? '';
  const inScope = (name: string) => scope === 'all' || scope.has(name);
  const scan = scope === 'all' ? await scanSpool(sync.spoolDir, { prefix }) : await inspectSome(sync.spoolDir, scope, prefix, input.known);
  if (scope === 'all') input.known.clear();
  else for (const name of scope) input.known.delete(name);
  for (const x of [...scan.entries, ...scan.refused]) if (x.domainName !== undefined) input.known.set(x.name, x.domainName);

  const want: DesiredState = { desired: [], failed: [] };
  const settling: PassOutput['settling'] = [];
  const domainOf = new Map<string, string>(); // entry -> domain, for every entry in scope
  const toRead: SpoolEntry[] = [];
  for (const e of scan.entries) {
    if (!inScope(e.name)) continue;
    domainOf.set(e.name, e.domainName);
    if (input.settled(e.name)) toRead.push(e);
    else settling.push({ entry: e.name, domain: e.domainName });
  }
  for (const r of scan.refused) {
    if (!inScope(r.name)) continue;
    if (r.domainName !== undefined) domainOf.set(r.name, r.domainName);
    if (input.settled(r.name)) want.failed.push({ entry: r.name, ...(r.domainName !== undefined ? { domainName: r.domainName } : {}), error: `${r.path}: ${r.reason}` });
    else settling.push({ entry: r.name, domain: r.domainName ?? '' });
  }

  const desiredOpts: DesiredOptions = {
    prefix,
    ...(sync.stateDir !== undefined ? { stateDir: sync.stateDir } : {}),
    ...(sync.startPolicy !== undefined ? { startPolicy: sync.startPolicy } : {}),
    ...(sync.strict !== undefined ? { strict: sync.strict } : {}),
    ...(sync.bindAllowList !== undefined ? { bindAllowList: sync.bindAllowList } : {}),
    ...(sync.hostDeviceAllowList !== undefined ? { hostDeviceAllowList: sync.hostDeviceAllowList } : {}),
    ...(sync.allowDevices !== undefined ? { allowDevices: sync.allowDevices } : {}),
    ...(sync.unpackLimits !== undefined ? { unpackLimits: sync.unpackLimits } : {}),
    log: input.log,
  };
  const cgroupVersion = detectCgroupVersion();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, toRead.length) }, async () => {
      while (next < toRead.length) {
        const entry = toRead[next++]!;
        try {
          want.desired.push(await desiredDomain(entry, desiredOpts, cgroupVersion));
        } catch (e) {
          want.failed.push({ entry: entry.name, domainName: entry.domainName, error: errorMessage(e) });
        }
      }
    }),
  );

  let have: ActualState;
  if (scope === 'all') have = await actualState(input.port, prefix);
  else {
    // the domains these entries have or had: by their current name, or by the name they map to
    const names = new Set<string>(domainOf.values());
    for (const entry of scope) {
      if (domainOf.has(entry)) continue;
      const named = domainNameFor(entry.endsWith('.tar') ? entry.slice(0, -4) : entry, prefix);
      if ('name' in named) names.add(named.name);
    }
    have = await someDomains(input.port, [...names].filter((n) => n !== ''));
    // a domain owned by an entry outside the scope is not this pass's business
    for (const [name, m] of have.managed) if (!scope.has(m.owner.entry) && ![...domainOf.values()].includes(name)) have.managed.delete(name);
  }
  // a settling entry's domain is left as it is: neither updated nor deleted
  const settlingEntries = new Set(settling.map((s) => s.entry));
  for (const [name, m] of have.managed) if (settlingEntries.has(m.owner.entry) || settling.some((s) => s.domain === name)) have.managed.delete(name);

  // starts a crash cut short (defined, not yet started) are finished, as sync --once does
  const pendingStarts = pendingStartsOf(sync);
  const pendingNames = await pendingStarts?.list();
  const plan: PlanItem[] = computePlan(want, have, {
    ...(sync.removePolicy !== undefined ? { removePolicy: sync.removePolicy } : {}),
    ...(sync.driftPolicy !== undefined ? { driftPolicy: sync.driftPolicy } : {}),
    ...(pendingNames !== undefined ? { pendingStarts: pendingNames } : {}),
  });
  const handEdits = handEditsOf(sync);
  const results = await applyPlan(input.port, plan, {
    log: input.log,
    locks: input.locks,
    ...(handEdits !== undefined ? { handEdits } : {}),
    ...(pendingStarts !== undefined ? { pendingStarts } : {}),
    ...(sync.updatePolicy !== undefined ? { updatePolicy: sync.updatePolicy } : {}),
    ...(sync.concurrency !== undefined ? { concurrency: sync.concurrency } : {}),
    ...(sync.stopTimeoutMs !== undefined ? { stopTimeoutMs: sync.stopTimeoutMs } : {}),
    ...(sync.attempts !== undefined ? { attempts: sync.attempts } : {}),
    ...(sync.retryDelayMs !== undefined ? { retryDelayMs: sync.retryDelayMs } : {}),
  });
  if (scope === 'all' && sync.stateDir !== undefined && settling.length === 0) await collectImageBundles(input.port, sync.stateDir, results, input.log);
  if (scope === 'all' && pendingStarts !== undefined && settling.length === 0) {
    // markers of domains no entry or domain knows any more are stale (only a full pass can tell)
    const known = new Set(results.filter((r) => !(r.item.action === 'delete' && r.ok)).map((r) => r.item.domain));
    for (const name of pendingNames ?? []) if (!known.has(name)) await pendingStarts.remove(name);
  }
  return { results, settling };
}

/**
 * What `scanSpool` says about the entries in `scope` only, plus any other entry known to map to
 * the same domain name (so a collision is refused on both sides, as a full scan would).
 */
async function inspectSome(dir: string, scope: ReadonlySet<string>, prefix: string, known: ReadonlyMap<string, string>) {
  const look = async (name: string): Promise<SpoolEntry | RefusedEntry | null> => {
    const exists = await lstat(join(dir, name)).then(
      () => true,
      () => false,
    );
    return exists ? inspectEntry(dir, name, { prefix }) : null; // gone: not in the spool
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
  const found = [...seen.values()].filter((x): x is SpoolEntry | RefusedEntry => x !== null);
  const { entries, refused } = refuseCollisions(found.filter((x): x is SpoolEntry => !('reason' in x)));
  return { entries, refused: [...found.filter((x): x is RefusedEntry => 'reason' in x), ...refused] };
}

/** The managed and unmanaged domains among `names` (missing ones are simply absent). */
async function someDomains(port: LibvirtPort, names: string[]): Promise<ActualState> {
  const have: ActualState = { managed: new Map(), unmanaged: new Set() };
  await Promise.all(
    names.map(async (name) => {
      const ref = await port.lookup(name);
      if (ref === undefined) return;
      let xml: string;
      try {
        xml = await port.inactiveXml(name);
      } catch (e) {
        if ((await port.lookup(name)) === undefined) return; // undefined meanwhile
        throw e;
      }
      let domain;
      try {
        domain = parseDomainXml(xml, `domain ${name}`);
      } catch {
        have.unmanaged.add(name);
        return;
      }
      const owner = readOwnership(domain);
      if (owner) have.managed.set(name, { name, uuid: ref.uuid, owner, domain });
      else have.unmanaged.add(name);
    }),
  );
  return have;
}
