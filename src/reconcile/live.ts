/**
 * Live updates: which differences between a running domain's definition and the new one libvirt
 * can apply to the running container (memory, CPU and blkio tuning, through its typed parameters),
 * and which wait for the next start. Pure: the plan computes it from compare.ts's changes, apply.ts
 * acts on it when the domain runs and its update policy is `live`.
 *
 * The metadata (ocivirt's own: digests, annotations, the stop policy) is read from the definition,
 * so the redefine itself puts it in force: it is neither live nor pending.
 */
import type { UpdatePolicy } from '../config/index.js';
import { MEMORY_UNLIMITED_KIB } from '../convert/passes/resources.js';
import type { TuningFamily, TuningParams } from '../libvirt/port.js';
import { RECORDED_PREFIX } from '../settings/keys.js';
import type { DomainChange } from '../xml/compare.js';
import type { Domain } from '../xml/domain.js';

export const SETTINGS_UPDATE_POLICY_ANNOTATION = `${RECORDED_PREFIX}updatePolicy`;
export const UPDATE_POLICIES: readonly UpdatePolicy[] = ['live', 'next-start', 'restart'];

export interface LiveTuning {
  family: TuningFamily;
  params: TuningParams;
}

export interface LiveSplit {
  /** Set on the running domain, one call per family. */
  tuning: LiveTuning[];
  /** The compared keys the tuning covers (e.g. `memtune.hard_limit`). */
  live: string[];
  /** Keys that apply only at the next start. */
  pending: string[];
}

/** Compared key -> libvirt's typed parameter. */
const TUNABLE: Record<string, { family: TuningFamily; param: string; unset?: number }> = {
  // no limit any more: libvirt's "unlimited"
  'memtune.hard_limit': { family: 'memory', param: 'hard_limit', unset: MEMORY_UNLIMITED_KIB },
  'memtune.soft_limit': { family: 'memory', param: 'soft_limit', unset: MEMORY_UNLIMITED_KIB },
  'memtune.swap_hard_limit': { family: 'memory', param: 'swap_hard_limit', unset: MEMORY_UNLIMITED_KIB },
  'cputune.shares': { family: 'scheduler', param: 'cpu_shares' },
  'cputune.period': { family: 'scheduler', param: 'vcpu_period' },
  'cputune.quota': { family: 'scheduler', param: 'vcpu_quota' },
  'blkiotune.weight': { family: 'blkio', param: 'weight' },
};

/** What of `changes` (desired vs the domain's definition) can be applied to the running domain. */
export function liveSplit(desired: Domain, changes: readonly DomainChange[]): LiveSplit {
  const params = new Map<TuningFamily, TuningParams>();
  const live: string[] = [];
  const pending: string[] = [];
  for (const c of changes) {
    if (c.key.startsWith('metadata.')) continue;
    const t = TUNABLE[c.key];
    const value = c.desired === undefined ? t?.unset : Number(c.desired);
    if (t === undefined || value === undefined || !Number.isSafeInteger(value)) {
      pending.push(c.key);
      continue;
    }
    params.set(t.family, { ...params.get(t.family), [t.param]: value });
    live.push(c.key);
  }
  // In libvirt-lxc <memory> (and <currentMemory>, the same value in ocivirt's domains) is the same
  // cgroup limit as the hard limit (memory.max): a new hard limit applied live carries them; a
  // change of them alone waits for the start.
  const limit = desired.memtune.hardLimit ?? MEMORY_UNLIMITED_KIB;
  if (live.includes('memtune.hard_limit') && limit === desired.memory && (desired.currentMemory ?? limit) === limit)
    for (const key of ['memory', 'currentMemory']) {
      const at = pending.indexOf(key);
      if (at < 0) continue;
      pending.splice(at, 1);
      live.push(key);
    }
  // memory first: a lower limit takes effect before anything else of the change
  const order: TuningFamily[] = ['memory', 'scheduler', 'blkio'];
  const tuning = order.flatMap((family) => (params.has(family) ? [{ family, params: params.get(family)! }] : []));
  return { tuning, live, pending };
}

/** The entry's own update policy (its settings' `updatePolicy`), when it has one. */
export function updatePolicyOf(d: Domain): UpdatePolicy | undefined {
  const v = d.metadata.ours?.annotations.find((a) => a.key === SETTINGS_UPDATE_POLICY_ANNOTATION)?.value;
  return (UPDATE_POLICIES as readonly string[]).includes(v ?? '') ? (v as UpdatePolicy) : undefined;
}
