/**
 * The annotation `org.ocivirt.networks` <-> `<interface type='network'>`: the containers' network
 * attachments (settings key `networks`, addresses resolved by network/addresses.ts). Each becomes
 * an interface on the libvirt network with a MAC derived from the container id, its address
 * (libvirt-lxc configures it inside the container: no DHCP client needed) and a default route
 * through the network's own address. to-native gives the annotation back from such interfaces,
 * so they travel through OCI without the XML-only escape hatch.
 */
import { ANNOTATION_PREFIX } from '../../oci/runtime-spec.js';
import type { Domain, Interface } from '../../xml/domain.js';
import { refuse } from '../context.js';
import { macFor } from '../identity.js';
import type { Pass } from './pass.js';

export const NETWORKS_ANNOTATION = `${ANNOTATION_PREFIX}networks`;

export interface NetworkAttachmentSpec {
  network: string;
  ip?: string;
  gateway?: string;
}

const NETWORK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const PREFIX = /^([0-9]|[12][0-9]|3[0-2])$/;

/** The annotation's value, checked; a reason string when it is not one. */
export function parseNetworksAnnotation(value: string): NetworkAttachmentSpec[] | string {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return 'is not JSON';
  }
  if (!Array.isArray(v)) return 'must be a JSON array of {"network", "ip", "gateway"}';
  const out: NetworkAttachmentSpec[] = [];
  for (const [i, a] of v.entries()) {
    if (typeof a !== 'object' || a === null || Array.isArray(a)) return `[${i}] must be an object`;
    const o = a as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'network' && k !== 'ip' && k !== 'gateway') return `[${i}] has an unknown key ${JSON.stringify(k)}`;
    if (typeof o.network !== 'string' || !NETWORK_NAME.test(o.network)) return `[${i}].network must be a libvirt network name`;
    const spec: NetworkAttachmentSpec = { network: o.network };
    if (o.ip !== undefined) {
      const [addr, p, ...rest] = typeof o.ip === 'string' ? o.ip.split('/') : [];
      if (!IPV4.test(addr ?? '') || !PREFIX.test(p ?? '') || rest.length) return `[${i}].ip must be "A.B.C.D/P"`;
      spec.ip = o.ip as string;
    }
    if (o.gateway !== undefined) {
      if (typeof o.gateway !== 'string' || !IPV4.test(o.gateway)) return `[${i}].gateway must be "A.B.C.D"`;
      if (spec.ip === undefined) return `[${i}].gateway needs an ip`;
      spec.gateway = o.gateway;
    }
    out.push(spec);
  }
  return out;
}

/** The annotation's value, in the one form to-native gives back. */
export function formatNetworksAnnotation(list: readonly NetworkAttachmentSpec[]): string {
  return JSON.stringify(list.map((a) => ({ network: a.network, ...(a.ip !== undefined ? { ip: a.ip } : {}), ...(a.gateway !== undefined ? { gateway: a.gateway } : {}) })));
}

function interfaceOf(a: NetworkAttachmentSpec, mac: string): Interface {
  const [address, prefix] = a.ip?.split('/') ?? [];
  return {
    type: 'network',
    mac,
    source: { network: a.network },
    ips: address !== undefined ? [{ address, family: 'ipv4', prefix: prefix! }] : [],
    routes: a.gateway !== undefined ? [{ family: 'ipv4', address: '0.0.0.0', prefix: '0', gateway: a.gateway }] : [],
    attrs: {},
    extra: [],
  };
}

/** The attachment an interface at `index` of a domain of container `id` is, or undefined when it is not one of ours. */
export function attachmentOf(itf: Interface, index: number, id: string): NetworkAttachmentSpec | undefined {
  if (itf.type !== 'network' || itf.mac?.toLowerCase() !== macFor(id, index)) return undefined;
  if (!itf.source || Object.keys(itf.source).join() !== 'network' || Object.keys(itf.attrs).length || itf.extra.length) return undefined;
  if (itf.guestDev !== undefined || itf.linkState !== undefined || itf.ips.length > 1 || itf.routes.length > 1) return undefined;
  const a: NetworkAttachmentSpec = { network: itf.source.network! };
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
  if (!NETWORK_NAME.test(a.network)) return undefined;
  return a;
}

/** The interfaces of `d` that are attachments of ours (and their positions). */
export function attachmentsOf(d: Domain, id: string): { index: number; attachment: NetworkAttachmentSpec }[] {
  return d.devices.interfaces.flatMap((itf, index) => {
    const attachment = attachmentOf(itf, index, id);
    return attachment ? [{ index, attachment }] : [];
  });
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
    list.forEach((a, i) => d.devices.interfaces.push(interfaceOf(a, macFor(ctx.id, base + i))));
    // the interfaces make the container's network namespace: no loopback-only privnet
    d.features.privnet = false;
  },

  reverse(d, ctx) {
    const list = attachmentsOf(d, ctx.id).map((x) => x.attachment);
    return list.length ? { annotations: { [NETWORKS_ANNOTATION]: formatNetworksAnnotation(list) } } : {};
  },
};
