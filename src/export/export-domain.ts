/**
 * One domain -> one OCI bundle config: read the persistent definition through the libvirt port,
 * convert it with the function `ocivirt to-native` runs (root.path stays the absolute rootfs
 * directory the domain mounts at '/'), and write it unless the config already there means the same.
 */
import { canonicalJson } from '../convert/json.js';
import { readOwnership } from '../convert/ownership.js';
import { domainToConfig } from '../convert/host.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import { parseDomainXml } from '../xml/parse.js';
import { readExportedCanonical, writeConfigAtomically } from './write.js';

export type ExportOutcome =
  | { status: 'written'; path: string; config: RuntimeConfig; warnings: string[]; managed: boolean }
  | { status: 'unchanged'; managed: boolean }
  /** Not ocivirt's and not asked to export every domain. */
  | { status: 'skipped' }
  | { status: 'gone' };

export interface ExportDomainOptions {
  /** Export even when the domain carries no ocivirt ownership metadata. */
  includeUnmanaged: boolean;
  /** Canonical JSON of the last config written for this domain, when the caller remembers it. */
  lastCanonical?: string;
}

/** A domain name usable as one path component (libvirt refuses '/', but '.' and '..' are names too). */
export function exportableName(name: string): boolean {
  return name !== '' && !name.startsWith('.') && !name.includes('/') && !name.includes('\0');
}

export async function exportDomain(
  port: LibvirtPort,
  name: string,
  bundleDir: string,
  opts: ExportDomainOptions,
): Promise<ExportOutcome & { canonical?: string }> {
  let xml: string;
  try {
    xml = await port.inactiveXml(name);
  } catch (e) {
    if (e instanceof DomainNotFoundError) return { status: 'gone' };
    throw e;
  }
  const domain = parseDomainXml(xml, `domain ${name}`);
  const managed = readOwnership(domain) !== undefined;
  if (!managed && !opts.includeUnmanaged) return { status: 'skipped' };
  const { config, warnings } = await domainToConfig(domain, `domain ${name}`);
  const canonical = canonicalJson(config);
  const previous = opts.lastCanonical ?? (await readExportedCanonical(bundleDir));
  if (previous === canonical) return { status: 'unchanged', managed, canonical };
  const path = await writeConfigAtomically(bundleDir, config);
  return { status: 'written', path, config, warnings, managed, canonical };
}
