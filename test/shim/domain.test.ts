/**
 * The init shim in every domain (src/shim/domain.ts, containers.ts): from-native with a state
 * directory runs the process through /.ocivirt/init, to-native gives the original config back,
 * what the shim enforces is no longer a warning, and the per-domain directory is staged, made
 * again when lost, collected and removed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalInput, fromNative } from '../../src/convert/from-native.js';
import { domainDifferences } from '../../src/xml/compare.js';
import { toNative } from '../../src/convert/to-native.js';
import { canonicalJson } from '../../src/convert/json.js';
import { InputError } from '../../src/errors.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { prepareContainer, prepareForStart, removeContainer, shimSpecOf } from '../../src/shim/containers.js';
import { containerDir, SHIM_INIT, SHIM_MOUNT, SHIM_RUN, SHIM_SPEC, shimLogOf, shimMounts, withoutShim } from '../../src/shim/domain.js';
import { shimSpecTokens } from '../../src/shim/spec.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { minimal, runcSpec, testOptions } from '../convert/fixtures.js';

const STATE = '/var/lib/ocivirt-test/state';

/** A config with everything libvirt-lxc cannot carry and the shim enforces. */
function hardened(): RuntimeConfig {
  const c = minimal();
  c.process!.args = ['sh', '-c', 'exit 3'];
  c.process!.env = ['PATH=/usr/bin:/bin', 'EMPTY=', 'AMP=a&b', 'LT=x<y', 'CDATA=]]>', '1BAD=name'];
  c.process!.user = { uid: 1000, gid: 1000, additionalGids: [5, 20], umask: 0o27 };
  c.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 2048 }];
  c.process!.noNewPrivileges = true;
  c.process!.oomScoreAdj = 500;
  c.process!.capabilities = { bounding: ['CAP_KILL', 'CAP_CHOWN'], effective: ['CAP_KILL'], permitted: ['CAP_KILL', 'CAP_CHOWN'], inheritable: [], ambient: ['CAP_KILL'] };
  c.linux!.namespaces!.push({ type: 'network' });
  c.linux!.sysctl = { 'net.ipv4.ip_forward': '1' };
  c.linux!.seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }],
  };
  return c;
}

const withState = (extra = {}) => testOptions({ name: 'web', shim: { stateDir: STATE }, ...extra });

test('from-native with a state directory runs the process through the shim, mounted from the container directory', () => {
  const { domain } = fromNative(hardened(), withState());
  const dir = containerDir(STATE, 'web');
  assert.is(domain.os.init, SHIM_INIT);
  assert.equal(domain.os.initargs, [SHIM_SPEC]);
  assert.equal(domain.os.initenv, [], 'the shim gives the process its exact environment');
  assert.is(domain.os.inituser, undefined, 'the shim switches the user itself');
  assert.is(domain.os.initgroup, undefined);
  const mounts = shimMounts(domain)!;
  assert.match(mounts.shimDir, new RegExp(`^${dir}/shim-[0-9a-f]{16}$`));
  assert.is(mounts.runDir, `${dir}/run`);
  const fs = domain.devices.filesystems.filter((f) => f.target === SHIM_MOUNT || f.target === SHIM_RUN);
  assert.equal(fs.map((f) => [f.target, f.readonly]), [[SHIM_MOUNT, true], [SHIM_RUN, false]]);
  const caps = domain.features.capabilities!.caps.map((c) => c.name);
  for (const c of ['setuid', 'setgid', 'setpcap', 'sys_admin', 'kill', 'chown']) assert.ok(caps.includes(c), c);
});

test('to-native of a domain running through the shim gives the original config back, through XML too', () => {
  for (const config of [hardened(), runcSpec(), minimal()]) {
    const { domain, xml } = fromNative(structuredClone(config), withState());
    const want = canonicalJson(canonicalInput(config, '/srv/bundles/b1'));
    assert.is(canonicalJson(toNative(domain, { cgroupVersion: 1, hostArch: 'x86_64' }).config), want);
    assert.is(canonicalJson(toNative(parseDomainXml(xml), { cgroupVersion: 1, hostArch: 'x86_64' }).config), want);
  }
});

test('withoutShim gives back the process and filesystems from-native makes without a state directory', () => {
  const shimmed = fromNative(hardened(), withState()).domain;
  const plain = fromNative(hardened(), testOptions({ name: 'web' })).domain;
  const back = withoutShim(parseDomainXml(buildDomainXml(shimmed)));
  assert.equal(back.os, plain.os);
  assert.equal(back.devices.filesystems, plain.devices.filesystems);
  assert.is(back.metadata.ours!.shim, undefined);
  // the plain converter adds setuid/setgid/setpcap for libvirt's own user switch; the shim needs no such thing
  const names = (d: typeof plain) => d.features.capabilities!.caps.map((c) => c.name);
  assert.equal(names(back), names(plain).filter((c) => !['setuid', 'setgid', 'setpcap'].includes(c)));
});

test('a seccomp profile the shim cannot load is refused at conversion, naming the field', () => {
  const c = hardened();
  c.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] };
  assert.throws(() => fromNative(c, withState()), (e: unknown) => e instanceof InputError && e.field === 'linux.seccomp.syscalls[0].action');
});

test('what the shim enforces is no longer a warning, nor refused by --strict; without the shim it is', () => {
  const withShim = fromNative(hardened(), withState({ strict: true }));
  assert.equal(withShim.warnings, []);
  const without = fromNative(hardened(), testOptions({ name: 'web' }));
  for (const field of ['process.rlimits', 'process.noNewPrivileges', 'process.oomScoreAdj', 'process.user.additionalGids', 'process.user.umask', 'linux.seccomp', 'process.env[1]', 'process.capabilities'])
    assert.ok(without.warnings.some((w) => w.startsWith(`${field}`)), `${field} warned without the shim: ${without.warnings.join(' | ')}`);
  assert.throws(() => fromNative(hardened(), testOptions({ name: 'web', strict: true })), (e: unknown) => e instanceof InputError);
});

test('what the shim cannot enforce stays a warning: sysctls outside net.*, capabilities libvirt does not know', () => {
  const c = hardened();
  c.linux!.sysctl = { 'net.core.somaxconn': '1024', 'kernel.shmmax': '1', 'vm.swappiness': '1' };
  c.process!.capabilities!.bounding!.push('CAP_BPF');
  const { warnings } = fromNative(c, withState());
  assert.ok(warnings.some((w) => w.startsWith('linux.sysctl["kernel.shmmax"]')), warnings.join(' | '));
  assert.ok(warnings.some((w) => w.startsWith('linux.sysctl["vm.swappiness"]')));
  assert.not.ok(warnings.some((w) => w.includes('somaxconn')));
  // in the host's network namespace, net.* is the host's: not set either
  c.linux!.namespaces = c.linux!.namespaces!.filter((n) => n.type !== 'network');
  assert.ok(fromNative(c, withState()).warnings.some((w) => w.startsWith('linux.sysctl["net.core.somaxconn"]')));
  c.linux!.namespaces!.push({ type: 'network', path: '/run/netns/other' });
  assert.ok(fromNative(c, withState()).warnings.some((w) => w.startsWith('linux.sysctl["net.core.somaxconn"]')), 'a network namespace joined by path is not the container\'s own');
  assert.ok(warnings.some((w) => w.startsWith('process.capabilities: CAP_BPF')));
  assert.throws(() => fromNative(c, withState({ strict: true })), (e: unknown) => e instanceof InputError && /refused by --strict/.test(e.message));
});

test('a config mount at or under /.ocivirt is refused when the shim is used', () => {
  for (const destination of ['/.ocivirt', '/.ocivirt/run', '/.ocivirt/../.ocivirt/x']) {
    const c = minimal();
    c.mounts = [{ destination, type: 'bind', source: '/srv/data', options: ['bind'] }];
    assert.throws(() => fromNative(c, withState()), (e: unknown) => e instanceof InputError && /mounts\[0\]\.destination/.test(String((e as InputError).field)), destination);
  }
});

test('the spec comes from the definition: the resolved program, the exact env, the capability sets, the status file', () => {
  const { domain } = fromNative(hardened(), withState());
  const t = shimSpecTokens(shimSpecOf(parseDomainXml(buildDomainXml(domain))));
  const records = (k: string) => t.flatMap((x, i) => (x === k ? [t[i + 1]] : []));
  assert.equal(records('arg'), ['/bin/sh', '-c', 'exit 3']);
  assert.equal(records('env'), hardened().process!.env);
  assert.equal(records('group'), ['5', '20']);
  assert.ok(t.includes('caps'));
  const capsOf = (set: string) => t.flatMap((x, i) => (x === 'cap' && t[i + 1] === set ? [t[i + 2]] : []));
  assert.equal(capsOf('bounding'), ['0', '5']);
  assert.equal(capsOf('effective'), ['5']);
  assert.equal(capsOf('ambient'), ['5']);
  assert.equal(capsOf('inheritable'), []);
  assert.equal(records('status'), ['/.ocivirt/run/status']);
  assert.equal(records('sysctl'), ['net.ipv4.ip_forward']);
});

test('the spec keeps the output in /.ocivirt/run/log, each file capped as the definition says (8 MiB unless given)', () => {
  const logOf = (d: ReturnType<typeof fromNative>['domain']) => {
    const t = shimSpecTokens(shimSpecOf(parseDomainXml(buildDomainXml(d))));
    const i = t.indexOf('log');
    return i < 0 ? undefined : t.slice(i + 1, i + 3);
  };
  assert.equal(logOf(fromNative(hardened(), withState()).domain), ['/.ocivirt/run/log', String(8 * 1024 * 1024)]);
  const small = fromNative(hardened(), testOptions({ name: 'web', shim: { stateDir: STATE, logFileBytes: 65536 } }));
  assert.equal(logOf(small.domain), ['/.ocivirt/run/log', '65536']);
  assert.match(small.xml, /<ocivirt:shim [^>]*logFileBytes='65536'/, 'the cap is readable in the definition');
  // a definition made before capture (no attribute): no log record, the process prints to the console as before
  const old = parseDomainXml(small.xml.replace(/ logFileBytes='65536'/, ''));
  assert.is(shimLogOf(old), undefined);
  assert.is(logOf(old), undefined);
  // a hand-edited value that is no number is not taken
  assert.is(shimLogOf(parseDomainXml(small.xml.replace(/logFileBytes='65536'/, "logFileBytes='1e9'"))), undefined);
});

test('a changed cap is a changed desired definition (digest, version directory), not the config to-native gives back', () => {
  const a = fromNative(hardened(), withState()).domain;
  const b = fromNative(hardened(), testOptions({ name: 'web', shim: { stateDir: STATE, logFileBytes: 1 << 20 } })).domain;
  assert.is.not(a.metadata.ours!.desiredDigest, b.metadata.ours!.desiredDigest);
  assert.is.not(shimMounts(a)!.shimDir, shimMounts(b)!.shimDir, 'the running container keeps its own spec');
  assert.ok(domainDifferences(b, a).some((d) => d.startsWith('metadata.ocivirt.logFileBytes 1048576 -> 8388608')), domainDifferences(b, a).join(' | '));
  const opts = { cgroupVersion: 1 as const, hostArch: 'x86_64' };
  assert.is(canonicalJson(toNative(b, opts).config), canonicalJson(toNative(a, opts).config));
  assert.is(withoutShim(b).metadata.ours!.logFileBytes, undefined);
});

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'ocivirt-shimdir-'));
}

test('the container directory: staged and renamed, read-only files, made again when lost, old versions collected at start, removed', async () => {
  const state = tmp();
  const binary = join(state, 'fake-init');
  writeFileSync(binary, '#!/bin/sh\n');
  try {
    const v1 = fromNative(hardened(), testOptions({ name: 'web', shim: { stateDir: state } })).domain;
    const m1 = shimMounts(v1)!;
    assert.ok(await prepareContainer(v1, binary));
    assert.not.ok(await prepareContainer(v1, binary), 'already there: nothing to do');
    assert.equal(readdirSync(m1.shimDir).sort(), ['init', 'run', 'spec']);
    assert.equal(readFileSync(join(m1.shimDir, 'spec')), shimSpecOf(v1));
    assert.is(lstatSync(join(m1.shimDir, 'spec')).mode & 0o777, 0o400);
    assert.is(lstatSync(join(m1.shimDir, 'init')).mode & 0o777, 0o555);
    assert.is(lstatSync(m1.runDir).mode & 0o777, 0o700);
    // a rebuilt shim binary does not change a prepared version
    writeFileSync(binary, '#!/bin/sh\n# rebuilt\n');
    await prepareContainer(v1, binary);
    assert.is(readFileSync(join(m1.shimDir, 'init'), 'utf8'), '#!/bin/sh\n');

    const c2 = hardened();
    c2.process!.args = ['sh', '-c', 'exit 4'];
    const v2 = fromNative(c2, testOptions({ name: 'web', shim: { stateDir: state } })).domain;
    const m2 = shimMounts(v2)!;
    assert.is.not(m2.shimDir, m1.shimDir, 'a new definition gets its own version: a running container keeps its own');
    writeFileSync(join(m1.runDir, 'status'), 'exited 0\n');
    await prepareContainer(v2, binary);
    assert.ok(existsSync(m1.shimDir));
    // a crash left a staging directory; the start collects it and the old version
    mkdirSync(join(containerDir(state, 'web'), '.staging-shim-0000000000000000-x'));
    await prepareForStart(v2, binary);
    assert.equal(readdirSync(containerDir(state, 'web')).sort(), ['run', m2.shimDir.split('/').pop()!].sort());
    assert.is(readFileSync(join(m1.runDir, 'status'), 'utf8'), 'exited 0\n', 'run/ outlives versions');
    // lost (a crash before the define, a state directory restored without it): the start makes it again
    chmodSync(m2.shimDir, 0o755);
    rmSync(m2.shimDir, { recursive: true });
    await prepareForStart(v2, binary);
    assert.equal(readFileSync(join(m2.shimDir, 'spec')), shimSpecOf(v2));
    await removeContainer(state, 'web');
    assert.not.ok(existsSync(containerDir(state, 'web')));
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

test('a failed staging leaves nothing under the version name', async () => {
  const state = tmp();
  try {
    const d = fromNative(hardened(), testOptions({ name: 'web', shim: { stateDir: state } })).domain;
    await assert.not.ok(await prepareContainer(d, join(state, 'no-such-binary')).then(() => true, () => false));
    assert.not.ok(existsSync(shimMounts(d)!.shimDir));
    assert.equal(readdirSync(containerDir(state, 'web')), ['run']);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

test("run/ and what the shim made there follow the container's root when its idmap changed; nothing the container made is followed", async () => {
  const state = tmp();
  const binary = join(state, 'fake-init');
  writeFileSync(binary, '#!/bin/sh\n');
  const mapped = (hostID: number) => {
    const c = hardened();
    c.linux!.namespaces!.push({ type: 'user' });
    c.linux!.uidMappings = [{ containerID: 0, hostID, size: 65536 }];
    c.linux!.gidMappings = [{ containerID: 0, hostID, size: 65536 }];
    return fromNative(c, testOptions({ name: 'web', shim: { stateDir: state } })).domain;
  };
  try {
    const v1 = mapped(100000);
    const { runDir } = shimMounts(v1)!;
    await prepareForStart(v1, binary);
    assert.is(lstatSync(runDir).uid, 100000);
    // what the shim of v1 made, as v1's root
    const log = join(runDir, 'log');
    mkdirSync(log);
    for (const f of [join(runDir, 'status'), join(log, 'current'), join(log, 'previous')]) writeFileSync(f, 'x');
    const outside = join(state, 'host-file');
    writeFileSync(outside, 'host');
    symlinkSync(outside, join(log, 'junk'));
    for (const p of [log, join(runDir, 'status'), join(log, 'current'), join(log, 'previous')]) chownSync(p, 100000, 100000);
    const v2 = mapped(300000);
    await prepareForStart(v2, binary);
    for (const p of [runDir, log, join(runDir, 'status'), join(log, 'current'), join(log, 'previous')])
      assert.equal([lstatSync(p).uid, lstatSync(p).gid], [300000, 300000], p);
    assert.is(lstatSync(outside).uid, 0, 'a symlink in the log directory is not followed');
    // the container replaced its log directory by a symlink to a host directory: not followed either
    rmSync(log, { recursive: true });
    const hostDir = join(state, 'host-dir');
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, 'current'), 'host');
    chownSync(hostDir, 300000, 300000);
    chownSync(join(hostDir, 'current'), 300000, 300000);
    symlinkSync(hostDir, log);
    await prepareForStart(mapped(500000), binary);
    assert.is(lstatSync(runDir).uid, 500000);
    assert.is(lstatSync(join(hostDir, 'current')).uid, 300000);
    assert.is(lstatSync(hostDir).uid, 300000);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

test('a domain without the shim needs no directory', async () => {
  const d = fromNative(minimal(), testOptions({ name: 'web' })).domain;
  assert.is(shimMounts(d), undefined);
  assert.not.ok(await prepareContainer(d, '/nonexistent'));
  assert.is(withoutShim(d), d);
});

test.run();
