/**
 * Per-field reverse tests (issue 8 item 16): for each mapped field, config -> XML -> config, where
 * the XML itself must carry the value (written out here, not derived by the converter) and
 * to-native must read it from the XML: the metadata is stripped before to-native, and must not
 * hold the field either. A round trip through the metadata alone passes whatever the mapping
 * does, so neither a forward nor a reverse mapping bug could fail it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import { getAt } from '../../src/convert/json.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { HOST_DEVICES, minimal, testOptions } from './fixtures.js';

type Patch = (c: RuntimeConfig) => void;
type Linux = NonNullable<RuntimeConfig['linux']>;
const res = (c: RuntimeConfig): NonNullable<Linux['resources']> => (c.linux!.resources ??= {});

interface Row {
  /** The config field, as a JSON pointer; its value must not be kept in the metadata. */
  field: string;
  patch: Patch;
  /** What the XML must say, as libvirt writes it. */
  xml: RegExp;
  /** The value to-native must read from the XML alone; default: the field's value in the config. */
  back?: (config: RuntimeConfig) => unknown;
  /** Read a part of the field (for arrays the metadata keeps whole because of other members). */
  pick?: (config: RuntimeConfig) => unknown;
  cgroupVersion?: 1 | 2;
}

const mount = (dest: string) => (c: RuntimeConfig) => c.mounts?.find((m) => m.destination === dest);

const ROWS: Row[] = [
  { field: '/process/args', patch: (c) => (c.process!.args = ['/bin/app', '-x', 'a b']), xml: /<init>\/bin\/app<\/init>\s*<initarg>-x<\/initarg>\s*<initarg>a b<\/initarg>/ },
  { field: '/process/env', patch: (c) => (c.process!.env = ['A=b', 'PATH=/bin']), xml: /<initenv name='A'>b<\/initenv>\s*<initenv name='PATH'>\/bin<\/initenv>/ },
  { field: '/process/cwd', patch: (c) => (c.process!.cwd = '/srv/app'), xml: /<initdir>\/srv\/app<\/initdir>/ },
  { field: '/process/user/uid', patch: (c) => (c.process!.user = { uid: 1000, gid: 50 }), xml: /<inituser>\+1000<\/inituser>/ },
  { field: '/process/user/gid', patch: (c) => (c.process!.user = { uid: 1000, gid: 50 }), xml: /<initgroup>\+50<\/initgroup>/ },
  { field: '/root/path', patch: (c) => (c.root = { path: '/srv/r/rootfs' }), xml: /<source dir='\/srv\/r\/rootfs'\/>\s*<target dir='\/'\/>/ },
  { field: '/root/readonly', patch: (c) => (c.root!.readonly = true), xml: /<target dir='\/'\/>\s*<readonly\/>/ },
  {
    field: '/mounts',
    patch: (c) => (c.mounts = [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['bind', 'ro'] }]),
    xml: /<source dir='\/srv\/data'\/>\s*<target dir='\/data'\/>\s*<readonly\/>/,
    pick: mount('/data'),
  },
  {
    field: '/mounts',
    patch: (c) => (c.mounts = [{ destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=2048k'] }]),
    xml: /<filesystem type='ram' accessmode='passthrough'>\s*<source usage='2048' units='KiB'\/>\s*<target dir='\/run'\/>/,
    pick: mount('/run'),
  },
  {
    field: '/linux/namespaces',
    patch: (c) => c.linux!.namespaces!.push({ type: 'network', path: '/var/run/netns/red' }),
    xml: /<lxc:sharenet type='netns' value='red'\/>/,
    pick: (c) => c.linux?.namespaces?.find((n) => n.type === 'network'),
  },
  {
    field: '/linux/namespaces',
    patch: (c) => c.linux!.namespaces!.push({ type: 'network', path: '/proc/4242/ns/net' }),
    xml: /<lxc:sharenet type='pid' value='4242'\/>/,
    pick: (c) => c.linux?.namespaces?.find((n) => n.type === 'network'),
  },
  {
    field: '/linux/namespaces',
    patch: (c) => c.linux!.namespaces!.push({ type: 'network' }),
    xml: /<privnet\/>/,
    pick: (c) => c.linux?.namespaces?.find((n) => n.type === 'network'),
  },
  ...(['uid', 'gid'] as const).map(
    (k): Row => ({
      field: `/linux/${k}Mappings`,
      patch: (c) => {
        c.linux!.namespaces!.push({ type: 'user' });
        c.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
        c.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 1000 }, { containerID: 1000, hostID: 300000, size: 5 }];
      },
      xml: k === 'uid' ? /<uid start='0' target='100000' count='65536'\/>/ : /<gid start='0' target='200000' count='1000'\/>\s*<gid start='1000' target='300000' count='5'\/>/,
    }),
  ),
  { field: '/linux/resources/memory/limit', patch: (c) => (res(c).memory = { limit: 536870912 }), xml: /<hard_limit unit='KiB'>524288<\/hard_limit>/ },
  { field: '/linux/resources/memory/reservation', patch: (c) => (res(c).memory = { limit: 536870912, reservation: 268435456 }), xml: /<soft_limit unit='KiB'>262144<\/soft_limit>/ },
  { field: '/linux/resources/memory/swap', patch: (c) => (res(c).memory = { limit: 536870912, swap: 1073741824 }), xml: /<swap_hard_limit unit='KiB'>1048576<\/swap_hard_limit>/ },
  { field: '/linux/resources/cpu/shares', patch: (c) => (res(c).cpu = { shares: 512 }), xml: /<shares>512<\/shares>/ },
  { field: '/linux/resources/cpu/quota', patch: (c) => (res(c).cpu = { quota: 50000, period: 100000 }), xml: /<quota>50000<\/quota>/ },
  { field: '/linux/resources/cpu/period', patch: (c) => (res(c).cpu = { quota: 50000, period: 100000 }), xml: /<period>100000<\/period>/ },
  { field: '/linux/resources/cpu/period', patch: (c) => (res(c).cpu = { period: 250000 }), xml: /<period>250000<\/period>/, cgroupVersion: 2 },
  { field: '/linux/resources/cpu/cpus', patch: (c) => (res(c).cpu = { cpus: '0-1' }), xml: /<vcpu placement='static' cpuset='0-1'>2<\/vcpu>/ },
  { field: '/linux/resources/cpu/mems', patch: (c) => (res(c).cpu = { mems: '0' }), xml: /<memory mode='strict' nodeset='0'\/>/ },
  { field: '/linux/resources/blockIO/weight', patch: (c) => (res(c).blockIO = { weight: 300 }), xml: /<blkiotune>\s*<weight>300<\/weight>/ },
  {
    field: '/linux/resources/blockIO/weightDevice',
    patch: (c) => (res(c).blockIO = { weightDevice: [{ major: 8, minor: 0, weight: 200 }] }),
    xml: /<path>\/dev\/block\/8:0<\/path>\s*<weight>200<\/weight>/,
  },
  {
    field: '/linux/resources/blockIO/throttleReadBpsDevice',
    patch: (c) => (res(c).blockIO = { throttleReadBpsDevice: [{ major: 8, minor: 16, rate: 1048576 }] }),
    xml: /<path>\/dev\/block\/8:16<\/path>\s*<read_bytes_sec>1048576<\/read_bytes_sec>/,
  },
  {
    field: '/linux/resources/blockIO/throttleWriteIOPSDevice',
    patch: (c) => (res(c).blockIO = { throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 300 }] }),
    xml: /<path>\/dev\/block\/8:16<\/path>\s*<write_iops_sec>300<\/write_iops_sec>/,
  },
  {
    field: '/process/capabilities/bounding',
    patch: (c) => (c.process!.capabilities = { bounding: ['CAP_CHOWN', 'CAP_KILL'], effective: ['CAP_CHOWN', 'CAP_KILL'], permitted: ['CAP_CHOWN', 'CAP_KILL'] }),
    xml: /<capabilities policy='deny'>\s*<chown state='on'\/>\s*<kill state='on'\/>\s*<\/capabilities>/,
  },
  { field: '/linux/devices', patch: (c) => (c.linux!.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }]), xml: /<hostdev mode='capabilities' type='misc'>\s*<source>\s*<char>\/dev\/fuse<\/char>/ },
  {
    field: '/linux/devices',
    patch: (c) => (c.linux!.devices = [{ path: '/dev/loop0', type: 'b', major: 7, minor: 0 }]),
    xml: /<hostdev mode='capabilities' type='storage'>\s*<source>\s*<block>\/dev\/loop0<\/block>/,
  },
  {
    field: '/linux/netDevices',
    patch: (c) => {
      c.linux!.namespaces!.push({ type: 'network' });
      c.linux!.netDevices = { veth9: {} };
    },
    xml: /<hostdev mode='capabilities' type='net'>\s*<source>\s*<interface>veth9<\/interface>/,
  },
  { field: '/linux/personality', patch: (c) => (c.linux!.personality = { domain: 'LINUX32' }), xml: /<type arch='i686'>exe<\/type>/ },
  { field: '/process/selinuxLabel', patch: (c) => (c.process!.selinuxLabel = 'system_u:system_r:container_t:s0'), xml: /<seclabel type='static' model='selinux' relabel='no'>\s*<label>system_u:system_r:container_t:s0<\/label>/ },
  { field: '/process/apparmorProfile', patch: (c) => (c.process!.apparmorProfile = 'docker-default'), xml: /<seclabel type='static' model='apparmor' relabel='no'>\s*<label>docker-default<\/label>/ },
  { field: '/annotations/org.ocivirt.title', patch: (c) => (c.annotations = { 'org.ocivirt.title': 'Web & co' }), xml: /<title>Web &amp; co<\/title>/ },
];

/** Whether the metadata keeps `field` (as an exact value or in the residual), wholly or in part. */
function keptInMetadata(meta: NonNullable<ReturnType<typeof fromNative>['domain']['metadata']['ours']>, field: string): boolean {
  const related = (a: string, b: string) => a === b || a.startsWith(b + '/') || b.startsWith(a + '/');
  if (meta.exact.some((e) => related(e.field, field))) return true;
  const tokens = field.split('/').slice(1);
  return tokens.some((_, i) => getAt(meta.residual ?? {}, '/' + tokens.slice(0, i + 1).join('/')) !== undefined);
}

for (const row of ROWS)
  test(`${row.field}${row.pick ? ` (${row.xml.source.slice(0, 40)}…)` : ''}: the XML carries it and to-native reads it from there`, () => {
    const config = minimal();
    row.patch(config);
    const cgroupVersion = row.cgroupVersion ?? 1;
    const r = fromNative(config, testOptions({ cgroupVersion, hostDevice: (p) => HOST_DEVICES[p], secModels: ['selinux', 'apparmor'] }));
    assert.match(r.xml, row.xml);
    if (!row.pick) assert.not.ok(keptInMetadata(r.domain.metadata.ours!, row.field), `${row.field} is kept in the metadata`);

    const domain = parseDomainXml(r.xml);
    domain.metadata.ours = undefined;
    const back = toNative(domain, { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion, hostArch: 'x86_64' }).config;
    const read = row.pick ?? ((c: RuntimeConfig) => getAt(c, row.field));
    assert.equal(read(back), (row.back ?? read)(config));
  });

test.run();
