/**
 * What `ocivirt status` shows of a domain's network (network/show.ts): each interface (network or
 * bridge, address, MAC) and the published ports recorded on the domain, as JSON and as one line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { NETWORKS_ANNOTATION } from '../../src/convert/passes/networks.js';
import { formatNetwork, networkOfXml } from '../../src/network/show.js';
import { runcSpec, testOptions } from '../convert/fixtures.js';

test('interfaces and published ports of a definition', () => {
  const c = runcSpec();
  c.annotations = {
    [NETWORKS_ANNOTATION]: JSON.stringify([{ network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1' }, { bridge: 'br0', mac: '52:54:00:ab:cd:ef' }]),
    'org.ocivirt.settings.publish': JSON.stringify([{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.0.2.1', hostPort: 53, port: 53, protocol: 'udp' }]),
  };
  const { xml, domain } = fromNative(c, testOptions({ name: 'web' }));
  const n = networkOfXml(xml);
  assert.equal(n.networks, [
    { type: 'network', source: 'lan', ip: '10.77.0.5/24', mac: domain.devices.interfaces[0]!.mac },
    { type: 'bridge', source: 'br0', mac: '52:54:00:ab:cd:ef' },
  ]);
  assert.equal(n.ports, [{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.0.2.1', hostPort: 53, port: 53, protocol: 'udp' }]);
  assert.is(formatNetwork(n), `network lan 10.77.0.5/24 ${domain.devices.interfaces[0]!.mac}, bridge br0 (own DHCP) 52:54:00:ab:cd:ef; publish 8080->80/tcp, 192.0.2.1:53->53/udp`);
  // none: nothing to say
  assert.is(formatNetwork(networkOfXml(fromNative(runcSpec(), testOptions({ name: 'x' })).xml)), '');
});

test.run();
