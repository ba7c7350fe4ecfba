/**
 * Domain XML with no OCI counterpart (mapping notes §3): interfaces, extra consoles, cmdline,
 * lifecycle actions, clock, partition, dynamic seclabels, foreign metadata, unknown elements …
 * to-native carries them in one annotation as a partial domain XML (base64), from-native lays
 * them back onto the domain it builds, so a hand-written domain survives the trip through OCI.
 */
import { domainToElement } from '../xml/build.js';
import { serializeElement, type XmlElement } from '../xml/element.js';
import { emptyDomain, type Domain } from '../xml/domain.js';
import { parseDomainXml } from '../xml/parse.js';
import { macFor } from './identity.js';
import { isMappedHostdev } from './passes/devices.js';
import { attachmentOf } from './passes/networks.js';
import { isMountLike, rootFilesystem } from './passes/mounts.js';
import { isProcessSeclabel } from './passes/process.js';

export const XML_ONLY_ANNOTATION = 'org.ocivirt.domain-xml';
const FRAGMENT_NAME = 'xml-only';

/** What libvirt adds on hosts with systemd: the default partition, nothing chosen by a person. */
const DEFAULT_PARTITION = '/machine';

/** A seclabel a security driver generates on define (no label chosen): libvirt makes it again. */
function isGeneratedSeclabel(s: Domain['seclabels'][number]): boolean {
  return (s.attrs.type === 'dynamic' || s.attrs.type === 'none') && s.label === undefined && s.baselabel === undefined && s.imagelabel === undefined && s.extra.length === 0;
}

function isDefaultClock(d: Domain): boolean {
  const c = d.clock;
  if (!c) return true;
  const attrs = c.attrs.filter((a) => !a.name.startsWith('xmlns'));
  return attrs.length === 1 && attrs[0]!.name === 'offset' && attrs[0]!.value === 'utc' && !c.children.some((k) => typeof k !== 'string');
}

function isPlainPty(c: Domain['devices']['consoles'][number]): boolean {
  return c.type === 'pty' && Object.keys(c.attrs).length === 0 && c.extra.length === 0;
}

/**
 * The parts of `d` that no OCI field carries, as a partial domain; undefined when there are none.
 * With the container `id`, its network attachments (the annotation org.ocivirt.networks) are not among them.
 */
export function xmlOnlyParts(d: Domain, id?: string): Domain | undefined {
  const f = emptyDomain(FRAGMENT_NAME);
  let any = false;
  const take = <T>(list: T[], into: T[]) => {
    if (list.length) {
      into.push(...list);
      any = true;
    }
  };
  take(d.devices.interfaces.filter((itf, i) => id === undefined || attachmentOf(itf, i, id) === undefined), f.devices.interfaces);
  const [first, ...rest] = d.devices.consoles;
  take(first && isPlainPty(first) ? rest : d.devices.consoles, f.devices.consoles);
  const root = rootFilesystem(d);
  take(d.devices.filesystems.filter((fs) => fs !== root && !isMountLike(fs, root)), f.devices.filesystems);
  take(d.devices.hostdevs.filter((h) => !isMappedHostdev(h)), f.devices.hostdevs);
  take(d.devices.extra, f.devices.extra);
  take(d.seclabels.filter((s) => !isProcessSeclabel(s) && !isGeneratedSeclabel(s)), f.seclabels);
  take(d.metadata.foreign, f.metadata.foreign);
  take(d.features.extra, f.features.extra);
  take(d.extra, f.extra);
  take(d.os.extra, f.os.extra);
  take(d.memtune.extra, f.memtune.extra);
  take(d.cputune.extra, f.cputune.extra);
  take(d.blkiotune.extra, f.blkiotune.extra);
  // <memory> is a cgroup limit of its own in LXC, but hard_limit is written last and wins, so it
  // alone becomes memory.limit; a different <memory> (memtune --hard-limit leaves it as it was)
  // has no OCI field.
  if (d.memory !== undefined && d.memtune.hardLimit !== undefined && d.memory !== d.memtune.hardLimit) (f.memory = d.memory), (any = true);
  if (d.os.cmdline !== undefined) (f.os.cmdline = d.os.cmdline), (any = true);
  if (d.onPoweroff !== undefined && d.onPoweroff !== 'destroy') (f.onPoweroff = d.onPoweroff), (any = true);
  if (d.onReboot !== undefined && d.onReboot !== 'restart') (f.onReboot = d.onReboot), (any = true);
  if (d.onCrash !== undefined && d.onCrash !== 'destroy') (f.onCrash = d.onCrash), (any = true);
  if (!isDefaultClock(d)) (f.clock = d.clock), (any = true);
  if (d.resource && !(d.resource.partition === DEFAULT_PARTITION && d.resource.extra.length === 0)) (f.resource = d.resource), (any = true);
  const n = d.numatune;
  if (n && ((n.memory?.mode ?? 'strict') !== 'strict' || n.memory?.placement !== undefined || n.extra.length)) (f.numatune = n), (any = true);
  for (const k of ['sharenet', 'shareipc', 'shareuts'] as const) {
    const s = d.lxcNamespace[k];
    const mapped = s && (s.type === 'pid' || (k === 'sharenet' && s.type === 'netns')) && k !== 'shareuts';
    if (s && !mapped) (f.lxcNamespace[k] = s), (any = true);
  }
  return any ? f : undefined;
}

/** What a fragment holds, for a warning: `interface, console, cmdline …`. */
export function describeXmlOnly(f: Domain): string {
  const names = domainToElement(f)
    .children.flatMap((c) => (typeof c === 'string' ? [] : c.local === 'devices' || c.local === 'os' || c.local === 'features' || c.local === 'metadata' ? c.children : [c]))
    .flatMap((c) => (typeof c === 'string' || c.local === 'name' || (c.local === 'type' && c.uri === '') ? [] : [c.name]));
  return [...new Set(names)].join(', ');
}

/**
 * The fragment in the form libvirt gives back after define (`family` on <ip>, accessmode,
 * console targets, seclabel model), so the annotation reads the same before and after.
 */
function normalizeFragment(f: Domain): Domain {
  const n = structuredClone(f);
  for (const itf of n.devices.interfaces) {
    itf.ips = itf.ips.map((ip) => (ip.family !== undefined || ip.address === undefined ? ip : { ...ip, family: ip.address.includes(':') ? 'ipv6' : 'ipv4' }));
    if (itf.mac !== undefined) itf.mac = itf.mac.toLowerCase();
  }
  for (const fs of n.devices.filesystems) fs.accessmode ??= 'passthrough';
  for (const c of n.devices.consoles) {
    c.targetType ??= 'lxc';
    delete c.port; // libvirt numbers consoles itself
  }
  for (const s of n.seclabels) if (s.attrs.type === 'none') s.attrs.model ??= 'none';
  if (n.clock) {
    const offset = n.clock.attrs.find((a) => a.name === 'offset')?.value;
    if (offset === 'variable' && !n.clock.attrs.some((a) => a.name === 'basis')) n.clock.attrs.push({ name: 'basis', value: 'utc' });
  }
  return n;
}

/** Attributes sorted by name at every level: libvirt may write them in another order than we do. */
function sortAttributes(el: XmlElement): XmlElement {
  return {
    ...el,
    attrs: [...el.attrs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    children: el.children.map((c) => (typeof c === 'string' ? c : sortAttributes(c))),
  };
}

export function encodeXmlOnly(f: Domain): string {
  const xml = serializeElement(sortAttributes(domainToElement(normalizeFragment(f))), '') + '\n';
  return Buffer.from(xml, 'utf8').toString('base64');
}

export function decodeXmlOnly(value: string, file?: string): Domain {
  return parseDomainXml(Buffer.from(value, 'base64').toString('utf8'), file);
}

const HOST_PATHS = ' (host paths come only from root.path and mounts, checked against the bundle and bindAllowList)';
/** Interface kinds that plug into a libvirt network or bridge; `direct`, `hostdev` … take a host NIC. */
const PLUGGED_INTERFACES = new Set(['network', 'bridge', 'ethernet']);
/** Interface settings that reach nothing on the host (`script`, `backend` … do). */
const INTERFACE_SETTINGS = new Set(['target', 'mtu', 'bandwidth', 'vlan', 'model', 'alias', 'virtualport', 'coalesce', 'address', 'guest', 'link']);
/** Devices the LXC driver ignores or keeps inside the container. */
const INERT_DEVICES = new Set(['watchdog', 'memballoon']);

/**
 * What in a fragment would reach the host, one line each. The annotation comes from a config.json
 * like every OCI field, but none of the checks OCI fields pass (bind sources, host devices,
 * namespaces, labels) sees it, so whatever reaches the host is refused here, where both
 * `from-native` and the daemon convert: host access comes only through OCI fields. An allow-list,
 * so a device or setting added to libvirt later is refused until someone looks at it.
 */
export function xmlOnlyHostAccess(f: Domain): string[] {
  const out: string[] = [];
  for (const fs of f.devices.filesystems) {
    const keys = Object.keys(fs.source);
    if (fs.type !== 'ram' || keys.some((k) => k !== 'usage' && k !== 'units'))
      out.push(`<filesystem type='${fs.type}'> with source ${JSON.stringify(fs.source)} reaches the host${HOST_PATHS}`);
  }
  for (const h of f.devices.hostdevs)
    out.push(`<hostdev mode='${h.mode}' type='${h.type}'> passes a host device through (devices come only from linux.devices and linux.netDevices, checked against hostDeviceAllowList)`);
  for (const itf of f.devices.interfaces) {
    if (!PLUGGED_INTERFACES.has(itf.type)) out.push(`<interface type='${itf.type}'> takes a host interface (only network, bridge and ethernet interfaces are accepted)`);
    for (const e of itf.extra) if (!INTERFACE_SETTINGS.has(e.local)) out.push(`<interface> setting <${e.name}> is not accepted (it may run or open something on the host)`);
  }
  for (const c of f.devices.consoles) if (c.type !== 'pty') out.push(`<console type='${c.type}'> reaches a host file, device or socket (only pty consoles are accepted)`);
  for (const e of f.devices.extra) if (!INERT_DEVICES.has(e.local)) out.push(`device <${e.name}> is not accepted (it may reach the host)`);
  for (const s of f.seclabels)
    out.push(`<seclabel type='${s.attrs.type ?? ''}'> changes the container's confinement (labels come only from process.selinuxLabel and process.apparmorProfile)`);
  for (const k of ['sharenet', 'shareipc', 'shareuts'] as const) {
    const s = f.lxcNamespace[k];
    if (s && s.type !== 'name')
      out.push(`<lxc:${k} type='${s.type}'> joins a host namespace (namespaces come only from linux.namespaces; only a share with another container by name is accepted)`);
  }
  return out;
}

/** Lays XML-only parts onto a domain built from OCI fields; interfaces get deterministic MACs. */
export function overlayXmlOnly(d: Domain, f: Domain, id: string): void {
  const base = d.devices.interfaces.length;
  f.devices.interfaces.forEach((itf, i) => d.devices.interfaces.push({ ...itf, mac: itf.mac ?? macFor(id, base + i) }));
  d.devices.consoles.push(...f.devices.consoles);
  d.devices.filesystems.push(...f.devices.filesystems);
  d.devices.hostdevs.push(...f.devices.hostdevs);
  d.devices.extra.push(...f.devices.extra);
  d.seclabels.push(...f.seclabels);
  d.metadata.foreign.push(...f.metadata.foreign);
  d.features.extra.push(...f.features.extra);
  d.extra.push(...f.extra);
  d.os.extra.push(...f.os.extra);
  d.memtune.extra.push(...f.memtune.extra);
  d.cputune.extra.push(...f.cputune.extra);
  d.blkiotune.extra.push(...f.blkiotune.extra);
  if (f.memory !== undefined && d.memtune.hardLimit !== undefined) d.memory = f.memory;
  if (f.os.cmdline !== undefined) d.os.cmdline = f.os.cmdline;
  if (f.onPoweroff !== undefined) d.onPoweroff = f.onPoweroff;
  if (f.onReboot !== undefined) d.onReboot = f.onReboot;
  if (f.onCrash !== undefined) d.onCrash = f.onCrash;
  if (f.clock) d.clock = f.clock;
  if (f.resource) d.resource = f.resource;
  if (f.numatune) d.numatune = f.numatune;
  for (const k of ['sharenet', 'shareipc', 'shareuts'] as const) if (f.lxcNamespace[k]) d.lxcNamespace[k] = f.lxcNamespace[k];
}
