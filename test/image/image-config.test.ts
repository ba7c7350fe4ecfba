/** Image config -> runtime config (image-spec conversion.md, mapping notes section 4). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import { DEFAULT_PATH, HEALTHCHECK_ANNOTATION, imageConfigToRuntimeConfig, resolveUser, VOLUMES_ANNOTATION } from '../../src/convert/image-config.js';
import { parseImageConfig } from '../../src/image/documents.js';
import { fromNative } from '../../src/convert/from-native.js';
import type { ExecConfig, ImageConfig } from '../../src/image/documents.js';
import { validateRuntimeConfig } from '../../src/oci/validate.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nweb:x:33:33::/var/www:/usr/sbin/nologin\n# comment\nbroken:line\n';
const GROUP = 'root:x:0:\napp:x:1000:\nwheel:x:10:app,web\naudio:x:29:app\nwww:x:33:\n';

function image(config: ExecConfig, extra: Partial<ImageConfig> = {}): ImageConfig {
  return { os: 'linux', architecture: 'amd64', config, diffIds: [], ...extra };
}

const convert = (config: ExecConfig, extra: Partial<ImageConfig> = {}) =>
  imageConfigToRuntimeConfig({ image: image(config, extra), passwd: PASSWD, group: GROUP });

test('Entrypoint + Cmd become args; Cmd alone; Entrypoint alone', () => {
  assert.equal(convert({ Entrypoint: ['/init', '-v'], Cmd: ['serve', 'a b'] }).config.process?.args, ['/init', '-v', 'serve', 'a b']);
  assert.equal(convert({ Cmd: ['/bin/sh', '-c', 'echo hi'] }).config.process?.args, ['/bin/sh', '-c', 'echo hi']);
  assert.equal(convert({ Entrypoint: ['/app'] }).config.process?.args, ['/app']);
});

test('neither Entrypoint nor Cmd (a base or data image): a valid config without args and a warning; defining it is refused, saying why', () => {
  for (const exec of [{}, { Entrypoint: [], Cmd: [] }]) {
    const r = convert(exec);
    assert.is(r.config.process?.args, undefined);
    assert.ok(r.warnings.some((w) => /neither Entrypoint nor Cmd: config.json has no process.args/.test(w)), r.warnings.join('; '));
    validateRuntimeConfig(r.config, 'config.json');
    assert.throws(
      () => fromNative(r.config, { bundleDir: '/srv/bundles/base', cgroupVersion: 2 }),
      (e: Error) => e instanceof InputError && /process.args: is missing or empty: there is no program to run \(an image with neither Entrypoint nor Cmd gives none\)/.test(e.message),
    );
  }
});

test('Env is copied verbatim; PATH is added only when missing; HOME from passwd only when missing', () => {
  const withPath = convert({ Cmd: ['/x'], Env: ['PATH=/opt/bin', 'A=b=c', 'EMPTY='] }).config.process?.env;
  assert.equal(withPath, ['PATH=/opt/bin', 'A=b=c', 'EMPTY=', 'HOME=/root']);
  const without = convert({ Cmd: ['/x'], Env: ['HOME=/h'] }).config.process?.env;
  assert.equal(without, ['HOME=/h', DEFAULT_PATH]);
});

test('Env entries that are not NAME=value are dropped with a warning', () => {
  const r = convert({ Cmd: ['/x'], Env: ['NOEQUALS', '=v', 'OK=1'] });
  assert.equal(r.config.process?.env?.slice(0, 1), ['OK=1']);
  assert.is(r.warnings.filter((w) => /Env\[\d\].*dropped/.test(w)).length, 2);
});

test('WorkingDir becomes cwd; / when empty; a relative one is taken from /', () => {
  assert.is(convert({ Cmd: ['/x'], WorkingDir: '/srv/app' }).config.process?.cwd, '/srv/app');
  assert.is(convert({ Cmd: ['/x'] }).config.process?.cwd, '/');
  const r = convert({ Cmd: ['/x'], WorkingDir: 'srv' });
  assert.is(r.config.process?.cwd, '/srv');
  assert.ok(r.warnings.some((w) => /relative/.test(w)));
});

test('User forms: name, uid, name:group, uid:gid, uid:group, name:gid; additionalGids only for a bare name', () => {
  const u = (s: string | undefined) => resolveUser(s, PASSWD, GROUP);
  assert.equal(u(undefined), { uid: 0, gid: 0, home: '/root' });
  assert.equal(u(''), { uid: 0, gid: 0, home: '/root' });
  assert.equal(u('app'), { uid: 1000, gid: 1000, home: '/home/app', additionalGids: [10, 29] });
  assert.equal(u('web'), { uid: 33, gid: 33, home: '/var/www', additionalGids: [10] });
  assert.equal(u('1000'), { uid: 1000, gid: 1000, home: '/home/app' }, 'numeric user: passwd gives the group, no additionalGids');
  assert.equal(u('4321'), { uid: 4321, gid: 0 }, 'numeric user not in passwd: gid 0');
  assert.equal(u('app:wheel'), { uid: 1000, gid: 10, home: '/home/app' }, 'explicit group: no additionalGids');
  assert.equal(u('app:5'), { uid: 1000, gid: 5, home: '/home/app' });
  assert.equal(u('7:audio'), { uid: 7, gid: 29 });
  assert.equal(u('7:8'), { uid: 7, gid: 8 });
});

test('User errors: unknown names, no user database, malformed, out of range', () => {
  const bad: [string, string | undefined, string | undefined, RegExp][] = [
    ['ghost', PASSWD, GROUP, /user "ghost" is not in the image's \/etc\/passwd/],
    ['app:ghosts', PASSWD, GROUP, /group "ghosts" is not in the image's \/etc\/group/],
    ['app', undefined, undefined, /the image has no \/etc\/passwd/],
    ['1:staff', PASSWD, undefined, /the image has no \/etc\/group/],
    ['a:b:c', PASSWD, GROUP, /malformed user/],
    ['app:', PASSWD, GROUP, /empty group/],
    [':5', PASSWD, GROUP, /malformed user/],
    ['4294967295', PASSWD, GROUP, /out of range/],
    ['1:99999999999', PASSWD, GROUP, /out of range/],
  ];
  for (const [user, p, g, pattern] of bad)
    assert.throws(() => resolveUser(user, p, g, 'cfg.json'), (e: Error) => e instanceof InputError && pattern.test(e.message) && /cfg.json: config.User/.test(e.message), user);
});

test('the user goes into process.user; a non-root init keeps only the bounding capabilities', () => {
  const root = convert({ Cmd: ['/x'] }).config.process;
  assert.equal(root?.user, { uid: 0, gid: 0 });
  assert.ok(root?.capabilities?.effective?.includes('CAP_SETUID'));
  const app = convert({ Cmd: ['/x'], User: 'app' }).config.process;
  assert.equal(app?.user, { uid: 1000, gid: 1000, additionalGids: [10, 29] });
  assert.is(app?.capabilities?.effective, undefined);
  for (const cap of ['CAP_SETUID', 'CAP_SETGID', 'CAP_SETPCAP']) assert.ok(app?.capabilities?.bounding?.includes(cap), cap);
});

test('Labels become annotations and win over the implicit ones; ports, stop signal, platform, author, created', () => {
  const r = convert(
    { Cmd: ['/x'], ExposedPorts: { '80/tcp': {}, '53/udp': {} }, StopSignal: 'SIGQUIT', Labels: { 'org.opencontainers.image.author': 'label wins', team: 'a' } },
    { variant: 'v8', architecture: 'arm64', osVersion: '6.1', osFeatures: ['x', 'y'], author: 'me', created: '2026-01-01T00:00:00Z' },
  );
  assert.equal(r.config.annotations, {
    'org.opencontainers.image.os': 'linux',
    'org.opencontainers.image.architecture': 'arm64',
    'org.opencontainers.image.variant': 'v8',
    'org.opencontainers.image.os.version': '6.1',
    'org.opencontainers.image.os.features': 'x,y',
    'org.opencontainers.image.author': 'label wins',
    'org.opencontainers.image.created': '2026-01-01T00:00:00Z',
    'org.opencontainers.image.exposedPorts': '80/tcp,53/udp',
    'org.opencontainers.image.stopSignal': 'SIGQUIT',
    team: 'a',
  });
});

test('image labels never speak for ocivirt: org.ocivirt.* labels are kept under image-label., with a warning', () => {
  const xml = Buffer.from("<domain type='lxc'><name>x</name><devices><filesystem type='mount'><source dir='/'/><target dir='/host'/></filesystem></devices></domain>").toString('base64');
  const labels = { 'org.ocivirt.domain-xml': xml, 'org.ocivirt.start': 'true', 'ORG.OCIVIRT.Title': 'shout', 'org.ocivirt.image.volumes': '/etc', team: 'a' };
  const r = convert({ Cmd: ['/x'], Labels: labels });
  const keys = Object.keys(r.config.annotations ?? {});
  assert.not.ok(keys.some((k) => k.toLowerCase().startsWith('org.ocivirt.')), keys.join());
  assert.is(r.config.annotations?.['image-label.org.ocivirt.domain-xml'], xml);
  assert.is(r.config.annotations?.['image-label.org.ocivirt.start'], 'true');
  assert.is(r.config.annotations?.['image-label.ORG.OCIVIRT.Title'], 'shout');
  assert.is(r.config.annotations?.team, 'a');
  assert.is(r.warnings.filter((w) => /^the image label "(org\.ocivirt|ORG\.OCIVIRT)\..*" is in ocivirt's namespace/.test(w)).length, 4, r.warnings.join('\n'));
  // and from-native of the result has neither the host root nor a title chosen by the image
  const d = fromNative(r.config, { bundleDir: '/b', cgroupVersion: 2, hostArch: 'x86_64', resolveExecutable: (a) => a }).domain;
  assert.not.ok(d.devices.filesystems.some((f) => f.target === '/host'));
  assert.is(d.title, undefined);
});

test('Volumes are recorded in an annotation with a warning; the conversion itself mounts nothing', () => {
  const r = convert({ Cmd: ['/x'], Volumes: { '/data': {}, '/var/log': {} } });
  assert.is(r.config.annotations?.[VOLUMES_ANNOTATION], '/data,/var/log');
  assert.not.ok(r.config.mounts?.some((m) => m.destination === '/data'));
  assert.ok(r.warnings.some((w) => w.includes(`volumes (["/data","/var/log"])`)), r.warnings.join("\n"));
});

test('a HEALTHCHECK is kept as an annotation with a warning, not dropped; NONE is kept without one', () => {
  const health = { Test: ['CMD-SHELL', 'wget -q -O- http://localhost/ || exit 1'], Interval: 30_000_000_000, Retries: 3 };
  const r = convert({ Cmd: ['/x'], Healthcheck: health });
  assert.equal(JSON.parse(r.config.annotations![HEALTHCHECK_ANNOTATION]!), health);
  assert.ok(r.warnings.some((w) => w.startsWith('the image declares a HEALTHCHECK (["CMD-SHELL","wget') && w.includes('not run')), r.warnings.join('\n'));
  const none = convert({ Cmd: ['/x'], Healthcheck: { Test: ['NONE'] } });
  assert.is(none.config.annotations![HEALTHCHECK_ANNOTATION], '{"Test":["NONE"]}');
  assert.not.ok(none.warnings.some((w) => w.includes('HEALTHCHECK')));
  // read from the image config as Docker writes it, and checked
  const doc = { os: 'linux', architecture: 'amd64', rootfs: { type: 'layers', diff_ids: [] }, config: { Healthcheck: health } };
  assert.equal(parseImageConfig(doc, { file: 'c' }).config.Healthcheck, health);
  assert.throws(() => parseImageConfig({ ...doc, config: { Healthcheck: { Test: 'curl' } } }, { file: 'c' }), /config\.Healthcheck\.Test: must be an array of strings/);
});

test("a hostile image's megabyte HEALTHCHECK and VOLUME names reach the warnings cut short (the annotation keeps them whole)", () => {
  const huge = 'x'.repeat(1 << 20);
  const r = convert({ Cmd: ['/x'], Healthcheck: { Test: ['CMD', huge] }, Volumes: { [`/${huge}`]: {}, '/data': {} } });
  assert.is(JSON.parse(r.config.annotations![HEALTHCHECK_ANNOTATION]!).Test[1], huge);
  assert.ok(r.config.annotations![VOLUMES_ANNOTATION]!.includes(huge));
  const long = r.warnings.filter((w) => w.length > 500);
  assert.equal(long, [], `warnings of ${long.map((w) => w.length).join(', ')} characters`);
  assert.ok(r.warnings.some((w) => w.startsWith('the image declares a HEALTHCHECK (["CMD","xxx') && w.includes('...')), r.warnings.join('\n').slice(0, 2000));
  assert.ok(r.warnings.some((w) => w.startsWith('the image declares volumes (')), r.warnings.join('\n').slice(0, 2000));
});

test('non-Linux images are refused', () => {
  assert.throws(() => convert({ Cmd: ['x'] }, { os: 'windows' }), (e: Error) => /libvirt-lxc runs Linux images only/.test(e.message));
});

test('the result is valid (our validator and the official schema) and from-native takes it with only the expected warnings', () => {
  for (const user of ['', 'app']) {
    const { config } = convert({ Cmd: ['/bin/sh'], User: user, Env: ['A=1'], Labels: { l: 'v' }, ExposedPorts: { '80/tcp': {} } });
    validateRuntimeConfig(config, 'config.json');
    assertRuntimeSchemaValid(config);
    const r = fromNative(config, { bundleDir: '/srv/bundles/demo', cgroupVersion: 1 });
    assert.match(r.xml, /<init>\/bin\/sh<\/init>/);
    assert.match(r.xml, /<console type='pty'>/);
    assert.match(r.xml, /<initenv name='PATH'>/);
    // additionalGids (app's wheel/audio) are a libvirt-lxc limitation, nothing else should be lost
    const unexpected = r.warnings.filter((w) => !w.startsWith('process.user.additionalGids'));
    assert.equal(unexpected, [], `${user || 'root'}: ${unexpected.join('; ')}`);
  }
});

test.run();
