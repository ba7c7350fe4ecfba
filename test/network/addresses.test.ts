/**
 * Network addresses (network/addresses.ts) over the in-memory libvirt: a range from the network's
 * XML, distinct addresses for many containers, a domain's own address reused, a released one
 * handed out again, addresses used in libvirt or recorded by another instance never handed out,
 * records whole or absent, static addresses checked (naming the settings file and networks[i].ip).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AddressBook, networkRange, intToIp } from '../../src/network/addresses.js';
import { InputError } from '../../src/errors.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { tmp } from '../image/fixtures.js';

const FILE = '/spool/web.ocivirt.json';
const NET = `<network><name>lan</name><bridge name='virbr-t'/><ip address='10.77.0.1' netmask='255.255.255.0'><dhcp><range start='10.77.0.100' end='10.77.0.199'/></dhcp></ip></network>`;
const SMALL = `<network><name>small</name><ip address='10.78.0.1' prefix='29'/></network>`;

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-addresses-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

async function setup() {
  const port = new FakeLibvirt();
  await port.defineNetwork(NET);
  await port.defineNetwork(SMALL);
  const lockDir = join(root, 'lock');
  const book = (state = 'state', dryRun = false) => new AddressBook(port, join(root, state), { lockDir, dryRun });
  return { port, book, lockDir };
}

const domainXml = (name: string, network: string, ip: string) =>
  `<domain type='lxc'><name>${name}</name><os><type>exe</type><init>/bin/sh</init></os><devices><interface type='network'><source network='${network}'/><ip address='${ip}' prefix='24'/></interface></devices></domain>`;

function inputError(e: unknown, field: string, reason: RegExp): boolean {
  return e instanceof InputError && e.file === FILE && e.field === field && reason.test(e.reason);
}

test('the range: the DHCP range when there is one, else the subnet without network, gateway and broadcast', () => {
  const r = networkRange(NET)!;
  assert.equal([r.address, r.prefix, intToIp(r.first), intToIp(r.last)], ['10.77.0.1', 24, '10.77.0.100', '10.77.0.199']);
  const s = networkRange(SMALL)!;
  assert.equal([s.address, s.prefix, intToIp(s.first), intToIp(s.last)], ['10.78.0.1', 29, '10.78.0.1', '10.78.0.6']);
  assert.is(networkRange(`<network><name>x</name><ip family='ipv6' address='fd00::1' prefix='64'/></network>`), undefined);
});

test('200 containers get 200 distinct addresses in the range, with the gateway; the range runs out with a clear error', async () => {
  const { port, book } = await setup();
  await port.defineNetwork(NET.replace("start='10.77.0.100' end='10.77.0.199'", "start='10.77.0.2' end='10.77.0.254'"));
  const b = book();
  const all = await Promise.all(Array.from({ length: 200 }, (_, i) => b.resolve(`c${i}`, [{ network: 'lan' }], FILE)));
  const ips = all.map((r) => r[0]!.ip!);
  assert.is(new Set(ips).size, 200);
  assert.ok(ips.every((ip) => /^10\.77\.0\.(\d+)\/24$/.test(ip) && ip !== '10.77.0.1/24'));
  assert.ok(all.every((r) => r[0]!.gateway === '10.77.0.1'));
  assert.is(readdirSync(join(root, 'state', 'addresses', 'lan')).length, 200);
  // the small network: 10.78.0.2 .. .6 (five), the sixth fails
  const small = await Promise.all(Array.from({ length: 5 }, (_, i) => b.resolve(`s${i}`, [{ network: 'small' }], FILE)));
  assert.equal(small.map((r) => r[0]!.ip).sort(), ['10.78.0.2/29', '10.78.0.3/29', '10.78.0.4/29', '10.78.0.5/29', '10.78.0.6/29']);
  try {
    await b.resolve('s5', [{ network: 'small' }], FILE);
    assert.unreachable();
  } catch (e) {
    assert.ok(inputError(e, 'networks[0]', /no free address left/), String(e));
  }
});

test('a domain keeps its address (a new book: a daemon restart); a released one is handed out again', async () => {
  const { book } = await setup();
  const a = (await book().resolve('a', [{ network: 'lan' }], FILE))[0]!.ip;
  const b = (await book().resolve('b', [{ network: 'lan' }], FILE))[0]!.ip;
  assert.is(a, '10.77.0.100/24');
  assert.is(b, '10.77.0.101/24');
  assert.is((await book().resolve('a', [{ network: 'lan' }], FILE))[0]!.ip, a);
  await book().release('a');
  assert.not.ok(existsSync(join(root, 'state', 'addresses', 'lan', '10.77.0.100')));
  assert.is((await book().resolve('c', [{ network: 'lan' }], FILE))[0]!.ip, a);
  assert.is((await book().resolve('a', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.102/24');
  // an attachment dropped from the settings gives its address back
  await book().resolve('b', [], FILE);
  assert.not.ok(existsSync(join(root, 'state', 'addresses', 'lan', '10.77.0.101')));
});

test('addresses used by any domain in libvirt, or recorded by another instance, are taken', async () => {
  const { port, book, lockDir } = await setup();
  await port.define(domainXml('hand-made', 'lan', '10.77.0.100'));
  await book('other').resolve('theirs', [{ network: 'lan' }], FILE); // 10.77.0.101, not yet defined
  assert.match(readFileSync(join(lockDir, 'books'), 'utf8'), join(root, 'other', 'addresses'));
  assert.is((await book().resolve('mine', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.102/24');
  // a domain on another network with the same address does not count
  await port.define(domainXml('elsewhere', 'small', '10.77.0.103'));
  assert.is((await book().resolve('mine2', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.103/24');
  // its own record is given up when someone else's domain uses the address meanwhile
  await port.define(domainXml('squatter', 'lan', '10.77.0.102'));
  assert.is((await book().resolve('mine', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.104/24');
  assert.not.ok(existsSync(join(root, 'state', 'addresses', 'lan', '10.77.0.102')));
  // an instance whose state directory is gone leaves the registry
  rmSync(join(root, 'other'), { recursive: true });
  await book().resolve('mine3', [{ network: 'lan' }], FILE);
  assert.is(readFileSync(join(lockDir, 'books'), 'utf8'), `${join(root, 'state', 'addresses')}\n`);
});

test('releasing in a state directory that never recorded an address takes no lock, registers nothing', async () => {
  const { book, lockDir } = await setup();
  await book('fresh').release('x');
  assert.not.ok(existsSync(lockDir));
});

test('records are whole or absent: a leftover temporary file is no record; plan (dryRun) records nothing', async () => {
  const { book } = await setup();
  const dir = join(root, 'state', 'addresses', 'lan');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.10.77.0.100.999.new'), 'hal'); // a crash before the link
  assert.is((await book().resolve('a', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.100/24');
  assert.is(readFileSync(join(dir, '10.77.0.100'), 'utf8'), 'a\n');
  assert.equal(readdirSync(dir).filter((n) => !n.startsWith('.')), ['10.77.0.100']);
  assert.is((await book('state', true).resolve('b', [{ network: 'lan' }], FILE))[0]!.ip, '10.77.0.101/24');
  assert.equal(readdirSync(dir).filter((n) => !n.startsWith('.')), ['10.77.0.100']);
});

test('a static ip is checked: form, subnet, prefix, the gateway, taken; each names networks[i].ip', async () => {
  const { port, book } = await setup();
  await port.define(domainXml('hand-made', 'lan', '10.77.0.20'));
  const b = book();
  assert.equal(await b.resolve('s', [{ network: 'small' }, { network: 'lan', ip: '10.77.0.10/24' }], FILE), [
    { network: 'small', ip: '10.78.0.2/29', gateway: '10.78.0.1' },
    { network: 'lan', ip: '10.77.0.10/24', gateway: '10.77.0.1' },
  ]);
  const cases: [string, RegExp][] = [
    ['10.77.0.300/24', /must be "A.B.C.D\/P"/],
    ['10.99.0.5/24', /not a host address of network 'lan' \(10\.77\.0\.1\/24\)/],
    ['10.77.0.5/16', /not a host address/],
    ['10.77.0.255/24', /not a host address/],
    ['10.77.0.1/24', /itself \(the gateway\)/],
    ['10.77.0.20/24', /taken \(used by domain 'hand-made'\)/],
    ['10.77.0.10/24', /taken \(recorded for domain 's'\)/],
  ];
  for (const [ip, reason] of cases) {
    try {
      await b.resolve('t', [{ network: 'small' }, { network: 'lan', ip }], FILE);
      assert.unreachable(ip);
    } catch (e) {
      assert.ok(inputError(e, 'networks[1].ip', reason), `${ip}: ${String(e)}`);
    }
  }
  try {
    await b.resolve('t', [{ network: 'nope' }], FILE);
    assert.unreachable();
  } catch (e) {
    assert.ok(inputError(e, 'networks[0].network', /no libvirt network 'nope'/), String(e));
  }
  try {
    await b.resolve('t', [{ network: 'lan' }, { network: 'lan' }], FILE);
    assert.unreachable();
  } catch (e) {
    assert.ok(inputError(e, 'networks[1]', /a second time/), String(e));
  }
});

test.run();
