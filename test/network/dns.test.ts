/**
 * DNS names of containers on networks (network/dns.ts) on the in-memory libvirt, whose
 * `dns-host` updates follow libvirt 9's rules (an add sharing an address or a name is refused; a
 * delete must match one entry): entries follow the address records through whole passes (added,
 * kept, removed when the domain is undefined or leaves the network), hostile entry names are
 * refused, entries this instance did not make are never touched, a second instance on the same
 * network gets the names nobody holds, and a sync after a crash converges.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AddressBook } from '../../src/network/addresses.js';
import { DnsNames, dnsHosts, hostXml, namesOf } from '../../src/network/dns.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { writeNetworkedBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { tmp } from '../image/fixtures.js';

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-dns-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

const bundle = (dir: string) => writeNetworkedBundle(dir);

async function instance(port: FakeLibvirt, name: string, prefix = '') {
  const spool = join(root, name, 'spool');
  const state = join(root, name, 'state');
  mkdirSync(spool, { recursive: true });
  const captured = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, prefix, log: captured.log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10, addressLockDir: join(root, 'lock') };
  const container = (entry: string, networks: unknown[] = ['lan']) => {
    bundle(join(spool, entry));
    writeFileSync(join(spool, `${entry}.ocivirt.json`), JSON.stringify({ networks }));
  };
  const remove = (entry: string) => {
    rmSync(join(spool, entry), { recursive: true });
    rmSync(join(spool, `${entry}.ocivirt.json`));
  };
  return { spool, state, opts, captured, container, remove };
}

/** The network's entries as `ip names…`, in the network's order. */
const hostsOf = async (port: FakeLibvirt, network = 'lan') => dnsHosts(await port.networkXml(network)).map((h) => `${h.ip} ${h.names.join(' ')}`);
/** The address a domain has on a network (allocation order between entries is not fixed). */
const ipOf = (port: FakeLibvirt, domain: string, network = 'lan') => parseDomainXml(port.domains.get(domain)!.xml!).devices.interfaces.find((i) => i.source?.network === network)!.ips[0]!.address!;
const sorted = (list: string[]) => [...list].sort();

async function network(port: FakeLibvirt, name = 'lan', third = 77, extra = ''): Promise<void> {
  await port.defineNetwork(`<network><name>${name}</name>${extra}<ip address='10.${third}.0.1' prefix='24'/></network>`);
}

test('names: the domain name and the entry stem, DNS labels only', () => {
  assert.equal(namesOf('p-web', 'web.tar'), { names: ['p-web', 'web'], refused: [] });
  assert.equal(namesOf('web', 'web'), { names: ['web'], refused: [] });
  assert.equal(namesOf('p-web', 'Web.tar').names, ['p-web', 'web']);
  const bad = namesOf('p-a-b', 'a_b');
  assert.equal(bad.names, ['p-a-b']);
  assert.match(bad.refused[0]!.reason, /entry name is not a DNS label/);
  assert.equal(namesOf('web-', 'web-').names, []);
  assert.throws(() => hostXml('10.0.0.1', ["x'/><host ip='1.2.3.4"]), /not a DNS host entry/);
});

test('passes: entries added for each container, stable, removed on undefine and when it leaves the network', async () => {
  const port = new FakeLibvirt();
  await network(port);
  await network(port, 'dmz', 88);
  const a = await instance(port, 'a', 'p-');
  a.container('web');
  a.container('db', ['lan', 'dmz']);
  assert.equal((await syncOnce(port, a.opts)).failed, []);
  const lan = () => sorted([`${ipOf(port, 'p-db')} p-db db`, `${ipOf(port, 'p-web')} p-web web`]);
  assert.equal(sorted(await hostsOf(port)), lan());
  assert.equal(await hostsOf(port, 'dmz'), [`${ipOf(port, 'p-db', 'dmz')} p-db db`]);
  assert.equal(a.captured.events.filter((e) => e.event === 'dns.updated').length, 1);
  const updates = port.networks.get('lan')!.updates.length;
  await syncOnce(port, a.opts);
  assert.is(port.networks.get('lan')!.updates.length, updates, 'a second pass changes nothing');

  // db leaves dmz: its entry there goes, the one on lan stays
  writeFileSync(join(a.spool, 'db.ocivirt.json'), JSON.stringify({ networks: ['lan'] }));
  await syncOnce(port, a.opts);
  assert.equal(await hostsOf(port, 'dmz'), []);
  assert.equal(sorted(await hostsOf(port)), lan());

  // web's entry is removed: undefined, its address given back, its DNS entry gone
  a.remove('web');
  await syncOnce(port, a.opts);
  assert.is(port.domains.has('p-web'), false);
  assert.equal(await hostsOf(port), [`${ipOf(port, 'p-db')} p-db db`]);
  assert.equal(readdirSync(join(a.state, 'dns', 'lan')), [ipOf(port, 'p-db')]);
});

test('hostile and foreign: a name that is not a label is refused (once); entries not ours are never touched', async () => {
  const port = new FakeLibvirt();
  await network(port, 'lan', 77, `<dns><host ip='10.77.0.250'><hostname>web</hostname></host><host ip='10.77.0.251'><hostname>gw</hostname></host></dns>`);
  const a = await instance(port, 'a', 'p-');
  a.container('web'); // stem taken by a hand-made entry
  a.container('x_y'); // stem not a label (its domain name p-x-y is)
  await syncOnce(port, a.opts);
  assert.equal(sorted(await hostsOf(port)), sorted(['10.77.0.250 web', '10.77.0.251 gw', `${ipOf(port, 'p-web')} p-web`, `${ipOf(port, 'p-x-y')} p-x-y`]));
  const refused = a.captured.events.filter((e) => e.event === 'dns.refused').map((e) => `${e.domain} ${e.name}: ${e.err}`);
  assert.is(refused.length, 2);
  assert.match(refused.join('\n'), /p-web web: web is taken on network 'lan' by an entry this instance did not make \(10\.77\.0\.250\)/);
  assert.match(refused.join('\n'), /p-x-y x_y: the entry name is not a DNS label/);
  await syncOnce(port, a.opts);
  assert.is(a.captured.events.filter((e) => e.event === 'dns.refused').length, 2, 'said once');
  a.remove('web');
  a.remove('x_y');
  await syncOnce(port, a.opts);
  assert.equal(await hostsOf(port), ['10.77.0.250 web', '10.77.0.251 gw']);
});

test('two instances on one network: each its own entries, a shared name first come first served, neither removes the other\'s', async () => {
  const port = new FakeLibvirt();
  await network(port);
  const a = await instance(port, 'a', 'a-');
  const b = await instance(port, 'b', 'b-');
  a.container('web');
  b.container('web');
  b.container('api');
  await syncOnce(port, a.opts);
  await syncOnce(port, b.opts);
  const both = () => sorted([`${ipOf(port, 'a-web')} a-web web`, `${ipOf(port, 'b-api')} b-api api`, `${ipOf(port, 'b-web')} b-web`]);
  assert.equal(sorted(await hostsOf(port)), both());
  assert.match(b.captured.events.filter((e) => e.event === 'dns.refused')[0]!.err as string, /web is taken on network 'lan' by an entry this instance did not make/);
  // a full pass of each changes nothing of the other's
  await syncOnce(port, a.opts);
  await syncOnce(port, b.opts);
  assert.equal(sorted(await hostsOf(port)), both());
  a.remove('web');
  await syncOnce(port, a.opts);
  await syncOnce(port, b.opts); // the name is free now: b's web takes it
  assert.equal(sorted(await hostsOf(port)), sorted([`${ipOf(port, 'b-api')} b-api api`, `${ipOf(port, 'b-web')} b-web web`]));
});

test('crash-safe: a record without its entry, an entry without its record, a domain undefined behind our back', async () => {
  const port = new FakeLibvirt();
  await network(port);
  const a = await instance(port, 'a');
  a.container('web');
  a.container('db');
  await syncOnce(port, a.opts);
  const web = ipOf(port, 'web');
  const db = ipOf(port, 'db');
  assert.equal(sorted(await hostsOf(port)), sorted([`${db} db`, `${web} web`]));
  const book = new AddressBook(port, a.state, { lockDir: join(root, 'lock') });
  const dns = new DnsNames(port, book, a.state);
  // a domain's entry name is read from its definition once, not at every sync
  const reads = () => port.calls.filter((c) => c.method === 'inactiveXml').length;
  const before = reads();
  await dns.sync();
  await new DnsNames(port, book, a.state).sync();
  assert.is(reads(), before, 'no definition read again');
  // the add never happened (crash after the record): added again
  await port.updateNetwork('lan', { command: 'delete', section: 'dns-host', xml: `<host ip='${web}'/>` });
  assert.equal((await dns.sync()).added, [`lan ${web} web`]);
  // the domain was undefined by hand while no pass ran: its address record stays (not ours to drop here), its name goes
  await port.destroy('db');
  await port.undefine('db');
  assert.equal((await dns.sync()).removed, [`lan ${db} db`]);
  // an entry changed by hand on our address is no longer ours: left alone
  await port.updateNetwork('lan', { command: 'delete', section: 'dns-host', xml: `<host ip='${web}'/>` });
  await port.updateNetwork('lan', { command: 'add-last', section: 'dns-host', xml: `<host ip='${web}'><hostname>mine</hostname></host>` });
  const r = await dns.sync();
  assert.equal([r.added, r.removed], [[], []]);
  assert.match(r.refused.map((x) => x.reason).join(), /has a DNS entry on network 'lan' this instance did not make/);
  assert.equal(await hostsOf(port), [`${web} mine`]);
});

test.run();
