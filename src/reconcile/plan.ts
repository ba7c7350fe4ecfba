/**
 * The plan: desired vs actual, per domain, what to do and why. A pure function: applying it is
 * apply.ts's job, printing it is `ocivirt plan`'s.
 */
import { createHash } from 'node:crypto';
import type { DriftPolicy, RemovePolicy, UpdatePolicy } from '../config/index.js';
import { buildDomainXml } from '../xml/build.js';
import type { Domain } from '../xml/domain.js';
import { canonicalUuid, changeText, domainChanges } from '../xml/compare.js';
import { foreignReason, type ActualState, type ManagedDomain } from './actual.js';
import type { DesiredDomain, DesiredState } from './desired.js';
import { liveSplit, updatePolicyOf, type LiveSplit } from './live.js';
import { withoutShim } from '../shim/domain.js';

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
  /** update: what changed, as `field old -> new`; a kept hand edit: how libvirt differs. */
  differences?: string[];
  /**
   * Set when the domain was changed in libvirt by hand (its entry is unchanged since the
   * define): the digest of the definition libvirt has, so the change is logged once.
   */
  handEdit?: { actualDigest: string; policy: DriftPolicy };
  warnings?: string[];
  /** update: what of the change a running domain can take live, and what waits for its start. */
  live?: LiveSplit;
  /** update: the entry's own `updatePolicy` (its settings), over the daemon's. */
  updatePolicy?: UpdatePolicy;
}

export interface PlanOptions {
  removePolicy?: RemovePolicy;
  /** Domains created to be started whose start was never confirmed (the pass died before it). */
  pendingStarts?: ReadonlySet<string>;
  /** A managed domain changed by hand while its entry did not change: `keep` (default) or `revert`. */
  driftPolicy?: DriftPolicy;
}

export function computePlan(want: DesiredState, have: ActualState, opts: PlanOptions = {}): PlanItem[] {
  const items: PlanItem[] = [];
  const claimed = new Set<string>();

  for (const d of want.desired) {
    claimed.add(d.domainName);
    items.push(withNotInForce(withPendingStart(planEntry(d, have, opts.driftPolicy ?? 'keep'), opts.pendingStarts), d.notInForce));
  }
  for (const entry of want.imagesOnly ?? [])
    items.push({ domain: '', entry, action: 'nothing', reason: 'image only (imageOnly in its settings): a base for settings entries, no domain of its own' });
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

/** Settings recorded but not acted on yet are said with every outcome of the entry (plan, `status`). */
function withNotInForce(item: PlanItem, keys: readonly string[] | undefined): PlanItem {
  if (!keys?.length || item.action === 'fail') return item;
  return { ...item, reason: `${item.reason}; settings recorded, not yet in force: ${keys.join(', ')}` };
}

/** A start a crashed pass never got to is finished now. */
function withPendingStart(item: PlanItem, pending: ReadonlySet<string> | undefined): PlanItem {
  if (!pending?.has(item.domain)) return item;
  if (item.action === 'nothing') return { ...item, action: 'start', reason: 'created to be started, but the start never completed', start: true };
  if (item.action === 'update') return { ...item, start: true };
  return item;
}

function planEntry(d: DesiredDomain, have: ActualState, driftPolicy: DriftPolicy): PlanItem {
  const digest = d.domain.metadata.ours?.desiredDigest;
  const base = {
    domain: d.domainName,
    entry: d.entry,
    ...(digest !== undefined ? { digest } : {}),
    ...(d.warnings.length ? { warnings: d.warnings } : {}),
  };
  // another instance's domain, or one nobody can read, is never taken over
  const foreign = have.foreign.get(d.domainName);
  if (foreign) return { ...base, action: 'fail', reason: foreignReason(foreign) };
  const unreadable = have.unreadable.get(d.domainName);
  if (unreadable !== undefined)
    return { ...base, action: 'fail', reason: `domain '${d.domainName}' already exists but its definition cannot be read (${unreadable}); it is left alone` };
  if (have.unmanaged.has(d.domainName))
    return {
      ...base,
      action: 'fail',
      reason: `domain '${d.domainName}' already exists and is not managed by ocivirt (no ocivirt metadata, or metadata removed or damaged by a hand edit); it is left alone: rename the entry or remove that domain`,
    };
  const actual = have.managed.get(d.domainName);
  // a domain ocivirt leaves stopped says why, at its define and in every later status
  const why = d.notStarted;
  if (!actual) {
    const reason = why === undefined ? 'new entry' : `new entry; defined, not started: ${why}`;
    return { ...base, action: 'create', reason, xml: buildDomainXml(d.domain), start: d.start };
  }
  const desired = keepIdentity(d, actual);
  // a domain made before instance ids, adopted (actual.ts): the id alone is no change; the next
  // redefine writes it
  const adopted = actual.owner.instance === undefined;
  const changes = definitionChanges(adopted ? withoutInstance(desired) : desired, actual.domain);
  const differences = changes.map(changeText);
  if (differences.length === 0) {
    const unchanged = adopted ? 'unchanged (made before instance ids; adopted: its bundle is this instance\'s)' : 'unchanged';
    return { ...base, action: 'nothing', reason: why === undefined ? unchanged : `${unchanged}; not started by ocivirt: ${why}` };
  }
  const policy = updatePolicyOf(d.domain);
  const update = { live: liveSplit(desired, changes), ...(policy !== undefined ? { updatePolicy: policy } : {}) };
  if (definedFromSameEntry(d, actual)) {
    // The spool did not change since the define, so libvirt did: operator intent (it is
    // exported back to OCI), not drift, unless the policy says revert.
    const handEdit = { actualDigest: definitionDigest(actual), policy: driftPolicy };
    if (driftPolicy === 'keep')
      return { ...base, action: 'nothing', reason: 'changed in libvirt by hand; kept (driftPolicy keep)', differences, handEdit };
    return {
      ...base,
      action: 'update',
      reason: `changed in libvirt by hand; reverted (driftPolicy revert): ${differences.join('; ')}`,
      xml: buildDomainXml(desired),
      differences,
      handEdit,
      ...update,
    };
  }
  return { ...base, action: 'update', reason: `changed: ${differences.join('; ')}`, xml: buildDomainXml(desired), differences, ...update };
}

/** The domain was defined from this very entry state: same config digest and same image. */
function definedFromSameEntry(d: DesiredDomain, actual: ManagedDomain): boolean {
  const ours = d.domain.metadata.ours;
  return ours?.desiredDigest !== undefined && ours.desiredDigest === actual.owner.desiredDigest && (d.imageDigest ?? '') === (actual.owner.imageDigest ?? '');
}

/** sha256 of the definition libvirt has (as ocivirt reads it): "the same hand edit" across passes. */
function definitionDigest(actual: ManagedDomain): string {
  return `sha256:${createHash('sha256').update(buildDomainXml(actual.domain)).digest('hex')}`;
}

/**
 * What differs, in the converter's terms: the init shim carries the process in its spec, so a
 * changed process shows in the raw definitions only as another shim directory; said as what
 * changed in the process (os.initenv, …) instead. A difference in the shim alone (a domain
 * moving to the shim) is said as it is.
 */
export function definitionChanges(desired: Domain, actual: Domain): ReturnType<typeof domainChanges> {
  const changes = domainChanges(desired, actual);
  if (!changes.length) return changes;
  const plain = domainChanges(withoutShim(desired), withoutShim(actual));
  return plain.length ? plain : changes;
}

function withoutInstance(d: Domain): Domain {
  const ours = d.metadata.ours;
  if (ours?.instance === undefined) return d;
  const { instance: _, ...rest } = ours;
  return { ...d, metadata: { ...d.metadata, ours: rest } };
}

/**
 * libvirt refuses a redefine under another UUID, so a domain we own keeps the UUID it has
 * (it only differs when the domain predates the deterministic UUIDs).
 */
function keepIdentity(d: DesiredDomain, actual: ManagedDomain) {
  if (d.domain.uuid !== undefined && canonicalUuid(d.domain.uuid) === canonicalUuid(actual.uuid)) return d.domain;
  return { ...d.domain, uuid: actual.uuid };
}
