/**
 * The annotation org.ocivirt.networks <-> <interface type='network'>: the interface XML, no
 * privnet, to-native gives the annotation back (not the XML-only escape hatch), from-native of
 * that gives the same domain, and what libvirt adds on define (ip family, MAC case) compares equal.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import { macFor } from '../../src/convert/identity.js';
import { NETWORKS_ANNOTATION } from '../../src/convert/passes/networks.js';
import { XML_ONLY_ANNOTATION } from '../../src/convert/xml-only.js';
import { InputError } from '../../src/errors.js';
import { domainDifferences, sameDomain } from '../../src/xml/compare.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { runcSpec, testOptions } from './fixtures.js';

const VALUE = JSON.stringify([
  { network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1' },
  { network: 'back', ip: '10.88.0.9/16', gateway: '10.88.0.1' },
]);

function withNetworks(value = VALUE) {
  const c = runcSpec();
  c.annotations = { 'com.example.a': 'b', [NETWORKS_ANNOTATION]: value };
  return c;
}

test('each attachment becomes an interface on its network: derived MAC, address, default route; no privnet', () => {
  const r = fromNative(withNetworks(), testOptions({ name: 'web' }));
  const d = r.domain;
  assert.is(d.features.privnet, false);
  assert.not.match(r.xml, /<privnet/);
  assert.equal(d.devices.interfaces.map((i) => [i.type, i.mac, i.source, i.ips, i.routes]), [
    ['network', macFor('web', 0), { network: 'lan' }, [{ address: '10.77.0.5', family: 'ipv4', prefix: '24' }], [{ family: 'ipv4', address: '0.0.0.0', prefix: '0', gateway: '10.77.0.1' }]],
    ['network', macFor('web', 1), { network: 'back' }, [{ address: '10.88.0.9', family: 'ipv4', prefix: '16' }], [{ family: 'ipv4', address: '0.0.0.0', prefix: '0', gateway: '10.88.0.1' }]],
  ]);
  assert.match(r.xml, new RegExp(`<interface type='network'>\\s*<mac address='${macFor('web', 0)}'/>\\s*<source network='lan'/>\\s*<ip address='10.77.0.5' family='ipv4' prefix='24'/>\\s*<route family='ipv4' address='0.0.0.0' prefix='0' gateway='10.77.0.1'/>\\s*</interface>`));
  // the annotation is not metadata of its own: the interfaces say it
  assert.not.ok(d.metadata.ours!.annotations.some((a) => a.key === NETWORKS_ANNOTATION));
  assert.equal(r.warnings, fromNative(runcSpec(), testOptions({ name: 'web' })).warnings);
});

test('to-native gives the annotation back (no XML-only annotation), and from-native of it the same domain', () => {
  const first = fromNative(withNetworks(), testOptions({ name: 'web' }));
  const { config } = toNative(parseDomainXml(first.xml), { cgroupVersion: 1, hostArch: 'x86_64' });
  assert.is(config.annotations?.[NETWORKS_ANNOTATION], VALUE);
  assert.is(config.annotations?.[XML_ONLY_ANNOTATION], undefined);
  assert.equal(config.linux?.namespaces?.map((n) => n.type), ['pid', 'network', 'ipc', 'uts', 'mount']);
  const again = fromNative(config, testOptions({ name: 'web' }));
  assert.equal(domainDifferences(first.domain, again.domain), []);
  // a hand-written domain (no ocivirt metadata) with such an interface: the same
  const hand = `<domain type='lxc'><name>hand</name><os><type>exe</type><init>/bin/sh</init></os><devices><interface type='network'><mac address='${macFor('hand', 0).toUpperCase()}'/><source network='lan'/><ip address='10.77.0.7' prefix='24'/></interface></devices></domain>`;
  const back = toNative(parseDomainXml(hand), { cgroupVersion: 1, hostArch: 'x86_64' }).config;
  assert.is(back.annotations?.[NETWORKS_ANNOTATION], JSON.stringify([{ network: 'lan', ip: '10.77.0.7/24' }]));
  assert.is(back.annotations?.[XML_ONLY_ANNOTATION], undefined);
  // a MAC of its own travels in the annotation too
  const other = toNative(parseDomainXml(hand.replace(/<mac address='[^']*'\/>/, "<mac address='52:54:00:00:00:01'/>")), { cgroupVersion: 1, hostArch: 'x86_64' }).config;
  assert.is(other.annotations?.[NETWORKS_ANNOTATION], JSON.stringify([{ network: 'lan', ip: '10.77.0.7/24', mac: '52:54:00:00:00:01' }]));
  assert.is(other.annotations?.[XML_ONLY_ANNOTATION], undefined);
  // one the annotation cannot say (a multicast MAC, another setting) stays XML-only
  for (const odd of [hand.replace(/<mac address='[^']*'\/>/, "<mac address='01:00:5e:00:00:01'/>"), hand.replace('</interface>', "<script path='/x'/></interface>")]) {
    const c = toNative(parseDomainXml(odd), { cgroupVersion: 1, hostArch: 'x86_64' }).config;
    assert.is(c.annotations?.[NETWORKS_ANNOTATION], undefined, odd);
    assert.ok(c.annotations?.[XML_ONLY_ANNOTATION], odd);
  }
});

test('bridges, MACs and MTUs: into the interface XML and back through the annotation, the same domain again', () => {
  const value = JSON.stringify([
    { network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1', mtu: 1400 },
    { bridge: 'br0', ip: '192.168.1.50/24', gateway: '192.168.1.1', mac: '52:54:00:ab:cd:ef' },
    { bridge: 'br1' },
  ]);
  const first = fromNative(withNetworks(value), testOptions({ name: 'web' }));
  const [a, b, c] = first.domain.devices.interfaces;
  assert.equal([a!.type, a!.mac, a!.source], ['network', macFor('web', 0), { network: 'lan' }]);
  assert.match(first.xml, /<mtu size='1400'\/>/);
  assert.equal([b!.type, b!.mac, b!.source, b!.routes[0]!.gateway], ['bridge', '52:54:00:ab:cd:ef', { bridge: 'br0' }, '192.168.1.1']);
  assert.equal([c!.type, c!.mac, c!.source, c!.ips, c!.routes], ['bridge', macFor('web', 2), { bridge: 'br1' }, [], []]);
  const { config } = toNative(parseDomainXml(first.xml), { cgroupVersion: 1, hostArch: 'x86_64' });
  assert.is(config.annotations?.[NETWORKS_ANNOTATION], value);
  assert.is(config.annotations?.[XML_ONLY_ANNOTATION], undefined);
  assert.equal(domainDifferences(first.domain, fromNative(config, testOptions({ name: 'web' })).domain), []);
  // a changed MTU is a change
  assert.not.ok(sameDomain(first.domain, parseDomainXml(first.xml.replace("size='1400'", "size='1500'"))));
});

test('what libvirt adds or rewrites on define compares equal: no redefine loop', () => {
  const r = fromNative(withNetworks(), testOptions({ name: 'web' }));
  // libvirt: family on <ip> (already there), MAC case, attribute order, quote style
  const defined = r.xml
    .replace(/<ip address='([^']*)' family='ipv4' prefix='(\d+)'\/>/g, '<ip family="ipv4" address="$1" prefix="$2"/>')
    .replace(/<mac address='([^']*)'\/>/g, (_m, mac: string) => `<mac address='${mac.toUpperCase()}'/>`);
  assert.ok(sameDomain(r.domain, parseDomainXml(defined)), domainDifferences(r.domain, parseDomainXml(defined)).join('; '));
  const noFamily = r.xml.replace(/ family='ipv4' prefix=/g, ' prefix=');
  assert.ok(sameDomain(r.domain, parseDomainXml(noFamily)));
  // a changed address is a change
  assert.not.ok(sameDomain(r.domain, parseDomainXml(r.xml.replace("10.77.0.5'", "10.77.0.6'"))));
});

test('a bad annotation, or attachments without a network namespace of its own, are refused', () => {
  for (const bad of [
    'nope',
    '{}',
    '[{"network":"a b"}]',
    '[{"network":"lan","ip":"10.0.0.1"}]',
    '[{"network":"lan","gateway":"10.0.0.1"}]',
    '[{"network":"lan","x":1}]',
    '[{"network":"lan","bridge":"br0"}]',
    '[{"bridge":"a/b"}]',
    '[{"bridge":"waytoolongbridgename"}]',
    '[{"network":"lan","mac":"01:00:5e:00:00:01"}]',
    '[{"network":"lan","mac":"ff:ff:ff:ff:ff:ff"}]',
    '[{"network":"lan","mac":"00:00:00:00:00:00"}]',
    '[{"network":"lan","mac":"52:54:00:zz:00:01"}]',
    '[{"network":"lan","mtu":67}]',
    '[{"network":"lan","mtu":1500.5}]',
    '[{"network":"lan"},{"network":"lan"}]',
    '[{"network":"a","mac":"52:54:00:00:00:02"},{"network":"b","mac":"52:54:00:00:00:02"}]',
  ]) {
    assert.throws(() => fromNative(withNetworks(bad), testOptions()), (e: Error) => e instanceof InputError && e.field === `annotations["${NETWORKS_ANNOTATION}"]`, bad);
  }
  // a given MAC that meets a derived one
  const clash = JSON.stringify([{ network: 'a', mac: macFor('web', 1) }, { network: 'b' }]);
  assert.throws(() => fromNative(withNetworks(clash), testOptions({ name: 'web' })), /MAC .* two interfaces/);
  const hostNet = withNetworks();
  hostNet.linux!.namespaces = hostNet.linux!.namespaces!.filter((n) => n.type !== 'network');
  assert.throws(() => fromNative(hostNet, testOptions()), /need a new network namespace/);
  // an empty list asks for nothing
  assert.is(fromNative(withNetworks('[]'), testOptions()).domain.features.privnet, true);
});

test.run();
