/**
 * Names and identities derived from a container id: the domain name (mapping notes §6.2), the
 * hostname libvirt will set (§6.3), a UUIDv5 (§6.5) and interface MACs, all deterministic so a
 * redefine never fails or churns.
 */
import { createHash } from 'node:crypto';

/** ocivirt's UUIDv5 namespace (a fixed random UUID). */
export const UUID_NAMESPACE = 'a3c1e3f2-5b0e-4c2f-9a57-0c1d5e6f7a8b';

/** `[a-z0-9-]`, 1 to 63 chars, not starting with '-'. */
export const DOMAIN_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function isValidDomainName(name: string): boolean {
  return DOMAIN_NAME.test(name);
}

/** A valid domain name made from any string (lowercased, other chars to '-'), or undefined. */
export function sanitizeDomainName(raw: string): string | undefined {
  const s = raw
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return s === '' ? undefined : s;
}

/** The hostname libvirt sets for a domain name: chars outside [A-Za-z0-9-] removed, leading '-' stripped. */
export function hostnameForDomainName(name: string): string {
  return name.replace(/[^A-Za-z0-9-]/g, '').replace(/^-+/, '');
}

export function uuidV5(name: string, namespace = UUID_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** A locally administered MAC in libvirt's 52:54:00 range, from the container id and interface index. */
export function macFor(id: string, index: number): string {
  const h = createHash('sha256').update(`${id}\0${index}`, 'utf8').digest();
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
