/**
 * The plan: desired vs actual, per domain, what to do and why. A pure function: applying it is
 * apply.ts's job, printing it is `ocivirt plan`'s.
 */
import type { RemovePolicy } from '../config/index.js';
import { buildDomainXml } from '../xml/build.js';
import { canonicalUuid, domainDifferences } from '../xml/compare.js';
import type { ActualState, ManagedDomain } from './actual.js';
import type { DesiredDomain, DesiredState } from './desired.js';

export type PlanAction = 'create' | 'update' | 'start' | 'delete' | 'nothing' | 'fail';

export interface PlanItem {
  domain: string;
  /** The spool entry (for delete: the one the domain was made from). */
  entry: string;
  action: PlanAction;
  reason: string;
  /** create/update: the definition to send. */
  xml?: string;
  /** create/update: start it once defined (update: when it is not running). */
  start?: boolean;
  /** Digest of the desired runtime config (create/update/nothing). */
  digest?: string;
  /** update: what changed, as `field old -> new`. */
  differences?: string[];
  warnings?: string[];
}

export interface PlanOptions {
  removePolicy?: RemovePolicy;
  /** Domains created to be started whose start was never confirmed (the pass died before it). */
  pendingStarts?: ReadonlySet<string>;
}

export function computePlan(want: DesiredState, have: ActualState, opts: PlanOptions = {}): PlanItem[] {
  const items: PlanItem[] = [];
  const claimed = new Set<string>();

  for (const d of want.desired) {
    claimed.add(d.domainName);
    items.push(withPendingStart(planEntry(d, have), opts.pendingStarts));
  }
  for (const f of want.failed) {
    if (f.domainName !== undefined) claimed.add(f.domainName);
    items.push({ domain: f.domainName ?? '', entry: f.entry, action: 'fail', reason: f.error });
  }
  // A failed entry still exists: its domain is left as it is, never deleted.
  const failedEntries = new Set(want.failed.map((f) => f.entry));
  for (const m of have.managed.values()) {
    if (claimed.has(m.name)) continue;
    if (failedEntries.has(m.owner.entry)) {
      items.push({ domain: m.name, entry: m.owner.entry, action: 'nothing', reason: `entry '${m.owner.entry}' failed this pass; its domain is left as it is` });
      continue;
    }
    const gone = `entry '${m.owner.entry}' is no longer in the spool`;
    items.push(
      opts.removePolicy === 'keep'
        ? { domain: m.name, entry: m.owner.entry, action: 'nothing', reason: `${gone}; kept (remove policy 'keep')` }
        : { domain: m.name, entry: m.owner.entry, action: 'delete', reason: gone },
    );
  }
  return items.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : a.entry < b.entry ? -1 : 1));
}

/** A start a crashed pass never got to is finished now. */
function withPendingStart(item: PlanItem, pending: ReadonlySet<string> | undefined): PlanItem {
  if (!pending?.has(item.domain)) return item;
  if (item.action === 'nothing') return { ...item, action: 'start', reason: 'created to be started, but the start never completed', start: true };
  if (item.action === 'update') return { ...item, start: true };
  return item;
}

function planEntry(d: DesiredDomain, have: ActualState): PlanItem {
  const digest = d.domain.metadata.ours?.desiredDigest;
  const base = {
    domain: d.domainName,
    entry: d.entry,
    ...(digest !== undefined ? { digest } : {}),
    ...(d.warnings.length ? { warnings: d.warnings } : {}),
  };
  if (have.unmanaged.has(d.domainName))
    return {
      ...base,
      action: 'fail',
      reason: `domain '${d.domainName}' already exists and is not managed by ocivirt (no ocivirt metadata); it is left alone: rename the entry or remove that domain`,
    };
  const actual = have.managed.get(d.domainName);
  if (!actual) return { ...base, action: 'create', reason: 'new entry', xml: buildDomainXml(d.domain), start: d.start };
  const desired = keepIdentity(d, actual);
  const differences = domainDifferences(desired, actual.domain);
  if (differences.length === 0) return { ...base, action: 'nothing', reason: 'unchanged' };
  return { ...base, action: 'update', reason: `changed: ${differences.join('; ')}`, xml: buildDomainXml(desired), differences };
}

/**
 * libvirt refuses a redefine under another UUID, so a domain we own keeps the UUID it has
 * (it only differs when the domain predates the deterministic UUIDs).
 */
function keepIdentity(d: DesiredDomain, actual: ManagedDomain) {
  if (d.domain.uuid !== undefined && canonicalUuid(d.domain.uuid) === canonicalUuid(actual.uuid)) return d.domain;
  return { ...d.domain, uuid: actual.uuid };
}
