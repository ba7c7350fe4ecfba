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
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { captureLog } from '../helpers/log.js';
import { fetchText, freeSubnet, removeNetwork, startIsolatedNetwork, webBundle } from '../helpers/network.js';
import { TEST_URI, cleanupDomains, enterNamespace, makeTempDir, removeTempDir, virsh, waitForInit } from '../helpers/libvirt.js';

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

function options(): SyncOptions {
  return { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, startPolicy: 'always', stopTimeoutMs: 500, retryDelayMs: 50, addressLockDir: join(tmp, 'lock') };
}

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork(NETWORK);
  tmp = makeTempDir('network');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  subnet = freeSubnet(213);
  port = await connectLibvirt(TEST_URI);
  await startIsolatedNetwork(port, NETWORK, BRIDGE, subnet);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork(NETWORK);
    removeTempDir(tmp);
  }
});

test('two containers on a network of their own: a static and an allocated address, configured inside; the host reaches A', async () => {
  webBundle(join(spool, 'a'), 'a', ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  webBundle(join(spool, 'b'), 'b', ['/bin/sleep', '300']);
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
