/**
 * Settings `networks` through whole passes (in-memory libvirt): the domain gets its interfaces
 * with an allocated and a static address, a second pass changes nothing (no redefine loop), the
 * plan no longer says networks is not in force, a bad static ip fails that entry alone, and
 * removing the entry gives its address back.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { writeNetworkedBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { tmp } from '../image/fixtures.js';

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-networks-pass-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

const bundle = (dir: string, annotations?: Record<string, string>) => writeNetworkedBundle(dir, annotations !== undefined ? { annotations } : {});

async function setup() {
  const spool = join(root, 'spool');
  const state = join(root, 'state');
  mkdirSync(spool, { recursive: true });
  const captured = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, log: captured.log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10, addressLockDir: join(root, 'lock') };
  const port = new FakeLibvirt();
  await port.defineNetwork(`<network><name>lan</name><ip address='10.77.0.1' prefix='24'/></network>`);
  return { spool, state, opts, port };
}

const settings = (spool: string, name: string, value: unknown) => writeFileSync(join(spool, name), JSON.stringify(value));

test('settings networks: interfaces with addresses, in force, stable over passes, released on delete', async () => {
  const { spool, state, opts, port } = await setup();
  bundle(join(spool, 'a'));
  bundle(join(spool, 'b'));
  settings(spool, 'a.ocivirt.json', { networks: [{ network: 'lan', ip: '10.77.0.50/24' }] });
  settings(spool, 'b.ocivirt.json', { networks: ['lan'], pids: 64 });
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(r.plan.map((i) => `${i.action} ${i.domain}`), ['create a', 'create b']);
  assert.not.match(r.plan[0]!.reason, /not yet in force/);
  assert.match(r.plan[1]!.reason, /not yet in force: pids$/);
  const ifs = (name: string) => parseDomainXml(port.domains.get(name)!.xml!).devices.interfaces.map((i) => [i.source?.network, i.ips[0]?.address, i.routes[0]?.gateway]);
  assert.equal(ifs('a'), [['lan', '10.77.0.50', '10.77.0.1']]);
  assert.equal(ifs('b'), [['lan', '10.77.0.2', '10.77.0.1']]);
  assert.is(parseDomainXml(port.domains.get('a')!.xml!).features.privnet, false);
  assert.equal(readdirSync(join(state, 'addresses', 'lan')).sort(), ['10.77.0.2', '10.77.0.50']);

  const again = await syncOnce(port, opts);
  assert.equal(again.plan.map((i) => i.action), ['nothing', 'nothing']);

  // a static ip another domain holds fails that entry alone, naming the file and the key
  bundle(join(spool, 'c'));
  settings(spool, 'c.ocivirt.json', { networks: [{ network: 'lan', ip: '10.77.0.2/24' }] });
  const third = await syncOnce(port, opts);
  const failed = third.plan.filter((i) => i.action === 'fail');
  assert.is(failed.length, 1);
  assert.match(failed[0]!.reason, /c\.ocivirt\.json: networks\[0\]\.ip: 10\.77\.0\.2 on network 'lan' is taken/);
  rmSync(join(spool, 'c'), { recursive: true });
  rmSync(join(spool, 'c.ocivirt.json'));

  rmSync(join(spool, 'b'), { recursive: true });
  rmSync(join(spool, 'b.ocivirt.json'));
  const removed = await syncOnce(port, opts);
  assert.ok(removed.plan.some((i) => i.action === 'delete' && i.domain === 'b'));
  assert.not.ok(port.domains.has('b'));
  assert.not.ok(existsSync(join(state, 'addresses', 'lan', '10.77.0.2')));
  assert.ok(existsSync(join(state, 'addresses', 'lan', '10.77.0.50')));
});

const ifsOf = (port: FakeLibvirt, name: string) =>
  parseDomainXml(port.domains.get(name)!.xml!).devices.interfaces.map((i) => [i.type, i.source?.network ?? i.source?.bridge, i.ips[0]?.address, i.mac]);
const annotationsOf = (port: FakeLibvirt, name: string) => new Map(parseDomainXml(port.domains.get(name)!.xml!).metadata.ours!.annotations.map((a) => [a.key, a.value]));

test('a hostile bundle: its own networks, published ports, stop policy and XML-only interfaces are not its to say', async () => {
  const { spool, opts, port } = await setup();
  await port.defineNetwork(`<network><name>secret</name><ip address='10.99.0.1' prefix='24'/></network>`);
  settings(spool, 'victim.ocivirt.json', { networks: [{ network: 'lan', ip: '10.77.0.9/24' }], publish: ['8080:80'] });
  bundle(join(spool, 'victim'));
  // another network, the victim's address, a host bridge, its published port, a long stop
  bundle(join(spool, 'x1'), {
    'org.ocivirt.networks': JSON.stringify([{ network: 'secret' }, { network: 'lan', ip: '10.77.0.9/24' }, { bridge: 'br0' }]),
    'org.ocivirt.settings.publish': JSON.stringify([{ hostPort: 8080, port: 80, protocol: 'tcp' }]),
    'org.ocivirt.settings.stopTimeout': '3600',
    'ORG.OCIVIRT.SETTINGS.stopSignal': 'SIGKILL',
  });
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error), []);
  // nothing of it reached the domain: no interface, no recorded policy; the victim keeps its own
  assert.equal(ifsOf(port, 'x1'), []);
  assert.is(parseDomainXml(port.domains.get('x1')!.xml!).features.privnet, true);
  assert.equal([...annotationsOf(port, 'x1').keys()].filter((k) => k.toLowerCase().startsWith('org.ocivirt.settings.')), []);
  assert.equal(ifsOf(port, 'victim').map((i) => i[2]), ['10.77.0.9']);
  const warned = r.plan.find((i) => i.domain === 'x1')!;
  assert.ok(warned, 'x1 planned');
  // the same bundle with a settings file: the settings say it, still not the bundle
  settings(spool, 'x1.ocivirt.json', { networks: ['lan'] });
  await syncOnce(port, opts);
  assert.equal(ifsOf(port, 'x1').map((i) => [i[1], i[2]]), [['lan', '10.77.0.2']]);

  // interfaces through the XML-only annotation: refused, whatever they lead to
  const xmlOnly = (itf: string) =>
    Buffer.from(`<domain type='lxc'><name>fragment</name><devices>${itf}</devices></domain>`).toString('base64');
  for (const itf of [`<interface type='bridge'><source bridge='br0'/></interface>`, `<interface type='network'><source network='secret'/></interface>`, `<interface type='ethernet'/>`]) {
    rmSync(join(spool, 'x2'), { recursive: true, force: true });
    bundle(join(spool, 'x2'), { 'org.ocivirt.domain-xml': xmlOnly(itf) });
    const x = await syncOnce(port, opts);
    const f = x.plan.find((i) => i.domain === 'x2')!;
    assert.is(f.action, "fail", `${itf}: ${f.action} ${f.reason}`);
    assert.match(f.reason, /x2\/config\.json: annotations\["org\.ocivirt\.domain-xml"\]: .*interfaces come only from its settings/, `${itf}: ${f.reason}`);
  }
});

test('host bridges only from bridgeAllowList; MACs given are unicast and no other domain\'s', async () => {
  const { spool, opts, port } = await setup();
  bundle(join(spool, 'b1'));
  settings(spool, 'b1.ocivirt.json', { networks: [{ bridge: 'br0', ip: '192.168.5.10/24', gateway: '192.168.5.1', mtu: 1400 }] });
  let r = await syncOnce(port, opts);
  assert.match(r.plan.find((i) => i.domain === 'b1')!.reason, /b1\.ocivirt\.json: networks\[0\]\.bridge: host bridge 'br0' is not in the daemon's bridgeAllowList/);
  const allowed = { ...opts, bridgeAllowList: ['br0'] };
  r = await syncOnce(port, allowed);
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(ifsOf(port, 'b1').map((i) => [i[0], i[1], i[2]]), [['bridge', 'br0', '192.168.5.10']]);
  // the same static address on the same bridge: taken; a MAC another domain has: taken
  bundle(join(spool, 'b2'));
  settings(spool, 'b2.ocivirt.json', { networks: [{ bridge: 'br0', ip: '192.168.5.10/24' }] });
  bundle(join(spool, 'b3'));
  settings(spool, 'b3.ocivirt.json', { networks: [{ network: 'lan', mac: ifsOf(port, 'b1')[0]![3] }] });
  bundle(join(spool, 'b4'));
  settings(spool, 'b4.ocivirt.json', { networks: [{ network: 'lan', mac: '01:00:5E:00:00:01' }] });
  r = await syncOnce(port, allowed);
  const reason = (d: string) => r.plan.find((i) => i.domain === d)!.reason;
  assert.match(reason('b2'), /b2\.ocivirt\.json: networks\[0\]\.ip: 192\.168\.5\.10 on bridge 'br0' is taken \(used by domain 'b1'\)/);
  assert.match(reason('b3'), /b3\.ocivirt\.json: networks\[0\]\.mac: MAC .* is taken \(used by domain 'b1'\)/);
  assert.match(reason('b4'), /b4\.ocivirt\.json: networks\[0\]\.mac: .*unicast/);
});

test('defaultNetwork: every container without a networks setting is on it; [] opts out; the host network namespace is left alone', async () => {
  const { spool, opts, port } = await setup();
  bundle(join(spool, 'plain'));
  bundle(join(spool, 'out'));
  settings(spool, 'out.ocivirt.json', { networks: [] });
  bundle(join(spool, 'mine'));
  settings(spool, 'mine.ocivirt.json', { memory: '64M' });
  bundle(join(spool, 'host'));
  const cfg = JSON.parse(readFileSync(join(spool, 'host', 'config.json'), 'utf8'));
  cfg.linux.namespaces = cfg.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
  writeFileSync(join(spool, 'host', 'config.json'), JSON.stringify(cfg));
  const r = await syncOnce(port, { ...opts, defaultNetwork: 'lan' });
  assert.equal(r.failed.map((f) => f.error), []);
  // entries are planned concurrently: which one takes the first free address is not fixed
  const [plain, mine] = [ifsOf(port, 'plain'), ifsOf(port, 'mine')];
  assert.equal(plain.map((i) => i[1]), ['lan']);
  assert.equal(mine.map((i) => i[1]), ['lan']);
  assert.equal([plain[0]![2], mine[0]![2]].sort(), ['10.77.0.2', '10.77.0.3'], 'each an address of its own from the subnet');
  assert.equal(ifsOf(port, 'out'), []);
  assert.equal(ifsOf(port, 'host'), []);
  // a default network that is not there fails each entry it applies to, saying so
  const missing = await syncOnce(port, { ...opts, defaultNetwork: 'nope' });
  assert.match(missing.plan.find((i) => i.domain === 'plain')!.reason, /plain\/config\.json: defaultNetwork 'nope': no libvirt network 'nope'/);
  assert.is(missing.plan.find((i) => i.domain === 'out')!.action, 'nothing');
});

test.run();
