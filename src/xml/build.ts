/**
 * buildDomainXml: the one builder of domain XML. Writes the canonical form libvirt dumps:
 * libvirt's element order, single-quoted attributes, two-space indentation, sizes in KiB.
 */
import { elem, serializeElement, type XmlElement, type XmlNode } from './element.js';
import { LXC_NS, type Domain, type Filesystem, type Interface, type Console, type Hostdev, type Seclabel } from './domain.js';
import { metadataToElement } from './metadata.js';

const t = (name: string, text: string, attrs: Record<string, string | undefined> = {}): XmlElement => elem(name, attrs, [text]);
const kib = (name: string, n: number): XmlElement => t(name, String(n), { unit: 'KiB' });

function optional<T>(v: T | undefined, f: (v: T) => XmlElement): XmlElement[] {
  return v === undefined ? [] : [f(v)];
}

export function domainToElement(d: Domain): XmlElement {
  const hasLxcNs = Object.values(d.lxcNamespace).some((s) => s !== undefined);
  const kids: XmlNode[] = [t('name', d.name)];
  kids.push(...optional(d.uuid, (u) => t('uuid', u)));
  kids.push(...optional(d.title, (v) => t('title', v)));
  kids.push(...optional(d.description, (v) => t('description', v)));
  const meta = [...(d.metadata.ours ? [metadataToElement(d.metadata.ours)] : []), ...d.metadata.foreign];
  if (meta.length) kids.push(elem('metadata', {}, meta));
  kids.push(...optional(d.memory, (m) => kib('memory', m)));
  kids.push(...optional(d.currentMemory, (m) => kib('currentMemory', m)));

  const b = d.blkiotune;
  if (b.weight !== undefined || b.devices.length || b.extra.length) {
    const devs = b.devices.map((dev) =>
      elem('device', {}, [
        t('path', dev.path),
        ...optional(dev.weight, (v) => t('weight', String(v))),
        ...optional(dev.readIopsSec, (v) => t('read_iops_sec', String(v))),
        ...optional(dev.writeIopsSec, (v) => t('write_iops_sec', String(v))),
        ...optional(dev.readBytesSec, (v) => t('read_bytes_sec', String(v))),
        ...optional(dev.writeBytesSec, (v) => t('write_bytes_sec', String(v))),
      ]),
    );
    kids.push(elem('blkiotune', {}, [...optional(b.weight, (v) => t('weight', String(v))), ...devs, ...b.extra]));
  }
  const mt = d.memtune;
  const memtune = [
    ...optional(mt.hardLimit, (v) => kib('hard_limit', v)),
    ...optional(mt.softLimit, (v) => kib('soft_limit', v)),
    ...optional(mt.swapHardLimit, (v) => kib('swap_hard_limit', v)),
    ...optional(mt.minGuarantee, (v) => kib('min_guarantee', v)),
    ...mt.extra,
  ];
  if (memtune.length) kids.push(elem('memtune', {}, memtune));
  if (d.vcpu) kids.push(t('vcpu', String(d.vcpu.count), { placement: d.vcpu.placement, cpuset: d.vcpu.cpuset, current: d.vcpu.current }));
  const ct = d.cputune;
  const cputune = [
    ...optional(ct.shares, (v) => t('shares', String(v))),
    ...optional(ct.period, (v) => t('period', String(v))),
    ...optional(ct.quota, (v) => t('quota', String(v))),
    ...ct.extra,
  ];
  if (cputune.length) kids.push(elem('cputune', {}, cputune));
  if (d.numatune)
    kids.push(elem('numatune', {}, [...optional(d.numatune.memory, (m) => elem('memory', { ...m })), ...d.numatune.extra]));
  if (d.resource)
    kids.push(elem('resource', {}, [...optional(d.resource.partition, (p) => t('partition', p)), ...d.resource.extra]));

  const os = d.os;
  kids.push(
    elem('os', {}, [
      t('type', os.type, { arch: os.arch }),
      ...optional(os.init, (v) => t('init', v)),
      ...os.initargs.map((a) => t('initarg', a)),
      ...os.initenv.map((e) => t('initenv', e.value, { name: e.name })),
      ...optional(os.initdir, (v) => t('initdir', v)),
      ...optional(os.inituser, (v) => t('inituser', v)),
      ...optional(os.initgroup, (v) => t('initgroup', v)),
      ...optional(os.cmdline, (v) => t('cmdline', v)),
      ...os.extra,
    ]),
  );
  if (d.idmap.uid.length || d.idmap.gid.length) {
    const entries = (name: string, list: typeof d.idmap.uid) =>
      [...list].sort((x, y) => x.start - y.start).map((e) => elem(name, { start: String(e.start), target: String(e.target), count: String(e.count) }));
    kids.push(elem('idmap', {}, [...entries('uid', d.idmap.uid), ...entries('gid', d.idmap.gid)]));
  }
  const f = d.features;
  const features: XmlElement[] = [];
  if (f.privnet) features.push(elem('privnet'));
  if (f.capabilities)
    features.push(elem('capabilities', { policy: f.capabilities.policy }, f.capabilities.caps.map((c) => elem(c.name, { state: c.state }))));
  features.push(...f.extra);
  if (features.length) kids.push(elem('features', {}, features));
  if (d.clock) kids.push(d.clock);
  kids.push(...optional(d.onPoweroff, (v) => t('on_poweroff', v)));
  kids.push(...optional(d.onReboot, (v) => t('on_reboot', v)));
  kids.push(...optional(d.onCrash, (v) => t('on_crash', v)));
  kids.push(...d.extra);
  const dv = d.devices;
  kids.push(
    elem('devices', {}, [
      ...optional(dv.emulator, (v) => t('emulator', v)),
      ...dv.filesystems.map(filesystemElement),
      ...dv.interfaces.map(interfaceElement),
      ...dv.consoles.map(consoleElement),
      ...dv.hostdevs.map(hostdevElement),
      ...dv.extra,
    ]),
  );
  kids.push(...d.seclabels.map(seclabelElement));
  if (hasLxcNs) {
    const shares: XmlElement[] = [];
    for (const k of ['sharenet', 'shareipc', 'shareuts'] as const) {
      const s = d.lxcNamespace[k];
      if (s) shares.push({ ...elem(`lxc:${k}`, { type: s.type, value: s.value }), uri: LXC_NS });
    }
    kids.push({ ...elem('lxc:namespace', {}, shares), uri: LXC_NS });
  }
  return elem('domain', { type: d.type, 'xmlns:lxc': hasLxcNs ? LXC_NS : undefined }, kids);
}

export function filesystemElement(fs: Filesystem): XmlElement {
  return elem('filesystem', { type: fs.type, accessmode: fs.accessmode, ...fs.attrs }, [
    elem('source', fs.source),
    ...optional(fs.target, (dir) => elem('target', { dir })),
    ...(fs.readonly ? [elem('readonly')] : []),
    ...fs.extra,
  ]);
}

export function interfaceElement(i: Interface): XmlElement {
  return elem('interface', { type: i.type, ...i.attrs }, [
    ...optional(i.mac, (address) => elem('mac', { address })),
    ...optional(i.source, (s) => elem('source', s)),
    ...i.ips.map((ip) => elem('ip', ip)),
    ...i.routes.map((r) => elem('route', r)),
    ...optional(i.guestDev, (dev) => elem('guest', { dev })),
    ...optional(i.linkState, (state) => elem('link', { state })),
    ...i.extra,
  ]);
}

export function consoleElement(c: Console): XmlElement {
  const target =
    c.targetType !== undefined || c.port !== undefined
      ? [elem('target', { type: c.targetType, port: c.port === undefined ? undefined : String(c.port) })]
      : [];
  return elem('console', { type: c.type, ...c.attrs }, [...target, ...c.extra]);
}

export function hostdevElement(h: Hostdev): XmlElement {
  const src: XmlElement[] = [];
  if (h.source.char !== undefined) src.push(t('char', h.source.char));
  if (h.source.block !== undefined) src.push(t('block', h.source.block));
  if (h.source.interface !== undefined) src.push(t('interface', h.source.interface));
  const rawSource = h.extra.some((e) => e.local === 'source');
  return elem('hostdev', { mode: h.mode, type: h.type, ...h.attrs }, [...(rawSource ? [] : [elem('source', {}, src)]), ...h.extra]);
}

export function seclabelElement(s: Seclabel): XmlElement {
  return elem('seclabel', s.attrs, [
    ...optional(s.label, (v) => t('label', v)),
    ...optional(s.imagelabel, (v) => t('imagelabel', v)),
    ...optional(s.baselabel, (v) => t('baselabel', v)),
    ...s.extra,
  ]);
}

export function buildDomainXml(d: Domain): string {
  return serializeElement(domainToElement(d), '') + '\n';
}
