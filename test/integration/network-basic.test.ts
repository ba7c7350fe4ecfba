/**
 * Settings `networks` on the real libvirtd: the test makes its own isolated libvirt network (no
 * <forward>: only this host and the test's containers on it; a bridge and a subnet of its own),
 * then two busybox containers attach to it through their settings, one with a static ip and one
 * with an allocated address. Inside each container the address is configured (libvirt-lxc sets it
 * up, no DHCP client), the host reaches container A's httpd by its address, and a second pass
 * changes nothing (libvirt's rewrite of the definition compares equal). Domains are named
 * ocivirt-test-net-<pid>-…, the network ocivirt-test-net-<pid>; both are removed afterwards,
 * whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { captureLog } from '../helpers/log.js';
import { TEST_URI, cleanupDomains, enterNamespace, makeTempDir, removeTempDir, virsh, waitForInit, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `ocivirt-test-net-${process.pid}-`;
const NETWORK = `ocivirt-test-net-${process.pid}`;
const BRIDGE = `ocvtn${process.pid % 1_000_000}`; // at most 11 chars
let tmp = '';
let spool = '';
let state = '';
let port: LibvirtPort | undefined;
let subnet = ''; // "10.213.N"

const dom = (entry: string) => `${PREFIX}${entry}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A /24 under 10.213/16 that no route of this host covers yet. */
function freeSubnet(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  const used = (n: number) => routes.includes(`10.213.${n}.`) || /(^|\s)10\.0\.0\.0\/8|10\.213\.0\.0\/16/.test(routes);
  for (let i = 0; i < 250; i++) {
    const n = (process.pid + i) % 250;
    if (!used(n)) return `10.213.${n}`;
  }
  throw new Error('no free 10.213.N.0/24 on this host');
}

function removeNetwork(): void {
  for (const cmd of ['net-destroy', 'net-undefine']) {
    try {
      virsh(cmd, NETWORK);
    } catch {
      // not there (or not running)
    }
  }
}

function options(): SyncOptions {
  return { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, startPolicy: 'always', stopTimeoutMs: 500, retryDelayMs: 50, addressLockDir: join(tmp, 'lock') };
}

/** A busybox bundle whose config asks for its own network namespace; `args` run as its init. */
function bundle(entry: string, args: string[]): void {
  const dir = join(spool, entry);
  writeBusyboxBundle(dir, { args });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.linux.namespaces.push({ type: 'network' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  mkdirSync(join(dir, 'rootfs', 'www'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'www', 'index.html'), `hello from ${entry}\n`);
}

function fetchText(url: string): Promise<string> {
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

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork();
  tmp = makeTempDir('network');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  subnet = freeSubnet();
  port = await connectLibvirt(TEST_URI);
  await port.defineNetwork(
    `<network><name>${NETWORK}</name><bridge name='${BRIDGE}' stp='on' delay='0'/>` +
      `<ip address='${subnet}.1' netmask='255.255.255.0'><dhcp><range start='${subnet}.100' end='${subnet}.199'/></dhcp></ip></network>`,
  );
  await port.startNetwork(NETWORK);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork();
    removeTempDir(tmp);
  }
});

test('two containers on a network of their own: a static and an allocated address, configured inside; the host reaches A', async () => {
  bundle('a', ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  bundle('b', ['/bin/sleep', '300']);
  writeFileSync(join(spool, 'a.ocivirt.json'), JSON.stringify({ networks: [{ network: NETWORK, ip: `${subnet}.10/24` }] }));
  writeFileSync(join(spool, 'b.ocivirt.json'), JSON.stringify({ networks: [NETWORK] }));

  const r = await syncOnce(port!, options());
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(r.plan.map((i) => `${i.action} ${i.domain}`), [`create ${dom('a')}`, `create ${dom('b')}`]);
  await waitForInit(dom('a'), ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  await waitForInit(dom('b'), ['/bin/sleep', '300']);

  const b = parseDomainXml(virsh('dumpxml', '--inactive', dom('b'))).devices.interfaces;
  assert.is(b.length, 1);
  assert.is(b[0]!.source?.network, NETWORK);
  const bAddress = b[0]!.ips[0]!.address!;
  assert.is(bAddress, `${subnet}.100`, 'the first address of the DHCP range');
  assert.equal(readdirSync(join(state, 'addresses', NETWORK)).sort(), [`${subnet}.10`, `${subnet}.100`].sort());

  for (const [entry, address] of [['a', `${subnet}.10`], ['b', bAddress]] as const) {
    const addr = enterNamespace(dom(entry), ['/sbin/ip', '-4', 'addr']);
    assert.match(addr, `inet ${address}/24`, `${entry}: ${addr}`);
    const route = enterNamespace(dom(entry), ['/sbin/ip', '-4', 'route']);
    assert.match(route, `default via ${subnet}.1`, `${entry}: ${route}`);
  }

  let body = '';
  let last: unknown;
  for (let i = 0; i < 50 && body === ''; i++) {
    try {
      body = await fetchText(`http://${subnet}.10:8080/index.html`);
    } catch (e) {
      last = e;
      await sleep(200);
    }
  }
  assert.is(body, 'hello from a\n', String(last));

  // what libvirt made of the definition compares equal: nothing to do
  const again = await syncOnce(port!, options());
  assert.equal(again.plan.map((i) => i.action), ['nothing', 'nothing']);
  assert.ok(existsSync(join(state, 'addresses', NETWORK, `${subnet}.100`)));
});

test.run();
