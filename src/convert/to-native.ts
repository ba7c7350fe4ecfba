/**
 * to-native: a libvirt-lxc domain -> an OCI runtime config (mapping notes §1 reverse, §3).
 * Everything the XML says is mapped; the metadata's leftovers are applied where the XML still
 * says what it said at from-native time (XML edits win); XML with no OCI counterpart is kept
 * in `org.ocivirt.*` annotations.
 */
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import { domainChanges } from '../xml/compare.js';
import type { Domain } from '../xml/domain.js';
import { libvirtArch, Warnings, type ToNativeOptions } from './context.js';
import { deriveConfig } from './derive.js';
import { guardOf } from './guard.js';
import { fromNative } from './from-native.js';
import { detectCgroupVersion } from './host.js';
import { withoutShim } from '../shim/domain.js';
import { fillMissing, getAt, pointerToField, setAt } from './json.js';

export type { ToNativeOptions } from './context.js';

const TOP_LEVEL_ORDER = ['ociVersion', 'process', 'root', 'hostname', 'domainname', 'mounts', 'hooks', 'annotations', 'linux'];

export function toNative(shimmed: Domain, opts: ToNativeOptions = {}): { config: RuntimeConfig; warnings: string[] } {
  // the shim is ocivirt's, not the config's: the process is the one it runs
  const domain = withoutShim(shimmed);
  const meta = domain.metadata.ours;
  const warnings = new Warnings();
  const ctx = {
    meta,
    id: meta?.id ?? domain.name,
    cgroupVersion: meta?.cgroupVersion ?? opts.cgroupVersion ?? detectCgroupVersion(),
    hostArch: opts.hostArch ?? libvirtArch(),
    warnings,
    opts,
  };
  const derived = deriveConfig(domain, ctx);
  const config = structuredClone(derived);
  for (const e of meta?.exact ?? []) {
    if (guardOf(getAt(derived, e.field)) === e.xmlValue) setAt(config, e.field, structuredClone(e.value));
    else warnings.add(pointerToField(e.field), 'changed in the XML since from-native; the XML wins');
  }
  if (meta?.residual) fillMissing(config, meta.residual);
  const ordered: Record<string, unknown> = {};
  for (const k of TOP_LEVEL_ORDER) if (config[k] !== undefined) ordered[k] = config[k];
  for (const [k, v] of Object.entries(config)) if (!(k in ordered)) ordered[k] = v;
  const result = ordered as unknown as RuntimeConfig;
  for (const lost of lostInConfig(domain, result, ctx)) warnings.add(lost.key, `not carried by the config (the domain says ${lost.domain}, the config gives back ${lost.config}): kept only in libvirt`);
  return { config: result, warnings: warnings.lines() };
}

/**
 * What the config would not give back: the config converted again and compared with the domain
 * (the reconciler's own comparison, `sameDomain`). A hand edit the OCI fields cannot say (a vCPU
 * count without a cpuset, say) is then reported instead of dropped without a word. Metadata is
 * ocivirt's bookkeeping, and a config that cannot be converted again is reported by from-native.
 */
function lostInConfig(domain: Domain, config: RuntimeConfig, ctx: { id: string; cgroupVersion: 1 | 2; hostArch: string; opts: ToNativeOptions }): { key: string; domain: string; config: string }[] {
  let back: Domain;
  try {
    // no rootfs to look the program up in: it is the one the domain runs
    const resolveExecutable = (argv0: string) => domain.os.init ?? argv0;
    back = fromNative(structuredClone(config), {
      bundleDir: domain.metadata.ours?.bundle ?? '/',
      name: domain.name,
      id: ctx.id,
      cgroupVersion: ctx.cgroupVersion,
      hostArch: ctx.hostArch,
      resolveExecutable,
      secModels: ['selinux', 'apparmor', 'dac'], // the host's are the domain's business: not a loss
      ...(ctx.opts.hostDevice ? { hostDevice: ctx.opts.hostDevice } : {}),
    }).domain;
  } catch {
    return [];
  }
  return domainChanges(domain, back)
    .filter((c) => !c.key.startsWith('metadata.') && c.key !== 'uuid')
    .map((c) => ({ key: c.key, domain: c.desired ?? '(none)', config: c.actual ?? '(none)' }));
}
