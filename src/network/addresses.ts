/**
 * IPv4 addresses of containers on libvirt networks (settings key `networks`).
 *
 * An attachment without a static ip gets one from the network's range: its `<dhcp><range>` when
 * it has one, else its subnet without the network address, its own (the gateway) and the
 * broadcast address. Every address handed out (static ones too) is recorded under
 * `<state>/addresses/<network>/<ip>`, a file holding the domain name, made whole or not at all
 * (written to a temporary file, then link(2)ed to its name, which fails if the name exists), so
 * a domain keeps its address across redefines, restarts and daemon restarts, and a crash never
 * leaves half a record.
 *
 * Never twice: allocation runs under a host-wide lock (flock(2) on a file under /run/lock), and
 * an address is taken when any domain in libvirt uses it on that network (`<interface><ip>` of
 * its persistent or running definition) or when any ocivirt instance of this host has recorded
 * it (each instance lists its state directory in the lock directory's `books` file, so
 * allocations not yet defined in libvirt count too). A record is dropped when its domain is
 * undefined (reconcile/apply.ts).
 */
import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { createFileExclusively } from '../fsroot/atomic.js';
import type { NetworkAttachment } from '../settings/keys.js';
import type { LibvirtPort } from '../libvirt/port.js';
import { attr, childElements, parseXmlDocument } from '../xml/element.js';
import { parseDomainXml } from '../xml/parse.js';

/** An attachment as the converter takes it (the annotation org.ocivirt.networks). */
export interface ResolvedAttachment {
  network: string;
  /** `A.B.C.D/P`; absent only when no libvirt was asked (validate). */
  ip?: string;
  /** The network's own address: the default route. */
  gateway?: string;
  /** The network's `<domain name=…>` (the containers' search domain). */
  dnsDomain?: string;
  /** False when the network serves no DNS (`<dns enable='no'>`). */
  dns?: boolean;
}

export const DEFAULT_ADDRESS_LOCK_DIR = '/run/lock/ocivirt-addresses';

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

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

/**
 * The addresses of one ocivirt instance (its state directory), over the libvirt port. One call
 * of `resolve` at a time in this process; the host-wide lock keeps other processes out.
 */
export class AddressBook {
  private readonly dir: string;
  private readonly lockDir: string;
  private queue: Promise<unknown> = Promise.resolve();

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
   * file: a static ip that does not fit fails with an InputError naming it and `networks[i].ip`.
   */
  resolve(domain: string, attachments: readonly NetworkAttachment[], file: string): Promise<ResolvedAttachment[]> {
    const run = this.queue.then(() => this.locked(() => this.resolveLocked(domain, attachments, file)));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Drops every record of `domain` (it was undefined). */
  release(domain: string): Promise<void> {
    const run = this.queue.then(async () => {
      if ((await this.networksRecorded()).length) await this.locked(() => this.releaseLocked(domain), false);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Every address this instance has recorded: network, address (no prefix), domain. */
  async records(): Promise<{ network: string; ip: string; domain: string }[]> {
    const out: { network: string; ip: string; domain: string }[] = [];
    for (const network of await this.networksRecorded()) {
      const dir = join(this.dir, network);
      for (const ip of await listRecords(dir)) {
        const domain = (await readFile(join(dir, ip), 'utf8').catch(() => '')).trim();
        if (domain !== '') out.push({ network, ip, domain });
      }
    }
    return out;
  }

  /** Runs `fn` holding the host-wide lock, in turn with this book's own calls (network/dns.ts: two instances never interleave). */
  underLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => this.locked(fn, false));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async resolveLocked(domain: string, attachments: readonly NetworkAttachment[], file: string): Promise<ResolvedAttachment[]> {
    const out: ResolvedAttachment[] = [];
    const seen = new Set<string>();
    for (const [i, a] of attachments.entries()) {
      const where = (sub: string) => ({ file, field: `networks[${i}]${sub}` });
      if (seen.has(a.network)) throw new InputError(`attaches to network '${a.network}' a second time`, where(''));
      seen.add(a.network);
      if ((await this.port.lookupNetwork(a.network)) === undefined) throw new InputError(`no libvirt network '${a.network}'`, where('.network'));
      const xml = await this.port.networkXml(a.network);
      const range = networkRange(xml);
      const taken = await this.takenOn(a.network, domain);
      const own = await this.ownRecords(a.network, domain);
      let ip: string;
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
        ip = reuse ?? this.pick(range, taken);
        if (ip === '') throw new InputError(`network '${a.network}' has no free address left (${intToIp(range.first)} to ${intToIp(range.last)})`, where(''));
      }
      if (!this.opts.dryRun) {
        for (const r of own) if (r !== ip) await rm(join(this.dir, a.network, r), { force: true });
        if (!own.includes(ip)) await this.record(a.network, ip, domain);
      }
      out.push({ network: a.network, ip: `${ip}/${range!.prefix}`, gateway: range!.address, ...networkDns(xml) });
    }
    if (!this.opts.dryRun) {
      // attachments dropped from the settings give their addresses back
      for (const network of await this.networksRecorded())
        if (!seen.has(network)) for (const r of await this.ownRecords(network, domain)) await rm(join(this.dir, network, r), { force: true });
    }
    return out;
  }

  private pick(range: NetworkRange, taken: Map<string, string>): string {
    for (let n = range.first; n <= range.last; n++) {
      const ip = intToIp(n);
      if (ip !== range.address && !taken.has(ip)) return ip;
    }
    return '';
  }

  /** Address -> who holds it, on `network`, for everyone but `domain` of this instance. */
  private async takenOn(network: string, domain: string): Promise<Map<string, string>> {
    const taken = new Map<string, string>();
    for (const ref of await this.port.listDomains()) {
      if (ref.name === domain) continue;
      for (const get of [() => this.port.inactiveXml(ref.name), () => this.port.liveXml(ref.name)]) {
        let xml: string;
        try {
          xml = await get();
        } catch {
          continue; // undefined meanwhile
        }
        let d;
        try {
          d = parseDomainXml(xml);
        } catch {
          continue;
        }
        for (const itf of d.devices.interfaces)
          if (itf.type === 'network' && itf.source?.network === network)
            for (const ip of itf.ips) if (ip.address !== undefined) taken.set(ip.address, `used by domain '${ref.name}'`);
      }
    }
    for (const book of await this.books()) {
      const dir = join(book, network);
      for (const ip of await listRecords(dir)) {
        const holder = (await readFile(join(dir, ip), 'utf8').catch(() => '')).trim();
        if (book === this.dir && holder === domain) continue;
        if (!taken.has(ip)) taken.set(ip, `recorded for domain '${holder}'${book === this.dir ? '' : ` by the ocivirt instance of ${join(book, '..')}`}`);
      }
    }
    return taken;
  }

  /** The state directories' address books of this host, ours included. */
  private async books(): Promise<string[]> {
    const text = await readFile(join(this.lockDir, 'books'), 'utf8').catch(() => '');
    const list = new Set(text.split('\n').filter((l) => l.startsWith('/')));
    list.add(this.dir);
    return [...list];
  }

  private async ownRecords(network: string, domain: string): Promise<string[]> {
    const dir = join(this.dir, network);
    const out: string[] = [];
    for (const ip of await listRecords(dir)) if ((await readFile(join(dir, ip), 'utf8').catch(() => '')).trim() === domain) out.push(ip);
    return out;
  }

  private async networksRecorded(): Promise<string[]> {
    return (await readdir(this.dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));
  }

  /** A whole record or none, never over another's (EEXIST if it is there). */
  private async record(network: string, ip: string, domain: string): Promise<void> {
    const dir = join(this.dir, network);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await createFileExclusively(join(dir, ip), `${domain}\n`, 0o600);
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

  private async releaseLocked(domain: string): Promise<void> {
    for (const network of await this.networksRecorded()) for (const r of await this.ownRecords(network, domain)) await rm(join(this.dir, network, r), { force: true });
  }

  /**
   * Runs `fn` holding the host-wide lock. `register`: lists this book in the registry first (and
   * drops books whose state directory is gone).
   */
  private async locked<T>(fn: () => Promise<T>, register = true): Promise<T> {
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
