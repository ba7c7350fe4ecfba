/**
 * Names on the real libvirtd: the test makes its own isolated libvirt network (no <forward>, a
 * bridge, a subnet and a DNS domain of its own) and removes it afterwards whatever happens. Two
 * busybox containers A (httpd) and B join it through their settings: inside each, /etc/hosts,
 * /etc/hostname and /etc/resolv.conf are the generated ones (the image's untouched), B finds A by
 * name through libvirt's dnsmasq and fetches its page by name; undefining A removes its DNS entry.
 * A rootfs without /etc gets the generated directory there; a rootfs whose /etc/hosts leads into
 * /.oldroot is refused before define, and no file appears on the host.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { dnsHosts } from '../../src/network/dns.js';
import { etcDirOf } from '../../src/network/etc-files.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { captureLog } from '../helpers/log.js';
import { freeSubnet, removeNetwork, webBundle } from '../helpers/network.js';
import { TEST_URI, cleanupDomains, enterNamespace, isDefined, makeTempDir, removeTempDir, virsh, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `ocivirt-test-hnames-${process.pid}-`;
const NETWORK = `ocivirt-test-hnames-${process.pid}`;
const BRIDGE = `ocvth${process.pid % 1_000_000}`; // at most 11 chars
const DNS_DOMAIN = 'names.test';
const PWNED = `/tmp/ocivirt-test-hnames-${process.pid}-pwned`;
let tmp = '';
let spool = '';
let state = '';
let port: LibvirtPort | undefined;
let subnet = '';

const dom = (entry: string) => `${PREFIX}${entry}`;
/** busybox nslookup of `name`'s A record at the network's dnsmasq, its output whatever it exits with. */
const lookup = (name: string) => ['/bin/busybox', 'sh', '-c', `/bin/busybox nslookup -type=a ${name} ${subnet}.1 2>&1; true`];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function options(): SyncOptions {
  return { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, startPolicy: 'always', stopTimeoutMs: 500, retryDelayMs: 50, addressLockDir: join(tmp, 'lock') };
}

/**
 * `argv` inside the domain until its output matches (dnsmasq reloads its hosts after each update).
 * A lookup runs through sh with `; true`: busybox nslookup exits 1 when any query fails, and the
 * isolated network's dnsmasq (no-resolv) refuses the AAAA query it makes beside the A one.
 */
async function until(domain: string, argv: string[], want: RegExp, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      last = enterNamespace(domain, argv);
      if (want.test(last)) return last;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) return last;
    await sleep(200);
  }
}

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork(NETWORK);
  rmSync(PWNED, { force: true });
  tmp = makeTempDir('hnames');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  subnet = freeSubnet(214);
  port = await connectLibvirt(TEST_URI);
  await port.defineNetwork(
    `<network><name>${NETWORK}</name><bridge name='${BRIDGE}' stp='on' delay='0'/><domain name='${DNS_DOMAIN}' localOnly='yes'/>` +
      `<ip address='${subnet}.1' netmask='255.255.255.0'><dhcp><range start='${subnet}.100' end='${subnet}.199'/></dhcp></ip></network>`,
  );
  await port.startNetwork(NETWORK);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork(NETWORK);
    removeTempDir(tmp);
    rmSync(PWNED, { force: true });
  }
});

test('B reaches A by name; the generated files are the ones inside; undefining A removes its entry', async () => {
  webBundle(join(spool, 'a'), 'a', ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  webBundle(join(spool, 'b'), 'b', ['/bin/sleep', '300']);
  writeFileSync(join(spool, 'b', 'rootfs', 'etc', 'hosts'), 'the image\'s own\n');
  for (const e of ['a', 'b']) writeFileSync(join(spool, `${e}.ocivirt.json`), JSON.stringify({ networks: [NETWORK] }));
  const r = await syncOnce(port!, options());
  assert.equal(r.failed.map((f) => f.error), []);
  await waitForInit(dom('a'), ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  await waitForInit(dom('b'), ['/bin/sleep', '300']);
  const ipOf = (d: string) => parseDomainXml(virsh('dumpxml', '--inactive', d)).devices.interfaces[0]!.ips[0]!.address!;
  const a = ipOf(dom('a'));
  const b = ipOf(dom('b'));

  // the network's entries: domain name and entry name, on each container's address
  const hosts = dnsHosts(virsh('net-dumpxml', NETWORK)).map((h) => `${h.ip} ${h.names.join(' ')}`).sort();
  assert.equal(hosts, [`${a} ${dom('a')} a`, `${b} ${dom('b')} b`].sort());

  // inside B: the generated files, over the image's own (which is untouched)
  const etc = etcDirOf(state, dom('b'));
  for (const f of ['hosts', 'hostname', 'resolv.conf']) assert.is(enterNamespace(dom('b'), ['/bin/cat', `/etc/${f}`]), readFileSync(join(etc, f), 'utf8'), f);
  assert.match(readFileSync(join(etc, 'hosts'), 'utf8'), new RegExp(`^${b.replace(/\./g, '\\.')}\t${dom('b')} b$`, 'm'));
  assert.match(readFileSync(join(etc, 'resolv.conf'), 'utf8'), new RegExp(`search ${DNS_DOMAIN}\nnameserver ${subnet}\\.1\n`));
  assert.is(readFileSync(join(etc, 'hostname'), 'utf8'), `${dom('b')}\n`);
  assert.is(enterNamespace(dom('b'), ['/bin/hostname']).trim(), dom('b'), 'the kernel hostname libvirt set');
  assert.is(readFileSync(join(spool, 'b', 'rootfs', 'etc', 'hosts'), 'utf8'), 'the image\'s own\n');
  assert.match(enterNamespace(dom('b'), ['/bin/sh', '-c', 'echo x > /etc/hosts 2>&1 || echo refused']), /refused|Read-only/);

  // B finds A by its names, and fetches its page by name
  for (const name of [dom('a'), 'a', `a.${DNS_DOMAIN}`]) {
    const out = await until(dom('b'), lookup(name), new RegExp(`Address: ${a.replace(/\./g, '\\.')}`));
    assert.match(out, `Address: ${a}`, `${name}: ${out}`);
  }
  const page = await until(dom('b'), ['/bin/busybox', 'wget', '-qO-', 'http://a:8080/index.html'], /hello from a/);
  assert.is(page, 'hello from a\n');

  // A's entry leaves the spool: undefined, its name gone from the network
  rmSync(join(spool, 'a'), { recursive: true });
  rmSync(join(spool, 'a.ocivirt.json'));
  await syncOnce(port!, options());
  assert.is(isDefined(dom('a')), false);
  assert.equal(dnsHosts(virsh('net-dumpxml', NETWORK)).map((h) => h.ip), [b]);
  assert.equal(dnsHosts(virsh('net-dumpxml', '--inactive', NETWORK)).map((h) => h.ip), [b], 'the definition too');
  const gone = await until(dom('b'), lookup(dom('a')), /NXDOMAIN|can't find/);
  assert.match(gone, /NXDOMAIN|can't find/);
});

test('hostile rootfs: /etc/hosts into /.oldroot is refused before define, nothing made on the host; no /etc: the generated directory', async () => {
  webBundle(join(spool, 'evil'), 'evil', ['/bin/sleep', '300']);
  rmSync(join(spool, 'evil', 'rootfs', 'etc'), { recursive: true, force: true });
  mkdirSync(join(spool, 'evil', 'rootfs', 'etc'));
  symlinkSync(`../../..${join('/.oldroot', PWNED)}`, join(spool, 'evil', 'rootfs', 'etc', 'hosts'));
  webBundle(join(spool, 'bare'), 'bare', ['/bin/sleep', '300']);
  rmSync(join(spool, 'bare', 'rootfs', 'etc'), { recursive: true, force: true });
  for (const e of ['evil', 'bare']) writeFileSync(join(spool, `${e}.ocivirt.json`), JSON.stringify({ networks: [NETWORK] }));
  const r = await syncOnce(port!, options());
  const failed = r.failed.find((f) => f.item.entry === 'evil');
  assert.ok(failed, JSON.stringify(r.failed));
  assert.match(failed!.error!, /\/etc\/hosts leads to \/\.oldroot\/tmp\/.*refused/);
  assert.is(isDefined(dom('evil')), false);
  assert.is(existsSync(PWNED), false);
  assert.equal(r.failed.filter((f) => f.item.entry === 'bare'), []);
  await waitForInit(dom('bare'), ['/bin/sleep', '300']);
  assert.is(enterNamespace(dom('bare'), ['/bin/cat', '/etc/hostname']), `${dom('bare')}\n`);
});

test.run();
