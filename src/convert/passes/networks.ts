/**
 * The annotation `org.ocivirt.networks` <-> `<interface type='network'|'bridge'>`: the container's
 * interfaces (settings key `networks`, addresses resolved by network/addresses.ts). Each becomes
 * an interface on the libvirt network or host bridge with its MAC (given, else derived from the
 * container id and its position), its address (libvirt-lxc configures it inside the container: no
 * DHCP client needed), a default route through its gateway, and its MTU. to-native gives the
 * annotation back from the trailing run of such interfaces, so they travel through OCI without
 * the XML-only escape hatch.
 */
import { ANNOTATION_PREFIX } from '../../oci/runtime-spec.js';
import type { Domain, Interface } from '../../xml/domain.js';
import { attr, elem } from '../../xml/element.js';
import { canonicalAttachment, checkAttachments, IPV4, macProblem, MAX_MTU, MIN_MTU, NETWORK_NAME, BRIDGE_NAME, type Attachment } from '../../network/attachment.js';
import { refuse } from '../context.js';
import { macFor } from '../identity.js';
import type { Pass } from './pass.js';

export const NETWORKS_ANNOTATION = `${ANNOTATION_PREFIX}networks`;

export type NetworkAttachmentSpec = Attachment;

const PREFIX = /^([0-9]|[12][0-9]|3[0-2])$/;

/** The annotation's value, checked; a reason string when it is not one. */
export function parseNetworksAnnotation(value: string): NetworkAttachmentSpec[] | string {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return 'is not JSON';
  }
  if (!Array.isArray(v)) return 'must be a JSON array of {"network" | "bridge", "ip", "gateway", "mac", "mtu"}';
  const checked = checkAttachments(v);
  return 'reason' in checked ? `${checked.sub} ${checked.reason}` : checked;
}

/** The annotation's value, in the one form to-native gives back. */
export function formatNetworksAnnotation(list: readonly NetworkAttachmentSpec[]): string {
  return JSON.stringify(list.map(canonicalAttachment));
}

function interfaceOf(a: NetworkAttachmentSpec, mac: string): Interface {
  const [address, prefix] = a.ip?.split('/') ?? [];
  return {
    type: a.network !== undefined ? 'network' : 'bridge',
    mac,
    source: a.network !== undefined ? { network: a.network } : { bridge: a.bridge! },
    ips: address !== undefined ? [{ address, family: 'ipv4', prefix: prefix! }] : [],
    routes: a.gateway !== undefined ? [{ family: 'ipv4', address: '0.0.0.0', prefix: '0', gateway: a.gateway }] : [],
    attrs: {},
    extra: a.mtu !== undefined ? [elem('mtu', { size: String(a.mtu) })] : [],
  };
}

/** The MTU of an interface whose only extra setting is `<mtu size='N'/>`: N; null when it has none; undefined when it has others. */
function mtuOf(itf: Interface): number | null | undefined {
  if (!itf.extra.length) return null;
  const [m, ...rest] = itf.extra;
  if (rest.length || m!.local !== 'mtu' || m!.attrs.length !== 1 || m!.children.length) return undefined;
  const size = attr(m!, 'size') ?? '';
  return /^\d{1,5}$/.test(size) && Number(size) >= MIN_MTU && Number(size) <= MAX_MTU ? Number(size) : undefined;
}

/** The attachment an interface at `index` of a domain of container `id` is, or undefined when it is not one the annotation says. */
export function attachmentOf(itf: Interface, index: number, id: string): NetworkAttachmentSpec | undefined {
  const mac = itf.mac?.toLowerCase();
  if (mac === undefined || macProblem(mac) !== undefined || Object.keys(itf.attrs).length) return undefined;
  if (itf.guestDev !== undefined || itf.linkState !== undefined || itf.ips.length > 1 || itf.routes.length > 1) return undefined;
  const a: NetworkAttachmentSpec = {};
  const source = Object.keys(itf.source ?? {}).join();
  if (itf.type === 'network' && source === 'network' && NETWORK_NAME.test(itf.source!.network!)) a.network = itf.source!.network!;
  else if (itf.type === 'bridge' && source === 'bridge' && BRIDGE_NAME.test(itf.source!.bridge!)) a.bridge = itf.source!.bridge!;
  else return undefined;
  const ip = itf.ips[0];
  if (ip !== undefined) {
    const keys = Object.keys(ip).filter((k) => k !== 'family').sort().join();
    if (keys !== 'address,prefix' || (ip.family ?? 'ipv4') !== 'ipv4' || !IPV4.test(ip.address!) || !PREFIX.test(ip.prefix!)) return undefined;
    a.ip = `${ip.address}/${ip.prefix}`;
  }
  const r = itf.routes[0];
  if (r !== undefined) {
    const keys = Object.keys(r).sort().join();
    if (a.ip === undefined || keys !== 'address,family,gateway,prefix' || r.family !== 'ipv4' || r.address !== '0.0.0.0' || r.prefix !== '0' || !IPV4.test(r.gateway!)) return undefined;
    a.gateway = r.gateway;
  }
  if (mac !== macFor(id, index)) a.mac = mac;
  const mtu = mtuOf(itf);
  if (mtu === undefined) return undefined;
  if (mtu !== null) a.mtu = mtu;
  return a;
}

/**
 * The interfaces of `d` the annotation says (and their positions): the trailing run of plain
 * ones, as the networks pass lays them after the XML-only ones, so a round trip keeps the order.
 */
export function attachmentsOf(d: Domain, id: string): { index: number; attachment: NetworkAttachmentSpec }[] {
  const out: { index: number; attachment: NetworkAttachmentSpec }[] = [];
  // the annotation names each network, bridge and MAC once: the run stops before a second one
  const seen = new Set<string>();
  for (let index = d.devices.interfaces.length - 1; index >= 0; index--) {
    const itf = d.devices.interfaces[index]!;
    const attachment = attachmentOf(itf, index, id);
    if (attachment === undefined) break;
    const keys = [`${itf.type}:${itf.source?.network ?? itf.source?.bridge}`, `mac:${itf.mac!.toLowerCase()}`];
    if (keys.some((k) => seen.has(k))) break;
    keys.forEach((k) => seen.add(k));
    out.unshift({ index, attachment });
  }
  return out;
}

// Runs last: the XML-only interfaces (config pass) come first, so theirs keep their MACs.
export const networksPass: Pass = {
  name: 'networks',
  forward(cfg, d, ctx) {
    const value = cfg.annotations?.[NETWORKS_ANNOTATION];
    if (value === undefined) return;
    const field = `annotations[${JSON.stringify(NETWORKS_ANNOTATION)}]`;
    const list = parseNetworksAnnotation(value);
    if (typeof list === 'string') refuse(ctx, field, list);
    if (!list.length) return;
    if (!d.features.privnet)
      refuse(ctx, field, 'network interfaces need a new network namespace (a network entry without a path in linux.namespaces)');
    const base = d.devices.interfaces.length;
    list.forEach((a, i) => d.devices.interfaces.push(interfaceOf(a, a.mac ?? macFor(ctx.id, base + i))));
    // one MAC, one interface: a given one may meet a derived or an XML-only interface's
    const macs = d.devices.interfaces.map((itf) => itf.mac?.toLowerCase());
    const twice = macs.find((m, i) => m !== undefined && macs.indexOf(m) !== i);
    if (twice !== undefined) refuse(ctx, field, `MAC ${twice} is given to two interfaces of the container`);
    // the interfaces make the container's network namespace: no loopback-only privnet
    d.features.privnet = false;
  },

  reverse(d, ctx) {
    const list = attachmentsOf(d, ctx.id).map((x) => x.attachment);
    return list.length ? { annotations: { [NETWORKS_ANNOTATION]: formatNetworksAnnotation(list) } } : {};
  },
};
