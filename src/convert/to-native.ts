/**
 * to-native: a libvirt-lxc domain -> an OCI runtime config (mapping notes §1 reverse, §3).
 * Everything the XML says is mapped; the metadata's leftovers are applied where the XML still
 * says what it said at from-native time (XML edits win); XML with no OCI counterpart is kept
 * in `org.ocivirt.*` annotations.
 */
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import type { Domain } from '../xml/domain.js';
import { libvirtArch, Warnings, type ToNativeOptions } from './context.js';
import { deriveConfig } from './derive.js';
import { guardOf } from './guard.js';
import { detectCgroupVersion } from './host.js';
import { fillMissing, getAt, pointerToField, setAt } from './json.js';

export type { ToNativeOptions } from './context.js';

const TOP_LEVEL_ORDER = ['ociVersion', 'process', 'root', 'hostname', 'domainname', 'mounts', 'hooks', 'annotations', 'linux'];

export function toNative(domain: Domain, opts: ToNativeOptions = {}): { config: RuntimeConfig; warnings: string[] } {
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
  return { config: ordered as unknown as RuntimeConfig, warnings: warnings.lines() };
}
