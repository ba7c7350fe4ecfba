/**
 * Published ports (network/ports.ts): the rules wanted from what running domains publish (sorted,
 * deterministic), conflicts (the later entry by name fails, naming its settings file and
 * publish[i]), the nft script (one transaction naming ocivirt's table only), the publishers read
 * from the live definitions of this instance's running domains, and the table rebuilt through an
 * injected runner (no nft called).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import { macFor } from '../../src/convert/identity.js';
import { nftScript, PortTable, publishersOf, tableName, wantedRules, type Publisher } from '../../src/network/ports.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';

const pub = (entry: string, ip: string | undefined, publish: Publisher['publish']): Publisher => ({ domain: `d-${entry}`, entry, file: `/spool/${entry}.ocivirt.json`, ip, publish });

test('rules are sorted by protocol, host address and port whatever the order of the domains', () => {
  const a = pub('b', '10.0.0.3', [{ hostPort: 9000, port: 90, protocol: 'tcp' }, { hostPort: 53, port: 53, protocol: 'udp' }]);
  const b = pub('a', '10.0.0.2', [{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.168.1.5', hostPort: 8080, port: 81, protocol: 'udp' }]);
  const one = wantedRules([a, b]);
  const two = wantedRules([b, a]);
  assert.equal(one, two);
  assert.equal(one.failures, []);
  assert.equal(
    one.rules.map((r) => `${r.protocol} ${r.hostIp ?? '*'}:${r.hostPort} -> ${r.ip}:${r.port}`),
    ['tcp *:8080 -> 10.0.0.2:80', 'tcp *:9000 -> 10.0.0.3:90', 'udp *:53 -> 10.0.0.3:53', 'udp 192.168.1.5:8080 -> 10.0.0.2:81'],
  );
});

test('a host port wanted twice: the entry first by name keeps it, the later one fails naming its file and publish[i]', () => {
  const first = pub('alpha', '10.0.0.2', [{ hostPort: 8080, port: 80, protocol: 'tcp' }]);
  const later = pub('beta', '10.0.0.3', [{ hostPort: 8081, port: 81, protocol: 'tcp' }, { hostIp: '192.168.1.5', hostPort: 8080, port: 80, protocol: 'tcp' }]);
  const udp = pub('gamma', '10.0.0.4', [{ hostPort: 8080, port: 80, protocol: 'udp' }]);
  for (const order of [[first, later, udp], [udp, later, first]]) {
    const { rules, failures } = wantedRules(order);
    assert.equal(rules.map((r) => `${r.entry}:${r.hostPort}/${r.protocol}`), ['alpha:8080/tcp', 'beta:8081/tcp', 'gamma:8080/udp']);
    assert.is(failures.length, 1);
    const e = failures[0]!.error;
    assert.ok(e instanceof InputError);
    assert.is(e.file, '/spool/beta.ocivirt.json');
    assert.is(e.field, 'publish[1]');
    assert.match(e.reason, /already published by entry 'alpha'/);
  }
});

test('no network address fails `publish`; a loopback host address fails its publish[i]', () => {
  const { rules, failures } = wantedRules([pub('a', undefined, [{ hostPort: 80, port: 80, protocol: 'tcp' }]), pub('b', '10.0.0.2', [{ hostIp: '127.0.0.1', hostPort: 81, port: 80, protocol: 'tcp' }])]);
  assert.equal(rules, []);
  assert.equal(failures.map((f) => [f.entry, f.error.field]), [['a', 'publish'], ['b', 'publish[0]']]);
  assert.match(failures[0]!.error.reason, /networks/);
});

test('the script: one transaction that names only ocivirt\'s table; without rules it only removes it', () => {
  const t = tableName('1b4e28ba-2fa1-11d2-883f-0016d3cca427');
  assert.is(t, 'ocivirt-1b4e28ba');
  const { rules } = wantedRules([pub('web', '10.0.0.2', [{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.168.1.5', hostPort: 53, port: 53, protocol: 'udp' }])]);
  const s = nftScript(t, rules);
  assert.is(
    s,
    [
      'add table ip ocivirt-1b4e28ba',
      'delete table ip ocivirt-1b4e28ba',
      'table ip ocivirt-1b4e28ba {',
      '\tchain prerouting {',
      '\t\ttype nat hook prerouting priority dstnat; policy accept;',
      '\t\tfib daddr type local tcp dport 8080 dnat to 10.0.0.2:80 comment "d-web"',
      '\t\tip daddr 192.168.1.5 udp dport 53 dnat to 10.0.0.2:53 comment "d-web"',
      '\t}',
      '\tchain output {',
      '\t\ttype nat hook output priority -100; policy accept;',
      '\t\tfib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat to 10.0.0.2:80 comment "d-web"',
      '\t\tip daddr 192.168.1.5 udp dport 53 dnat to 10.0.0.2:53 comment "d-web"',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
  // no flush ruleset, no other table
  const tables = [...s.matchAll(/table (\S+) (\S+)/g)].map((m) => `${m[1]} ${m[2]}`);
  assert.equal([...new Set(tables)], ['ip ocivirt-1b4e28ba']);
  assert.not.match(s, /flush|ruleset/);
  assert.is(nftScript(t, []), 'add table ip ocivirt-1b4e28ba\ndelete table ip ocivirt-1b4e28ba\n');
});

const ME = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const domainXml = (name: string, instance: string, publish: string | undefined, ip: string | undefined) =>
  `<domain type='lxc'><name>${name}</name><metadata><ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' schema='1' id='${name}' entry='${name}' instance='${instance}' desiredDigest='sha256:0'>` +
  (publish !== undefined ? `<ocivirt:annotation key='org.ocivirt.settings.publish'>${publish}</ocivirt:annotation>` : '') +
  `</ocivirt:container></metadata><memory>65536</memory><os><type>exe</type><init>/bin/sh</init></os><devices>` +
  (ip !== undefined ? `<interface type='network'><mac address='${macFor(name, 0)}'/><source network='lan'/><ip address='${ip}' prefix='24'/><route family='ipv4' address='0.0.0.0' prefix='0' gateway='10.0.0.1'/></interface>` : '') +
  `</devices></domain>`;

test('publishers: the running domains of this instance, with their address; the table is rebuilt through the runner, again only when it changes', async () => {
  const port = new FakeLibvirt();
  const P = JSON.stringify([{ hostPort: 8080, port: 80, protocol: 'tcp' }]);
  await port.define(domainXml('web', ME, P, '10.0.0.5'));
  await port.define(domainXml('stopped', ME, JSON.stringify([{ hostPort: 9090, port: 80, protocol: 'tcp' }]), '10.0.0.6'));
  await port.define(domainXml('theirs', '00000000-0000-4000-8000-000000000000', JSON.stringify([{ hostPort: 7070, port: 80, protocol: 'tcp' }]), '10.0.0.7'));
  await port.define(domainXml('plain', ME, undefined, '10.0.0.8'));
  for (const n of ['web', 'theirs', 'plain']) await port.start(n);
  const found = await publishersOf(port, ME, '/spool');
  assert.equal(found, [{ domain: 'web', entry: 'web', file: '/spool/web.ocivirt.json', ip: '10.0.0.5', publish: [{ hostPort: 8080, port: 80, protocol: 'tcp' }] }]);

  const scripts: string[] = [];
  const table = new PortTable(port, { instance: ME, spoolDir: '/spool', nft: async (s) => void scripts.push(s) });
  const r1 = await table.rebuild();
  assert.is(r1.applied, true);
  assert.is(r1.rules.length, 1);
  assert.is((await table.rebuild()).applied, false);
  await port.destroy('web');
  const r3 = await table.rebuild();
  assert.equal([r3.applied, r3.rules.length], [true, 0]);
  assert.is(scripts.length, 2);
  assert.match(scripts[0]!, /dnat to 10\.0\.0\.5:80/);
  assert.is(scripts[1], 'add table ip ocivirt-1b4e28ba\ndelete table ip ocivirt-1b4e28ba\n');
});

test('a runner that fails: the error names the table and is tried again at the next rebuild', async () => {
  const port = new FakeLibvirt();
  let calls = 0;
  const table = new PortTable(port, { instance: ME, spoolDir: '/spool', nft: async () => {
    calls++;
    throw new Error('nft -f - failed (exit 1): boom');
  } });
  try {
    await table.rebuild();
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /ocivirt-1b4e28ba was not written: .*boom/);
  }
  await table.rebuild().catch(() => undefined);
  assert.is(calls, 2);
});

test.run();
