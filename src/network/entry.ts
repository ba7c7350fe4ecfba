/**
 * A spool entry's interfaces: who may say where a container's network leads, and the annotation
 * org.ocivirt.networks the converter turns into its interfaces.
 *
 * Trust (README "Trust"): the operator's settings file (`NAME.ocivirt.json`) and the daemon's
 * `defaultNetwork` choose a container's interfaces; a bundle's own config.json does not. A bundle
 * is often made elsewhere (an export of another host, a build tool), and what it could ask for
 * here reaches beyond its container: a libvirt network it should not be on, a static address or
 * MAC of another container, a host bridge (the host's LAN), a published host port (another
 * entry's, which would then fail). So, in the daemon (and `sync`, `plan`, `validate`):
 * - a bundle's own `org.ocivirt.networks` and everything under `org.ocivirt.settings.` (publish,
 *   stopSignal, stopTimeout, restart: what ocivirt records from the settings keys) are dropped
 *   from its config with a warning: the settings file says them (a self-contained export writes
 *   them there, export/bundle.ts);
 * - interfaces a bundle lays on through the XML-only annotation (`org.ocivirt.domain-xml`) are
 *   refused: every interface comes from the settings' `networks`;
 * - a host bridge must be in the daemon's `bridgeAllowList`, as a bind source must be in
 *   `bindAllowList`; addresses and MACs are checked against every domain (addresses.ts).
 * `from-native` (the operator's own one-shot on a bundle of their choosing) still converts the
 * annotation as it stands: that is the round trip of to-native.
 */
import { InputError } from '../errors.js';
import { formatNetworksAnnotation, NETWORKS_ANNOTATION } from '../convert/passes/networks.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import { RECORDED_PREFIX } from '../settings/keys.js';
import type { ReadSettings } from '../settings/parse.js';
import type { Domain } from '../xml/domain.js';
import type { AddressBook, ResolvedAttachment } from './addresses.js';
import type { Attachment } from './attachment.js';

export interface EntryNetworkOptions {
  /** Allocates and checks addresses over libvirt; without it (`validate`) attachments stay as given. */
  addresses?: Pick<AddressBook, 'resolve'> | undefined;
  /** The libvirt network of every container whose settings have no `networks` (the daemon's `defaultNetwork`). */
  defaultNetwork?: string | undefined;
  /** Host bridges an attachment may name (the daemon's `bridgeAllowList`). */
  bridgeAllowList?: readonly string[] | undefined;
}

/** Annotation keys only the settings file may say: the bundle's own are not acted on. */
export function isSettingsOnly(key: string): boolean {
  const k = key.toLowerCase();
  return k === NETWORKS_ANNOTATION || k.startsWith(RECORDED_PREFIX);
}

/** The bundle's config without what only the settings file may say, and a warning for each key dropped. */
export function withoutBundleSay(config: RuntimeConfig, configPath: string): { config: RuntimeConfig; warnings: string[] } {
  const dropped = Object.keys(config.annotations ?? {}).filter(isSettingsOnly);
  if (!dropped.length) return { config, warnings: [] };
  const annotations = { ...config.annotations };
  for (const k of dropped) delete annotations[k];
  const warnings = dropped.map(
    (k) => `${configPath}: annotations[${JSON.stringify(k.slice(0, 64))}] is not acted on: the entry's settings file says this (a bundle does not choose its networks, published ports or stop and restart policy)`,
  );
  return { config: { ...config, annotations }, warnings };
}

/**
 * The operator's attachments of an entry: its settings' `networks`, else the default network
 * (for a container with a network namespace of its own); none when neither says one.
 */
function attachmentsOf(config: RuntimeConfig, read: ReadSettings | undefined, opts: EntryNetworkOptions): Attachment[] {
  if (read?.settings.networks !== undefined) return read.settings.networks;
  const ns = config.linux?.namespaces?.find((n) => n.type === 'network');
  if (opts.defaultNetwork && ns !== undefined && ns.path === undefined) return [{ network: opts.defaultNetwork }];
  return [];
}

/**
 * Sets the annotation org.ocivirt.networks of `config` (the entry's settings applied, the bundle's
 * own say dropped) from the operator's attachments, with their addresses. Returns them (one
 * interface each). Errors name the settings file and `networks[i]`, or say defaultNetwork.
 */
export async function withNetworks(config: RuntimeConfig, domainName: string, read: ReadSettings | undefined, configPath: string, opts: EntryNetworkOptions): Promise<ResolvedAttachment[]> {
  const attachments = attachmentsOf(config, read, opts);
  const fromDefault = read?.settings.networks === undefined;
  const file = read?.file ?? configPath;
  if (!attachments.length && read?.settings.publish?.length)
    throw new InputError('published ports need a network address: attach the container to a libvirt network with "networks"', { file: read.file, field: 'publish' });
  if (!attachments.length) return [];
  const ns = config.linux?.namespaces?.find((n) => n.type === 'network');
  if (ns === undefined || ns.path !== undefined)
    throw new InputError('network attachments need the container\'s own network namespace (a "network" entry without a path in linux.namespaces of config.json)', { file, field: 'networks' });
  const allowed = new Set(opts.bridgeAllowList ?? []);
  attachments.forEach((a, i) => {
    if (a.bridge !== undefined && !allowed.has(a.bridge))
      throw new InputError(`host bridge '${a.bridge}' is not in the daemon's bridgeAllowList`, { file, field: `networks[${i}].bridge` });
  });
  let resolved: ResolvedAttachment[];
  try {
    resolved = opts.addresses ? await opts.addresses.resolve(domainName, attachments, file) : attachments;
  } catch (e) {
    // the default network is the daemon's: say so, and which entry it failed
    if (fromDefault && e instanceof InputError) throw new InputError(`defaultNetwork '${opts.defaultNetwork}': ${e.reason}`, { file: configPath });
    throw e;
  }
  config.annotations = { ...config.annotations, [NETWORKS_ANNOTATION]: formatNetworksAnnotation(resolved) };
  return resolved;
}

/**
 * Every interface of the converted domain is one of the `count` the operator's attachments made
 * (the last ones): an interface a bundle laid on through the XML-only annotation is refused.
 */
export function checkInterfaces(d: Domain, count: number, configPath: string): void {
  const extra = d.devices.interfaces.length - count;
  if (extra > 0) {
    const itf = d.devices.interfaces[0]!;
    throw new InputError(
      `<interface type='${itf.type}'> in the XML-only annotation is refused: a container's interfaces come only from its settings file's "networks" (or the daemon's defaultNetwork)`,
      { file: configPath, field: 'annotations["org.ocivirt.domain-xml"]' },
    );
  }
}
