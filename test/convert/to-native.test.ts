/**
 * to-native of hand-written domains (no ocivirt metadata): everything libvirt-lxc has is mapped,
 * XML with no OCI counterpart goes into org.ocivirt.* annotations, the result passes the
 * runtime-spec schema, and from-native of that config restores the XML-only parts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import { idLookup } from '../../src/convert/host.js';
import { InputError } from '../../src/errors.js';
import { effectiveCaps } from '../../src/convert/passes/capabilities.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { projectDomain } from '../../src/xml/compare.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { HOST_DEVICES, runcSpec, testOptions } from './fixtures.js';
import { HAND_WRITTEN, HAND_WRITTEN_PORTABLE } from './hand-written.js';


function handBack() {
  return toNative(parseDomainXml(HAND_WRITTEN), { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion: 1, hostArch: 'x86_64' });
}

test('maps everything libvirt-lxc has into the runtime config', () => {
  const { config } = handBack();
  assertRuntimeSchemaValid(config);
  assert.is(config.ociVersion, '1.2.1');
  assert.equal(config.process?.args, ['/sbin/init', '--log-level=debug']);
  assert.equal(config.process?.env, ['LANG=C.UTF-8']);
  assert.is(config.process?.cwd, '/root');
  assert.equal(config.process?.user, { uid: 33, gid: 33 });
  assert.equal(config.root, { path: '/srv/hand/rootfs' });
  assert.is(config.hostname, 'hand');
  assert.equal(config.mounts?.slice(-3), [
    { destination: '/data', type: 'bind', source: '/srv/data', options: ['bind', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=1024k'] },
    { destination: '/shared', type: 'bind', source: '/srv/hand/rootfs/var/shared', options: ['bind', 'ro'] },
  ]);
  assert.equal(config.mounts?.map((m) => m.destination).slice(0, 5), ['/proc', '/dev', '/dev/pts', '/sys', '/sys/fs/cgroup'], 'the mounts libvirt provides');
  assert.equal(config.linux?.resources, {
    memory: { limit: 536870912, reservation: 268435456 },
    cpu: { shares: 2048, quota: -1, cpus: '0-1', mems: '0' },
    blockIO: { throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 100 }] },
  });
  assert.equal(config.linux?.uidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
  assert.equal(config.linux?.namespaces?.map((n) => n.type), ['pid', 'network', 'ipc', 'uts', 'mount', 'user']);
  assert.equal(config.linux?.devices, [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }]);
  assert.equal(config.linux?.netDevices, { eth7: {} });
  const caps = config.process?.capabilities?.bounding ?? [];
  assert.ok(caps.includes('CAP_SYS_TIME') && !caps.includes('CAP_KILL') && !caps.includes('CAP_MKNOD') && caps.includes('CAP_CHOWN'));
  assert.equal(config.process?.capabilities?.effective, caps);
});

test('XML with no OCI counterpart is kept in org.ocivirt.* annotations, never org.opencontainers.*', () => {
  const { config } = handBack();
  const ann = config.annotations ?? {};
  assert.is(ann['org.ocivirt.uuid'], '0b1c2d3e-4f50-4617-8899-aabbccddeeff');
  assert.is(ann['org.ocivirt.title'], 'Hand written');
  assert.is(ann['org.ocivirt.description'], 'by a person & virsh edit');
  assert.ok(Object.keys(ann).every((k) => k.startsWith('org.ocivirt.')), Object.keys(ann).join());
  const frag = Buffer.from(ann['org.ocivirt.domain-xml'] ?? '', 'base64').toString('utf8');
  for (const part of ["<interface type='bridge'>", "<mac address='52:54:00:aa:bb:cc'/>", '<cmdline>console=ttyS0 quiet</cmdline>', '<on_reboot>destroy</on_reboot>', '<on_crash>restart</on_crash>', "<clock offset='localtime'/>", '<partition>/machine/tenant</partition>', "<memory mode='interleave' nodeset='0'/>", "<filesystem accessmode='passthrough' type='file'>", '<watchdog', "<seclabel model='selinux' relabel='yes' type='dynamic'>", 'keep me', "<lxc:shareuts type='name' value='other'/>"])
    assert.ok(frag.includes(part), `${part} missing from:\n${frag}`);
  assert.is((frag.match(/<console/g) ?? []).length, 1, 'the first pty console is implied, the second kept');
  const warning = handBack().warnings.find((w) => w.startsWith('annotations["org.ocivirt.domain-xml"]: '));
  assert.ok(warning, 'the XML-only parts are warned about');
  for (const part of ['app:info', 'on_reboot', 'clock', 'resource', 'numatune', 'cmdline', 'filesystem', 'interface', 'console', 'watchdog', 'seclabel', 'lxc:namespace'])
    assert.ok(warning.includes(part), `${part} not named in: ${warning}`);
});

// (No virt-xml-validate here: libvirt's own schema has no <cmdline> for LXC, which its parser
// takes, so the hand-written domain itself is outside the schema.)
test('from-native of that config refuses what reaches the host from the annotation', () => {
  const { config } = handBack();
  assert.throws(
    () => fromNative(config, testOptions({ name: 'hand', hostDevice: (p) => HOST_DEVICES[p] })),
    (e: Error) => e instanceof InputError && /annotations\["org\.ocivirt\.domain-xml"\]: refused: <filesystem type='file'> with source \{"file":"\/srv\/img\.raw"\} reaches the host/.test(e.message),
  );
});

test('from-native of the config of a domain without them restores the hand-written domain', () => {
  const { config } = toNative(parseDomainXml(HAND_WRITTEN_PORTABLE), { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion: 1, hostArch: 'x86_64' });
  const r = fromNative(config, testOptions({ name: 'hand', hostDevice: (p) => HOST_DEVICES[p] }));
  const want = projectDomain(parseDomainXml(HAND_WRITTEN_PORTABLE));
  const got = projectDomain(r.domain);
  const same = (prefix: RegExp) => {
    for (const [k, v] of want) if (prefix.test(k)) assert.is(got.get(k), v, k);
  };
  same(/^(uuid|title|description|memory|vcpu\.cpuset|numatune|cputune\.shares|cputune\.quota|blkiotune|resource|os\.(init|initarg|initenv|initdir|inituser|initgroup|cmdline)|idmap|features\.privnet|clock|on_|devices\.(filesystem\[[0-24-9]\]|interface|hostdev|extra)|seclabel|lxc:namespace)/);
  // the bind of a container directory comes back as the same directory seen from the host
  assert.equal(r.domain.devices.filesystems[3], { type: 'mount', accessmode: 'passthrough', source: { dir: '/srv/hand/rootfs/var/shared' }, target: '/shared', readonly: true, attrs: {}, extra: [] });
  assert.is(got.get('memtune.soft_limit'), want.get('memtune.soft_limit'));
  assert.is(r.domain.devices.consoles.length, 2);
  assert.equal(r.domain.metadata.foreign.map((e) => e.local), ['info']);
  const caps = r.domain.features.capabilities!;
  const hand = parseDomainXml(HAND_WRITTEN).features.capabilities!;
  assert.equal(effectiveCaps(caps.policy, caps.caps), effectiveCaps(hand.policy, hand.caps), 'the same effective set');
});

test('what libvirt generates on define (default partition, driver seclabels) is not carried as XML-only', () => {
  const d = parseDomainXml(HAND_WRITTEN);
  d.resource = { partition: '/machine', extra: [] };
  d.seclabels = [{ attrs: { type: 'dynamic', model: 'apparmor', relabel: 'yes' }, extra: [] }, { attrs: { type: 'none', model: 'dac' }, extra: [] }];
  const frag = Buffer.from(toNative(d, { cgroupVersion: 1 }).config.annotations?.['org.ocivirt.domain-xml'] ?? '', 'base64').toString('utf8');
  assert.not.match(frag, /<resource>|<seclabel/);
});

test('an inituser/initgroup given as a name is resolved against the rootfs, and refused when it is not there', () => {
  const d = parseDomainXml(HAND_WRITTEN.replace('<inituser>+33</inituser>', '<inituser>www-data</inituser>').replace('<initgroup>+33</initgroup>', '<initgroup>staff</initgroup>'));
  const lookupId = idLookup('root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n', 'root:x:0:\nstaff:x:50:\n');
  const r = toNative(d, { cgroupVersion: 1, lookupId });
  assert.equal(r.config.process?.user, { uid: 33, gid: 50 });
  assertRuntimeSchemaValid(r.config);
  assert.throws(() => toNative(d, { cgroupVersion: 1 }), (e: Error) => e instanceof InputError && /os\.inituser: 'www-data' is a user name that is not in the rootfs \/etc\/passwd/.test(e.message));
  assert.throws(() => toNative(d, { cgroupVersion: 1, lookupId: idLookup('www-data:x:33:33::/:/bin/sh', undefined) }), /os\.initgroup: 'staff'/);
});

test('a domain without a root filesystem shares the host root', () => {
  const { config } = toNative(parseDomainXml(`<domain type='lxc'><name>bare</name><memory>1024</memory><os><type>exe</type><init>/bin/true</init></os><devices><console type='pty'/></devices></domain>`), { cgroupVersion: 1 });
  assertRuntimeSchemaValid(config);
  assert.equal(config.root, { path: '/' });
  assert.equal(config.process?.args, ['/bin/true']);
  assert.equal(config.linux?.resources?.memory, { limit: 1048576 });
});

test('what the config cannot give back (a hand edit of the vcpu count) is a warning, not dropped without a word', () => {
  const { domain } = fromNative(runcSpec(), testOptions({ name: 'web', owner: { entry: 'web' } }));
  assert.equal(toNative(domain, { cgroupVersion: 1, hostArch: 'x86_64' }).warnings, [], 'an unedited domain gives back the same domain');
  const edited = structuredClone(domain);
  edited.vcpu = { count: 4, placement: 'static' };
  const { warnings } = toNative(edited, { cgroupVersion: 1, hostArch: 'x86_64' });
  assert.equal(warnings.filter((w) => /^vcpu: not carried by the config \(the domain says 4, the config gives back 1\)/.test(w)).length, 1, warnings.join('\n'));
});

test.run();
