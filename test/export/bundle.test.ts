/**
 * Issue 10 item 5, self-contained exports (`ocivirt export --rootfs`) on the in-memory libvirt:
 * root.path is the relative "rootfs", a copy of the domain's root tree; binds of ocivirt volumes
 * leave config.json for the settings file beside the bundle (named and anonymous alike), other
 * binds stay; the spool's trust check accepts the bundle with no allow-list; staging leftovers
 * of a crash are removed and an existing rootfs replaced; no settings file when there is nothing
 * to say (and a stale one removed).
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { exportSelfContained, settingsPathOf } from '../../src/export/bundle.js';
import type { Mount } from '../../src/oci/runtime-spec.js';
import { parseEntrySettings } from '../../src/settings/index.js';
import { checkBundlePaths } from '../../src/spool/trust.js';
import { anonymousVolumeName, volumesDir } from '../../src/volumes/index.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { runcSpec, testOptions } from '../convert/fixtures.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-export-bundle-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const state = join(tmp, 'state');
const rootfs = join(tmp, 'original-rootfs');
const hostDir = join(tmp, 'host-shared');
const anon = anonymousVolumeName('web', '/data');
for (const d of [join(rootfs, 'etc'), join(rootfs, 'bin'), hostDir, join(volumesDir(state), 'cache', 'sub'), join(volumesDir(state), anon)]) mkdirSync(d, { recursive: true });
writeFileSync(join(rootfs, 'etc', 'motd'), 'hello from the original\n');
writeFileSync(join(rootfs, 'bin', 'tool'), '#!/bin/sh\n');
chmodSync(join(rootfs, 'bin', 'tool'), 0o751);
symlinkSync('../etc/motd', join(rootfs, 'bin', 'motd-link'));

const bind = (source: string, destination: string, ro = false): Mount => ({ destination, type: 'bind', source, options: ['rbind', ro ? 'ro' : 'rw'] });

/** A domain as ocivirt defines it: its rootfs at `rootfs`, the given binds after the spec's mounts. */
function domainXml(binds: Mount[]): string {
  const config = runcSpec();
  config.root = { path: rootfs };
  config.mounts = [...(config.mounts ?? []), ...binds];
  return buildDomainXml(fromNative(config, testOptions({ name: 'web', bundleDir: join(state, 'bundles/web/1'), owner: { entry: 'web' } })).domain);
}

async function portWith(binds: Mount[]): Promise<FakeLibvirt> {
  const port = new FakeLibvirt();
  await port.define(domainXml(binds));
  return port;
}

let serial = 0;
const outDir = () => join(tmp, `out${serial++}`, 'web');

test('root.path is "rootfs", a copy of the tree; volume binds become settings volumes, other binds stay; the trust check takes it as it is', async () => {
  const port = await portWith([
    bind(join(volumesDir(state), 'cache'), '/var/cache', true),
    bind(hostDir, '/shared'),
    bind(join(volumesDir(state), anon), '/data'),
    bind(join(volumesDir(state), 'cache', 'sub'), '/sub'), // inside a volume, not one: stays
  ]);
  const dir = outDir();
  const out = await exportSelfContained(port, 'web', dir, { stateDir: state, bindAllowList: [hostDir] });

  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  assert.is(config.root.path, 'rootfs');
  assert.equal(out.config, config);
  assert.is(readFileSync(join(dir, 'rootfs', 'etc', 'motd'), 'utf8'), 'hello from the original\n');
  assert.is(statSync(join(dir, 'rootfs', 'bin', 'tool')).mode & 0o7777, 0o751);
  assert.is(readlinkSync(join(dir, 'rootfs', 'bin', 'motd-link')), '../etc/motd');

  const binds = (config.mounts as Mount[]).filter((m) => m.options?.includes('rbind') || m.type === 'bind');
  assert.equal(binds.map((m) => [m.destination, m.source]), [['/shared', hostDir], ['/sub', join(volumesDir(state), 'cache', 'sub')]]);
  assert.ok((config.mounts as Mount[]).some((m) => m.destination === '/proc'), 'the other mounts are kept');

  const settingsPath = settingsPathOf(dir);
  assert.is(out.settingsPath, settingsPath);
  assert.is(settingsPath, `${dir}.ocivirt.json`);
  assert.is(statSync(settingsPath).mode & 0o777, 0o600);
  const settings = JSON.parse(readFileSync(settingsPath, 'utf8'));
  assert.equal(settings, { volumes: ['cache:/var/cache:ro', `${anon}:/data`] });
  assert.equal(out.volumes, settings.volumes);
  // valid settings as the spool reads them
  assert.equal(
    parseEntrySettings(settings, settingsPath).volumes?.map((v) => v.kind),
    ['named', 'named'],
  );

  // the bind inside a volume is outside the bundle and the allow-list: said, not dropped
  assert.equal(out.warnings.filter((w) => w.includes('outside the bundle and bindAllowList')).length, 1);
  assert.match(out.warnings.find((w) => w.includes('bindAllowList'))!, /mount \/sub/);

  // the spool's trust check, with the allow-list that holds the host dir, accepts the config as written
  const withoutSub = { ...config, mounts: (config.mounts as Mount[]).filter((m) => m.destination !== '/sub') };
  const paths = await checkBundlePaths(withoutSub, dir, [hostDir]);
  assert.is(paths.rootfs, join(dir, 'rootfs'));
  assert.equal(readdirSync(dir).sort(), ['config.json', 'rootfs'], 'no staging directory left');
});

test('without a state directory (or another one) no bind is taken for a volume', async () => {
  const port = await portWith([bind(join(volumesDir(state), 'cache'), '/var/cache')]);
  const dir = outDir();
  const out = await exportSelfContained(port, 'web', dir, { stateDir: join(tmp, 'other-state') });
  assert.is(out.settingsPath, undefined);
  assert.ok((out.config.mounts ?? []).some((m) => m.destination === '/var/cache'));
  assert.ok(out.warnings.some((w) => w.includes('/var/cache')), out.warnings.join('; '));
});

test('no settings file when there is nothing to say; one an earlier export left is removed', async () => {
  const port = await portWith([bind(hostDir, '/shared')]);
  const dir = outDir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(settingsPathOf(dir), '{"volumes":["cache:/var/cache"]}');
  const out = await exportSelfContained(port, 'web', dir, { stateDir: state, bindAllowList: [hostDir] });
  assert.is(out.settingsPath, undefined);
  assert.equal(out.volumes, []);
  assert.not.ok(existsSync(settingsPathOf(dir)));
  assert.equal(out.warnings, []);
});

test('networks, published ports and the stop policy leave config.json for the settings file, as its keys', async () => {
  const config = runcSpec();
  config.root = { path: rootfs };
  config.annotations = {
    'com.example.a': 'b',
    'org.ocivirt.networks': JSON.stringify([{ network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1', mtu: 1400 }, { bridge: 'br0', mac: '52:54:00:ab:cd:ef' }]),
    'org.ocivirt.settings.publish': JSON.stringify([{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.168.1.2', hostPort: 53, port: 53, protocol: 'udp' }]),
    'org.ocivirt.settings.stopSignal': 'SIGQUIT',
    'org.ocivirt.settings.stopTimeout': '5',
  };
  const port = new FakeLibvirt();
  await port.define(buildDomainXml(fromNative(config, testOptions({ name: 'web', bundleDir: join(state, 'bundles/web/1'), owner: { entry: 'web' } })).domain));
  const dir = outDir();
  const out = await exportSelfContained(port, 'web', dir, { stateDir: state });
  const written = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  assert.equal(Object.keys(written.annotations).filter((k) => k.startsWith('org.ocivirt.')), []);
  assert.is(written.annotations['com.example.a'], 'b');
  const settings = JSON.parse(readFileSync(out.settingsPath!, 'utf8'));
  assert.equal(settings, {
    networks: [{ network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1', mtu: 1400 }, { bridge: 'br0', mac: '52:54:00:ab:cd:ef' }],
    publish: ['8080:80/tcp', '192.168.1.2:53:53/udp'],
    stopSignal: 'SIGQUIT',
    stopTimeout: 5,
  });
  // the spool reads them back as the same settings
  const back = parseEntrySettings(settings, out.settingsPath!);
  assert.equal(back.publish, [{ hostPort: 8080, port: 80, protocol: 'tcp' }, { hostIp: '192.168.1.2', hostPort: 53, port: 53, protocol: 'udp' }]);
  assert.is(back.stopTimeout, 5);
});

test('staging leftovers of a crash are removed; an existing rootfs is replaced whole', async () => {
  const port = await portWith([]);
  const dir = outDir();
  mkdirSync(join(dir, '.rootfs.staging-1-2', 'etc'), { recursive: true });
  writeFileSync(join(dir, '.rootfs.staging-1-2', 'etc', 'motd'), 'half a copy');
  mkdirSync(join(dir, '.rootfs.old-1-2'), { recursive: true });
  mkdirSync(join(dir, 'rootfs', 'stale'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'stale', 'file'), 'from an earlier export');
  writeFileSync(join(dir, 'keep-me'), 'not ours');
  await exportSelfContained(port, 'web', dir, { stateDir: state });
  assert.equal(readdirSync(dir).sort(), ['config.json', 'keep-me', 'rootfs']);
  assert.not.ok(existsSync(join(dir, 'rootfs', 'stale')), 'the old rootfs is gone, not merged');
  assert.is(readFileSync(join(dir, 'rootfs', 'etc', 'motd'), 'utf8'), 'hello from the original\n');
  assert.ok(lstatSync(join(dir, 'rootfs')).isDirectory());
});

test('a copy that fails leaves the rootfs there as it was, and no staging directory', async () => {
  const port = await portWith([]);
  const dir = outDir();
  mkdirSync(join(dir, 'rootfs'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'previous'), 'x');
  // more free space demanded than any filesystem has: the copy is refused before it starts
  await exportSelfContained(port, 'web', dir, { stateDir: state, minFreeBytes: Number.MAX_SAFE_INTEGER }).then(
    () => assert.unreachable('should have failed'),
    (e: Error) => assert.match(e.message, /less than .* bytes free/),
  );
  assert.equal(readdirSync(dir), ['rootfs']);
  assert.ok(existsSync(join(dir, 'rootfs', 'previous')));
});

test('an export into the tree it copies is refused before anything is written', async () => {
  const port = await portWith([]);
  await exportSelfContained(port, 'web', join(rootfs, 'out', 'web'), { stateDir: state }).then(
    () => assert.unreachable('should have failed'),
    (e: Error) => assert.match(e.message, /is inside the tree it would copy/),
  );
  assert.not.ok(existsSync(join(rootfs, 'out')));
});

test('an unknown domain is an input error naming it', async () => {
  const port = new FakeLibvirt();
  await exportSelfContained(port, 'nope', outDir(), { stateDir: state }).then(
    () => assert.unreachable('should have failed'),
    (e: Error) => assert.match(e.message, /^nope: no such domain on fake:\/\/\//),
  );
});

test.run();
