/**
 * Published ports (settings key `publish`): DNAT rules in an nftables table of this ocivirt
 * instance alone, `ip ocivirt-<first 8 hex digits of the instance id>`. One table per instance, so
 * two instances on one host never replace each other's rules; no other table is ever read,
 * listed or changed.
 *
 * The wanted rules are computed from the running domains of this instance (their live
 * definitions: the recorded `org.ocivirt.settings.publish` annotation and the address of their
 * first network attachment), and the whole table is replaced in one `nft -f -` transaction
 * (`add table` + `delete table` + the table anew), so a reader never sees half of it and rules of
 * domains gone or stopped disappear. With no rule wanted the table is removed. nftables rules do
 * not survive a reboot, and the daemon rebuilds the table at start and after its passes.
 *
 * Each published port gets two rules: `prerouting` (traffic arriving from elsewhere) and `output`
 * (the host itself, to one of its own addresses: `fib daddr type local`, or the host address
 * given). A host address in 127.0.0.0/8 is not forwarded: reaching a container from loopback
 * needs the route_localnet sysctl, which ocivirt does not change; use another of the host's
 * addresses (e.g. the network's bridge address). Forwarded traffic from other hosts passes
 * through libvirt's own firewall rules for the network (an isolated network drops it).
 *
 * A host port (protocol, host address, port) wanted twice is kept by the domain whose entry comes
 * first by name; the later entry's `publish[i]` fails (an InputError naming its settings file),
 * that entry alone. Ports published by another ocivirt instance are not seen here.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { InputError, errorMessage } from '../errors.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import { RECORDED_PREFIX, type PublishedPort } from '../settings/keys.js';
import { entryStem, SETTINGS_SUFFIX } from '../spool/names.js';
import { parseDomainXml } from '../xml/parse.js';

export const PUBLISH_ANNOTATION = `${RECORDED_PREFIX}publish`;

/** What a running domain publishes, and where its container is. */
export interface Publisher {
  domain: string;
  entry: string;
  /** The settings file its `publish` came from: errors name it. */
  file: string;
  /** The container's address (no prefix), or undefined when it has no network address. */
  ip: string | undefined;
  publish: PublishedPort[];
}

export interface PortRule {
  domain: string;
  entry: string;
  protocol: 'tcp' | 'udp';
  hostIp?: string;
  hostPort: number;
  ip: string;
  port: number;
}

export interface PortFailure {
  domain: string;
  entry: string;
  error: InputError;
}

/** Runs an nft script (`nft -f -`); rejects when nft fails. */
export type NftRunner = (script: string) => Promise<void>;

export function tableName(instance: string): string {
  const id = instance.replace(/[^0-9a-fA-F]/g, '').slice(0, 8).toLowerCase();
  return `ocivirt-${id || 'default'}`;
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The rules wanted, sorted (protocol, host address, host port), and the entries that fail:
 * a port without a network address, a loopback host address, a host port already taken.
 */
export function wantedRules(publishers: readonly Publisher[]): { rules: PortRule[]; failures: PortFailure[] } {
  const rules: PortRule[] = [];
  const failures: PortFailure[] = [];
  const sorted = [...publishers].sort((a, b) => byName(a.entry, b.entry) || byName(a.domain, b.domain));
  for (const p of sorted) {
    const fail = (field: string, reason: string) => failures.push({ domain: p.domain, entry: p.entry, error: new InputError(reason, { file: p.file, field }) });
    if (p.ip === undefined) {
      if (p.publish.length) fail('publish', 'needs a network address: attach the container to a libvirt network with "networks"');
      continue;
    }
    for (const [i, pp] of p.publish.entries()) {
      if (pp.hostIp?.startsWith('127.')) {
        fail(`publish[${i}]`, 'a loopback host address is not forwarded (it would need the route_localnet sysctl); publish on another address of the host');
        continue;
      }
      // a port on every address overlaps one on any single address
      const clash = rules.find((r) => r.protocol === pp.protocol && r.hostPort === pp.hostPort && (r.hostIp === undefined || pp.hostIp === undefined || r.hostIp === pp.hostIp));
      if (clash !== undefined) {
        const on = `${clash.hostIp ?? '*'}:${clash.hostPort}/${clash.protocol}`;
        fail(`publish[${i}]`, `host port ${on} is already published by entry '${clash.entry}' (domain '${clash.domain}')`);
        continue;
      }
      const rule: PortRule = { domain: p.domain, entry: p.entry, protocol: pp.protocol, ...(pp.hostIp !== undefined ? { hostIp: pp.hostIp } : {}), hostPort: pp.hostPort, ip: p.ip, port: pp.port };
      rules.push(rule);
    }
  }
  rules.sort((a, b) => byName(a.protocol, b.protocol) || byName(a.hostIp ?? '', b.hostIp ?? '') || a.hostPort - b.hostPort);
  return { rules, failures };
}

/** The one transaction that replaces the table (or removes it, with no rules). */
export function nftScript(table: string, rules: readonly PortRule[]): string {
  const lines = [`add table ip ${table}`, `delete table ip ${table}`];
  if (rules.length) {
    const match = (r: PortRule) => `${r.hostIp !== undefined ? `ip daddr ${r.hostIp} ` : ''}${r.protocol} dport ${r.hostPort}`;
    const to = (r: PortRule) => `dnat to ${r.ip}:${r.port}`;
    const note = (r: PortRule) => `comment ${JSON.stringify(r.domain)}`;
    lines.push(`table ip ${table} {`);
    lines.push('\tchain prerouting {', '\t\ttype nat hook prerouting priority dstnat; policy accept;');
    for (const r of rules) lines.push(`\t\t${r.hostIp === undefined ? 'fib daddr type local ' : ''}${match(r)} ${to(r)} ${note(r)}`);
    lines.push('\t}');
    lines.push('\tchain output {', '\t\ttype nat hook output priority -100; policy accept;');
    for (const r of rules) lines.push(`\t\t${r.hostIp === undefined ? 'fib daddr type local ip daddr != 127.0.0.0/8 ' : ''}${match(r)} ${to(r)} ${note(r)}`);
    lines.push('\t}');
    lines.push('}');
  }
  return lines.join('\n') + '\n';
}

/** `nft -f -` with the script on stdin. */
export const runNft: NftRunner = (script) =>
  new Promise((resolve, reject) => {
    const child = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft -f - failed (exit ${code}): ${err.trim()}`))));
    child.stdin.on('error', () => undefined);
    child.stdin.end(script);
  });

/** What the running domains of instance `instance` publish (read from their live definitions). */
export async function publishersOf(port: LibvirtPort, instance: string, spoolDir: string): Promise<Publisher[]> {
  const out: Publisher[] = [];
  for (const ref of await port.listDomains()) {
    let xml: string;
    try {
      if ((await port.state(ref.name)) !== 'running') continue;
      xml = await port.liveXml(ref.name);
    } catch (e) {
      if (e instanceof DomainNotFoundError) continue;
      throw e;
    }
    let d;
    try {
      d = parseDomainXml(xml);
    } catch {
      continue; // not ours to read
    }
    const m = d.metadata.ours;
    if (m?.instance !== instance || !m.entry) continue;
    const value = m.annotations.find((a) => a.key === PUBLISH_ANNOTATION)?.value;
    if (value === undefined) continue;
    const publish = parsePublished(value);
    if (!publish?.length) continue;
    // the running definition carries what libvirt adds (target, alias): the first network interface with an IPv4 address
    const ip = d.devices.interfaces.find((i) => i.type === 'network' && i.ips.some((a) => (a.family ?? 'ipv4') === 'ipv4' && a.address !== undefined))?.ips.find((a) => (a.family ?? 'ipv4') === 'ipv4')?.address;
    out.push({ domain: ref.name, entry: m.entry, file: join(spoolDir, entryStem(m.entry) + SETTINGS_SUFFIX), ip, publish });
  }
  return out;
}

/** The recorded annotation back as ports; undefined when it is not what the settings parser writes. */
export function parsePublished(value: string): PublishedPort[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  const ok = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
  const out: PublishedPort[] = [];
  for (const p of v) {
    if (typeof p !== 'object' || p === null) return undefined;
    const o = p as Record<string, unknown>;
    if (!ok(o.hostPort) || !ok(o.port) || (o.protocol !== 'tcp' && o.protocol !== 'udp')) return undefined;
    if (o.hostIp !== undefined && (typeof o.hostIp !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(o.hostIp))) return undefined;
    out.push({ ...(o.hostIp !== undefined ? { hostIp: o.hostIp as string } : {}), hostPort: o.hostPort, port: o.port, protocol: o.protocol });
  }
  return out;
}

export interface PortsOptions {
  instance: string;
  spoolDir: string;
  nft?: NftRunner;
}

/**
 * Rebuilds the table from the running domains. Returns the rules and failures, and whether the
 * table was written (`applied`: false when the script is the one last applied by this object).
 */
export class PortTable {
  readonly table: string;
  private last: string | undefined;

  constructor(
    private readonly port: LibvirtPort,
    private readonly opts: PortsOptions,
  ) {
    this.table = tableName(opts.instance);
  }

  async rebuild(): Promise<{ rules: PortRule[]; failures: PortFailure[]; applied: boolean }> {
    const { rules, failures } = wantedRules(await publishersOf(this.port, this.opts.instance, this.opts.spoolDir));
    const script = nftScript(this.table, rules);
    if (script === this.last) return { rules, failures, applied: false };
    try {
      await (this.opts.nft ?? runNft)(script);
    } catch (e) {
      // no nft on the host and nothing to publish: there is no table to remove either
      if (!rules.length && (e as NodeJS.ErrnoException).code === 'ENOENT') {
        this.last = script;
        return { rules, failures, applied: false };
      }
      this.last = undefined;
      throw new Error(`the ports table ${this.table} was not written: ${errorMessage(e)}`);
    }
    this.last = script;
    return { rules, failures, applied: true };
  }
}
