/**
 * Isolated libvirt networks for integration tests: no <forward>, so only this host and the test's
 * containers are on it, with a bridge and a /24 of the test's own; removed whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { virsh, writeBusyboxBundle } from './libvirt.js';

/** A /24 under 10.`second`/16 that no route of this host covers yet, as "10.`second`.N". */
export function freeSubnet(second: number): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  const wide = new RegExp(`(^|\\s)10\\.0\\.0\\.0/8|10\\.${second}\\.0\\.0/16`);
  const used = (n: number) => routes.includes(`10.${second}.${n}.`) || wide.test(routes);
  for (let i = 0; i < 250; i++) {
    const n = (process.pid + i) % 250;
    if (!used(n)) return `10.${second}.${n}`;
  }
  throw new Error(`no free 10.${second}.N.0/24 on this host`);
}

/**
 * Defines and starts the network: gateway `subnet`.1, a DHCP range .100-.199 (ocivirt's allocation
 * range) unless `range` says. With `stp` (libvirt's default), the kernel holds each new port ~4 s
 * in STP listening/learning before it forwards, whatever `delay` says (its minimum forward delay is 2 s).
 */
export async function startIsolatedNetwork(port: LibvirtPort, name: string, bridge: string, subnet: string, stp = true, range: [number, number] = [100, 199]): Promise<void> {
  await port.defineNetwork(
    `<network><name>${name}</name><bridge name='${bridge}' stp='${stp ? 'on' : 'off'}' delay='0'/>` +
      `<ip address='${subnet}.1' netmask='255.255.255.0'><dhcp><range start='${subnet}.${range[0]}' end='${subnet}.${range[1]}'/></dhcp></ip></network>`,
  );
  await port.startNetwork(name);
}

export function removeNetwork(name: string): void {
  for (const cmd of ['net-destroy', 'net-undefine']) {
    try {
      virsh(cmd, name);
    } catch {
      // not there (or not running)
    }
  }
}

/** A busybox bundle whose config asks for its own network namespace, with /www/index.html; `args` run as its init. */
export function webBundle(dir: string, entry: string, args: string[]): void {
  writeBusyboxBundle(dir, { args });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.linux.namespaces.push({ type: 'network' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  mkdirSync(join(dir, 'rootfs', 'www'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'www', 'index.html'), `hello from ${entry}\n`);
}

export function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
  });
}
