import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { canonicalCpuset } from '../../src/xml/cpuset.js';
import { emptyDomain } from '../../src/xml/domain.js';
import { escapeAttr, escapeText, isXmlSafeText, xmlTextProblem } from '../../src/xml/escape.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { domainDifferences, sameDomain } from '../../src/xml/compare.js';

/** What libvirt 9 dumped (--inactive) for a domain defined from our canonical form. */
const DUMPED = `<domain type='lxc' xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'>
  <name>ocivirt-test-x</name>
  <uuid>4fdad2e7-fb53-45fc-a288-2cdb8e3b13cb</uuid>
  <metadata>
    <ocivirt:container xmlns:ocivirt="urn:ocivirt:metadata:1" schema="1" id="x">
      <ocivirt:annotation key="a&#10;b">x &amp; y</ocivirt:annotation>
    </ocivirt:container>
    <foo:bar xmlns:foo="urn:foo">hi</foo:bar>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <blkiotune>
    <weight>500</weight>
    <device>
      <path>/dev/block/8:0</path>
      <weight>100</weight>
      <read_bytes_sec>1048576</read_bytes_sec>
    </device>
  </blkiotune>
  <memtune>
    <hard_limit unit='KiB'>524288</hard_limit>
    <soft_limit unit='KiB'>262144</soft_limit>
    <swap_hard_limit unit='KiB'>1048576</swap_hard_limit>
  </memtune>
  <vcpu placement='static' cpuset='0-1'>2</vcpu>
  <cputune>
    <shares>512</shares>
    <period>100000</period>
    <quota>-1</quota>
  </cputune>
  <numatune>
    <memory mode='strict' nodeset='0'/>
  </numatune>
  <os>
    <type arch='x86_64'>exe</type>
    <init>/bin/sh</init>
    <initarg>-c</initarg>
    <initenv name='A'>"q" 'a'	tab</initenv>
    <initdir>/srv</initdir>
    <inituser>+1000</inituser>
    <initgroup>+1000</initgroup>
  </os>
  <idmap>
    <uid start='0' target='100000' count='1'/>
    <uid start='1' target='200000' count='10'/>
    <gid start='0' target='100000' count='65536'/>
  </idmap>
  <features>
    <privnet/>
    <capabilities policy='deny'>
      <kill state='on'/>
      <setgid state='on'/>
      <setfcap state='on'/>
      <setpcap state='on'/>
      <setuid state='on'/>
    </capabilities>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/lib/libvirt/libvirt_lxc</emulator>
    <filesystem type='mount' accessmode='passthrough'>
      <source dir='/tmp'/>
      <target dir='/'/>
      <readonly/>
    </filesystem>
    <filesystem type='ram' accessmode='passthrough'>
      <source usage='65537' units='KiB'/>
      <target dir='/tmp'/>
    </filesystem>
    <interface type='network'>
      <mac address='52:54:00:5C:0A:06'/>
      <source network='default'/>
      <ip address='192.168.122.50' family='ipv4' prefix='24'/>
      <guest dev='eth0'/>
    </interface>
    <console type='pty'>
      <target type='lxc' port='0'/>
    </console>
    <hostdev mode='capabilities' type='misc'>
      <source>
        <char>/dev/fuse</char>
      </source>
    </hostdev>
    <watchdog model='i6300esb'/>
  </devices>
  <lxc:namespace>
    <lxc:shareipc type='pid' value='1'/>
  </lxc:namespace>
</domain>
`;

test('parse: every modelled element lands in its typed field', () => {
  const d = parseDomainXml(DUMPED);
  assert.is(d.name, 'ocivirt-test-x');
  assert.is(d.memory, 524288);
  assert.equal(d.memtune, { hardLimit: 524288, softLimit: 262144, swapHardLimit: 1048576, extra: [] });
  assert.equal(d.blkiotune.devices, [{ path: '/dev/block/8:0', weight: 100, readBytesSec: 1048576 }]);
  assert.equal(d.vcpu, { count: 2, placement: 'static', cpuset: '0-1' });
  assert.equal(d.cputune.quota, -1);
  assert.equal(d.os.initenv, [{ name: 'A', value: `"q" 'a'\ttab` }]);
  assert.is(d.os.inituser, '+1000');
  assert.equal(d.idmap.uid[1], { start: 1, target: 200000, count: 10 });
  assert.is(d.features.privnet, true);
  assert.is(d.features.capabilities?.caps.length, 5);
  assert.is(d.devices.emulator, '/usr/lib/libvirt/libvirt_lxc');
  assert.equal(d.devices.filesystems[1]?.source, { usage: '65537', units: 'KiB' });
  assert.is(d.devices.interfaces[0]?.mac, '52:54:00:5C:0A:06');
  assert.is(d.devices.interfaces[0]?.guestDev, 'eth0');
  assert.equal(d.devices.consoles[0], { type: 'pty', targetType: 'lxc', port: 0, attrs: {}, extra: [] });
  assert.equal(d.devices.hostdevs[0]?.source, { char: '/dev/fuse' });
  assert.is(d.devices.extra[0]?.local, 'watchdog');
  assert.equal(d.lxcNamespace.shareipc, { type: 'pid', value: '1' });
  assert.is(d.metadata.ours?.id, 'x');
  assert.equal(d.metadata.ours?.annotations, [{ key: 'a\nb', value: 'x & y' }]);
  assert.is(d.metadata.foreign[0]?.local, 'bar');
});

test('build: writes back what libvirt dumped, byte for byte outside the metadata quoting', () => {
  const built = buildDomainXml(parseDomainXml(DUMPED));
  const normalise = (s: string) => s.replace(/"/g, "'");
  // libvirt writes metadata attributes with double quotes; everything else is identical
  const dumpedOutsideMeta = DUMPED.split('\n').filter((l) => !l.includes('ocivirt:') && !l.includes('foo:bar'));
  const builtOutsideMeta = built.split('\n').filter((l) => !l.includes('ocivirt:') && !l.includes('foo:bar'));
  assert.equal(builtOutsideMeta, dumpedOutsideMeta);
  assert.ok(normalise(built).includes(`<foo:bar xmlns:foo='urn:foo'>hi</foo:bar>`));
});

test('parse(build(x)) is the same domain, and build is a fixed point', () => {
  const d = parseDomainXml(DUMPED);
  const once = buildDomainXml(d);
  const again = parseDomainXml(once);
  assert.ok(sameDomain(d, again), domainDifferences(d, again).join('\n'));
  assert.is(buildDomainXml(again), once);
});

test('sameDomain ignores what define adds: emulator, arch, uuid, currentMemory, defaults, ports, accessmode', () => {
  const desired = emptyDomain('a');
  desired.memory = 1024;
  desired.vcpu = { count: 1, cpuset: '0,1' };
  desired.devices.filesystems.push({ type: 'mount', source: { dir: '/r' }, target: '/', readonly: false, attrs: {}, extra: [] });
  desired.devices.consoles.push({ type: 'pty', attrs: {}, extra: [] });
  desired.features.capabilities = { policy: 'deny', caps: [{ name: 'setuid', state: 'on' }, { name: 'kill', state: 'on' }] };
  desired.idmap.uid = [{ start: 1, target: 2, count: 3 }, { start: 0, target: 9, count: 1 }];
  const dumped = parseDomainXml(buildDomainXml(desired));
  dumped.uuid = '4FDAD2E7FB5345FCA2882CDB8E3B13CB';
  dumped.currentMemory = 1024;
  dumped.os.arch = 'x86_64';
  dumped.devices.emulator = '/usr/libexec/libvirt_lxc';
  dumped.vcpu = { count: 1, placement: 'static', cpuset: '0-1' };
  dumped.devices.filesystems[0]!.accessmode = 'passthrough';
  dumped.devices.consoles[0] = { type: 'pty', targetType: 'lxc', port: 0, attrs: {}, extra: [] };
  dumped.features.capabilities!.caps.reverse();
  dumped.idmap.uid.reverse();
  dumped.onPoweroff = 'destroy';
  assert.equal(domainDifferences(desired, dumped), []);
});

test('sameDomain ignores what hosts with systemd or a security driver add, unless we asked for it', () => {
  const desired = parseDomainXml(DUMPED);
  const dumped = parseDomainXml(DUMPED);
  dumped.resource = { partition: '/machine', extra: [] };
  dumped.seclabels = [{ attrs: { type: 'dynamic', model: 'apparmor', relabel: 'yes' }, label: 'libvirt-x', extra: [] }];
  dumped.devices.interfaces[0]!.mac = '52:54:00:5c:0a:06';
  assert.equal(domainDifferences(desired, dumped), []);
  desired.resource = { partition: '/machine/ours', extra: [] };
  assert.equal(domainDifferences(desired, dumped), ['resource.partition /machine/ours -> /machine']);
});

test('hostdevs compare as a set; filesystems in order (libvirt mounts them in order)', () => {
  const a = parseDomainXml(DUMPED);
  const b = parseDomainXml(DUMPED);
  b.devices.hostdevs.unshift({ mode: 'capabilities', type: 'net', source: { interface: 'eth1' }, attrs: {}, extra: [] });
  a.devices.hostdevs.push({ mode: 'capabilities', type: 'net', source: { interface: 'eth1' }, attrs: {}, extra: [] });
  assert.ok(sameDomain(a, b));
  b.devices.filesystems.reverse();
  assert.not.ok(sameDomain(a, b));
});

test('domainDifferences names each changed field with old and new value', () => {
  const a = parseDomainXml(DUMPED);
  const b = parseDomainXml(DUMPED);
  b.memtune.hardLimit = 1048576;
  b.os.initenv.push({ name: 'B', value: '1' });
  b.devices.filesystems[0]!.readonly = false;
  const diffs = domainDifferences(a, b);
  assert.ok(diffs.includes('memtune.hard_limit 524288 -> 1048576'), diffs.join('\n'));
  assert.ok(diffs.some((l) => l.startsWith('os.initenv ')));
  assert.ok(diffs.includes('devices.filesystem[0].readonly true -> (none)'));
  assert.is(diffs.length, 3);
  assert.not.ok(sameDomain(a, b));
});

test('sameDomain compares sizes in KiB whatever the unit, and ram usage truncated', () => {
  const a = parseDomainXml(`<domain type='lxc'><name>a</name><memory unit='MiB'>512</memory><devices><filesystem type='ram'><source usage='1' units='MiB'/><target dir='/t'/></filesystem></devices></domain>`);
  const b = parseDomainXml(`<domain type='lxc'><name>a</name><memory>524288</memory><devices><filesystem type='ram'><source usage='1024'/><target dir='/t'/></filesystem></devices></domain>`);
  assert.is(a.memory, 524288);
  assert.ok(sameDomain(a, b), domainDifferences(a, b).join('\n'));
  const c = parseDomainXml(`<domain type='lxc'><name>a</name><memory unit='b'>1025</memory></domain>`);
  assert.is(c.memory, 2, 'memory rounds up to whole KiB');
});

test('foreign metadata is ignored by sameDomain; ours is compared', () => {
  const a = parseDomainXml(DUMPED);
  const b = parseDomainXml(DUMPED);
  b.metadata.foreign = [];
  assert.ok(sameDomain(a, b));
  b.metadata.ours!.annotations[0]!.value = 'changed';
  assert.not.ok(sameDomain(a, b));
});

test('malformed XML is an InputError naming the file', () => {
  try {
    parseDomainXml('<domain type="lxc"><name>x</name>', '/tmp/bad.xml');
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /^\/tmp\/bad\.xml: not well-formed XML/);
    assert.not.match((e as Error).message, /\n/);
  }
  assert.throws(() => parseDomainXml('<domain><name>x</name><memory>lots</memory></domain>', 'f.xml'), /f\.xml: memory: 'lots' is not a size/);
  assert.throws(() => parseDomainXml('<network/>', 'f.xml'), /f\.xml: domain: the root element is <network>/);
  assert.throws(() => parseDomainXml('<domain type="lxc"/>', 'f.xml'), /name: the domain has no <name>/);
});

test('escaping: text escapes & < >; attributes also quotes, TAB, LF, CR', () => {
  assert.is(escapeText(`a&b<c>d"e'f`), `a&amp;b&lt;c&gt;d"e'f`);
  assert.is(escapeAttr(`a&'"\t\n\r<`), 'a&amp;&apos;&quot;&#9;&#10;&#13;&lt;');
  const d = emptyDomain('e');
  d.os.initenv.push({ name: 'V', value: `<&>"'\ttab\nline ünï 😀` });
  d.metadata.ours = { schema: '1', annotations: [{ key: "k'\t\n\r\"", value: ']]> & <' }], exact: [] };
  const back = parseDomainXml(buildDomainXml(d));
  assert.is(back.os.initenv[0]?.value, `<&>"'\ttab\nline ünï 😀`);
  assert.equal(back.metadata.ours?.annotations, [{ key: "k'\t\n\r\"", value: ']]> & <' }]);
});

test('XML-unsafe text is detected: CR and control characters', () => {
  assert.ok(isXmlSafeText('tab\tlf\nok ü'));
  assert.not.ok(isXmlSafeText('cr\r'));
  assert.match(xmlTextProblem('a\u0001') ?? '', /U\+0001/);
  assert.match(xmlTextProblem('a\r') ?? '', /carriage return/);
  assert.match(xmlTextProblem('\ud800x') ?? '', /U\+D800/);
  assert.is(xmlTextProblem('😀'), undefined);
});

test('cpusets are compared in canonical range form', () => {
  assert.is(canonicalCpuset('0,1'), '0-1');
  assert.is(canonicalCpuset('3,0-1,2,7'), '0-3,7');
  assert.is(canonicalCpuset('0-7,^3'), '0-2,4-7');
});

test('a hostdev source we do not model is kept whole, once', () => {
  const xml = `<domain type='lxc'><name>h</name><devices><hostdev mode='subsystem' type='usb'><source startupPolicy='optional'><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev></devices></domain>`;
  const d = parseDomainXml(xml);
  const out = buildDomainXml(d);
  assert.is((out.match(/<source/g) ?? []).length, 1);
  assert.match(out, /<vendor id='0x1234'\/>/);
  assert.ok(sameDomain(d, parseDomainXml(out)));
});

test('lxc namespace declarations are kept when elements are lifted out of their document', () => {
  const d = parseDomainXml(DUMPED);
  const xml = buildDomainXml(d);
  assert.match(xml, /<domain type='lxc' xmlns:lxc='http:\/\/libvirt.org\/schemas\/domain\/lxc\/1.0'>/);
  d.lxcNamespace = {};
  assert.not.match(buildDomainXml(d), /xmlns:lxc/);
});

test.run();
