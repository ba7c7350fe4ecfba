/**
 * Containers on one libvirt network reach each other by name: each address this instance
 * recorded (network/addresses.ts) gets a `<dns><host ip=…><hostname>…</hostname></host>` entry on
 * its network, so libvirt's dnsmasq answers for it. The names: the domain name, and the spool
 * entry's stem (`web` of `web.tar`) when it differs; each must be a DNS label (letters, digits,
 * '-' inside; entry names are hostile input), others are refused and said (`dns.refused`).
 *
 * Level-triggered: `sync` makes every network's entries for this instance's addresses what the
 * records and the domains in libvirt say, through virNetworkUpdate (live and config), after each
 * pass that changed something and at every full pass (so at daemon start). What this instance
 * added is kept in `<state>/dns/<network>/<ip>` (the names, written before the add): only those
 * entries are ever changed or removed; an entry on an address or with a name that is not ours is
 * never touched (a name another entry holds is refused for ours). An entry goes when its domain is
 * undefined, or leaves the network (its address record is given back).
 *
 * Two instances never interleave: `sync` runs under the host-wide address lock, and each touches
 * only its own entries; a name the other holds already is refused, first come first served.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorMessage } from '../errors.js';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { DomainNotFoundError, NetworkNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import { entryStem } from '../spool/names.js';
import { attr, childElements, parseXmlDocument, textOf } from '../xml/element.js';
import { parseDomainXml } from '../xml/parse.js';
import type { EventLogger } from '../log.js';
import type { AddressBook } from './addresses.js';
import { isDnsLabel } from './etc-files.js';

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** One `<dns><host>` of a network. */
export interface DnsHost {
  ip: string;
  names: string[];
}

export interface DnsRefusal {
  domain: string;
  network: string;
  name: string;
  reason: string;
}

export interface DnsSyncResult {
  /** Entries added and removed, `network ip names…` each. */
  added: string[];
  removed: string[];
  refused: DnsRefusal[];
  /** Networks whose entries could not be made right (their error); tried again at the next sync. */
  failed: { network: string; err: string }[];
}

/** The `<dns><host>` entries of a network's XML. */
export function dnsHosts(networkXml: string): DnsHost[] {
  const dns = childElements(parseXmlDocument(networkXml)).find((c) => c.local === 'dns');
  if (dns === undefined) return [];
  return childElements(dns)
    .filter((c) => c.local === 'host')
    .map((h) => ({
      ip: attr(h, 'ip') ?? '',
      names: childElements(h)
        .filter((c) => c.local === 'hostname')
        .map((c) => textOf(c).trim()),
    }));
}

/** The `<host>` element for virNetworkUpdate (names are DNS labels, the address checked). */
export function hostXml(ip: string, names: readonly string[]): string {
  if (!IPV4.test(ip) || !names.every(isDnsLabel)) throw new Error(`not a DNS host entry: ${ip} ${names.join(' ')}`);
  return `<host ip='${ip}'>${names.map((n) => `<hostname>${n}</hostname>`).join('')}</host>`;
}

/** The names a domain of entry `entry` wants, and those refused (not DNS labels). */
export function namesOf(domain: string, entry: string | undefined): { names: string[]; refused: { name: string; reason: string }[] } {
  const names: string[] = [];
  const refused: { name: string; reason: string }[] = [];
  const label = (name: string, what: string) => {
    if (isDnsLabel(name)) names.push(name.toLowerCase());
    else refused.push({ name, reason: `the ${what} is not a DNS label (1 to 63 letters, digits and '-', not first or last)` });
  };
  label(domain, 'domain name');
  const stem = entry !== undefined ? entryStem(entry) : undefined;
  if (stem !== undefined && stem.toLowerCase() !== domain) label(stem, 'entry name');
  return { names: [...new Set(names)], refused };
}

const sameNames = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** The DNS entries of one ocivirt instance (its state directory) on the networks it has addresses on. */
export class DnsNames {
  private readonly dir: string;

  constructor(
    private readonly port: LibvirtPort,
    private readonly addresses: Pick<AddressBook, 'records' | 'underLock'>,
    stateDir: string,
  ) {
    this.dir = join(resolve(stateDir), 'dns');
  }

  async sync(): Promise<DnsSyncResult> {
    // nothing recorded and nothing of ours on any network: no lock, no libvirt call
    if (!(await this.addresses.records()).length && !(await this.ownNetworks()).length) return { added: [], removed: [], refused: [], failed: [] };
    return this.addresses.underLock(() => this.syncLocked());
  }

  private async syncLocked(): Promise<DnsSyncResult> {
    const result: DnsSyncResult = { added: [], removed: [], refused: [], failed: [] };
    const records = await this.addresses.records();
    const existing = new Map((await this.port.listDomains()).map((d) => [d.name, d.uuid]));
    const uuids = new Set(existing.values());
    for (const uuid of entryByUuid.keys()) if (!uuids.has(uuid)) entryByUuid.delete(uuid);
    const entries = new Map<string, string | undefined>();
    for (const domain of new Set(records.map((r) => r.domain))) {
      const uuid = existing.get(domain);
      if (uuid === undefined) continue;
      if (!entryByUuid.has(uuid)) entryByUuid.set(uuid, await this.entryOf(domain));
      entries.set(domain, entryByUuid.get(uuid));
    }
    const networks = new Set([...records.map((r) => r.network), ...(await this.ownNetworks())]);
    for (const network of [...networks].sort()) {
      const wanted = records.filter((r) => r.network === network && entries.has(r.domain));
      try {
        await this.syncNetwork(network, wanted, entries, result);
      } catch (e) {
        if (e instanceof NetworkNotFoundError) await rm(join(this.dir, network), { recursive: true, force: true }); // gone, its entries with it
        else result.failed.push({ network, err: errorMessage(e) });
      }
    }
    return result;
  }

  private async syncNetwork(network: string, wanted: { ip: string; domain: string }[], entries: Map<string, string | undefined>, result: DnsSyncResult): Promise<void> {
    const hosts = dnsHosts(await this.port.networkXml(network));
    const mine = await this.ownEntries(network);
    // names held by entries that are not ours are refused to ours; domain names go before entry names
    const taken = new Map<string, string>();
    for (const h of hosts) if (mine.get(h.ip) === undefined || !sameNames(mine.get(h.ip)!, h.names)) for (const n of h.names) taken.set(n.toLowerCase(), h.ip);
    const assigned = new Map<string, { domain: string; names: string[] }>();
    const sorted = [...wanted].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
    const candidates = sorted.map((w) => ({ ...w, ...namesOf(w.domain, entries.get(w.domain)) }));
    for (const c of candidates) {
      for (const r of c.refused) result.refused.push({ domain: c.domain, network, ...r });
      assigned.set(c.ip, { domain: c.domain, names: [] });
    }
    for (const round of [0, 1]) {
      for (const c of candidates) {
        const name = c.names[round];
        if (name === undefined) continue;
        const holder = taken.get(name);
        if (holder !== undefined && holder !== c.ip) {
          const whose = mine.has(holder) ? 'another container of this instance' : 'an entry this instance did not make';
          result.refused.push({ domain: c.domain, network, name, reason: `${name} is taken on network '${network}' by ${whose} (${holder})` });
          continue;
        }
        taken.set(name, c.ip);
        assigned.get(c.ip)!.names.push(name);
      }
    }
    // ours that are gone, changed or no longer wanted are removed first
    for (const [ip, names] of mine) {
      const actual = hosts.find((h) => h.ip === ip);
      const want = assigned.get(ip);
      if (actual !== undefined && !sameNames(actual.names, names)) {
        await this.forget(network, ip); // changed by someone else: no longer ours to touch
        mine.delete(ip);
        continue;
      }
      if (actual !== undefined && want !== undefined && sameNames(want.names, names)) continue;
      if (actual !== undefined) {
        await this.port.updateNetwork(network, { command: 'delete', section: 'dns-host', xml: hostXml(ip, names) });
        hosts.splice(hosts.indexOf(actual), 1);
        result.removed.push(`${network} ${ip} ${names.join(' ')}`);
      }
      await this.forget(network, ip);
      mine.delete(ip);
    }
    for (const [ip, want] of assigned) {
      if (!want.names.length || mine.has(ip)) continue;
      if (hosts.some((h) => h.ip === ip)) {
        result.refused.push({ domain: want.domain, network, name: want.names.join(' '), reason: `address ${ip} has a DNS entry on network '${network}' this instance did not make` });
        continue;
      }
      await this.remember(network, ip, want.names); // before the add: a crash between leaves a record the next sync checks
      try {
        await this.port.updateNetwork(network, { command: 'add-last', section: 'dns-host', xml: hostXml(ip, want.names) });
      } catch (e) {
        await this.forget(network, ip);
        throw e;
      }
      result.added.push(`${network} ${ip} ${want.names.join(' ')}`);
    }
  }

  /** The spool entry of one of our domains (its metadata), or undefined. */
  private async entryOf(domain: string): Promise<string | undefined> {
    try {
      return parseDomainXml(await this.port.inactiveXml(domain)).metadata.ours?.entry;
    } catch (e) {
      if (e instanceof DomainNotFoundError) return undefined;
      throw e;
    }
  }

  private async ownNetworks(): Promise<string[]> {
    return (await readdir(this.dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));
  }

  /** Address -> names, of the entries this instance added on `network`. */
  private async ownEntries(network: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const dir = join(this.dir, network);
    for (const ip of (await readdir(dir).catch(() => [] as string[])).filter((n) => IPV4.test(n))) {
      const text = await readFile(join(dir, ip), 'utf8').catch(() => '');
      const names = text.split('\n').filter((n) => isDnsLabel(n));
      if (names.length) out.set(ip, names);
      else await rm(join(dir, ip), { force: true }); // torn or foreign: nothing we can prove is ours
    }
    return out;
  }

  private async remember(network: string, ip: string, names: readonly string[]): Promise<void> {
    await mkdir(join(this.dir, network), { recursive: true, mode: 0o700 });
    await writeFileAtomically(join(this.dir, network, ip), names.map((n) => `${n}\n`).join(''), 0o600);
  }

  private async forget(network: string, ip: string): Promise<void> {
    await rm(join(this.dir, network, ip), { force: true });
  }
}

/**
 * The spool entry of each addressed domain, by uuid: a domain keeps its entry for life (a redefine
 * keeps the uuid, a new domain gets a new one), so its definition is read once, not at every sync.
 */
const entryByUuid = new Map<string, string | undefined>();

/** Refusals already said, per state directory: each is logged once, until it changes. */
const said = new Map<string, Set<string>>();

/**
 * One sync, logged: `dns.updated` (what changed), `dns.refused` (a name not given, once),
 * `dns.failed` (a network, or the whole sync). Never throws: the next pass tries again.
 */
export async function syncDnsNames(port: LibvirtPort, addresses: Pick<AddressBook, 'records' | 'underLock'>, stateDir: string, log: EventLogger): Promise<DnsSyncResult | undefined> {
  const t0 = Date.now();
  let r: DnsSyncResult;
  try {
    r = await new DnsNames(port, addresses, stateDir).sync();
  } catch (e) {
    log.error('dns.failed', { err: errorMessage(e) }, `DNS names not updated: ${errorMessage(e)}`);
    return undefined;
  }
  if (r.added.length || r.removed.length) log.info('dns.updated', { added: r.added, removed: r.removed, durationMs: Date.now() - t0 });
  const before = said.get(stateDir) ?? new Set<string>();
  const now = new Set<string>();
  for (const x of r.refused) {
    const key = `${x.domain}\0${x.network}\0${x.name}\0${x.reason}`;
    now.add(key);
    if (!before.has(key)) log.warn('dns.refused', { domain: x.domain, network: x.network, name: x.name, err: x.reason }, `${x.domain}: no DNS name ${JSON.stringify(x.name)} on network '${x.network}': ${x.reason}`);
  }
  said.set(stateDir, now);
  for (const f of r.failed) log.error('dns.failed', { network: f.network, err: f.err }, `DNS names on network '${f.network}' not updated: ${f.err}`);
  return r;
}
