/**
 * A typed model of libvirt-lxc domain XML: every element the LXC driver knows, with unknown
 * elements kept raw (`extra`) so to-native can carry them and the builder can write them back.
 * Sizes are in KiB; strings are unescaped text.
 */
import type { XmlElement } from './element.js';
import type { OciMetadata } from './metadata.js';

export const LXC_NS = 'http://libvirt.org/schemas/domain/lxc/1.0';

export interface Domain {
  /** The `type` attribute of `<domain>` ('lxc'). */
  type: string;
  name: string;
  uuid?: string;
  title?: string;
  description?: string;
  metadata: { ours?: OciMetadata; foreign: XmlElement[] };
  /** KiB. */
  memory?: number;
  currentMemory?: number;
  memtune: Memtune;
  vcpu?: Vcpu;
  numatune?: Numatune;
  cputune: Cputune;
  blkiotune: Blkiotune;
  resource?: { partition?: string; extra: XmlElement[] };
  os: Os;
  idmap: { uid: IdMapEntry[]; gid: IdMapEntry[] };
  features: Features;
  /** Kept raw: offset/timers have no OCI meaning. */
  clock?: XmlElement;
  onPoweroff?: string;
  onReboot?: string;
  onCrash?: string;
  devices: Devices;
  seclabels: Seclabel[];
  lxcNamespace: { sharenet?: Share; shareipc?: Share; shareuts?: Share };
  /** Unknown top-level elements, in document order. */
  extra: XmlElement[];
}

export interface Memtune {
  hardLimit?: number;
  softLimit?: number;
  swapHardLimit?: number;
  minGuarantee?: number;
  extra: XmlElement[];
}

export interface Vcpu {
  count: number;
  placement?: string;
  cpuset?: string;
  current?: string;
}

export interface Numatune {
  memory?: { mode?: string; nodeset?: string; placement?: string };
  extra: XmlElement[];
}

export interface Cputune {
  shares?: number;
  period?: number;
  quota?: number;
  extra: XmlElement[];
}

export interface BlkioDevice {
  path: string;
  weight?: number;
  readIopsSec?: number;
  writeIopsSec?: number;
  readBytesSec?: number;
  writeBytesSec?: number;
}

export interface Blkiotune {
  weight?: number;
  devices: BlkioDevice[];
  extra: XmlElement[];
}

export interface InitEnv {
  name: string;
  value: string;
}

export interface Os {
  type: string;
  arch?: string;
  init?: string;
  initargs: string[];
  initenv: InitEnv[];
  initdir?: string;
  inituser?: string;
  initgroup?: string;
  cmdline?: string;
  extra: XmlElement[];
}

export interface IdMapEntry {
  start: number;
  target: number;
  count: number;
}

export type CapState = 'on' | 'off';

export interface Features {
  privnet: boolean;
  capabilities?: { policy: string; caps: { name: string; state: CapState }[] };
  /** Other features (acpi …), raw. */
  extra: XmlElement[];
}

export interface Filesystem {
  type: string;
  accessmode?: string;
  /** Attributes of `<source>` (dir, dev, file, name, usage, units). */
  source: Record<string, string>;
  target?: string;
  readonly: boolean;
  /** Other attributes of `<filesystem>` and other children (driver, space limits …), raw. */
  attrs: Record<string, string>;
  extra: XmlElement[];
}

export interface Interface {
  type: string;
  mac?: string;
  /** Attributes of `<source>`. */
  source?: Record<string, string>;
  ips: Record<string, string>[];
  routes: Record<string, string>[];
  guestDev?: string;
  linkState?: string;
  attrs: Record<string, string>;
  extra: XmlElement[];
}

export interface Console {
  type: string;
  targetType?: string;
  port?: number;
  attrs: Record<string, string>;
  extra: XmlElement[];
}

export interface Hostdev {
  mode: string;
  type: string;
  /** Children of `<source>`: char, block or interface path/name. */
  source: { char?: string; block?: string; interface?: string };
  attrs: Record<string, string>;
  extra: XmlElement[];
}

export interface Devices {
  emulator?: string;
  filesystems: Filesystem[];
  interfaces: Interface[];
  consoles: Console[];
  hostdevs: Hostdev[];
  /** Other devices (disks, serials, unknown), raw. */
  extra: XmlElement[];
}

export interface Seclabel {
  attrs: Record<string, string>;
  label?: string;
  imagelabel?: string;
  baselabel?: string;
  extra: XmlElement[];
}

export interface Share {
  type: string;
  value: string;
}

/** An empty domain of the given name: what the parser and the converter start from. */
export function emptyDomain(name: string): Domain {
  return {
    type: 'lxc',
    name,
    metadata: { foreign: [] },
    memtune: { extra: [] },
    cputune: { extra: [] },
    blkiotune: { devices: [], extra: [] },
    os: { type: 'exe', initargs: [], initenv: [], extra: [] },
    idmap: { uid: [], gid: [] },
    features: { privnet: false, extra: [] },
    devices: { filesystems: [], interfaces: [], consoles: [], hostdevs: [], extra: [] },
    seclabels: [],
    lxcNamespace: {},
    extra: [],
  };
}
