/**
 * parseDomainXml: domain XML (as written by us, by libvirt's dumpxml, or by hand) into the typed
 * model. Elements we do not model are kept raw in the nearest `extra` list.
 */
import { InputError } from '../errors.js';
import { attr, attrRecord, childElements, parseXmlDocument, textOf, type XmlElement } from './element.js';
import {
  emptyDomain,
  LXC_NS,
  type BlkioDevice,
  type CapState,
  type Console,
  type Domain,
  type Filesystem,
  type Hostdev,
  type Interface,
  type Seclabel,
  type Share,
} from './domain.js';
import { isOurMetadata, metadataFromElement } from './metadata.js';

const UNIT_BYTES: Record<string, bigint> = {
  b: 1n, bytes: 1n,
  kb: 1000n, k: 1024n, kib: 1024n,
  mb: 1000n ** 2n, m: 1024n ** 2n, mib: 1024n ** 2n,
  gb: 1000n ** 3n, g: 1024n ** 3n, gib: 1024n ** 3n,
  tb: 1000n ** 4n, t: 1024n ** 4n, tib: 1024n ** 4n,
  pb: 1000n ** 5n, p: 1024n ** 5n, pib: 1024n ** 5n,
  eb: 1000n ** 6n, e: 1024n ** 6n, eib: 1024n ** 6n,
};

class Reader {
  constructor(readonly file: string | undefined) {}

  fail(field: string, reason: string): never {
    throw new InputError(reason, { file: this.file, field });
  }

  int(text: string, field: string): number {
    const t = text.trim();
    if (!/^[+-]?\d+$/.test(t)) this.fail(field, `'${t}' is not an integer`);
    const n = Number(t);
    if (!Number.isSafeInteger(n)) this.fail(field, `${t} is out of range`);
    return n;
  }

  /** A size element (`unit` attribute, default KiB) in KiB, rounded up as libvirt does. */
  kib(el: XmlElement, field: string, unitAttr = 'unit'): number {
    const t = textOf(el).trim();
    if (!/^\d+$/.test(t)) this.fail(field, `'${t}' is not a size`);
    const unit = (attr(el, unitAttr) ?? 'KiB').toLowerCase();
    const mult = UNIT_BYTES[unit];
    if (mult === undefined) this.fail(field, `unknown unit '${unit}'`);
    const bytes = BigInt(t) * mult;
    const kib = (bytes + 1023n) / 1024n;
    if (kib > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(field, `${t} ${unit} is out of range`);
    return Number(kib);
  }
}

/** Converts a `<source usage units>` pair of a ram filesystem to KiB, truncating as dumpxml shows it. */
export function usageKiB(source: Record<string, string>): number | undefined {
  const usage = source.usage;
  if (usage === undefined || !/^\d+$/.test(usage.trim())) return undefined;
  const mult = UNIT_BYTES[(source.units ?? 'KiB').toLowerCase()];
  if (mult === undefined) return undefined;
  return Number((BigInt(usage.trim()) * mult) / 1024n);
}

export function parseDomainXml(xml: string, file?: string): Domain {
  const root = parseXmlDocument(xml, file);
  const r = new Reader(file);
  if (root.local !== 'domain' || root.uri !== '') r.fail('domain', `the root element is <${root.name}>, not <domain>`);
  const d = emptyDomain('');
  d.type = attr(root, 'type') ?? '';
  let named = false;
  for (const el of childElements(root)) {
    if (el.uri === LXC_NS && el.local === 'namespace') {
      parseLxcNamespace(el, d, r);
      continue;
    }
    if (el.uri !== '') {
      d.extra.push(el);
      continue;
    }
    switch (el.local) {
      case 'name':
        d.name = textOf(el);
        named = true;
        break;
      case 'uuid':
        d.uuid = textOf(el).trim();
        break;
      case 'title':
        d.title = textOf(el);
        break;
      case 'description':
        d.description = textOf(el);
        break;
      case 'metadata':
        for (const m of childElements(el)) {
          if (isOurMetadata(m)) d.metadata.ours = metadataFromElement(m);
          else d.metadata.foreign.push(m);
        }
        break;
      case 'memory':
        d.memory = r.kib(el, 'memory');
        break;
      case 'currentMemory':
        d.currentMemory = r.kib(el, 'currentMemory');
        break;
      case 'memtune':
        for (const c of childElements(el)) {
          const f = `memtune.${c.local}`;
          if (c.local === 'hard_limit') d.memtune.hardLimit = r.kib(c, f);
          else if (c.local === 'soft_limit') d.memtune.softLimit = r.kib(c, f);
          else if (c.local === 'swap_hard_limit') d.memtune.swapHardLimit = r.kib(c, f);
          else if (c.local === 'min_guarantee') d.memtune.minGuarantee = r.kib(c, f);
          else d.memtune.extra.push(c);
        }
        break;
      case 'vcpu':
        d.vcpu = {
          count: r.int(textOf(el), 'vcpu'),
          placement: attr(el, 'placement'),
          cpuset: attr(el, 'cpuset'),
          current: attr(el, 'current'),
        };
        dropUndefined(d.vcpu);
        break;
      case 'numatune':
        d.numatune = { extra: [] };
        for (const c of childElements(el)) {
          if (c.local === 'memory') {
            d.numatune.memory = { mode: attr(c, 'mode'), nodeset: attr(c, 'nodeset'), placement: attr(c, 'placement') };
            dropUndefined(d.numatune.memory);
          } else d.numatune.extra.push(c);
        }
        break;
      case 'cputune':
        for (const c of childElements(el)) {
          const f = `cputune.${c.local}`;
          if (c.local === 'shares') d.cputune.shares = r.int(textOf(c), f);
          else if (c.local === 'period') d.cputune.period = r.int(textOf(c), f);
          else if (c.local === 'quota') d.cputune.quota = r.int(textOf(c), f);
          else d.cputune.extra.push(c);
        }
        break;
      case 'blkiotune':
        for (const c of childElements(el)) {
          if (c.local === 'weight') d.blkiotune.weight = r.int(textOf(c), 'blkiotune.weight');
          else if (c.local === 'device') d.blkiotune.devices.push(parseBlkioDevice(c, r));
          else d.blkiotune.extra.push(c);
        }
        break;
      case 'resource':
        d.resource = { extra: [] };
        for (const c of childElements(el)) {
          if (c.local === 'partition') d.resource.partition = textOf(c);
          else d.resource.extra.push(c);
        }
        break;
      case 'os':
        parseOs(el, d, r);
        break;
      case 'idmap':
        for (const c of childElements(el)) {
          const f = `idmap.${c.local}`;
          const entry = {
            start: r.int(attr(c, 'start') ?? '', `${f}.start`),
            target: r.int(attr(c, 'target') ?? '', `${f}.target`),
            count: r.int(attr(c, 'count') ?? '', `${f}.count`),
          };
          if (c.local === 'uid') d.idmap.uid.push(entry);
          else if (c.local === 'gid') d.idmap.gid.push(entry);
          else r.fail(f, 'unknown idmap entry');
        }
        break;
      case 'features':
        for (const c of childElements(el)) {
          if (c.local === 'privnet') d.features.privnet = true;
          else if (c.local === 'capabilities') {
            const caps = childElements(c).map((cap) => {
              const state = attr(cap, 'state') ?? 'on';
              if (state !== 'on' && state !== 'off') r.fail(`features.capabilities.${cap.local}`, `state '${state}' is not on or off`);
              return { name: cap.local, state: state as CapState };
            });
            d.features.capabilities = { policy: attr(c, 'policy') ?? 'default', caps };
          } else d.features.extra.push(c);
        }
        break;
      case 'clock':
        d.clock = el;
        break;
      case 'on_poweroff':
        d.onPoweroff = textOf(el).trim();
        break;
      case 'on_reboot':
        d.onReboot = textOf(el).trim();
        break;
      case 'on_crash':
        d.onCrash = textOf(el).trim();
        break;
      case 'devices':
        parseDevices(el, d, r);
        break;
      case 'seclabel':
        d.seclabels.push(parseSeclabel(el));
        break;
      default:
        d.extra.push(el);
    }
  }
  if (!named || d.name === '') r.fail('name', 'the domain has no <name>');
  return d;
}

function dropUndefined(o: object): void {
  for (const [k, v] of Object.entries(o)) if (v === undefined) delete (o as Record<string, unknown>)[k];
}

function parseBlkioDevice(el: XmlElement, r: Reader): BlkioDevice {
  const dev: BlkioDevice = { path: '' };
  for (const c of childElements(el)) {
    const f = `blkiotune.device.${c.local}`;
    switch (c.local) {
      case 'path': dev.path = textOf(c).trim(); break;
      case 'weight': dev.weight = r.int(textOf(c), f); break;
      case 'read_iops_sec': dev.readIopsSec = r.int(textOf(c), f); break;
      case 'write_iops_sec': dev.writeIopsSec = r.int(textOf(c), f); break;
      case 'read_bytes_sec': dev.readBytesSec = r.int(textOf(c), f); break;
      case 'write_bytes_sec': dev.writeBytesSec = r.int(textOf(c), f); break;
      default: r.fail(f, 'unknown blkiotune device setting');
    }
  }
  return dev;
}

function parseOs(el: XmlElement, d: Domain, r: Reader): void {
  for (const c of childElements(el)) {
    switch (c.local) {
      case 'type':
        d.os.type = textOf(c).trim();
        if (attr(c, 'arch') !== undefined) d.os.arch = attr(c, 'arch');
        break;
      case 'init': d.os.init = textOf(c); break;
      case 'initarg': d.os.initargs.push(textOf(c)); break;
      case 'initenv': {
        const name = attr(c, 'name');
        if (name === undefined) r.fail('os.initenv', 'missing name attribute');
        d.os.initenv.push({ name, value: textOf(c) });
        break;
      }
      case 'initdir': d.os.initdir = textOf(c); break;
      case 'inituser': d.os.inituser = textOf(c).trim(); break;
      case 'initgroup': d.os.initgroup = textOf(c).trim(); break;
      case 'cmdline': d.os.cmdline = textOf(c); break;
      default: d.os.extra.push(c);
    }
  }
}

function parseDevices(el: XmlElement, d: Domain, r: Reader): void {
  for (const c of childElements(el)) {
    switch (c.local) {
      case 'emulator': d.devices.emulator = textOf(c).trim(); break;
      case 'filesystem': d.devices.filesystems.push(parseFilesystem(c)); break;
      case 'interface': d.devices.interfaces.push(parseInterface(c)); break;
      case 'console': d.devices.consoles.push(parseConsole(c, r)); break;
      case 'hostdev': d.devices.hostdevs.push(parseHostdev(c)); break;
      default: d.devices.extra.push(c);
    }
  }
}

function withoutKeys(rec: Record<string, string>, keys: string[]): Record<string, string> {
  const out = { ...rec };
  for (const k of keys) delete out[k];
  return out;
}

function parseFilesystem(el: XmlElement): Filesystem {
  const a = attrRecord(el);
  const fs: Filesystem = { type: a.type ?? 'mount', source: {}, readonly: false, attrs: withoutKeys(a, ['type', 'accessmode']), extra: [] };
  if (a.accessmode !== undefined) fs.accessmode = a.accessmode;
  for (const c of childElements(el)) {
    if (c.local === 'source') fs.source = attrRecord(c);
    else if (c.local === 'target') {
      const dir = attr(c, 'dir');
      if (dir !== undefined) fs.target = dir;
    } else if (c.local === 'readonly') fs.readonly = true;
    else fs.extra.push(c);
  }
  return fs;
}

function parseInterface(el: XmlElement): Interface {
  const a = attrRecord(el);
  const itf: Interface = { type: a.type ?? '', ips: [], routes: [], attrs: withoutKeys(a, ['type']), extra: [] };
  for (const c of childElements(el)) {
    switch (c.local) {
      case 'mac': {
        const mac = attr(c, 'address');
        if (mac !== undefined) itf.mac = mac;
        break;
      }
      case 'source': itf.source = attrRecord(c); break;
      case 'ip': itf.ips.push(attrRecord(c)); break;
      case 'route': itf.routes.push(attrRecord(c)); break;
      case 'guest': {
        const dev = attr(c, 'dev');
        if (dev !== undefined && Object.keys(attrRecord(c)).length === 1) itf.guestDev = dev;
        else itf.extra.push(c);
        break;
      }
      case 'link': {
        const state = attr(c, 'state');
        if (state !== undefined && Object.keys(attrRecord(c)).length === 1) itf.linkState = state;
        else itf.extra.push(c);
        break;
      }
      default: itf.extra.push(c);
    }
  }
  return itf;
}

function parseConsole(el: XmlElement, r: Reader): Console {
  const a = attrRecord(el);
  const con: Console = { type: a.type ?? 'pty', attrs: withoutKeys(a, ['type', 'tty']), extra: [] };
  for (const c of childElements(el)) {
    if (c.local === 'target' && Object.keys(withoutKeys(attrRecord(c), ['type', 'port'])).length === 0) {
      const t = attr(c, 'type');
      const port = attr(c, 'port');
      if (t !== undefined) con.targetType = t;
      if (port !== undefined) con.port = r.int(port, 'devices.console.target.port');
    } else if (c.local === 'source' || c.local === 'alias') {
      // live-only details (pty path, alias): not part of the definition
    } else con.extra.push(c);
  }
  return con;
}

function parseHostdev(el: XmlElement): Hostdev {
  const a = attrRecord(el);
  const hd: Hostdev = { mode: a.mode ?? '', type: a.type ?? '', source: {}, attrs: withoutKeys(a, ['mode', 'type']), extra: [] };
  for (const c of childElements(el)) {
    if (c.local === 'source') {
      const known = ['char', 'block', 'interface'];
      const kids = childElements(c);
      // a source we do not model (PCI/USB addresses …) is kept whole
      if (kids.some((k) => !known.includes(k.local)) || Object.keys(attrRecord(c)).length) hd.extra.push(c);
      else
        for (const k of kids) hd.source[k.local as 'char' | 'block' | 'interface'] = textOf(k).trim();
    } else if (c.local !== 'alias') hd.extra.push(c);
  }
  return hd;
}

function parseSeclabel(el: XmlElement): Seclabel {
  const s: Seclabel = { attrs: attrRecord(el), extra: [] };
  for (const c of childElements(el)) {
    if (c.local === 'label') s.label = textOf(c);
    else if (c.local === 'imagelabel') s.imagelabel = textOf(c);
    else if (c.local === 'baselabel') s.baselabel = textOf(c);
    else s.extra.push(c);
  }
  return s;
}

function parseLxcNamespace(el: XmlElement, d: Domain, r: Reader): void {
  for (const c of childElements(el)) {
    const share: Share = { type: attr(c, 'type') ?? '', value: attr(c, 'value') ?? '' };
    if (c.local === 'sharenet') d.lxcNamespace.sharenet = share;
    else if (c.local === 'shareipc') d.lxcNamespace.shareipc = share;
    else if (c.local === 'shareuts') d.lxcNamespace.shareuts = share;
    else r.fail(`lxc:namespace.${c.local}`, 'unknown namespace share');
  }
}
