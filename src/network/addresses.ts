/**
 * IPv4 addresses of containers on libvirt networks and host bridges (settings key `networks`).
 *
 * An attachment to a libvirt network without a static ip gets one from the network's range: its
 * `<dhcp><range>` when it has one, else its subnet without the network address, its own (the
 * gateway) and the broadcast address. On a host bridge nothing is allocated (ocivirt does not
 * know the bridge's subnet): a static ip is taken as given, else the container's own DHCP client
 * gets one. Every address handed out (static ones too, bridges' included) is recorded under
 * `<state>/addresses/<network>/<ip>` (`bridge@<name>/<ip>` for a bridge), a file holding the
 * domain name, made whole or not at all (written to a temporary file, then link(2)ed to its name,
 * which fails if the name exists), so a domain keeps its address across redefines, restarts and
 * daemon restarts, and a crash never leaves half a record.
 *
 * Never twice: allocation runs under a host-wide lock (flock(2) on a file under /run/lock), and
 * an address is taken when any domain in libvirt uses it on that network (`<interface><ip>` of
 * its persistent or running definition) or when any ocivirt instance of this host has recorded
 * it (each instance lists its state directory in the lock directory's `books` file, so
 * allocations not yet defined in libvirt count too). A record is dropped when its domain is
 * undefined (reconcile/apply.ts).
 *
 * Cost: a book lives for one reconcile pass. It reads libvirt's domains once, at its first
 * request; requests waiting meanwhile are served in one batch under one lock, for which the
 * records of every book are read once. The records are what keeps two instances apart (each
 * batch rereads them under the lock); libvirt's domains are only a guard against hand-made ones.
 */
import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { createFileExclusively } from '../fsroot/atomic.js';
import type { LibvirtPort } from '../libvirt/port.js';
import { attr, childElements, parseXmlDocument } from '../xml/element.js';
import { parseDomainXml } from '../xml/parse.js';
import { IPV4, segmentOf, type Attachment } from './attachment.js';

/** An attachment as the converter takes it (the annotation org.ocivirt.networks): on a network, `ip` and `gateway` are filled in (not by validate, which asks no libvirt). */
export type ResolvedAttachment = Attachment & {
  /** The network's `<domain name=…>` (the containers' search domain). */
  dnsDomain?: string;
  /** False when the network serves no DNS (`<dns enable='no'>`). */
  dns?: boolean;
};

export const DEFAULT_ADDRESS_LOCK_DIR = '/run/lock/ocivirt-addresses';


export function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function prefixOfNetmask(mask: string): number | undefined {
  if (!IPV4.test(mask)) return undefined;
  const m = ipToInt(mask);
  for (let p = 0; p <= 32; p++) if (maskOf(p) === m) return p;
  return undefined;
}

/** A network's IPv4 side, as its XML says. */
export interface NetworkRange {
  /** The network's own address (the gateway). */
  address: string;
  prefix: number;
  /** Where addresses are handed out from (inclusive). */
  first: number;
  last: number;
}

/** The first IPv4 `<ip>` of a network's XML, or undefined when it has none. */
export function networkRange(xml: string): NetworkRange | undefined {
  const root = parseXmlDocument(xml);
  for (const ip of childElements(root).filter((c) => c.local === 'ip')) {
    const family = attr(ip, 'family');
    const address = attr(ip, 'address');
    if ((family !== undefined && family !== 'ipv4') || address === undefined || !IPV4.test(address)) continue;
    const p = attr(ip, 'prefix');
    const nm = attr(ip, 'netmask');
    const prefix = p !== undefined && /^\d+$/.test(p) && Number(p) <= 32 ? Number(p) : nm !== undefined ? prefixOfNetmask(nm) : 24;
    if (prefix === undefined || prefix > 30) continue;
    const mask = maskOf(prefix);
    const net = (ipToInt(address) & mask) >>> 0;
    const broadcast = (net | (~mask >>> 0)) >>> 0;
    let first = net + 1;
    let last = broadcast - 1;
    const range = childElements(ip).find((c) => c.local === 'dhcp')?.children.find((c) => typeof c !== 'string' && c.local === 'range');
    if (range !== undefined && typeof range !== 'string') {
      const s = attr(range, 'start');
      const e = attr(range, 'end');
      if (s !== undefined && e !== undefined && IPV4.test(s) && IPV4.test(e)) {
        first = Math.max(first, ipToInt(s));
        last = Math.min(last, ipToInt(e));
      }
    }
    return { address, prefix, first, last };
  }
  return undefined;
}

/** A network's DNS side: its `<domain name>`, and whether its dnsmasq answers (`<dns enable='no'>`). */
export function networkDns(xml: string): { dnsDomain?: string; dns?: false } {
  const children = childElements(parseXmlDocument(xml));
  const domain = children.find((c) => c.local === 'domain');
  const dns = children.find((c) => c.local === 'dns');
  const name = domain !== undefined ? attr(domain, 'name') : undefined;
  return { ...(name !== undefined ? { dnsDomain: name } : {}), ...(dns !== undefined && attr(dns, 'enable') === 'no' ? { dns: false as const } : {}) };
}

/** Is `ip` (an address, no prefix) a host address of the range's subnet? */
function inSubnet(r: NetworkRange, ip: string): boolean {
  const mask = maskOf(r.prefix);
  const net = (ipToInt(r.address) & mask) >>> 0;
  const n = ipToInt(ip);
  return ((n & mask) >>> 0) === net && n !== net && n !== (net | (~mask >>> 0)) >>> 0;
}

export interface AddressBookOptions {
  /** Host-wide lock and registry of state directories (default /run/lock/ocivirt-addresses). */
  lockDir?: string;
  /** Only look: reuse or pick an address, record nothing (`plan`). */
  dryRun?: boolean;
}

/** The directory of a segment's records: the network's name, or `bridge@NAME` ('@' is in no network name). */
function recordDir(a: Pick<Attachment, 'network' | 'bridge'>): string {
  return a.network ?? `bridge@${a.bridge}`;
}

/** What libvirt's domains use: per record directory, address -> domains; MAC -> domains. */
interface DomainUse {
  addresses: Map<string, Map<string, Set<string>>>;
  macs: Map<string, Set<string>>;
}

/** A record: whose book (state directory) and which domain. */
interface RecordEntry {
  book: string;
  holder: string;
}

/** Every book's records, per record directory and address, read under the lock. */
type Records = Map<string, Map<string, RecordEntry[]>>;

type Request =
  | { kind: 'resolve'; domain: string; attachments: readonly Attachment[]; file: string; done: (r: ResolvedAttachment[]) => void; fail: (e: unknown) => void }
  | { kind: 'release'; domain: string; done: () => void; fail: (e: unknown) => void }
  | { kind: 'run'; fn: () => Promise<unknown>; done: (r: unknown) => void; fail: (e: unknown) => void };

/**
 * The addresses of one ocivirt instance (its state directory), over the libvirt port, for one
 * reconcile pass (a new book sees libvirt anew). Requests are served in order; the host-wide
 * lock keeps other processes out.
 */
export class AddressBook {
  private readonly dir: string;
  private readonly lockDir: string;
  private pending: Request[] = [];
  private draining = false;
  private domainUse?: DomainUse;
  private readonly networks = new Map<string, Promise<NetworkRange | undefined | null>>();
  /** Each network's DNS side, read with its range. */
  private readonly dnsOf = new Map<string, { dnsDomain?: string; dns?: false }>();
  /** MACs given in this pass to domains not yet defined. */
  private readonly macsGiven = new Map<string, string>();
  /** Batches served under one lock (for the benchmark and tests). */
  batches = 0;

  constructor(
    private readonly port: LibvirtPort,
    stateDir: string,
    private readonly opts: AddressBookOptions = {},
  ) {
    this.dir = join(resolve(stateDir), 'addresses');
    this.lockDir = opts.lockDir ?? DEFAULT_ADDRESS_LOCK_DIR;
  }

  /**
   * The attachments of domain `domain` with their addresses and gateways. `file` is the settings
   * file: a static ip or MAC that does not fit fails with an InputError naming it and `networks[i].ip`.
   */
  resolve(domain: string, attachments: readonly Attachment[], file: string): Promise<ResolvedAttachment[]> {
    return new Promise((done, fail) => this.enqueue({ kind: 'resolve', domain, attachments, file, done, fail }));
  }

  /** Drops every record of `domain` (it was undefined). */
  release(domain: string): Promise<void> {
    return new Promise((done, fail) => this.enqueue({ kind: 'release', domain, done, fail }));
  }

  /** Every address this instance has recorded on a libvirt network: network, address (no prefix), domain. */
  async records(): Promise<{ network: string; ip: string; domain: string }[]> {
    const out: { network: string; ip: string; domain: string }[] = [];
    for (const network of (await this.segmentsRecorded()).filter((d) => !d.startsWith('bridge@'))) {
      const dir = join(this.dir, network);
      for (const ip of await listRecords(dir)) {
        const domain = (await readFile(join(dir, ip), 'utf8').catch(() => '')).trim();
        if (domain !== '') out.push({ network, ip, domain });
      }
    }
    return out;
  }

  /** Runs `fn` holding the host-wide lock, in turn with this book's own requests (network/dns.ts: two instances never interleave). */
  underLock<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise((done, fail) => this.enqueue({ kind: 'run', fn, done: done as (r: unknown) => void, fail }));
  }

  private enqueue(r: Request): void {
    this.pending.push(r);
    if (!this.draining) void this.drain();
  }

  /** Serves what waits, one batch a lock; a batch takes in what arrives while it runs. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.pending.length) {
        // releasing in a book that never recorded anything needs no lock
        if (this.pending.every((r) => r.kind === 'release') && !(await this.segmentsRecorded()).length) {
          for (const r of this.pending.splice(0)) (r.done as () => void)();
          continue;
        }
        try {
          await this.locked(async () => {
            this.batches++;
            const records = await this.readRecords();
            while (this.pending.length) {
              const r = this.pending.shift()!;
              try {
                if (r.kind === 'resolve') r.done(await this.resolveLocked(r.domain, r.attachments, r.file, records));
                else if (r.kind === 'run') r.done(await r.fn());
                else {
                  await this.releaseLocked(r.domain, records);
                  r.done();
                }
              } catch (e) {
                r.fail(e);
              }
            }
          }, this.pending.some((r) => r.kind === 'resolve'));
        } catch (e) {
          for (const r of this.pending.splice(0)) r.fail(e); // the lock could not be had
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async resolveLocked(domain: string, attachments: readonly Attachment[], file: string, records: Records): Promise<ResolvedAttachment[]> {
    const use = await this.domains();
    const out: ResolvedAttachment[] = [];
    const seen = new Set<string>();
    for (const [i, a] of attachments.entries()) {
      const where = (sub: string) => ({ file, field: `networks[${i}]${sub}` });
      const dir = recordDir(a);
      if (seen.has(dir)) throw new InputError(`attaches to ${segmentOf(a)} a second time`, where(''));
      seen.add(dir);
      if (a.mac !== undefined) {
        const holder = [...(use.macs.get(a.mac) ?? [])].find((d) => d !== domain) ?? (this.macsGiven.get(a.mac) !== domain ? this.macsGiven.get(a.mac) : undefined);
        if (holder !== undefined) throw new InputError(`MAC ${a.mac} is taken (used by domain '${holder}')`, where('.mac'));
      }
      const taken = takenOn(dir, domain, use, records, this.dir);
      const own = [...(records.get(dir) ?? new Map<string, RecordEntry[]>())].flatMap(([ip, list]) => (list.some((r) => r.book === this.dir && r.holder === domain) ? [ip] : []));
      let ip: string | undefined;
      let resolved: ResolvedAttachment;
      if (a.bridge !== undefined) {
        // a host bridge: nothing to allocate from; a static address is still never given twice
        if (a.ip !== undefined) {
          const [addr] = a.ip.split('/') as [string];
          const holder = taken.get(addr);
          if (holder !== undefined) throw new InputError(`${addr} on ${segmentOf(a)} is taken (${holder})`, where('.ip'));
          ip = addr;
        }
        resolved = { ...a };
      } else {
        const range = await this.rangeOf(a.network!, where);
        if (a.ip !== undefined) {
          const [addr, p] = a.ip.split('/') as [string, string];
          if (!IPV4.test(addr) || !/^\d+$/.test(p ?? '')) throw new InputError(`must be "A.B.C.D/P", got ${JSON.stringify(a.ip)}`, where('.ip'));
          if (range === undefined) throw new InputError(`network '${a.network}' has no IPv4 address of its own`, where('.ip'));
          if (!inSubnet(range, addr) || Number(p) !== range.prefix)
            throw new InputError(`${a.ip} is not a host address of network '${a.network}' (${range.address}/${range.prefix})`, where('.ip'));
          if (addr === range.address) throw new InputError(`${addr} is the address of network '${a.network}' itself (the gateway)`, where('.ip'));
          const holder = taken.get(addr);
          if (holder !== undefined) throw new InputError(`${addr} on network '${a.network}' is taken (${holder})`, where('.ip'));
          ip = addr;
        } else {
          if (range === undefined) throw new InputError(`network '${a.network}' has no IPv4 range to allocate from: give an ip`, where(''));
          const reuse = own.find((r) => !taken.has(r) && inSubnet(range, r) && r !== range.address);
          ip = reuse ?? pick(range, taken);
          if (ip === '') throw new InputError(`network '${a.network}' has no free address left (${intToIp(range.first)} to ${intToIp(range.last)})`, where(''));
        }
        resolved = { ...a, ip: `${ip}/${range!.prefix}`, gateway: a.gateway ?? range!.address, ...this.dnsOf.get(a.network!) };
      }
      for (const r of own) if (r !== ip) await this.drop(dir, r, domain, records);
      if (ip !== undefined && !own.includes(ip)) await this.record(dir, ip, domain, records);
      if (a.mac !== undefined) this.macsGiven.set(a.mac, domain);
      out.push(resolved);
    }
    // attachments dropped from the settings give their addresses back
    for (const dir of await this.segmentsRecorded()) if (!seen.has(dir)) await this.releaseIn(dir, domain, records);
    return out;
  }

  /** The network's range (undefined: it has no IPv4 side); an InputError when there is no such network. */
  private async rangeOf(network: string, where: (sub: string) => { file: string; field: string }): Promise<NetworkRange | undefined> {
    let r = this.networks.get(network);
    if (r === undefined) {
      r = (async () => {
        if ((await this.port.lookupNetwork(network)) === undefined) return null;
        const xml = await this.port.networkXml(network);
        this.dnsOf.set(network, networkDns(xml));
        return networkRange(xml);
      })();
      this.networks.set(network, r);
    }
    const range = await r;
    if (range === null) throw new InputError(`no libvirt network '${network}'`, where('.network'));
    return range;
  }

  /** What libvirt's domains use, read once for this book. */
  private async domains(): Promise<DomainUse> {
    if (this.domainUse !== undefined) return this.domainUse;
    const use: DomainUse = { addresses: new Map(), macs: new Map() };
    const add = <K>(m: Map<K, Set<string>>, k: K, name: string) => (m.get(k) ?? m.set(k, new Set()).get(k)!).add(name);
    for (const ref of await this.port.listDomains()) {
      for (const get of [() => this.port.inactiveXml(ref.name), () => this.port.liveXml(ref.name)]) {
        let d;
        try {
          d = parseDomainXml(await get());
        } catch {
          continue; // undefined meanwhile, not running, or not readable
        }
        for (const itf of d.devices.interfaces) {
          if (itf.mac !== undefined) add(use.macs, itf.mac.toLowerCase(), ref.name);
          const dir = itf.type === 'network' && itf.source?.network !== undefined ? itf.source.network : itf.type === 'bridge' && itf.source?.bridge !== undefined ? `bridge@${itf.source.bridge}` : undefined;
          if (dir === undefined) continue;
          for (const ip of itf.ips) if (ip.address !== undefined) add(use.addresses.get(dir) ?? use.addresses.set(dir, new Map()).get(dir)!, ip.address, ref.name);
        }
      }
    }
    this.domainUse = use;
    return use;
  }

  /** Every book's records (ours included), read once a batch. */
  private async readRecords(): Promise<Records> {
    const records: Records = new Map();
    for (const book of await this.books()) {
      for (const dir of await listDirs(book)) {
        const m = records.get(dir) ?? records.set(dir, new Map()).get(dir)!;
        const ips = await listRecords(join(book, dir));
        const holders = await Promise.all(ips.map((ip) => readFile(join(book, dir, ip), 'utf8').then((t) => t.trim(), () => undefined)));
        ips.forEach((ip, k) => {
          if (holders[k] !== undefined) (m.get(ip) ?? m.set(ip, []).get(ip)!).push({ book, holder: holders[k]! });
        });
      }
    }
    return records;
  }

  /** The state directories' address books of this host, ours included. */
  private async books(): Promise<string[]> {
    const text = await readFile(join(this.lockDir, 'books'), 'utf8').catch(() => '');
    const list = new Set(text.split('\n').filter((l) => l.startsWith('/')));
    list.add(this.dir);
    return [...list];
  }

  private segmentsRecorded(): Promise<string[]> {
    return listDirs(this.dir);
  }

  /** A whole record or none, never over another's (EEXIST if it is there). */
  private async record(dir: string, ip: string, domain: string, records: Records): Promise<void> {
    if (!this.opts.dryRun) {
      await mkdir(join(this.dir, dir), { recursive: true, mode: 0o700 });
      await createFileExclusively(join(this.dir, dir, ip), `${domain}\n`, 0o600);
    }
    const m = records.get(dir) ?? records.set(dir, new Map()).get(dir)!;
    (m.get(ip) ?? m.set(ip, []).get(ip)!).push({ book: this.dir, holder: domain });
  }

  private async drop(dir: string, ip: string, domain: string, records: Records): Promise<void> {
    if (!this.opts.dryRun) await rm(join(this.dir, dir, ip), { force: true });
    const list = records.get(dir)?.get(ip);
    if (list !== undefined) records.get(dir)!.set(ip, list.filter((r) => !(r.book === this.dir && r.holder === domain)));
  }

  private async releaseIn(dir: string, domain: string, records: Records): Promise<void> {
    for (const [ip, list] of records.get(dir) ?? []) if (list.some((r) => r.book === this.dir && r.holder === domain)) await this.drop(dir, ip, domain, records);
  }

  private async releaseLocked(domain: string, records: Records): Promise<void> {
    for (const dir of await this.segmentsRecorded()) await this.releaseIn(dir, domain, records);
  }

  /** This book in the host's registry; books whose state directory is gone are dropped. */
  private async register(): Promise<void> {
    const file = join(this.lockDir, 'books');
    const lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter((l) => l.startsWith('/'));
    const kept = [...new Set(lines.filter((l) => l === this.dir || existsSync(join(l, '..'))))];
    if (!kept.includes(this.dir)) kept.push(this.dir);
    if (kept.length === lines.length && kept.every((l, i) => l === lines[i])) return;
    const tmp = `${file}.${process.pid}.new`;
    await writeFile(tmp, kept.map((l) => `${l}\n`).join(''), { mode: 0o600 });
    await rename(tmp, file);
  }

  /**
   * Runs `fn` holding the host-wide lock. `register`: lists this book in the registry first (and
   * drops books whose state directory is gone).
   */
  private async locked<T>(fn: () => Promise<T>, register: boolean): Promise<T> {
    await mkdir(this.lockDir, { recursive: true, mode: 0o755 });
    const fh = await open(join(this.lockDir, 'lock'), constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      await flockWait(fh.fd, join(this.lockDir, 'lock'));
      if (register && !this.opts.dryRun) await this.register();
      return await fn();
    } finally {
      await fh.close(); // releases the lock
    }
  }
}

/** Address -> who holds it, in record directory `dir`, for everyone but `domain` of our book `own`. */
function takenOn(dir: string, domain: string, use: DomainUse, records: Records, own: string): Map<string, string> {
  const taken = new Map<string, string>();
  for (const [ip, names] of use.addresses.get(dir) ?? []) {
    const other = [...names].find((n) => n !== domain);
    if (other !== undefined) taken.set(ip, `used by domain '${other}'`);
  }
  for (const [ip, list] of records.get(dir) ?? []) {
    const r = list.find((x) => !(x.book === own && x.holder === domain));
    if (r !== undefined && !taken.has(ip)) taken.set(ip, `recorded for domain '${r.holder}'${r.book === own ? '' : ` by the ocivirt instance of ${join(r.book, '..')}`}`);
  }
  return taken;
}

function pick(range: NetworkRange, taken: Map<string, string>): string {
  for (let n = range.first; n <= range.last; n++) {
    const ip = intToIp(n);
    if (ip !== range.address && !taken.has(ip)) return ip;
  }
  return '';
}

async function listDirs(book: string): Promise<string[]> {
  return (await readdir(book).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));
}
async function listRecords(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && IPV4.test(n));
}

/** flock(LOCK_EX) on our descriptor `fd` through flock(1) (Node has none), waiting up to a minute. */
function flockWait(fd: number, file: string): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn('flock', ['--exclusive', '--timeout', '60', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => fail(new Error(`${file}: cannot run flock: ${e.message}`)));
    child.on('close', (c) => (c === 0 ? done() : fail(new Error(`${file}: taking the address lock failed (${c}): ${err.trim()}`))));
  });
}
