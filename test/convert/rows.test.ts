/**
 * One or more tests per row of the mapping notes (forward and reverse), the refusals and the
 * warnings of §2. Every from-native result here also round-trips through XML and to-native.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative, type FromNativeResult } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import type { FromNativeOptions } from '../../src/convert/context.js';
import { canonicalJson } from '../../src/convert/json.js';
import { InputError } from '../../src/errors.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { sameDomain } from '../../src/xml/compare.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { expectedBack, HOST_DEVICES, minimal, testOptions } from './fixtures.js';
import { virtXmlValidateAll } from './validate-xml.js';

type Patch = (c: RuntimeConfig) => void;

/** Every XML these tests produce, validated against libvirt's schema at the end. */
const produced: { label: string; xml: string }[] = [];

function config(patch: Patch = () => {}): RuntimeConfig {
  const c = minimal();
  patch(c);
  return c;
}

/** from-native of a patched minimal config; checks the round trip on the way. */
function convert(patch: Patch = () => {}, opts: Partial<FromNativeOptions> = {}): FromNativeResult & { back: RuntimeConfig } {
  const c = config(patch);
  const o = testOptions(opts);
  const r = fromNative(c, o);
  produced.push({ label: JSON.stringify(c), xml: r.xml });
  const parsed = parseDomainXml(r.xml);
  assert.ok(sameDomain(r.domain, parsed), 'sameDomain(x, parse(build(x)))');
  const back = toNative(parsed, { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion: 1, hostArch: 'x86_64' }).config;
  assert.is(canonicalJson(back), expectedBack(c, o.bundleDir), 'to-native gives the original back');
  assertRuntimeSchemaValid(back);
  return { ...r, back };
}

function refused(patch: Patch, field: RegExp | string, opts: Partial<FromNativeOptions> = {}): InputError {
  try {
    fromNative(config(patch), testOptions(opts));
  } catch (e) {
    assert.instance(e, InputError);
    const err = e as InputError;
    if (typeof field === 'string') assert.is(err.field, field);
    else assert.match(err.field ?? '', field);
    assert.not.match(err.message, /\n/);
    return err;
  }
  assert.unreachable('expected a refusal');
  throw new Error('unreachable');
}

const warned = (r: { warnings: string[] }, re: RegExp) => assert.ok(r.warnings.some((w) => re.test(w)), `no warning ${re} in:\n${r.warnings.join('\n')}`);
const domainOf = (xml: string) => parseDomainXml(xml);

// §1.1 identity, process, root

test('name: the hostname when valid, else --name, else the container id, else the bundle directory', () => {
  assert.is(convert((c) => (c.hostname = 'web-01')).domain.name, 'web-01');
  assert.is(convert((c) => (c.hostname = 'web-01'), { name: 'given' }).domain.name, 'given');
  assert.is(convert((c) => (c.hostname = 'Upper_Case'), { id: 'My_Container.1' }).domain.name, 'my-container-1');
  assert.is(convert((c) => (c.hostname = 'web.example.com'), { bundleDir: '/srv/-Bundle Dir-' }).domain.name, 'bundle-dir');
  assert.is(convert(() => {}, { id: 'x'.repeat(80) }).domain.name, 'x'.repeat(63));
});

test('name: an invalid --name is refused; one that cannot be derived asks for --name', () => {
  for (const bad of ['Web', '-x', 'a.b', 'a'.repeat(64), '', 'ü']) refused(() => {}, 'name', { name: bad });
  refused(() => {}, 'name', { bundleDir: '/srv/___' });
});

test('uuid: UUIDv5 of the container id, stable across conversions, distinct per id; an org.ocivirt.uuid annotation wins', () => {
  const a = convert(() => {}, { id: 'one' }).domain.uuid!;
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.is(convert(() => {}, { id: 'one' }).domain.uuid, a);
  assert.is.not(convert(() => {}, { id: 'two' }).domain.uuid, a);
  const r = convert((c) => (c.annotations = { 'org.ocivirt.uuid': '0B1C2D3E-4F50-4617-8899-AABBCCDDEEFF' }));
  assert.is(r.domain.uuid, '0b1c2d3e-4f50-4617-8899-aabbccddeeff');
  refused((c) => (c.annotations = { 'org.ocivirt.uuid': 'nope' }), 'annotations["org.ocivirt.uuid"]');
});

test('ociVersion: 1.0.x to 1.3.x accepted and kept in metadata; others refused', () => {
  for (const v of ['1.0.0', '1.0.2-dev', '1.1.0', '1.2.1', '1.3.0']) assert.is(convert((c) => (c.ociVersion = v)).domain.metadata.ours?.ociVersion, v);
  for (const v of ['0.9.0', '1.4.0', '2.0.0', 'x']) refused((c) => (c.ociVersion = v), 'ociVersion');
});

test('root.path: made absolute against the bundle; root.readonly gives <readonly/>', () => {
  const r = convert((c) => (c.root = { path: 'a/../rootfs', readonly: true }));
  const rootFs = r.domain.devices.filesystems[0]!;
  assert.equal(rootFs.source, { dir: '/srv/bundles/b1/rootfs' });
  assert.is(rootFs.target, '/');
  assert.is(rootFs.readonly, true);
  assert.equal(r.back.root, { path: '/srv/bundles/b1/rootfs', readonly: true });
  refused((c) => delete c.root, 'root.path');
});

test('process.args[0]: absolute is the init; a bare name is looked up through PATH; a missing one is refused', () => {
  assert.is(convert().domain.os.init, '/bin/sh');
  const r = convert((c) => {
    c.process!.args = ['app', '--flag'];
    c.process!.env = ['PATH=/opt/bin:/bin'];
  });
  assert.is(r.domain.os.init, '/bin/app');
  assert.equal(r.domain.os.initargs, ['--flag']);
  assert.equal(r.back.process?.args, ['app', '--flag'], 'the original argv0 comes back from metadata');
  assert.is(convert((c) => (c.process!.args = ['sh']), { resolveExecutable: (a, dirs) => (dirs[0] === '/usr/local/sbin' ? `/usr/bin/${a}` : undefined) }).domain.os.init, '/usr/bin/sh', 'default PATH');
  assert.match(refused((c) => (c.process!.args = ['missing']), 'process.args[0]').message, /not an executable file in the rootfs/);
  refused((c) => (c.process!.args = ['sh']), 'process.args[0]', { resolveExecutable: undefined });
  warned(convert((c) => (c.process!.args = ['/opt/missing'])), /^process\.args\[0\]: \/opt\/missing is not an executable file in the rootfs/);
  assert.is(convert((c) => (c.process!.args = ['./run']), {}).domain.os.init, '/run', 'relative to cwd');
});

test('process.args: initargs in order; empty args and an empty argument are refused', () => {
  const r = convert((c) => (c.process!.args = ['/bin/sh', '-c', 'echo "hello & bye" > /tmp/out']));
  assert.equal(r.domain.os.initargs, ['-c', 'echo "hello & bye" > /tmp/out']);
  assert.match(r.xml, /<initarg>echo "hello &amp; bye" &gt; \/tmp\/out<\/initarg>/);
  refused((c) => (c.process!.args = []), 'process.args');
  refused((c) => (c.process!.args = ['/bin/sh', '']), 'process.args[1]');
});

test('text XML cannot carry is refused: CR and control characters in args, env, cwd, paths', () => {
  refused((c) => (c.process!.args = ['/bin/sh', 'a\rb']), 'process.args[1]');
  refused((c) => (c.process!.args = ['/bin/sh', 'a\u0001']), 'process.args[1]');
  refused((c) => (c.process!.env = ['A=x\ry']), 'process.env[0]');
  refused((c) => (c.process!.cwd = '/a\u0007'), 'process.cwd');
  refused((c) => (c.root!.path = 'root\u001b'), 'root.path');
  refused((c) => (c.mounts = [{ destination: '/x\r', type: 'tmpfs', source: 'tmpfs' }]), 'mounts[0].destination');
});

test('process.env: initenv split at the first =; values libvirt cannot take are kept in metadata and warned', () => {
  const r = convert((c) => (c.process!.env = ['PATH=/bin', 'EQ=a=b', 'TAB=\tx\ny', 'EMPTY=', 'my.var=1', 'AMP=a&b', 'LT=a<b', 'CDATA=]]>']));
  assert.equal(r.domain.os.initenv, [
    { name: 'PATH', value: '/bin' },
    { name: 'EQ', value: 'a=b' },
    { name: 'TAB', value: '\tx\ny' },
  ]);
  warned(r, /process\.env\[3\]: 'EMPTY' has an empty value/);
  warned(r, /process\.env\[4\]: the name 'my\.var'/);
  warned(r, /process\.env\[5\]: the value of 'AMP' holds & or </);
  warned(r, /process\.env\[6\]/);
  warned(r, /process\.env\[7\]/);
  refused((c) => (c.process!.env = ['NOEQUALS']), 'process.env[0]');
});

test('process.cwd: / gives no <initdir>; another directory does', () => {
  assert.is(convert().domain.os.initdir, undefined);
  const r = convert((c) => (c.process!.cwd = '/srv/app'));
  assert.is(r.domain.os.initdir, '/srv/app');
  refused((c) => (c.process!.cwd = 'rel'), 'process.cwd');
});

test('process.user: <inituser>+UID and <initgroup>+GID (none for root:root); umask and additionalGids kept and warned', () => {
  const r = convert((c) => (c.process!.user = { uid: 1000, gid: 100, umask: 18, additionalGids: [5, 6] }));
  assert.is(r.domain.os.inituser, '+1000');
  assert.is(r.domain.os.initgroup, '+100');
  warned(r, /process\.user\.umask: not enforced/);
  warned(r, /process\.user\.additionalGids: not enforced/);
  assert.is(convert().domain.os.inituser, undefined, "root:root is libvirt's default: no user switch");
  assert.is(convert((c) => (c.process!.user = { uid: 0, gid: 5 })).domain.os.inituser, '+0');
});

test('process.terminal: a pty console always; terminal false is warned', () => {
  const r = convert((c) => (c.process!.terminal = false));
  assert.equal(r.domain.devices.consoles, [{ type: 'pty', targetType: 'lxc', port: 0, attrs: {}, extra: [] }]);
  warned(r, /process\.terminal: init's stdio is always the console pty/);
  assert.is(convert((c) => delete c.process!.terminal).back.process?.terminal, undefined);
});

test('hostname: a valid one names the domain; an FQDN is kept in metadata and warned', () => {
  const r = convert((c) => (c.hostname = 'web-01.example.com'));
  assert.is(r.domain.name, 'b1');
  warned(r, /hostname: libvirt sets the hostname to 'b1'/);
  assert.is(r.back.hostname, 'web-01.example.com');
  assert.equal(convert((c) => (c.hostname = 'web-01')).warnings, []);
});

test('linux.personality LINUX32: the 32-bit companion arch', () => {
  const r = convert((c) => (c.linux!.personality = { domain: 'LINUX32' }));
  assert.is(r.domain.os.arch, 'i686');
  assert.equal(r.back.linux?.personality, { domain: 'LINUX32' });
  assert.is(convert().domain.os.arch, 'x86_64');
  refused((c) => (c.linux!.personality = { domain: 'LINUX32' }), 'linux.personality.domain', { hostArch: 'riscv64' });
});

test('selinuxLabel / apparmorProfile: a static seclabel when the host has the model, else kept and warned', () => {
  const r = convert((c) => (c.process!.selinuxLabel = 'system_u:system_r:container_t:s0'), { secModels: ['selinux'] });
  assert.equal(r.domain.seclabels, [{ attrs: { type: 'static', model: 'selinux', relabel: 'no' }, label: 'system_u:system_r:container_t:s0', extra: [] }]);
  assert.match(r.xml, /<seclabel type='static' model='selinux' relabel='no'>/);
  const w = convert((c) => (c.process!.apparmorProfile = 'docker-default'));
  assert.equal(w.domain.seclabels, []);
  warned(w, /process\.apparmorProfile: the host's libvirt has no apparmor security model/);
});

// §1.2 mounts

test('bind mounts: directory or file source, ro gives <readonly/>, rbind warned, other options kept', () => {
  const r = convert((c) => {
    c.mounts = [
      { destination: '/data', type: 'bind', source: '/vol/data', options: ['rbind', 'rw'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['bind', 'ro'] },
      { destination: '/rel/', source: 'vol', options: ['bind', 'nosuid'] },
    ];
  });
  const fs = r.domain.devices.filesystems.slice(1);
  assert.equal(fs.map((f) => [f.type, f.source.dir, f.target, f.readonly]), [
    ['mount', '/vol/data', '/data', false],
    ['mount', '/etc/resolv.conf', '/etc/resolv.conf', true],
    ['mount', '/srv/bundles/b1/vol', '/rel', false],
  ]);
  warned(r, /mounts\[0\]: rbind becomes a plain bind mount/);
  warned(r, /mounts\[2\]\.options: nosuid cannot be expressed/);
  refused((c) => (c.mounts = [{ destination: '/x', type: 'bind', options: ['bind'] }]), 'mounts[0].source');
});

test('tmpfs: type ram with usage in KiB rounded up; no size gives 64 MiB and a warning; % sizes refused', () => {
  const r = convert((c) => {
    c.mounts = [
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=65536k'] },
      { destination: '/a', type: 'tmpfs', source: 'tmpfs', options: ['size=1025'] },
      { destination: '/b', type: 'tmpfs', source: 'tmpfs', options: ['size=2m', 'mode=1777'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm' },
    ];
  });
  const fs = r.domain.devices.filesystems.slice(1);
  assert.equal(fs.map((f) => [f.type, f.source.usage, f.source.units, f.target]), [
    ['ram', '65536', 'KiB', '/tmp'],
    ['ram', '2', 'KiB', '/a'],
    ['ram', '2048', 'KiB', '/b'],
    ['ram', '65536', 'KiB', '/dev/shm'],
  ]);
  warned(r, /mounts\[2\]\.options: mode=1777 cannot be expressed/);
  warned(r, /mounts\[3\]: a tmpfs needs a size/);
  refused((c) => (c.mounts = [{ destination: '/t', type: 'tmpfs', options: ['size=50%'] }]), 'mounts[0].options');
});

test('a block device source gives a block filesystem; other mount types are refused', () => {
  const r = convert((c) => (c.mounts = [{ destination: '/disk', type: 'ext4', source: '/dev/sdb1', options: ['ro'] }]));
  const fs = r.domain.devices.filesystems[1]!;
  assert.equal([fs.type, fs.source, fs.readonly], ['block', { dev: '/dev/sdb1' }, true]);
  warned(r, /mounts\[0\]\.type: libvirt detects the filesystem type/);
  refused((c) => (c.mounts = [{ destination: '/n', type: 'nfs', source: 'srv:/x' }]), 'mounts[0].type');
  refused((c) => (c.mounts = [{ destination: '/o', type: 'overlay', source: 'overlay' }]), 'mounts[0].type');
});

test('libvirt-provided mounts are dropped silently; /dev/mqueue is warned; all come back from metadata', () => {
  const r = convert((c) => {
    c.mounts = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/sys/', type: 'sysfs', source: 'sysfs', options: ['ro'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts' },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup' },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue' },
    ];
  });
  assert.is(r.domain.devices.filesystems.length, 1);
  assert.equal(r.warnings, ['mounts[4]: libvirt-lxc does not mount /dev/mqueue; dropped']);
});

test('mounts refused: idmapped mounts, relative destinations, a mount over /', () => {
  refused((c) => (c.mounts = [{ destination: '/d', type: 'bind', source: '/s', uidMappings: [{ containerID: 0, hostID: 1, size: 1 }] }]), 'mounts[0].uidMappings');
  refused((c) => (c.mounts = [{ destination: 'rel', type: 'tmpfs' }]), 'mounts[0].destination');
  refused((c) => (c.mounts = [{ destination: '/', type: 'bind', source: '/x' }]), 'mounts[0].destination');
});

// §1.3 namespaces and idmap

test('network: private gives <privnet/>; a netns path or /proc/PID/ns/net gives sharenet; absent gives neither', () => {
  const priv = convert((c) => c.linux!.namespaces!.push({ type: 'network' }));
  assert.is(priv.domain.features.privnet, true);
  const named = convert((c) => c.linux!.namespaces!.push({ type: 'network', path: '/var/run/netns/red' }));
  assert.equal(named.domain.lxcNamespace.sharenet, { type: 'netns', value: 'red' });
  assert.match(named.xml, /<domain type='lxc' xmlns:lxc='http:\/\/libvirt.org\/schemas\/domain\/lxc\/1.0'>/);
  assert.match(named.xml, /<lxc:sharenet type='netns' value='red'\/>/);
  assert.equal(convert((c) => c.linux!.namespaces!.push({ type: 'network', path: '/run/netns/blue' })).domain.lxcNamespace.sharenet, { type: 'netns', value: 'blue' });
  assert.equal(convert((c) => c.linux!.namespaces!.push({ type: 'network', path: '/proc/42/ns/net' })).domain.lxcNamespace.sharenet, { type: 'pid', value: '42' });
  const host = convert();
  assert.is(host.domain.features.privnet, false);
  assert.is(host.domain.lxcNamespace.sharenet, undefined);
  refused((c) => c.linux!.namespaces!.push({ type: 'network', path: '/tmp/ns' }), 'linux.namespaces');
});

test('ipc: new by default; a path shares that process; absent shares the host (pid 1)', () => {
  assert.is(convert().domain.lxcNamespace.shareipc, undefined);
  assert.equal(convert((c) => (c.linux!.namespaces = c.linux!.namespaces!.filter((n) => n.type !== 'ipc'))).domain.lxcNamespace.shareipc, { type: 'pid', value: '1' });
  assert.equal(convert((c) => (c.linux!.namespaces!.find((n) => n.type === 'ipc')!.path = '/proc/7/ns/ipc')).domain.lxcNamespace.shareipc, { type: 'pid', value: '7' });
});

test('refused namespaces: host UTS, a UTS path, host pid or mount, joined pid/mount/user, time', () => {
  const without = (t: string) => (c: RuntimeConfig) => (c.linux!.namespaces = c.linux!.namespaces!.filter((n) => n.type !== t));
  assert.match(refused(without('uts'), 'linux.namespaces').message, /host UTS namespace/);
  refused((c) => (c.linux!.namespaces!.find((n) => n.type === 'uts')!.path = '/proc/1/ns/uts'), 'linux.namespaces');
  refused(without('pid'), 'linux.namespaces');
  refused(without('mount'), 'linux.namespaces');
  refused((c) => (c.linux!.namespaces!.find((n) => n.type === 'pid')!.path = '/proc/1/ns/pid'), 'linux.namespaces');
  refused((c) => c.linux!.namespaces!.push({ type: 'user', path: '/proc/1/ns/user' }), 'linux.namespaces');
  refused((c) => c.linux!.namespaces!.push({ type: 'time' }), 'linux.namespaces');
  refused((c) => (c.linux!.timeOffsets = { monotonic: { secs: 1 } }), 'linux.timeOffsets');
  refused((c) => delete c.linux, 'linux.namespaces');
});

test('cgroup namespace: not created, warned, kept', () => {
  warned(convert((c) => c.linux!.namespaces!.push({ type: 'cgroup' })), /linux\.namespaces: libvirt-lxc does not create a cgroup namespace/);
});

test('user namespace: uid/gid mappings to <idmap>, sorted by start; both lists and a root mapping required', () => {
  const r = convert((c) => {
    c.linux!.namespaces!.push({ type: 'user' });
    c.linux!.uidMappings = [
      { containerID: 1000, hostID: 300000, size: 10 },
      { containerID: 0, hostID: 100000, size: 1000 },
    ];
    c.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  });
  assert.equal(r.domain.idmap.uid, [
    { start: 0, target: 100000, count: 1000 },
    { start: 1000, target: 300000, count: 10 },
  ]);
  assert.match(r.xml, /<uid start='0' target='100000' count='1000'\/>\n\s*<uid start='1000'/);
  refused((c) => c.linux!.namespaces!.push({ type: 'user' }), 'linux.uidMappings');
  refused((c) => {
    c.linux!.namespaces!.push({ type: 'user' });
    c.linux!.uidMappings = [{ containerID: 1, hostID: 100000, size: 10 }];
    c.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 10 }];
  }, 'linux.uidMappings');
  warned(convert((c) => (c.linux!.uidMappings = [{ containerID: 0, hostID: 1, size: 1 }])), /linux\.uidMappings: ID mappings without a user namespace/);
});

// §1.4 resources

test('memory.limit: <memory> and <memtune><hard_limit> in KiB rounded up; no limit gives libvirt maximum', () => {
  const r = convert((c) => (c.linux!.resources = { memory: { limit: 536870913 } }));
  assert.is(r.domain.memory, 524289);
  assert.is(r.domain.memtune.hardLimit, 524289);
  assert.is(r.back.linux?.resources?.memory?.limit, 536870913, 'exact bytes from the guarded metadata value');
  assert.is(convert().domain.memory, 9007199254740991);
  assert.is(convert().domain.memtune.hardLimit, undefined);
  assert.is(convert((c) => (c.linux!.resources = { memory: { limit: -1 } })).domain.memory, 9007199254740991);
  refused((c) => (c.linux!.resources = { memory: { limit: 2 ** 63 } }), 'linux.resources.memory.limit');
});

test('memory.reservation and swap: soft_limit and swap_hard_limit (cgroup v1), swap-limit and a warning on v2', () => {
  const v1 = convert((c) => (c.linux!.resources = { memory: { limit: 536870912, reservation: 268435456, swap: 1073741824 } }));
  assert.equal(v1.domain.memtune, { hardLimit: 524288, softLimit: 262144, swapHardLimit: 1048576, extra: [] });
  const c2 = config((c) => (c.linux!.resources = { memory: { limit: 536870912, reservation: 268435456, swap: 1073741824 } }));
  const v2 = fromNative(c2, testOptions({ cgroupVersion: 2 }));
  assert.is(v2.domain.memtune.swapHardLimit, 524288);
  warned(v2, /memory\.reservation: on cgroup v2 libvirt writes it to memory\.high/);
  const back = toNative(parseDomainXml(v2.xml), { cgroupVersion: 1 }).config;
  assert.is(canonicalJson(back), expectedBack(c2, '/srv/bundles/b1'), 'the recorded cgroup version drives the reverse');
  refused((c) => (c.linux!.resources = { memory: { swap: 1 } }), 'linux.resources.memory.swap', { cgroupVersion: 2 });
  refused((c) => (c.linux!.resources = { memory: { limit: 2048, swap: 1024 } }), 'linux.resources.memory.swap');
});

test('cpu.shares: as is on v1 within [2, 262144] (clamped and warned); runc formula on v2', () => {
  assert.is(convert((c) => (c.linux!.resources = { cpu: { shares: 512 } })).domain.cputune.shares, 512);
  const clamped = convert((c) => (c.linux!.resources = { cpu: { shares: 1 } }));
  assert.is(clamped.domain.cputune.shares, 2);
  warned(clamped, /cpu\.shares: libvirt accepts 2 to 262144/);
  assert.is(convert((c) => (c.linux!.resources = { cpu: { shares: 0 } })).domain.cputune.shares, undefined, 'never emit 0');
  const v2 = fromNative(config((c) => (c.linux!.resources = { cpu: { shares: 1024 } })), testOptions({ cgroupVersion: 2 }));
  assert.is(v2.domain.cputune.shares, 39);
});

test('cpu.quota and period: libvirt ranges, -1 for unlimited, 0 omitted', () => {
  const r = convert((c) => (c.linux!.resources = { cpu: { quota: 50000, period: 100000 } }));
  assert.equal([r.domain.cputune.quota, r.domain.cputune.period], [50000, 100000]);
  assert.is(convert((c) => (c.linux!.resources = { cpu: { quota: -5 } })).domain.cputune.quota, -1);
  assert.is(convert((c) => (c.linux!.resources = { cpu: { quota: 0, period: 0 } })).domain.cputune.quota, undefined);
  const low = convert((c) => (c.linux!.resources = { cpu: { quota: 10, period: 10 } }));
  assert.equal([low.domain.cputune.quota, low.domain.cputune.period], [1000, 1000]);
  warned(low, /cpu\.quota: libvirt accepts/);
});

test('cpu.cpus and mems: vcpu cpuset and numatune nodeset in canonical form', () => {
  const r = convert((c) => (c.linux!.resources = { cpu: { cpus: '0,1,3', mems: '0' } }));
  assert.equal(r.domain.vcpu, { count: 3, placement: 'static', cpuset: '0-1,3' });
  assert.equal(r.domain.numatune?.memory, { mode: 'strict', nodeset: '0' });
  assert.is(r.back.linux?.resources?.cpu?.cpus, '0,1,3');
  refused((c) => (c.linux!.resources = { cpu: { cpus: 'all' } }), 'linux.resources.cpu.cpus');
});

test('blockIO: weight, per-device weight and throttles merged per MAJ:MIN device', () => {
  const r = convert((c) => {
    c.linux!.resources = {
      blockIO: {
        weight: 500,
        weightDevice: [{ major: 8, minor: 16, weight: 300 }],
        throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
        throttleWriteBpsDevice: [{ major: 8, minor: 16, rate: 2 }],
        throttleReadIOPSDevice: [{ major: 8, minor: 0, rate: 3 }],
        throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 4 }],
      },
    };
  });
  assert.is(r.domain.blkiotune.weight, 500);
  assert.equal(r.domain.blkiotune.devices, [
    { path: '/dev/block/8:16', weight: 300, writeBytesSec: 2 },
    { path: '/dev/block/8:0', readBytesSec: 1048576, readIopsSec: 3, writeIopsSec: 4 },
  ]);
  const low = convert((c) => (c.linux!.resources = { blockIO: { weight: 10, leafWeight: 10 } }));
  assert.is(low.domain.blkiotune.weight, 100);
  warned(low, /blockIO\.weight: libvirt accepts blkio weights of 100 to 1000/);
  warned(low, /blockIO\.leafWeight/);
});

test('resources libvirt-lxc has nothing for are kept and warned: pids, hugepages, device rules, unified', () => {
  const r = convert((c) => {
    c.linux!.resources = { pids: { limit: 10 }, hugepageLimits: [{ pageSize: '2MB', limit: 0 }], devices: [{ allow: false, access: 'rwm' }], unified: { 'io.max': 'x' } };
  });
  warned(r, /linux\.resources\.pids: libvirt-lxc has no pids limit/);
  warned(r, /linux\.resources\.hugepageLimits: not enforced/);
  warned(r, /linux\.resources\.devices: libvirt-lxc applies its own device allow list/);
  warned(r, /linux\.resources\.unified: not enforced/);
});

// §1.5 capabilities

test('capabilities: policy deny with the bounding set on; unknown names dropped and warned', () => {
  const r = convert((c) => (c.process!.capabilities = { bounding: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE', 'CAP_BPF'] }));
  assert.equal(r.domain.features.capabilities, {
    policy: 'deny',
    caps: ['audit_write', 'kill', 'net_bind_service'].map((name) => ({ name, state: 'on' })),
  });
  warned(r, /process\.capabilities: CAP_BPF is unknown to libvirt-lxc/);
  assert.equal(convert().domain.features.capabilities, { policy: 'deny', caps: [] }, 'no capabilities means none');
});

test('capabilities: a non-root user gets setuid, setgid, setpcap (libvirt switches user after the drop)', () => {
  const r = convert((c) => {
    c.process!.user = { uid: 1000, gid: 1000 };
    c.process!.capabilities = { bounding: ['CAP_KILL'], effective: ['CAP_KILL'] };
  });
  assert.equal(r.domain.features.capabilities?.caps.map((c) => c.name), ['kill', 'setgid', 'setpcap', 'setuid']);
  warned(r, /setgid, setpcap, setuid added to the bounding set/);
  warned(r, /process\.capabilities\.effective: a non-root init has no effective capabilities/);
});

test('capabilities: distinct sets and ambient are collapsed and warned', () => {
  const r = convert((c) => (c.process!.capabilities = { bounding: ['CAP_KILL', 'CAP_CHOWN'], effective: ['CAP_KILL'], ambient: ['CAP_KILL'] }));
  warned(r, /libvirt applies one set/);
  warned(r, /process\.capabilities\.ambient/);
});

// §1.6 devices

test('linux.devices: c and b become misc and storage hostdevs when the host node matches', () => {
  const r = convert((c) => {
    c.linux!.devices = [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229 },
      { path: '/dev/loop0', type: 'b', major: 7, minor: 0 },
      { path: '/dev/null', type: 'c', major: 1, minor: 3 },
    ];
  });
  assert.equal(r.domain.devices.hostdevs.map((h) => [h.mode, h.type, h.source]), [
    ['capabilities', 'misc', { char: '/dev/fuse' }],
    ['capabilities', 'storage', { block: '/dev/loop0' }],
  ]);
  assert.equal(r.warnings, []);
});

test('linux.devices: a mismatched or missing host node is not passed through (warned); fileMode/uid/gid warned', () => {
  const r = convert((c) => {
    c.linux!.devices = [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 1 },
      { path: '/dev/nothere', type: 'c', major: 1, minor: 1 },
      { path: '/dev/net/tun', type: 'c', major: 10, minor: 200, fileMode: 0o666 },
      { path: '/dev/fifo', type: 'p' },
    ];
  });
  assert.equal(r.domain.devices.hostdevs.map((h) => h.source.char), ['/dev/net/tun']);
  warned(r, /linux\.devices\[0\]: \/dev\/fuse on this host is c 10:229/);
  warned(r, /linux\.devices\[1\]: \/dev\/nothere is not a device node on this host/);
  warned(r, /linux\.devices\[2\]: fileMode, uid and gid/);
  warned(r, /linux\.devices\[3\]: a 'p' device/);
});

test('linux.netDevices: net hostdevs (needs a private netns); renames refused', () => {
  const r = convert((c) => {
    c.linux!.namespaces!.push({ type: 'network' });
    c.linux!.netDevices = { eth1: {}, eth2: { name: 'eth2' } };
  });
  assert.equal(r.domain.devices.hostdevs.map((h) => [h.type, h.source.interface]), [['net', 'eth1'], ['net', 'eth2']]);
  refused((c) => {
    c.linux!.namespaces!.push({ type: 'network' });
    c.linux!.netDevices = { eth1: { name: 'eth9' } };
  }, 'linux.netDevices["eth1"].name');
  refused((c) => (c.linux!.netDevices = { eth1: {} }), 'linux.netDevices');
});

// §2 fields with no libvirt-lxc equivalent

test('seccomp is kept with a loud warning; strict refuses it', () => {
  const patch: Patch = (c) => (c.linux!.seccomp = { defaultAction: 'SCMP_ACT_ERRNO' });
  warned(convert(patch), /^linux\.seccomp: NOT ENFORCED/);
  const err = refused(patch, 'linux.seccomp', { strict: true });
  assert.match(err.message, /refused by --strict/);
});

test('strict refuses every field only kept in metadata, and accepts a config that maps fully', () => {
  refused((c) => (c.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }]), 'process.rlimits', { strict: true });
  refused((c) => (c.linux!.sysctl = { 'net.ipv4.ip_forward': '1' }), 'linux.sysctl', { strict: true });
  refused((c) => (c.mounts = [{ destination: '/d', type: 'bind', source: '/s', options: ['rbind'] }]), 'mounts[0]', { strict: true });
  assert.equal(fromNative(config(), testOptions({ strict: true })).warnings, []);
});

test('hooks: createContainer/startContainer refused; the others kept and warned', () => {
  refused((c) => (c.hooks = { createContainer: [{ path: '/bin/true' }] }), 'hooks.createContainer');
  refused((c) => (c.hooks = { startContainer: [{ path: '/bin/true' }] }), 'hooks.startContainer');
  warned(convert((c) => (c.hooks = { prestart: [{ path: '/bin/true' }], poststop: [{ path: '/bin/true' }] })), /^hooks\.prestart: not enforced/);
});

test('non-Linux platforms are refused', () => {
  for (const p of ['solaris', 'windows', 'vm', 'zos', 'freebsd'] as const) refused((c) => ((c as unknown as Record<string, unknown>)[p] = {}), p);
});

test('kept and warned: rlimits, noNewPrivileges, oomScoreAdj, sysctl, masked/readonly paths, cgroupsPath, domainname', () => {
  const r = convert((c) => {
    c.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1, hard: 2 }];
    c.process!.noNewPrivileges = true;
    c.process!.oomScoreAdj = 100;
    c.linux!.sysctl = { 'net.core.somaxconn': '1024' };
    c.linux!.maskedPaths = ['/proc/kcore'];
    c.linux!.readonlyPaths = ['/proc/sys'];
    c.linux!.cgroupsPath = '/x/y';
    c.domainname = 'example.com';
  });
  for (const f of ['process.rlimits', 'process.noNewPrivileges', 'process.oomScoreAdj', 'linux.sysctl', 'linux.maskedPaths', 'linux.readonlyPaths', 'linux.cgroupsPath', 'domainname'])
    warned(r, new RegExp(`^${f.replace('.', '\\.')}: `));
  assert.ok(r.domain.metadata.ours?.residual, 'kept in the residual');
});

test('fields that ask for nothing (false, [], {}) are kept without a warning', () => {
  const r = convert((c) => {
    c.process!.noNewPrivileges = false;
    c.process!.env = [];
    c.root!.readonly = false;
    c.annotations = {};
    c.mounts = [];
    c.linux!.sysctl = {};
  });
  assert.equal(r.warnings, []);
});

test('annotations: readable one element per key (escaped); unsafe ones go base64 in the residual', () => {
  const r = convert((c) => (c.annotations = { 'com.example.team': 'payments & billing', "k'\t\n": '<v>', cr: 'a\rb' }));
  assert.equal(r.domain.metadata.ours?.annotations, [
    { key: 'com.example.team', value: 'payments & billing' },
    { key: "k'\t\n", value: '<v>' },
  ]);
  assert.match(r.xml, /<ocivirt:annotation key='com.example.team'>payments &amp; billing<\/ocivirt:annotation>/);
  assert.match(r.xml, /key='k&apos;&#9;&#10;'/);
  assert.equal(r.domain.metadata.ours?.residual, { annotations: { cr: 'a\rb' } });
  assert.not.match(r.xml, /\r/);
});

test('metadata: one ocivirt element with the ownership the reconciler reads', async () => {
  const { readOwnership } = await import('../../src/convert/ownership.js');
  const r = convert(() => {}, { owner: { entry: 'web-01', imageDigest: 'sha256:' + 'a'.repeat(64) } });
  const own = readOwnership(parseDomainXml(r.xml));
  assert.is(own?.entry, 'web-01');
  assert.is(own?.imageDigest, 'sha256:' + 'a'.repeat(64));
  assert.match(own?.desiredDigest ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.is(convert((c) => (c.hostname = 'changed'), { owner: { entry: 'web-01' } }).domain.metadata.ours?.desiredDigest === own?.desiredDigest, false);
  assert.is(readOwnership(convert().domain), undefined, 'no entry, no ownership');
  assert.match(r.xml, /<metadata>\n\s*<ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' schema='1'/);
});

test('a field edited in the XML since from-native: the XML wins, with a warning', () => {
  const r = convert((c) => {
    c.linux!.resources = { memory: { limit: 536870913 } };
    c.process!.args = ['sh', '-c', 'x'];
  });
  const d = domainOf(r.xml);
  d.memtune.hardLimit = 1048576;
  d.memory = 1048576;
  d.os.initargs = ['-c', 'y'];
  const back = toNative(d, { cgroupVersion: 1, hostArch: 'x86_64' });
  assert.is(back.config.linux?.resources?.memory?.limit, 1073741824);
  assert.equal(back.config.process?.args, ['/bin/sh', '-c', 'y']);
  assert.ok(back.warnings.some((w) => /^linux\.resources\.memory\.limit: changed in the XML/.test(w)), back.warnings.join('\n'));
});

test('deterministic MACs for interfaces restored from the org.ocivirt.domain-xml annotation', () => {
  const frag = Buffer.from(`<domain type='lxc'><name>x</name><devices><interface type='bridge'><source bridge='br0'/></interface><interface type='network'><source network='default'/></interface></devices></domain>`).toString('base64');
  const withFrag = (c: RuntimeConfig) => {
    c.linux!.namespaces!.push({ type: 'network' });
    c.annotations = { 'org.ocivirt.domain-xml': frag };
  };
  const a = convert(withFrag, { id: 'c1' });
  const b = convert(withFrag, { id: 'c1' });
  const macs = a.domain.devices.interfaces.map((i) => i.mac);
  assert.equal(macs, b.domain.devices.interfaces.map((i) => i.mac));
  for (const m of macs) assert.match(m ?? '', /^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.is.not(macs[0], macs[1]);
  assert.is.not(convert(withFrag, { id: 'c2' }).domain.devices.interfaces[0]?.mac, macs[0]);
  assert.equal(a.warnings, ['annotations["org.ocivirt.domain-xml"]: lays domain XML no OCI field has onto the domain (interface)'], 'mapped, and said');
  refused(withFrag, 'annotations["org.ocivirt.domain-xml"]', { strict: true });
  refused((c) => (c.annotations = { 'org.ocivirt.domain-xml': 'bm90IHhtbA==' }), 'annotations["org.ocivirt.domain-xml"]');
  for (const net of [undefined, '/var/run/netns/red'])
    refused((c) => {
      c.linux!.namespaces = c.linux!.namespaces!.filter((n) => n.type !== 'network');
      if (net) c.linux!.namespaces.push({ type: 'network', path: net });
      c.annotations = { 'org.ocivirt.domain-xml': frag };
    }, 'annotations["org.ocivirt.domain-xml"]');
});

test('the desired domain already has what define adds (§5.1)', () => {
  const d = convert().domain;
  assert.is(d.currentMemory, d.memory);
  assert.equal(d.vcpu, { count: 1, placement: 'static' });
  assert.is(d.os.arch, 'x86_64');
  assert.is(d.onPoweroff, 'destroy');
  assert.is(d.onReboot, 'restart');
  assert.is(d.onCrash, 'destroy');
  assert.is(d.devices.filesystems[0]?.accessmode, 'passthrough');
  assert.ok(d.uuid);
});

test('every XML produced above passes virt-xml-validate', async () => {
  assert.ok(produced.length > 80);
  assert.equal((await virtXmlValidateAll(produced)).slice(0, 3), []);
});

test.run();
