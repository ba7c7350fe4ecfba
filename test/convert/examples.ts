/** The verified examples E1..E7 of the mapping notes (§5), as full runtime configs. */
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { minimal } from './fixtures.js';

function withDefaults(patch: (c: RuntimeConfig) => void): RuntimeConfig {
  const c = minimal();
  patch(c);
  return c;
}

export const EXAMPLES: Record<string, RuntimeConfig> = {
  E1: withDefaults((c) => {
    c.process!.args = ['/bin/sh', '-c', 'echo "hello & bye" > /tmp/out'];
    c.process!.env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'];
  }),
  E2: withDefaults((c) => {
    c.process!.user = { uid: 1000, gid: 1000 };
    c.process!.cwd = '/srv/app';
    c.root = { path: 'rootfs', readonly: true };
  }),
  E3: withDefaults((c) => {
    c.linux!.resources = {
      memory: { limit: 536870912, reservation: 268435456, swap: 1073741824 },
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
      blockIO: { weight: 500, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }], weightDevice: [{ major: 8, minor: 16, weight: 300 }] },
    };
  }),
  E4: withDefaults((c) => {
    c.mounts = [
      { destination: '/data', type: 'bind', source: '/vol/data', options: ['rbind', 'rw'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['bind', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=65536k'] },
      { destination: '/proc', type: 'proc', source: 'proc' },
    ];
  }),
  E5: withDefaults((c) => {
    c.linux = {
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }, { type: 'user' }],
      uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
      gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
    };
    c.process!.capabilities = { bounding: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE'] };
  }),
  E6: withDefaults((c) => {
    c.hostname = 'web-01.example.com';
    c.annotations = { 'com.example.team': 'payments & billing' };
    c.linux!.namespaces!.push({ type: 'network', path: '/var/run/netns/red' });
    c.linux!.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }];
  }),
  E7: withDefaults((c) => {
    c.linux!.namespaces!.push({ type: 'network' });
    c.linux!.resources = { memory: { limit: 536870913 } };
    c.annotations = {
      'org.ocivirt.domain-xml': Buffer.from(
        `<domain type='lxc'><name>x</name><devices><interface type='network'><mac address='52:54:00:5c:0a:06'/><source network='default'/>` +
          `<ip address='192.168.122.50' prefix='24'/><route family='ipv4' address='0.0.0.0' prefix='0' gateway='192.168.122.1'/><guest dev='eth0'/></interface></devices></domain>`,
      ).toString('base64'),
    };
  }),
};
