/**
 * sameDomain / domainDifferences: compare two domains by meaning, not by text, so the
 * reconciler never redefines in a loop. What libvirt adds or rewrites on define (mapping notes
 * §5.1) is normalised away: defaults it fills in, canonical cpusets, sorted idmaps and
 * capabilities, KiB sizes, lowercased UUID and MACs, live-only details. Host-specific values it
 * adds (emulator path, arch, generated MACs, console ports, seclabels, resource partition) are
 * compared only when the desired domain sets them. Foreign metadata is ignored.
 */
import { SHIM_MOUNT } from '../shim/domain.js';
import { canonicalElement, type XmlElement } from './element.js';
import type { Domain } from './domain.js';
import { canonicalCpuset } from './cpuset.js';
import { usageKiB } from './parse.js';

const json = (v: unknown): string => JSON.stringify(v);
const raw = (list: XmlElement[]): string | undefined => (list.length ? list.map(canonicalElement).join(' ') : undefined);
const sortedRecord = (r: Record<string, string>): string =>
  json(Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));

/** Keys compared only when the desired domain has them (libvirt fills them in). */
const FILLED_BY_LIBVIRT = [/^uuid$/, /^currentMemory$/, /^os\.arch$/, /^devices\.interface\[\d+\]\.mac$/, /^devices\.console\[\d+\]\.port$/, /^resource\./, /^seclabel/];

export function canonicalUuid(u: string): string {
  const hex = u.toLowerCase().replace(/-/g, '');
  return /^[0-9a-f]{32}$/.test(hex) ? `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}` : u;
}

function ipWithFamily(ip: Record<string, string>): Record<string, string> {
  if (ip.family !== undefined || ip.address === undefined) return ip;
  return { ...ip, family: ip.address.includes(':') ? 'ipv6' : 'ipv4' };
}

function clockProjection(clock: XmlElement | undefined): string {
  if (!clock) return canonicalElement({ name: 'clock', uri: '', local: 'clock', attrs: [{ name: 'offset', value: 'utc' }], children: [] });
  const attrs = [...clock.attrs];
  const offset = attrs.find((a) => a.name === 'offset')?.value;
  if (offset === 'variable' && !attrs.some((a) => a.name === 'basis')) attrs.push({ name: 'basis', value: 'utc' });
  return canonicalElement({ ...clock, attrs });
}

/** The meaning of a domain as flat `key -> value` pairs. */
export function projectDomain(d: Domain): Map<string, string> {
  const p = new Map<string, string>();
  const put = (k: string, v: string | number | boolean | undefined) => {
    if (v !== undefined) p.set(k, String(v));
  };
  put('type', d.type);
  put('name', d.name);
  put('uuid', d.uuid === undefined ? undefined : canonicalUuid(d.uuid));
  put('title', d.title);
  put('description', d.description);
  const ours = d.metadata.ours;
  if (ours) {
    const { annotations, exact, residual, ownMounts, shim, ...attrs } = ours;
    for (const [k, v] of Object.entries(attrs)) put(`metadata.ocivirt.${k}`, v as string | number | undefined);
    for (const a of annotations) put(`metadata.ocivirt.annotation[${json(a.key)}]`, a.value);
    for (const e of exact) put(`metadata.ocivirt.exact[${e.field}]`, json([e.xmlValue, e.value === undefined ? null : e.value]));
    if (residual !== undefined) put('metadata.ocivirt.residual', json(residual));
    if (ownMounts !== undefined) put('metadata.ocivirt.mounts', json(ownMounts));
    if (shim !== undefined) put('metadata.ocivirt.shim', json(shim));
  }
  put('memory', d.memory);
  put('currentMemory', d.currentMemory);
  put('memtune.hard_limit', d.memtune.hardLimit);
  put('memtune.soft_limit', d.memtune.softLimit);
  put('memtune.swap_hard_limit', d.memtune.swapHardLimit);
  put('memtune.min_guarantee', d.memtune.minGuarantee);
  put('memtune.extra', raw(d.memtune.extra));
  put('vcpu', d.vcpu?.count ?? 1);
  put('vcpu.placement', d.vcpu?.placement ?? 'static');
  put('vcpu.cpuset', d.vcpu?.cpuset === undefined ? undefined : canonicalCpuset(d.vcpu.cpuset));
  put('vcpu.current', d.vcpu?.current);
  if (d.numatune) {
    const m = d.numatune.memory;
    if (m) {
      put('numatune.memory.mode', m.mode ?? 'strict');
      put('numatune.memory.nodeset', m.nodeset === undefined ? undefined : canonicalCpuset(m.nodeset));
      put('numatune.memory.placement', m.placement);
    }
    put('numatune.extra', raw(d.numatune.extra));
  }
  put('cputune.shares', d.cputune.shares);
  put('cputune.period', d.cputune.period === 0 ? undefined : d.cputune.period);
  put('cputune.quota', d.cputune.quota === 0 ? undefined : d.cputune.quota);
  put('cputune.extra', raw(d.cputune.extra));
  put('blkiotune.weight', d.blkiotune.weight);
  for (const dev of d.blkiotune.devices) {
    const k = `blkiotune.device[${dev.path}]`;
    put(`${k}.weight`, dev.weight);
    put(`${k}.read_iops_sec`, dev.readIopsSec);
    put(`${k}.write_iops_sec`, dev.writeIopsSec);
    put(`${k}.read_bytes_sec`, dev.readBytesSec);
    put(`${k}.write_bytes_sec`, dev.writeBytesSec);
  }
  put('blkiotune.extra', raw(d.blkiotune.extra));
  put('resource.partition', d.resource?.partition);
  put('resource.extra', d.resource ? raw(d.resource.extra) : undefined);
  const os = d.os;
  put('os.type', os.type);
  put('os.arch', os.arch);
  put('os.init', os.init);
  put('os.initarg', os.initargs.length ? json(os.initargs) : undefined);
  put('os.initenv', os.initenv.length ? json(os.initenv.map((e) => [e.name, e.value])) : undefined);
  put('os.initdir', os.initdir);
  put('os.inituser', os.inituser);
  put('os.initgroup', os.initgroup);
  put('os.cmdline', os.cmdline);
  put('os.extra', raw(os.extra));
  const byStart = (a: { start: number }, b: { start: number }) => a.start - b.start;
  if (d.idmap.uid.length) put('idmap.uid', json([...d.idmap.uid].sort(byStart)));
  if (d.idmap.gid.length) put('idmap.gid', json([...d.idmap.gid].sort(byStart)));
  put('features.privnet', d.features.privnet || undefined);
  const caps = d.features.capabilities;
  if (caps && !(caps.policy === 'default' && caps.caps.length === 0)) {
    put('features.capabilities.policy', caps.policy);
    put('features.capabilities.on', json(caps.caps.filter((c) => c.state === 'on').map((c) => c.name).sort()));
    put('features.capabilities.off', json(caps.caps.filter((c) => c.state === 'off').map((c) => c.name).sort()));
  }
  put('features.extra', d.features.extra.length ? d.features.extra.map(canonicalElement).sort().join(' ') : undefined);
  put('clock', clockProjection(d.clock));
  put('on_poweroff', d.onPoweroff ?? 'destroy');
  put('on_reboot', d.onReboot ?? 'restart');
  put('on_crash', d.onCrash ?? 'destroy');
  d.devices.filesystems.forEach((fs, i) => {
    const k = `devices.filesystem[${i}]`;
    put(`${k}.type`, fs.type);
    put(`${k}.accessmode`, fs.accessmode ?? 'passthrough');
    if (fs.type === 'ram') {
      put(`${k}.source.usage`, usageKiB(fs.source));
      const rest = { ...fs.source };
      delete rest.usage;
      delete rest.units;
      if (Object.keys(rest).length) put(`${k}.source`, sortedRecord(rest));
    } else put(`${k}.source`, sortedRecord(fs.source));
    put(`${k}.target`, fs.target);
    put(`${k}.readonly`, fs.readonly || undefined);
    if (Object.keys(fs.attrs).length) put(`${k}.attrs`, sortedRecord(fs.attrs));
    put(`${k}.extra`, raw(fs.extra));
  });
  d.devices.interfaces.forEach((itf, i) => {
    const k = `devices.interface[${i}]`;
    put(`${k}.type`, itf.type);
    put(`${k}.mac`, itf.mac?.toLowerCase());
    put(`${k}.source`, itf.source ? sortedRecord(itf.source) : undefined);
    put(`${k}.ip`, itf.ips.length ? json(itf.ips.map((ip) => sortedRecord(ipWithFamily(ip)))) : undefined);
    put(`${k}.route`, itf.routes.length ? json(itf.routes.map(sortedRecord)) : undefined);
    put(`${k}.guest`, itf.guestDev);
    put(`${k}.link`, itf.linkState);
    if (Object.keys(itf.attrs).length) put(`${k}.attrs`, sortedRecord(itf.attrs));
    put(`${k}.extra`, raw(itf.extra));
  });
  d.devices.consoles.forEach((c, i) => {
    const k = `devices.console[${i}]`;
    put(`${k}.type`, c.type);
    put(`${k}.target`, c.targetType ?? 'lxc');
    put(`${k}.port`, c.port);
    if (Object.keys(c.attrs).length) put(`${k}.attrs`, sortedRecord(c.attrs));
    put(`${k}.extra`, raw(c.extra));
  });
  // Hostdevs are a set: their order means nothing to the container.
  d.devices.hostdevs.forEach((h) => {
    const k = `devices.hostdev[${h.type}:${h.source.char ?? h.source.block ?? h.source.interface ?? json(h.source)}]`;
    put(`${k}.mode`, h.mode);
    if (Object.keys(h.attrs).length) put(`${k}.attrs`, sortedRecord(h.attrs));
    put(`${k}.extra`, raw(h.extra));
  });
  put('devices.extra', raw(d.devices.extra));
  d.seclabels.forEach((s, i) => {
    const attrs = { ...s.attrs };
    if (attrs.type === 'none' && attrs.model === undefined) attrs.model = 'none';
    put(`seclabel[${i}]`, json([sortedRecord(attrs), s.label, s.imagelabel, s.baselabel, raw(s.extra)]));
  });
  for (const k of ['sharenet', 'shareipc', 'shareuts'] as const) {
    const s = d.lxcNamespace[k];
    if (s) put(`lxc:namespace.${k}`, `${s.type}=${s.value}`);
  }
  put('extra', raw(d.extra));
  return p;
}

/**
 * Provenance: where a domain was made from, not what it runs. The bundle directory, the digest of
 * what it was made from (the settings file's digest is folded into it) and the image digest; and
 * the source of the filesystem mounted at '/', which a copy of the same tree (a self-contained
 * export taken back by a spool) changes. Everything else, the rootfs's target and mode among it,
 * stays compared.
 */
const PROVENANCE_KEYS = new Set(['metadata.ocivirt.bundle', 'metadata.ocivirt.desiredDigest', 'metadata.ocivirt.imageDigest']);

export interface CompareOptions {
  /** 'ignore': the domains are the same container whatever they were made from (see PROVENANCE_KEYS). Default 'compare'. */
  provenance?: 'compare' | 'ignore';
}

/** The projection without provenance keys (the root filesystem's source found by its target, '/'). */
function withoutProvenance(d: Domain, p: Map<string, string>): Map<string, string> {
  for (const k of PROVENANCE_KEYS) p.delete(k);
  d.devices.filesystems.forEach((fs, i) => {
    // the init shim's directory is named after the desired digest (src/shim/domain.ts)
    if (fs.target === '/' || fs.target === SHIM_MOUNT) p.delete(`devices.filesystem[${i}].source`);
  });
  return p;
}

/** One key whose value differs; undefined where that side has none. */
export interface DomainChange {
  key: string;
  desired: string | undefined;
  actual: string | undefined;
}

/** What differs between two domains, key by key (what libvirt fills in counts only when desired sets it). */
export function domainChanges(desired: Domain, actual: Domain, opts: CompareOptions = {}): DomainChange[] {
  const project = (d: Domain) => (opts.provenance === 'ignore' ? withoutProvenance(d, projectDomain(d)) : projectDomain(d));
  const want = project(desired);
  const have = project(actual);
  const out: DomainChange[] = [];
  const keys = [...new Set([...want.keys(), ...have.keys()])];
  for (const key of keys) {
    const w = want.get(key);
    const h = have.get(key);
    if (w === h) continue;
    if (w === undefined && FILLED_BY_LIBVIRT.some((re) => re.test(key))) continue;
    out.push({ key, desired: w, actual: h });
  }
  return out;
}

/** Human-readable differences, e.g. `memtune.hard_limit 524288 -> 1048576`; empty when the same. */
export function domainDifferences(desired: Domain, actual: Domain, opts: CompareOptions = {}): string[] {
  return domainChanges(desired, actual, opts).map(changeText);
}

/** One change as `key desired -> actual`. */
export function changeText(c: DomainChange): string {
  return `${c.key} ${c.desired ?? '(none)'} -> ${c.actual ?? '(none)'}`;
}

export function sameDomain(desired: Domain, actual: Domain): boolean {
  return domainDifferences(desired, actual).length === 0;
}

/**
 * "The same container": the differences of two domains apart from their provenance, e.g. a domain
 * and the one a spool made from its self-contained export (`ocivirt export --rootfs`).
 */
export function containerDifferences(a: Domain, b: Domain): string[] {
  return domainDifferences(a, b, { provenance: 'ignore' });
}

export function sameContainer(a: Domain, b: Domain): boolean {
  return containerDifferences(a, b).length === 0;
}
