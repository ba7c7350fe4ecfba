/**
 * One network attachment of a container, as the settings key `networks` and the annotation
 * org.ocivirt.networks both give it, checked in one place: on a libvirt network (by name) or a
 * host bridge, with an optional static address, gateway, MAC and MTU.
 */

export interface Attachment {
  /** A libvirt network by name; exactly one of `network` and `bridge`. */
  network?: string;
  /** A host bridge (the daemon's `bridgeAllowList` says which). */
  bridge?: string;
  /** `A.B.C.D/P`. */
  ip?: string;
  /** `A.B.C.D`: the default route (only with `ip`). */
  gateway?: string;
  /** A unicast MAC, lower case; default: derived from the container id and the interface's position. */
  mac?: string;
  mtu?: number;
}

export const NETWORK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;
/** A Linux interface name (IFNAMSIZ: 15 bytes), in the characters bridges are given. */
export const BRIDGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
export const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const PREFIX = /^([0-9]|[12][0-9]|3[0-2])$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export const MIN_MTU = 68;
export const MAX_MTU = 65535;
const KEYS = ['network', 'bridge', 'ip', 'gateway', 'mac', 'mtu'];

/** `"lan"` or `{...}`, checked: the attachment, or a problem as a sub-field (`.ip`, '' for the whole) and its reason. */
export function checkAttachment(value: unknown): Attachment | { sub: string; reason: string } {
  if (typeof value === 'string') return NETWORK_NAME.test(value) ? { network: value } : { sub: '', reason: 'must be a libvirt network name' };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { sub: '', reason: 'must be a network name or an object' };
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !KEYS.includes(k));
  if (unknown !== undefined) return { sub: '', reason: `has an unknown key ${JSON.stringify(unknown.slice(0, 64))} (${KEYS.join(', ')})` };
  const out: Attachment = {};
  if ((o.network === undefined) === (o.bridge === undefined)) return { sub: '', reason: 'must name exactly one of "network" (a libvirt network) and "bridge" (a host bridge)' };
  if (o.network !== undefined) {
    if (typeof o.network !== 'string' || !NETWORK_NAME.test(o.network)) return { sub: '.network', reason: 'must be a libvirt network name' };
    out.network = o.network;
  } else {
    if (typeof o.bridge !== 'string' || !BRIDGE_NAME.test(o.bridge)) return { sub: '.bridge', reason: 'must be a bridge name (1 to 15 of A-Z a-z 0-9 _ . -)' };
    out.bridge = o.bridge;
  }
  if (o.ip !== undefined) {
    const [addr, p, ...rest] = typeof o.ip === 'string' ? o.ip.split('/') : [];
    if (!IPV4.test(addr ?? '') || !PREFIX.test(p ?? '') || rest.length) return { sub: '.ip', reason: 'must be "A.B.C.D/P"' };
    out.ip = o.ip as string;
  }
  if (o.gateway !== undefined) {
    if (typeof o.gateway !== 'string' || !IPV4.test(o.gateway)) return { sub: '.gateway', reason: 'must be "A.B.C.D"' };
    if (out.ip === undefined) return { sub: '.gateway', reason: 'needs an ip' };
    out.gateway = o.gateway;
  }
  if (o.mac !== undefined) {
    const mac = typeof o.mac === 'string' ? o.mac.toLowerCase() : '';
    const reason = macProblem(mac);
    if (reason !== undefined) return { sub: '.mac', reason };
    out.mac = mac;
  }
  if (o.mtu !== undefined) {
    if (typeof o.mtu !== 'number' || !Number.isInteger(o.mtu) || o.mtu < MIN_MTU || o.mtu > MAX_MTU) return { sub: '.mtu', reason: `must be an integer from ${MIN_MTU} to ${MAX_MTU}` };
    out.mtu = o.mtu;
  }
  return out;
}

/** Why `mac` (lower case) cannot be a container's MAC, or undefined when it can. */
export function macProblem(mac: string): string | undefined {
  if (!MAC.test(mac)) return 'must be a MAC address "xx:xx:xx:xx:xx:xx"';
  // bit 0 of the first octet: a group address; all zeros: no address
  if (parseInt(mac.slice(0, 2), 16) & 1) return 'must be a unicast MAC (the first octet is even): a multicast one cannot be an interface\'s';
  if (mac === '00:00:00:00:00:00') return 'must not be all zeros';
  return undefined;
}

/** A whole list checked: each item, then each network, bridge and MAC once. */
export function checkAttachments(value: unknown): Attachment[] | { sub: string; reason: string } {
  if (!Array.isArray(value)) return { sub: '', reason: 'must be an array' };
  const out: Attachment[] = [];
  const seen = new Map<string, number>();
  for (const [i, v] of value.entries()) {
    const a = checkAttachment(v);
    if ('reason' in a) return { sub: `[${i}]${a.sub}`, reason: a.reason };
    const segment = segmentOf(a);
    if (seen.has(segment)) return { sub: `[${i}]`, reason: `attaches to ${segment} a second time (networks[${seen.get(segment)}])` };
    seen.set(segment, i);
    if (a.mac !== undefined) {
      if (seen.has(a.mac)) return { sub: `[${i}].mac`, reason: `${a.mac} is networks[${seen.get(a.mac)}]'s MAC already` };
      seen.set(a.mac, i);
    }
    out.push(a);
  }
  return out;
}

/** Where an attachment leads, for messages and records: `network 'lan'` or `bridge 'br0'`. */
export function segmentOf(a: Pick<Attachment, 'network' | 'bridge'>): string {
  return a.network !== undefined ? `network '${a.network}'` : `bridge '${a.bridge}'`;
}

/** The attachment with its keys in the one order the annotation gives them back. */
export function canonicalAttachment(a: Attachment): Attachment {
  const out: Attachment = a.network !== undefined ? { network: a.network } : { bridge: a.bridge! };
  if (a.ip !== undefined) out.ip = a.ip;
  if (a.gateway !== undefined) out.gateway = a.gateway;
  if (a.mac !== undefined) out.mac = a.mac;
  if (a.mtu !== undefined) out.mtu = a.mtu;
  return out;
}
