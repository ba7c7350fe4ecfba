/**
 * The init shim in real containers: entries reconciled by `syncOnce` (the daemon's pipeline) into
 * domains on the real libvirtd, each running its process through /.ocivirt/init. Inside: the
 * default seccomp profile (containers-common's, as podman writes it into config.json for x86_64,
 * fixtures/default-seccomp.json) and a hand-made one with argument conditions block with the
 * profile's errno and allow the rest (seen exactly through a raw system call made by a static probe,
 * fixtures/syscall-probe.c, built here); NoNewPrivs, rlimits, oom_score_adj, groups, umask, the five
 * capability sets and env values libvirt cannot carry are what the config says. A shim step that
 * fails runs no process and records setup-failed; an exit code is recorded. Domains are named
 * ocivirt-test-shim-<pid>-… and removed afterwards, whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { containerDir } from '../../src/shim/domain.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { captureLog } from '../helpers/log.js';
import { TEST_PREFIX, TEST_URI, buildBusyboxRootfs, cleanupDomains, domainState, enterNamespace, makeTempDir, removeTempDir, virsh } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}shim-${process.pid}-`;
const FIXTURES = new URL('../../../test/shim/fixtures/', import.meta.url).pathname;
const DEFAULT_PROFILE = JSON.parse(readFileSync(join(FIXTURES, 'default-seccomp.json'), 'utf8')) as Record<string, unknown>;
let tmp = '';
let syscallProbe = '';
let port: LibvirtPort;
const dom = (entry: string) => `${PREFIX}${entry}`;

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('shim');
  syscallProbe = join(tmp, 'syscall-probe');
  execFileSync('cc', ['-std=c11', '-O2', '-static', '-o', syscallProbe, join(FIXTURES, 'syscall-probe.c')]);
  port = await connectLibvirt(TEST_URI);
});

test.after(async () => {
  await port?.close();
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

function bundle(spool: string, name: string, process: Record<string, unknown>, linux: Record<string, unknown> = {}): void {
  const dir = join(spool, name);
  buildBusyboxRootfs(join(dir, 'rootfs'));
  copyFileSync(syscallProbe, join(dir, 'rootfs', 'bin', 'syscall-probe'));
  chmodSync(join(dir, 'rootfs', 'bin', 'syscall-probe'), 0o755);
  chmodSync(join(dir, 'rootfs', 'tmp'), 0o1777); // the probe writes there as uid 1000
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: true, user: { uid: 0, gid: 0 }, env: ['PATH=/bin'], cwd: '/', ...process },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }], ...linux },
    annotations: { 'org.ocivirt.start': 'true' },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

async function sync(spool: string, state: string): Promise<void> {
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, stopTimeoutMs: 500, retryDelayMs: 50 };
  const r = await syncOnce(port, opts);
  assert.ok(r.results.every((x) => x.ok), JSON.stringify(r.results.map((x) => [x.item.domain, x.error])));
}

/** The container's root on the host: the copy of the spool bundle's rootfs its domain runs from (reconcile/bundle-copy.ts). */
const rootfsOf = (name: string): string => parseDomainXml(virsh('dumpxml', '--inactive', dom(name))).devices.filesystems.find((fs) => fs.target === '/')!.source.dir!;

const statusOf = (state: string, name: string) => readFileSync(join(containerDir(state, dom(name)), 'run', 'status'), 'utf8');

/** The status for a message: the shim writes it a moment after the start. */
const statusNow = (state: string, name: string): string => {
  try {
    return statusOf(state, name).trim();
  } catch {
    return 'none yet';
  }
};

/** Polls until `fn` returns a value (the process writes its report a moment after the start). */
async function until<T>(fn: () => T | undefined, what: string | (() => string), ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    let v: T | undefined;
    try {
      v = fn();
    } catch {
      v = undefined;
    }
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${typeof what === 'string' ? what : what()}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A script line: one raw system call by the probe, its outcome ("ok RET" / "errno N") kept under `label` in /tmp/probes. */
const rawCall = (label: string, call: string) => `echo "${label} $(syscall-probe ${call})" >> /tmp/probes`;
/** label -> 'ok' or 'errno N', from the probes file (a call's return value, e.g. an fd number, is left out). */
const probes = (text: string) => Object.fromEntries(text.trim().split('\n').map((l) => [l.split(' ')[0]!, l.split(' ').slice(1).join(' ').replace(/^ok -?\d+$/, 'ok')]));

const line = (text: string, key: string) => text.split('\n').find((l) => l.startsWith(`${key}:`))?.split(':')[1]?.trim();
const capNames = (hex: string | undefined) => BigInt(`0x${hex ?? '0'}`);

test('the process runs under the shim as the config says: seccomp, no_new_privs, rlimits, oom_score_adj, groups, umask, capabilities, env', async () => {
  const spool = join(tmp, 'spool-probe');
  const state = join(tmp, 'state-probe');
  // what the process sees of itself, written where lxc-enter-namespace can read it
  const probe = [
    'exec 2>&1',
    'cat /proc/self/status > /tmp/status',
    'cat /proc/self/oom_score_adj > /tmp/oom',
    'umask > /tmp/umask',
    'ulimit -n > /tmp/nofile; ulimit -Hn >> /tmp/nofile',
    'env > /tmp/env',
    'id > /tmp/id',
    'kill -0 $$ && echo kill0-ok > /tmp/kill',
    'kill -USR2 $$ >> /tmp/kill 2>&1 || echo kill-usr2-refused >> /tmp/kill',
    rawCall('inet-dgram', 'socket 2 0x80002 0'), // AF_INET, SOCK_DGRAM|SOCK_CLOEXEC
    rawCall('inet-stream', 'socket 2 1 0'),
    rawCall('unix-dgram', 'socket 1 2 0'),
    'echo done > /tmp/done',
    'exec sleep 300',
  ].join('\n');
  bundle(spool, 'probe', {
    args: ['sh', '-c', probe],
    env: ['PATH=/bin', 'EMPTY=', 'AMP=a&b<c]]>d'],
    user: { uid: 1000, gid: 1000, additionalGids: [5, 20], umask: 0o27 },
    rlimits: [{ type: 'RLIMIT_NOFILE', soft: 512, hard: 1024 }],
    oomScoreAdj: 300,
    noNewPrivileges: true,
    capabilities: { bounding: ['CAP_KILL', 'CAP_CHOWN'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'], inheritable: ['CAP_KILL'], ambient: ['CAP_KILL'] },
  }, {
    // SIGUSR2 (12) to any process fails with EDQUOT (122); every other kill is allowed
    // an IPv4 datagram socket, whatever its flags (mask 0xf on the type), fails with EPROTO (71):
    // both conditions must hold, so a stream socket and a unix datagram socket work
    seccomp: {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['kill'], action: 'SCMP_ACT_ERRNO', errnoRet: 122, args: [{ index: 1, value: 12, op: 'SCMP_CMP_EQ' }] },
        { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 71, args: [{ index: 0, value: 2, op: 'SCMP_CMP_EQ' }, { index: 1, value: 0xf, valueTwo: 2, op: 'SCMP_CMP_MASKED_EQ' }] },
      ],
    },
  });
  await sync(spool, state);
  const name = dom('probe');
  // the container's /tmp is a directory of the root it runs from
  const cat = (f: string) => readFileSync(join(rootfsOf('probe'), f), 'utf8');
  await until(() => (cat('/tmp/done').trim() === 'done' ? true : undefined), () => `the probe finished (status: ${statusNow(state, 'probe')})`);
  const status = cat('/tmp/status');
  assert.is(line(status, 'NoNewPrivs'), '1');
  assert.is(line(status, 'Seccomp'), '2', 'a filter is loaded');
  assert.is(line(status, 'Groups'), '5 20');
  assert.is(line(status, 'Uid')?.split(/\s+/)[0], '1000');
  assert.is(line(status, 'Gid')?.split(/\s+/)[0], '1000');
  const KILL = 1n << 5n;
  const CHOWN = 1n << 0n;
  assert.is(capNames(line(status, 'CapBnd')), KILL | CHOWN, `bounding ${line(status, 'CapBnd')}`);
  assert.is(capNames(line(status, 'CapAmb')), KILL);
  assert.is(capNames(line(status, 'CapEff')), KILL, 'a non-root process gets its effective set through the ambient set');
  assert.is(capNames(line(status, 'CapInh')), KILL);
  assert.is(cat('/tmp/oom').trim(), '300');
  assert.is(cat('/tmp/umask').trim(), '0027');
  assert.equal(cat('/tmp/nofile').trim().split('\n'), ['512', '1024']);
  const env = cat('/tmp/env').split('\n');
  assert.ok(env.includes('EMPTY='), env.join(' | '));
  assert.ok(env.includes('AMP=a&b<c]]>d'));
  assert.not.ok(env.some((e) => e.startsWith('LIBVIRT_LXC_') || e.startsWith('container=')), 'exactly the config\'s environment');
  const kill = cat('/tmp/kill');
  assert.match(kill, /kill0-ok/);
  assert.match(kill, /Disk quota exceeded/, `the profile's errno: ${kill}`);
  assert.equal(probes(cat('/tmp/probes')), { 'inet-dgram': 'errno 71', 'inet-stream': 'ok', 'unix-dgram': 'ok' });
  // the shim is PID 1 and stays; its status file says running
  assert.equal(enterNamespace(name, ['/bin/cat', '/proc/1/cmdline']).split('\0').slice(0, 2), ['/.ocivirt/init', '/.ocivirt/spec']);
  assert.is(statusOf(state, 'probe'), 'running\n');
});

test('the default seccomp profile: what it does not allow fails with its errno, what it allows works; without no_new_privs too', async () => {
  const spool = join(tmp, 'spool-default');
  const state = join(tmp, 'state-default');
  const script = [
    'exec 2>&1',
    'chroot / /bin/true > /tmp/chroot 2>&1; echo "rc=$?" >> /tmp/chroot',
    'mkdir /tmp/made && echo mkdir-ok > /tmp/mkdir',
    rawCall('chroot', 'chroot s:/'), // the profile's ERRNO 1 list
    rawCall('personality-linux32', 'personality 8'), // allowed for these argument values only
    rawCall('personality-other', 'personality 0x40008'), // PER_LINUX32|ADDR_NO_RANDOMIZE: the default errno, ENOSYS
    rawCall('add_key', 'add_key'), // in no rule: the default errno
    rawCall('netlink-audit', 'socket 16 3 9'), // AF_NETLINK, SOCK_RAW, NETLINK_AUDIT: the profile's EINVAL
    rawCall('netlink-route', 'socket 16 3 0'),
    'cat /proc/self/status > /tmp/status',
    'echo done > /tmp/done',
    'exec sleep 300',
  ].join('\n');
  // runtime-spec's default capabilities of runc spec, no no_new_privs: the shim loads the filter
  // with CAP_SYS_ADMIN libvirt leaves it, then drops to these
  // and CAP_SYS_CHROOT: the kernel would let chroot through, the profile (written for a container
  // without it) does not
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT'];
  bundle(spool, 'default', { args: ['sh', '-c', script], capabilities: { bounding: caps, effective: caps, permitted: caps } }, { seccomp: DEFAULT_PROFILE });
  await sync(spool, state);
  const cat = (f: string) => readFileSync(join(rootfsOf('default'), f), 'utf8');
  await until(() => (cat('/tmp/done').trim() === 'done' ? true : undefined), () => `the script finished (status: ${statusNow(state, 'default')})`);
  // chroot: the profile's ERRNO 1 rule
  assert.match(cat('/tmp/chroot'), /Operation not permitted/, cat('/tmp/chroot'));
  assert.match(cat('/tmp/chroot'), /rc=1/);
  assert.is(cat('/tmp/mkdir').trim(), 'mkdir-ok');
  assert.equal(probes(cat('/tmp/probes')), {
    chroot: 'errno 1',
    'personality-linux32': 'ok',
    'personality-other': 'errno 38',
    add_key: 'errno 38',
    'netlink-audit': 'errno 22',
    'netlink-route': 'ok',
  });
  const status = cat('/tmp/status');
  assert.is(line(status, 'Seccomp'), '2');
  assert.is(line(status, 'NoNewPrivs'), '0');
  const want = (1n << 29n) | (1n << 5n) | (1n << 10n) | (1n << 18n);
  assert.is(capNames(line(status, 'CapBnd')), want, 'CAP_SYS_ADMIN and the shim\'s others are gone');
  assert.is(capNames(line(status, 'CapEff')), want);
});

test('a shim step that fails runs no process and records setup-failed; an exit code is recorded', async () => {
  const spool = join(tmp, 'spool-exit');
  const state = join(tmp, 'state-exit');
  bundle(spool, 'fails', { args: ['sh', '-c', 'touch /tmp/ran; sleep 300'] }, { sysctl: { 'net.ipv4.no_such_key': '1' } });
  bundle(spool, 'exits', { args: ['sh', '-c', 'touch /tmp/ran; exit 3'] });
  await sync(spool, state);
  await until(() => (domainState(dom('fails')) === 'shut off' ? true : undefined), 'fails shut off');
  await until(() => (domainState(dom('exits')) === 'shut off' ? true : undefined), 'exits shut off');
  assert.is(statusOf(state, 'fails'), 'setup-failed\n');
  assert.ok(existsSync(join(rootfsOf('fails'), 'tmp')), 'the root the container ran from');
  assert.not.ok(existsSync(join(rootfsOf('fails'), 'tmp', 'ran')), 'the process ran');
  assert.ok(existsSync(join(rootfsOf('exits'), 'tmp', 'ran')), 'where a process that runs leaves its mark');
  assert.is(statusOf(state, 'exits'), 'exited 3\n');
  // undefined with its entry: the directory goes too
  removeTempDir(join(spool, 'exits'));
  await sync(spool, state);
  assert.not.ok(virsh('list', '--all', '--name').includes(dom('exits')));
  assert.not.ok(existsSync(containerDir(state, dom('exits'))));
});

test.run();
