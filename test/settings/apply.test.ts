/**
 * applySettings: each key's effect on the runtime config (the settings file wins over
 * config.json and the image), Docker's rules for entrypoint and command, `null` unsetting a
 * variable, users looked up inside the rootfs, recorded keys as annotations and in notInForce,
 * and bind volumes only under bindAllowList.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { applySettings, parseEntrySettings, type ApplyContext } from '../../src/settings/index.js';
import { withEnv } from '../../src/settings/apply.js';

let dir = '';
let ctx: ApplyContext;
const FILE = '/spool/web.ocivirt.json';

test.before.each(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'ocivirt-settings-apply-')));
  mkdirSync(join(dir, 'bundle', 'rootfs', 'etc'), { recursive: true });
  writeFileSync(join(dir, 'bundle', 'rootfs', 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'bundle', 'rootfs', 'etc', 'group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  mkdirSync(join(dir, 'allowed', 'data'), { recursive: true });
  mkdirSync(join(dir, 'elsewhere'), { recursive: true });
  ctx = { file: FILE, domainName: 'web', bundleDir: join(dir, 'bundle'), rootfs: join(dir, 'bundle', 'rootfs'), bindAllowList: [join(dir, 'allowed')] };
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

const base = (): RuntimeConfig => ({
  ociVersion: '1.2.0',
  process: {
    cwd: '/',
    args: ['/bin/sh', '-c', 'x'],
    env: ['PATH=/bin', 'A=old', 'B=keep'],
    user: { uid: 0, gid: 0 },
    capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] },
  },
  root: { path: 'rootfs' },
  annotations: { 'com.example.a': 'from-config' },
});
const apply = (value: object, c: RuntimeConfig = base(), x: Partial<ApplyContext> = {}) => applySettings(c, parseEntrySettings(value, FILE), { ...ctx, ...x });
const refusal = (value: object, x: Partial<ApplyContext> = {}) =>
  apply(value, base(), x).then(
    () => 'accepted',
    (e: Error) => e.message,
  );

test('no settings, no change', async () => {
  const r = await apply({});
  assert.equal(r.config, base());
  assert.equal(r.notInForce, []);
});

test('env: set in place, added, and null unsets', async () => {
  const r = await apply({ env: { A: 'new', C: 'added', B: null } });
  assert.equal(r.config.process!.env, ['PATH=/bin', 'A=new', 'C=added']);
  assert.equal(withEnv(['A=1', 'A=2'], { A: '3' }), ['A=3']);
});

test('a bundle: entrypoint + command become process.args; command alone replaces them', async () => {
  assert.equal((await apply({ command: ['/bin/echo', 'hi'] })).config.process!.args, ['/bin/echo', 'hi']);
  assert.equal((await apply({ entrypoint: ['/bin/sh', '-c'], command: ['echo hi'] })).config.process!.args, ['/bin/sh', '-c', 'echo hi']);
  assert.equal((await apply({ entrypoint: ['/bin/true'] })).config.process!.args, ['/bin/true']);
  assert.is(await refusal({ entrypoint: [] }), `${FILE}: entrypoint: leaves nothing to run: entrypoint and command together must name a program`);
});

test("an image: Docker's rules over the image's Entrypoint and Cmd", async () => {
  const image = { entrypoint: ['/entry'], cmd: ['serve'] };
  assert.equal((await apply({ command: ['debug'] }, base(), { image })).config.process!.args, ['/entry', 'debug']);
  assert.equal((await apply({ entrypoint: ['/bin/sh'] }, base(), { image })).config.process!.args, ['/bin/sh']);
  assert.equal((await apply({ entrypoint: ['/bin/sh'], command: ['-c', 'x'] }, base(), { image })).config.process!.args, ['/bin/sh', '-c', 'x']);
  assert.equal((await apply({ entrypoint: [], command: ['/bin/true'] }, base(), { image })).config.process!.args, ['/bin/true']);
});

test('user: looked up in the rootfs; a non-root user loses effective caps; an image gets its HOME', async () => {
  const r = await apply({ user: 'app' }, base(), { image: { env: ['PATH=/bin'] } });
  assert.equal(r.config.process!.user, { uid: 1000, gid: 1000, additionalGids: [2000] });
  assert.equal(r.config.process!.capabilities, { bounding: ['CAP_KILL'] });
  assert.ok(r.config.process!.env!.includes('HOME=/home/app'));
  assert.equal((await apply({ user: '123:456' })).config.process!.user, { uid: 123, gid: 456 });
  assert.is(await refusal({ user: 'nobody' }), `${FILE}: user: user "nobody" is not in the image's /etc/passwd`);
});

test('user: /etc/passwd is read inside the rootfs, never through a link out of it', async () => {
  rmSync(join(dir, 'bundle', 'rootfs', 'etc', 'passwd'));
  writeFileSync(join(dir, 'elsewhere', 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
  symlinkSync(join(dir, 'elsewhere', 'passwd'), join(dir, 'bundle', 'rootfs', 'etc', 'passwd'));
  assert.match(await refusal({ user: 'evil' }), /user: user "evil" (is not in|cannot be resolved)/);
});

test('workdir, hostname, memory, cpus, pids, start, annotations', async () => {
  const r = await apply({ workdir: '/srv', hostname: 'web', memory: '64M', cpus: 1.5, start: false, annotations: { 'com.example.a': 'from-settings' } });
  const c = r.config;
  assert.is(c.process!.cwd, '/srv');
  assert.is(c.hostname, 'web');
  assert.equal(c.linux?.resources, { memory: { limit: 64 * 1024 ** 2 }, cpu: { quota: 150000, period: 100000 } });
  assert.equal(c.annotations, { 'com.example.a': 'from-settings', 'org.ocivirt.start': 'false' });
  assert.equal(r.notInForce, []);
  // libvirt-lxc cannot set another hostname nor limit pids: recorded, said
  const other = await apply({ hostname: 'other', pids: 64 });
  assert.equal(other.config.linux?.resources?.pids, { limit: 64 });
  assert.equal(other.notInForce, ['hostname', 'pids']);
});

test('restart, stopSignal, stopTimeout and publish are recorded and in force (the restart supervisor, the stop and the daemon read them back); networks and named volumes are left to later steps', async () => {
  const r = await apply({
    restart: 'on-failure:3',
    stopSignal: 'SIGQUIT',
    stopTimeout: 5,
    networks: ['default', { network: 'lan', ip: '192.168.1.5/24' }],
    publish: ['8080:80'],
    volumes: ['cache:/var/cache:ro'],
  });
  assert.equal(r.notInForce, []);
  assert.is(r.config.annotations!['org.ocivirt.settings.stopSignal'], 'SIGQUIT');
  assert.is(r.config.annotations!['org.ocivirt.settings.publish'], JSON.stringify([{ hostPort: 8080, port: 80, protocol: 'tcp' }]));
  const a = r.config.annotations!;
  assert.is(a['org.ocivirt.settings.restart'], 'on-failure:3');
  assert.is(a['org.ocivirt.settings.stopTimeout'], '5');
  // resolved with their addresses by the desired-state step (network/addresses.ts), not recorded here
  assert.is(a['org.ocivirt.settings.networks'], undefined);
  assert.is(a['org.ocivirt.networks'], undefined);
  assert.is(a['org.ocivirt.settings.volumes'], undefined);
  assert.equal(r.config.mounts, []);
});

test('a bind volume under bindAllowList becomes a bind mount; elsewhere it is refused naming the file and the volume', async () => {
  const r = await apply({ volumes: [`${dir}/allowed/data:/data:ro`] });
  assert.equal(r.config.mounts, [{ destination: '/data', type: 'bind', source: join(dir, 'allowed', 'data'), options: ['rbind', 'ro'] }]);
  assert.match(await refusal({ volumes: [`${dir}/elsewhere:/data`] }), new RegExp(`^${FILE}: volumes\\[0\\]: host path .* outside the bundle and the allowed mount sources`));
  assert.match(await refusal({ volumes: ['/:/host'] }), /volumes\[0\]: host path "\/" resolves to \/, outside/);
  assert.match(await refusal({ volumes: ['/etc:/host'] }, { bindAllowList: [] }), /none configured/);
  // a link inside the allowed directory that leads out of it does not help
  symlinkSync('/etc', join(dir, 'allowed', 'etc'));
  assert.match(await refusal({ volumes: [`${dir}/allowed/etc:/x`] }), /resolves to \/etc, outside/);
});

test('a volume wins over a config.json mount at the same place', async () => {
  const c = base();
  c.mounts = [{ destination: '/data', type: 'tmpfs', source: 'tmpfs' }, { destination: '/proc', type: 'proc', source: 'proc' }];
  const r = await apply({ volumes: [`${dir}/allowed/data:/data`] }, c);
  assert.equal(r.config.mounts!.map((m) => `${m.destination} ${m.type}`), ['/proc proc', '/data bind']);
  // a named volume too: the config.json mount at its place goes, the volume step adds the volume
  const named = await apply({ volumes: ['cache:/data'] }, c);
  assert.equal(named.config.mounts!.map((m) => `${m.destination} ${m.type}`), ['/proc proc']);
});

test.run();
