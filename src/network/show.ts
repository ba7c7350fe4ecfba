/**
 * What `ocivirt status` shows of a domain's network: each interface (libvirt network or host
 * bridge, address, MAC) and its published ports, read from libvirt (the running definition when
 * it runs: it has what libvirt filled in; else the persistent one).
 */
import { errorMessage } from '../errors.js';
import type { LibvirtPort } from '../libvirt/port.js';
import type { PublishedPort } from '../settings/keys.js';
import { parseDomainXml } from '../xml/parse.js';
import { parsePublished, PUBLISH_ANNOTATION } from './ports.js';

export interface ShownInterface {
  /** `network` or `bridge` (or another libvirt interface type). */
  type: string;
  /** The libvirt network's or the bridge's name. */
  source?: string;
  /** `A.B.C.D/P`; absent when the container configures its own (a bridge without ip). */
  ip?: string;
  mac?: string;
}

export interface ShownNetwork {
  networks: ShownInterface[];
  ports: PublishedPort[];
}

/** The interfaces and published ports of a domain's definition XML. */
export function networkOfXml(xml: string): ShownNetwork {
  const d = parseDomainXml(xml);
  const networks = d.devices.interfaces.map((itf) => {
    const source = itf.source?.network ?? itf.source?.bridge ?? itf.source?.dev;
    const ip = itf.ips.find((a) => (a.family ?? 'ipv4') === 'ipv4' && a.address !== undefined);
    return {
      type: itf.type,
      ...(source !== undefined ? { source } : {}),
      ...(ip !== undefined ? { ip: `${ip.address}${ip.prefix !== undefined ? `/${ip.prefix}` : ''}` } : {}),
      ...(itf.mac !== undefined ? { mac: itf.mac.toLowerCase() } : {}),
    };
  });
  const value = d.metadata.ours?.annotations.find((a) => a.key === PUBLISH_ANNOTATION)?.value;
  return { networks, ports: (value !== undefined ? parsePublished(value) : undefined) ?? [] };
}

/** Each domain's network by name; a domain libvirt does not have (or cannot give) is left out. */
export async function networksOf(port: LibvirtPort, domains: readonly string[]): Promise<Map<string, ShownNetwork>> {
  const out = new Map<string, ShownNetwork>();
  for (const name of domains) {
    let xml: string;
    try {
      xml = await port.liveXml(name).catch(() => port.inactiveXml(name));
    } catch {
      continue;
    }
    try {
      out.set(name, networkOfXml(xml));
    } catch (e) {
      out.set(name, { networks: [{ type: `unreadable (${errorMessage(e)})` }], ports: [] });
    }
  }
  return out;
}

/** One line: `network lan 10.77.0.5/24 52:54:00:…, bridge br0 (own DHCP) 52:54:…; publish 8080->80/tcp`. */
export function formatNetwork(n: ShownNetwork): string {
  const itfs = n.networks.map((i) => [i.type, i.source, i.ip ?? (i.type === 'bridge' ? '(own DHCP)' : undefined), i.mac].filter((x) => x !== undefined).join(' '));
  const ports = n.ports.map((p) => `${p.hostIp !== undefined ? `${p.hostIp}:` : ''}${p.hostPort}->${p.port}/${p.protocol}`);
  return [itfs.join(', '), ports.length ? `publish ${ports.join(', ')}` : ''].filter((s) => s !== '').join('; ');
}
