/**
 * Escape 1 of issue 8: the `org.ocivirt.domain-xml` annotation is read from a config.json like
 * any OCI field, but none of the checks OCI fields pass sees it. Whatever in it would reach the
 * host (a filesystem with a host source, a host device, a host namespace, a security label, a
 * device or interface setting ocivirt does not know) is refused by the one conversion both the
 * CLI and the daemon run; what is inert (a bridge interface, lifecycle actions) is laid on, with
 * a warning, so --strict refuses it like any field outside the spec.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { InputError } from '../../src/errors.js';
import { desiredDomain } from '../../src/reconcile/desired.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import type { SpoolEntry } from '../../src/spool/index.js';
import { baseLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { minimal, testOptions } from './fixtures.js';

const FIELD = 'annotations["org.ocivirt.domain-xml"]';
const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-xml-only-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const fragment = (inner: string) =>
  Buffer.from(`<domain type='lxc' xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'><name>x</name>${inner}</domain>`).toString('base64');

function withFragment(inner: string, net = true): RuntimeConfig {
  const c = minimal();
  if (net) c.linux!.namespaces!.push({ type: 'network' });
  c.annotations = { 'org.ocivirt.domain-xml': fragment(inner) };
  return c;
}

const fs = (source: string, type = 'mount', more = '') => `<devices><filesystem type='${type}'${more}><source ${source}/><target dir='/host'/></filesystem></devices>`;

/** Fragments that reach the host, and what the refusal must name. */
const HOSTILE: [string, string, RegExp][] = [
  ['the host root, mount-like', fs("dir='/'"), /<filesystem type='mount'> with source \{"dir":"\/"\} reaches the host/],
  ['the host root, not mount-like (accessmode)', fs("dir='/'", 'mount', " accessmode='squash'"), /<filesystem type='mount'>.*reaches the host/],
  ['a relative source climbing out of the bundle', fs("dir='rootfs/../..'"), /reaches the host/],
  ['a source inside the bundle (a symlink there may lead anywhere)', fs(`dir='/srv/bundles/b1/rootfs'`), /reaches the host/],
  ['a bind of the container root', fs("dir='/'", 'bind'), /<filesystem type='bind'>/],
  ['a host block device as a filesystem', fs("dev='/dev/vda'", 'block'), /<filesystem type='block'>/],
  ['a host file loop-mounted', fs("file='/etc/shadow'", 'file'), /<filesystem type='file'>/],
  ['a ram filesystem naming a host path', fs("usage='1' dir='/etc'", 'ram'), /<filesystem type='ram'>/],
  ['/dev/vda as a hostdev', `<devices><hostdev mode='capabilities' type='storage'><source><block>/dev/vda</block></source></hostdev></devices>`, /<hostdev mode='capabilities' type='storage'> passes a host device through/],
  ['/dev/mem as a hostdev', `<devices><hostdev mode='capabilities' type='misc'><source><char>/dev/mem</char></source></hostdev></devices>`, /<hostdev mode='capabilities' type='misc'>/],
  ['a host NIC as a hostdev', `<devices><hostdev mode='capabilities' type='net'><source><interface>eth0</interface></source></hostdev></devices>`, /<hostdev mode='capabilities' type='net'>/],
  ['a USB device', `<devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev></devices>`, /<hostdev mode='subsystem' type='usb'>/],
  ['a host disk', `<devices><disk type='block' device='disk'><source dev='/dev/vda'/><target dev='sda'/></disk></devices>`, /device <disk> is not accepted/],
  ['the host network namespace', `<lxc:namespace><lxc:sharenet type='pid' value='1'/></lxc:namespace>`, /<lxc:sharenet type='pid'> joins a host namespace/],
  ['a named host netns', `<lxc:namespace><lxc:sharenet type='netns' value='red'/></lxc:namespace>`, /<lxc:sharenet type='netns'>/],
  ['the host IPC namespace', `<lxc:namespace><lxc:shareipc type='pid' value='1'/></lxc:namespace>`, /<lxc:shareipc type='pid'>/],
  ['the host UTS namespace', `<lxc:namespace><lxc:shareuts type='pid' value='1'/></lxc:namespace>`, /<lxc:shareuts type='pid'>/],
  ['no confinement', `<seclabel type='none'/>`, /<seclabel type='none'> changes the container's confinement/],
  ['no AppArmor confinement', `<seclabel type='none' model='apparmor'/>`, /<seclabel type='none'>/],
  ['an unconfined base label', `<seclabel type='dynamic' model='selinux'><baselabel>unconfined_u:unconfined_r:unconfined_t:s0</baselabel></seclabel>`, /<seclabel type='dynamic'>/],
  ['a static DAC label', `<seclabel type='static' model='dac' relabel='yes'><label>0:0</label></seclabel>`, /<seclabel type='static'>/],
  ['a console writing a host file', `<devices><console type='file'><source path='/etc/passwd'/></console></devices>`, /<console type='file'> reaches a host file/],
  ['a macvtap on a host NIC', `<devices><interface type='direct'><source dev='eth0' mode='passthrough'/></interface></devices>`, /<interface type='direct'> takes a host interface/],
  ['a host script for an interface', `<devices><interface type='ethernet'><script path='/tmp/x.sh'/></interface></devices>`, /<interface> setting <script> is not accepted/],
  ['a tap device backend', `<devices><interface type='bridge'><source bridge='br0'/><backend tap='/dev/mem'/></interface></devices>`, /setting <backend>/],
];

for (const [what, inner, reason] of HOSTILE)
  test(`refused from the annotation: ${what}`, () => {
    for (const strict of [false, true])
      assert.throws(
        () => fromNative(withFragment(inner), testOptions({ strict })),
        (e: Error) => e instanceof InputError && e.field === FIELD && reason.test(e.message) && !e.message.includes('\n'),
      );
  });

test('what reaches nothing on the host is laid on, with a warning; --strict refuses it', () => {
  const inner = `<devices><interface type='bridge'><source bridge='br0'/><target dev='veth-web'/><mtu size='1400'/></interface><console type='pty'/><watchdog model='i6300esb'/></devices><on_reboot>destroy</on_reboot><lxc:namespace><lxc:shareuts type='name' value='other'/></lxc:namespace>`;
  const r = fromNative(withFragment(inner), testOptions());
  assert.is(r.domain.devices.interfaces[0]?.source?.bridge, 'br0');
  assert.is(r.domain.onReboot, 'destroy');
  assert.equal(r.domain.lxcNamespace.shareuts, { type: 'name', value: 'other' });
  assert.ok(r.warnings.some((w) => w.startsWith(`${FIELD}: lays domain XML no OCI field has onto the domain (`)), r.warnings.join('\n'));
  assert.throws(() => fromNative(withFragment(inner), testOptions({ strict: true })), (e: Error) => e instanceof InputError && e.field === FIELD && /refused by --strict/.test(e.message));
});

function bundle(name: string, config: RuntimeConfig): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'rootfs/bin'), { recursive: true });
  writeFileSync(join(dir, 'rootfs/bin/sh'), '#!\n');
  chmodSync(join(dir, 'rootfs/bin/sh'), 0o755);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

test('the daemon path refuses it too, even for a source in the bindAllowList or a symlink in the bundle', async () => {
  const allowed = join(tmp, 'allowed');
  mkdirSync(allowed);
  const dir = bundle('symlinked', withFragment(fs(`dir='${join(tmp, 'symlinked', 'host')}'`)));
  symlinkSync('/', join(dir, 'host'));
  const cases: [string, string][] = [
    ['symlinked', dir],
    ['absolute', bundle('absolute', withFragment(fs("dir='/'")))],
    ['relative', bundle('relative', withFragment(fs("dir='../..'")))],
    ['allowed', bundle('allowed-src', withFragment(fs(`dir='${allowed}'`)))],
    ['hostdev', bundle('hostdev', withFragment(`<devices><hostdev mode='capabilities' type='storage'><source><block>/dev/vda</block></source></hostdev></devices>`))],
  ];
  for (const [name, path] of cases) {
    const entry: SpoolEntry = { name, path, kind: 'bundle', domainName: name, fingerprint: '' };
    const err = await desiredDomain(entry, { bindAllowList: [allowed], hostDeviceAllowList: { devices: [] } }, 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(err, InputError, name);
    assert.match((err as Error).message, /config\.json: annotations\["org\.ocivirt\.domain-xml"\]: refused: /, name);
  }
});

test('a hostile image: labels carrying org.ocivirt.domain-xml and org.ocivirt.start choose neither its XML nor its start', async () => {
  const b = new ImageBuilder();
  const labels = { 'org.ocivirt.domain-xml': fragment(fs("dir='/'")), 'org.ocivirt.start': 'true' };
  const m = b.image({ layers: [{ entries: baseLayerEntries() }], config: { Cmd: ['/bin/sh'], Labels: labels } });
  const layout = join(tmp, 'hostile-image');
  mkdirSync(layout);
  writeFiles(layout, b.layoutFiles([m]));
  const state = join(tmp, 'state');
  mkdirSync(state, { mode: 0o700 });
  const entry: SpoolEntry = { name: 'hostile-image', path: layout, kind: 'layout', domainName: 'hostile-image', fingerprint: '' };
  const d = await desiredDomain(entry, { stateDir: state, startPolicy: 'annotation' }, 1);
  assert.is(d.start, false, 'the image chose to start');
  assert.not.ok(d.domain.devices.filesystems.some((f) => f.target === '/host'), 'the image chose its domain XML');
  assert.equal(d.domain.devices.filesystems.map((f) => f.target), ['/', '/dev/shm', '/.ocivirt', '/.ocivirt/run'], 'the init shim\'s two mounts are ocivirt\'s own');
  assert.equal(
    d.domain.metadata.ours?.annotations.filter((a) => a.key.startsWith('image-label.')).map((a) => a.key),
    ['image-label.org.ocivirt.domain-xml', 'image-label.org.ocivirt.start'],
  );
});

test('ocivirt from-native refuses it with exit 2 and one line', () => {
  const dir = bundle('cli', withFragment(fs("dir='/'")));
  const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
  const r = spawnSync(bin, ['from-native', dir], { encoding: 'utf8' });
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, /^ocivirt from-native: .*config\.json: annotations\["org\.ocivirt\.domain-xml"\]: refused: <filesystem type='mount'> with source \{"dir":"\/"\} reaches the host .*\n$/);
  assert.is(r.stdout, '');
});

test.run();
