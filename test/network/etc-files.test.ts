/**
 * The generated /etc/hosts, /etc/hostname and /etc/resolv.conf (network/etc-files.ts): their
 * contents, which binds a rootfs can take, hostile rootfs shapes (targets linked into /.oldroot,
 * libvirt's view of the host while it mounts, absolute or through `..`; a missing /etc; /etc/hosts
 * a directory), and through whole passes: written into the state directory, mounted read-only,
 * left out by to-native so the round trip stays exact.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { etcContents, etcDirOf, ownNames, planEtcMounts } from '../../src/network/etc-files.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { toNative } from '../../src/convert/to-native.js';
import { fromNative } from '../../src/convert/from-native.js';
import { buildDomainXml } from '../../src/xml/build.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { startProblems } from '../../src/spool/preflight.js';
import { writeNetworkedBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { tmp } from '../image/fixtures.js';

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-etc-files-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

const lan = { network: 'lan', ip: '10.77.0.5/24', gateway: '10.77.0.1' };

test('contents: localhost, own names on each address, the networks as nameservers and search domains', () => {
  const c = etcContents({
    domainName: 'p-web',
    entryStem: 'web',
    hostname: 'web.example.com',
    attachments: [{ ...lan, dnsDomain: 'lan.test' }, { network: 'dmz', ip: '10.88.0.9/24', gateway: '10.88.0.1' }],
  });
  assert.equal(c.hosts.split('\n').filter((l) => !l.startsWith('#')), [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    '10.77.0.5\tp-web web.example.com web',
    '10.88.0.9\tp-web web.example.com web',
    '',
  ]);
  assert.is(c.hostname, 'p-web\n');
  assert.equal(c['resolv.conf'].split('\n').filter((l) => !l.startsWith('#')), ['search lan.test', 'nameserver 10.77.0.1', 'nameserver 10.88.0.1', '']);
});

test('names: only DNS labels and hostnames; a network without DNS gives no nameserver', () => {
  // hostile entry names and hostnames never reach the files
  assert.equal(ownNames({ domainName: 'p-x', entryStem: 'x y\n10.0.0.1 evil', hostname: 'a b' }), ['p-x']);
  assert.equal(ownNames({ domainName: 'web-', entryStem: '-web' }), ['web-']); // the hostname in force is kept as libvirt sets it
  assert.equal(ownNames({ domainName: 'p-web', entryStem: 'Web' }), ['p-web', 'web']);
  const c = etcContents({ domainName: 'a', attachments: [{ ...lan, dns: false, dnsDomain: 'bad domain' }] });
  assert.equal(c['resolv.conf'].split('\n').filter((l) => !l.startsWith('#') && l !== ''), []);
});

function rootfs(name: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'etc'), { recursive: true });
  return dir;
}

test('plan: a file mount for each file the rootfs has or can get; the config\'s own mounts win', async () => {
  const r = rootfs('r');
  writeFileSync(join(r, 'etc', 'hosts'), 'image\n');
  const p = await planEtcMounts(r, false, '/state/etc', ['/etc/resolv.conf']);
  assert.equal(p.mounts, [
    { source: '/state/etc/hosts', target: '/etc/hosts' },
    { source: '/state/etc/hostname', target: '/etc/hostname' },
  ]);
  assert.equal(p.warnings, []);
  assert.equal((await planEtcMounts(r, false, '/state/etc', ['/etc'])).mounts, []);
});

test('plan: read-only root without the file, /etc/hosts a directory, no /etc: left out with a warning or the directory at /etc', async () => {
  const r = rootfs('r');
  writeFileSync(join(r, 'etc', 'hostname'), 'image\n');
  mkdirSync(join(r, 'etc', 'hosts'));
  const ro = await planEtcMounts(r, true, '/s', []);
  assert.equal(ro.mounts, [{ source: '/s/hostname', target: '/etc/hostname' }]);
  assert.is(ro.warnings.length, 2);
  assert.match(ro.warnings.join('\n'), /\/etc\/hosts in the rootfs is not a regular file/);
  assert.match(ro.warnings.join('\n'), /read-only rootfs has no \/etc\/resolv\.conf/);

  const bare = join(root, 'bare');
  mkdirSync(bare);
  assert.equal((await planEtcMounts(bare, false, '/s', [])).mounts, [{ source: '/s', target: '/etc' }]);
  const bareRo = await planEtcMounts(bare, true, '/s', []);
  assert.equal(bareRo.mounts, []);
  assert.match(bareRo.warnings[0]!, /read-only rootfs has no \/etc/);
  writeFileSync(join(bare, 'etc'), 'a file');
  assert.match((await planEtcMounts(bare, false, '/s', [])).warnings[0]!, /\/etc in the rootfs is not a directory/);
});

function domainWithMounts(rootDir: string, targets: string[]) {
  const d = fromNative(
    { ociVersion: '1.0.2', process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: rootDir }, linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] } },
    { bundleDir: root, name: 'x', cgroupVersion: 2, hostArch: 'x86_64', ownMounts: targets.map((t) => ({ source: `/state/${t.replace(/\//g, '_')}`, target: t })) },
  ).domain;
  return d;
}

test('hostile: a target linked into /.oldroot (absolute, through .., through a linked /etc) is refused before define', async () => {
  const shapes: [string, (r: string) => void][] = [
    ['absolute', (r) => symlinkSync('/.oldroot/tmp/pwned', join(r, 'etc', 'hosts'))],
    ['dotdot', (r) => symlinkSync('../../../.oldroot/tmp/pwned', join(r, 'etc', 'hosts'))],
    ['etc', (r) => {
      rmSync(join(r, 'etc'), { recursive: true });
      symlinkSync('/.oldroot/etc', join(r, 'etc'));
    }],
    ['oldroot itself', (r) => symlinkSync('/.oldroot', join(r, 'etc', 'hosts'))],
  ];
  for (const [name, shape] of shapes) {
    const r = rootfs(name.replace(/ /g, '-'));
    shape(r);
    const plan = await planEtcMounts(r, false, '/state/etc', []);
    const problems = await startProblems(domainWithMounts(r, plan.mounts.map((m) => m.target)), r);
    assert.ok(problems.some((p) => p.path === '/etc/hosts' || p.path === '/etc'), `${name}: ${JSON.stringify(plan)}`);
    assert.match(problems.find((p) => p.path.startsWith('/etc'))!.reason, /leads to \/\.oldroot.*refused/, name);
  }
  // links that stay inside the container are fine: `..` never climbs above its root
  const inside = rootfs('inside');
  symlinkSync('../../../tmp/hosts', join(inside, 'etc', 'hosts'));
  symlinkSync('../../..', join(inside, 'etc', 'hostname'));
  const plan = await planEtcMounts(inside, false, '/s', []);
  assert.equal(plan.mounts.map((m) => m.target), ['/etc/hosts', '/etc/resolv.conf']);
  assert.match(plan.warnings[0]!, /\/etc\/hostname in the rootfs is not a regular file/);
  assert.equal((await startProblems(domainWithMounts(inside, ['/etc/hosts']), inside)).filter((p) => p.field === 'mounts'), []);
});

test('round trip: ocivirt\'s own mounts are left out by to-native; a hand-changed one is the config\'s', () => {
  const r = rootfs('rt');
  const cfg: RuntimeConfig = { ociVersion: '1.0.2', process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: r }, mounts: [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['bind'] }], linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] } };
  const opts = { bundleDir: root, name: 'x', cgroupVersion: 2 as const, hostArch: 'x86_64' };
  const plain = fromNative(cfg, opts);
  const own = fromNative(cfg, { ...opts, ownMounts: [{ source: '/state/containers/x/etc/hosts', target: '/etc/hosts' }] });
  assert.is(own.domain.devices.filesystems.at(-1)!.target, '/etc/hosts');
  assert.is(own.domain.devices.filesystems.at(-1)!.readonly, true);
  assert.is.not(own.domain.metadata.ours!.desiredDigest, plain.domain.metadata.ours!.desiredDigest);
  const back = toNative(parseDomainXml(own.xml));
  assert.equal(back.config, toNative(parseDomainXml(plain.xml)).config);
  // edited by hand (made writable): no longer ocivirt's, so it shows as a bind
  const edited = parseDomainXml(own.xml);
  edited.devices.filesystems.at(-1)!.readonly = false;
  const mounts = (toNative(parseDomainXml(buildDomainXml(edited))).config.mounts ?? []).map((m) => m.destination);
  assert.ok(mounts.includes('/etc/hosts'));
});

/** A networked bundle whose image has its own /etc/hosts. */
function bundle(dir: string, extra: Record<string, unknown> = {}): void {
  writeNetworkedBundle(dir, extra);
  mkdirSync(join(dir, 'rootfs', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'etc', 'hosts'), 'the image\'s own\n');
}

test('passes: a container on a network gets the files in the state dir, mounted read-only; one without gets none; the image\'s file is untouched', async () => {
  const spool = join(root, 'spool');
  const state = join(root, 'state');
  mkdirSync(spool, { recursive: true });
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, log: captureLog().log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10, addressLockDir: join(root, 'lock') };
  const port = new FakeLibvirt();
  await port.defineNetwork(`<network><name>lan</name><domain name='lan.test'/><ip address='10.77.0.1' prefix='24'/></network>`);
  bundle(join(spool, 'web'), { hostname: 'www.example.com' });
  bundle(join(spool, 'solo'));
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ networks: [{ network: 'lan', ip: '10.77.0.50/24' }] }));
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error), []);
  const etc = etcDirOf(state, 'web');
  const fs = parseDomainXml(port.domains.get('web')!.xml!).devices.filesystems.filter((f) => f.target?.startsWith('/etc'));
  assert.equal(fs.map((f) => [f.source.dir, f.target, f.readonly]), [
    [join(etc, 'hosts'), '/etc/hosts', true],
    [join(etc, 'hostname'), '/etc/hostname', true],
    [join(etc, 'resolv.conf'), '/etc/resolv.conf', true],
  ]);
  assert.match(readFileSync(join(etc, 'hosts'), 'utf8'), /^10\.77\.0\.50\tweb www\.example\.com$/m);
  assert.is(readFileSync(join(etc, 'hostname'), 'utf8'), 'web\n');
  assert.match(readFileSync(join(etc, 'resolv.conf'), 'utf8'), /search lan\.test\nnameserver 10\.77\.0\.1\n$/);
  assert.is(readFileSync(join(spool, 'web', 'rootfs', 'etc', 'hosts'), 'utf8'), 'the image\'s own\n');
  assert.equal(parseDomainXml(port.domains.get('solo')!.xml!).devices.filesystems.filter((f) => f.target?.startsWith('/etc')), []);
  // stable: a second pass changes nothing
  assert.equal((await syncOnce(port, opts)).plan.map((i) => i.action), ['nothing', 'nothing']);
  // to-native of the defined domain: no /etc mounts, the annotation of the networks as before
  const back = toNative(parseDomainXml(port.domains.get('web')!.xml!)).config;
  assert.equal((back.mounts ?? []).filter((m) => m.destination.startsWith('/etc')), []);
});

test.run();
