/**
 * The real shim binary (dist/shim/ocivirt-init, built by run-tests.mjs through make -C shim) run on
 * the host as PID 1 of a new pid namespace (`unshare --pid --fork --mount-proc`), with a spec from
 * encodeShimSpec, and a busybox `sh -c` as the configured process printing what it got.
 * Needs root (namespaces, setgroups, setuid); skipped otherwise.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { encodeShimSpec } from '../../src/shim/spec.js';
import { prng, runSeed } from '../helpers/prng.js';
import { schemasDir } from '../helpers/schema.js';

const root = new URL('../../..', import.meta.url).pathname;
const SHIM = join(root, 'dist/shim/ocivirt-init');
const BUSYBOX = '/bin/busybox';
const isRoot = process.getuid?.() === 0;
const it = isRoot ? test : test.skip;

const scratch = mkdtempSync(join(tmpdir(), 'ocivirt-shim-'));
chmodSync(scratch, 0o755); // the non-root cases write in their case directory
let n = 0;
/** A fresh directory per case: the spec, the status file, markers. */
function caseDir(): string {
  const d = join(scratch, String(n++));
  mkdirSync(d);
  chmodSync(d, 0o777);
  return d;
}

interface Proc {
  args?: string[];
  script?: string;
  env?: string[];
  cwd?: string;
  user?: Record<string, unknown>;
  [k: string]: unknown;
}
function config(p: Proc, linux?: Record<string, unknown>): RuntimeConfig {
  const { script, ...rest } = p;
  return {
    ociVersion: '1.2.0',
    process: {
      cwd: '/',
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
      user: { uid: 0, gid: 0 },
      args: [BUSYBOX, 'sh', '-c', script ?? 'true'],
      ...rest,
    },
    ...(linux ? { linux } : {}),
  } as unknown as RuntimeConfig;
}

interface Result { code: number | null; signal: string | null; stdout: string; stderr: string; status: string | undefined }

/** Runs the shim as PID 1 with `spec` (a config or raw bytes); `wrap` is a shell line run before `exec` of the shim. */
function run(dir: string, spec: RuntimeConfig | Buffer, opts: { unshare?: string[]; wrap?: string; pid1?: boolean; prefix?: string[] } = {}): Result {
  const specPath = join(dir, 'spec');
  const statusPath = join(dir, 'status');
  writeFileSync(specPath, Buffer.isBuffer(spec) ? spec : encodeShimSpec(spec, { statusPath }));
  const shim = `${(opts.prefix ?? []).join(' ')} ${SHIM} ${specPath}`;
  const argv = opts.pid1 === false
    ? [SHIM, specPath]
    : ['unshare', '--pid', '--fork', '--mount-proc', ...(opts.unshare ?? []),
      ...(opts.wrap ? [BUSYBOX, 'sh', '-c', `${opts.wrap} && exec ${shim}`] : [SHIM, specPath])];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', OUTSIDE: 'leaks' } });
  if (r.error) throw r.error;
  return {
    code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr,
    status: existsSync(statusPath) ? readFileSync(statusPath, 'utf8') : undefined,
  };
}

const show = (r: Result) => `exit ${r.code} ${r.signal ?? ''}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\nstatus: ${r.status}`;

it("the runtime-spec project's own good-spec-example.json, with a busybox process, runs as configured", () => {
  const dir = caseDir();
  const example = JSON.parse(readFileSync(join(schemasDir(), 'runtime-spec-examples', 'good-spec-example.json'), 'utf8')) as RuntimeConfig;
  // its process is an interactive `sh`; print what the shim applied instead
  example.process!.args = [BUSYBOX, 'sh', '-c', 'id; ulimit -n; ulimit -c; grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; ' +
    'cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/core/somaxconn; chmod 644 /tmp; echo "chmod=$?"'];
  const r = run(dir, example, { unshare: ['--net'] });
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /^uid=1\(\w+\) gid=1\(\w+\) groups=5\(\w+\),6\(\w+\)$/m); // exactly additionalGids
  assert.equal(r.stdout.split('\n').slice(1, 5), ['1024', '2', 'NoNewPrivs:\t1', 'Seccomp:\t2']); // ulimit -c is in 512-byte blocks
  assert.equal(r.stdout.split('\n').slice(5, 7), ['1', '256']);
  // the profile's chmod (and getcwd) get EPERM
  assert.match(r.stdout, /^chmod=1$/m);
  assert.match(r.stderr, /chmod: \/tmp: Operation not permitted/);
});

/** Every failure: the process (which would touch a marker) never runs, exit non-zero, a clear message, status setup-failed. */
function refusedToRun(dir: string, r: Result, code: number, message: RegExp): void {
  assert.is(r.code, code, show(r));
  assert.match(r.stderr, message);
  assert.not.ok(existsSync(join(dir, 'ran')), `the process ran:\n${show(r)}`);
  assert.is(r.status, 'setup-failed\n');
}
const marker = (dir: string) => `touch ${dir}/ran`;

test('the shim binary was built (make -C shim, run by run-tests.mjs)', () => {
  assert.ok(existsSync(SHIM), `${SHIM} is missing: run make -C shim (needs libseccomp-dev)`);
});

it('applies groups, uid, umask, rlimits, oom_score_adj, no_new_privs and an exact env; the process is PID 2', () => {
  const dir = caseDir();
  const script = [
    'echo "pid=$$"',
    'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status',
    'echo "nofile=$(ulimit -n)"',
    'grep "Max open files" /proc/self/limits',
    'grep "Max core file size" /proc/self/limits',
    'echo "oom=$(cat /proc/self/oom_score_adj)"',
    'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"',
    'echo "umask=$(umask)"',
    'echo "empty=[${EMPTY-unset}] amp=[$AMP] outside=[${OUTSIDE-unset}]"',
    'echo "cwd=$(pwd)"',
  ].join('; ');
  const r = run(dir, config({
    script,
    env: ['PATH=/bin', 'EMPTY=', 'AMP=a&b<c]]>'],
    cwd: '/tmp',
    user: { uid: 1000, gid: 1000, umask: 0o027, additionalGids: [5, 7] },
    rlimits: [{ type: 'RLIMIT_NOFILE', soft: 123, hard: 456 }, { type: 'RLIMIT_CORE', soft: 0, hard: 2 ** 64 }],
    oomScoreAdj: 500, // raising needs no capability (lowering needs CAP_SYS_RESOURCE, which a test host may lack)
    noNewPrivileges: true,
  }));
  assert.is(r.code, 0, show(r));
  const out = r.stdout;
  assert.match(out, /^pid=2$/m);
  assert.match(out, /^NoNewPrivs:\s+1$/m);
  assert.match(out, /^Seccomp:\s+0$/m); // no profile: no filter
  assert.match(out, /^nofile=123$/m);
  assert.match(out, /^Max open files\s+123\s+456\s+files/m);
  assert.match(out, /^Max core file size\s+0\s+unlimited\s+bytes/m);
  assert.match(out, /^oom=500$/m);
  assert.match(out, /^uid=1000 gid=1000 groups=1000 5 7$/m);
  assert.match(out, /^umask=0027$/m);
  assert.match(out, /^empty=\[\] amp=\[a&b<c\]\]>\] outside=\[unset\]$/m);
  assert.match(out, /^cwd=\/tmp$/m);
  assert.is(r.status, 'exited 0\n');
});

it('the process starts with every signal default and unblocked, whatever the shim was started with (libvirt_lxc ignores SIGPIPE)', () => {
  const dir = caseDir();
  // `yes | head` ends only when yes dies of SIGPIPE; ignored, it would spin on EPIPE until the timeout
  const r = run(dir, config({ script: 'yes | head -n 2; exec grep -E "^Sig(Ign|Blk):" /proc/self/status' }), { wrap: 'trap "" PIPE HUP USR1' });
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /^y\ny\n/);
  assert.match(r.stdout, /^SigBlk:\s+0+$/m);
  assert.match(r.stdout, /^SigIgn:\s+0+$/m);
});

it('without noNewPrivileges the bit stays clear (libseccomp does not set it behind our back), with a filter loaded', () => {
  const dir = caseDir();
  const r = run(dir, config({ script: 'grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status; id -u' , user: { uid: 1000, gid: 1000 } },
    { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kexec_load'], action: 'SCMP_ACT_ERRNO' }] } }));
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /^NoNewPrivs:\s+0$/m);
  assert.match(r.stdout, /^Seccomp:\s+2$/m);
  assert.match(r.stdout, /^1000$/m);
});

/** A compact default-allow profile in runc's spirit: dangerous syscalls get EPERM, mkdir gets the profile's own errno (EROFS). */
const denyProfile = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_LOONGARCH64'],
  syscalls: [
    {
      names: ['kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'mount', 'umount2',
        'unshare', 'setns', 'keyctl', 'add_key', 'request_key', 'bpf', 'perf_event_open', 'ptrace', 'reboot',
        'swapon', 'swapoff', 'open_by_handle_at', 'not_a_syscall_anywhere'],
      action: 'SCMP_ACT_ERRNO',
    },
    { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 30 },
  ],
};

it('seccomp: a runc-like default-allow profile blocks with its errno, allowed syscalls work (root and non-root)', () => {
  for (const user of [{ uid: 0, gid: 0 }, { uid: 1000, gid: 1000 }]) {
    const dir = caseDir();
    const script = `grep "^Seccomp:" /proc/self/status; mkdir ${dir}/blocked; echo "mkdir=$?"; ` +
      `unshare -n true; echo "unshare=$?"; touch ${dir}/allowed; echo "touch=$?"`;
    const r = run(dir, config({ script, user, noNewPrivileges: user.uid !== 0 }, { seccomp: denyProfile }));
    assert.is(r.code, 0, show(r));
    assert.match(r.stdout, /^Seccomp:\s+2$/m);
    assert.match(r.stdout, /^mkdir=1$/m);
    assert.match(r.stderr, /mkdir: can't create directory '.*blocked': Read-only file system/);
    assert.match(r.stdout, /^unshare=1$/m);
    assert.match(r.stderr, /unshare: unshare\(0x40000000\): Operation not permitted/);
    assert.match(r.stdout, /^touch=0$/m);
    assert.not.ok(existsSync(join(dir, 'blocked')));
    assert.ok(existsSync(join(dir, 'allowed')));
    // LOONGARCH64 is unknown to Debian 12's libseccomp: left out with a note, not a failure
    assert.match(r.stderr, /SCMP_ARCH_LOONGARCH64 is unknown to libseccomp, left out/);
  }
});

it('seccomp: argument conditions (personality(8) gets EPERM, personality(0) works; MASKED_EQ on chmod modes)', () => {
  const dir = caseDir();
  writeFileSync(join(dir, 'f'), '');
  const script = `linux32 true; echo "linux32=$?"; linux64 true; echo "linux64=$?"; ` +
    `chmod 0700 ${dir}/f; echo "private=$?"; chmod 0755 ${dir}/f; echo "shared=$?"`;
  const r = run(dir, config({ script }, {
    seccomp: {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
        // mode & 0o077 == 0: making a file private to its owner is refused (EACCES)
        { names: ['chmod'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, value: 0o077, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
        { names: ['fchmodat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 2, value: 0o077, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
      ],
    },
  }));
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /^linux32=1$/m);
  assert.match(r.stderr, /personality\(0x8\): Operation not permitted/);
  assert.match(r.stdout, /^linux64=0$/m);
  assert.match(r.stdout, /^private=1$/m);
  assert.match(r.stderr, /chmod: .*f: Permission denied/);
  assert.match(r.stdout, /^shared=0$/m);
});

it('seccomp: a default-errno profile that does not allow execve: the exec failure is reported, the process never runs', () => {
  const dir = caseDir();
  const r = run(dir, config({ script: marker(dir), noNewPrivileges: true }, {
    seccomp: { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 38, syscalls: [{ names: ['write', 'exit', 'exit_group'], action: 'SCMP_ACT_ALLOW' }] },
  }));
  refusedToRun(dir, r, 126, /^ocivirt-init: exec \/bin\/busybox: Function not implemented$/m);
});

it('seccomp without no_new_privs where CAP_SYS_ADMIN is gone (as libvirt drops it): refused, never run unfiltered; with no_new_privs it loads', () => {
  const profile = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kexec_load'], action: 'SCMP_ACT_ERRNO' }] };
  let dir = caseDir();
  const noSysAdmin = { unshare: [], wrap: 'true', prefix: ['/usr/bin/setpriv', '--bounding-set', '-sys_admin'] };
  refusedToRun(dir, run(dir, config({ script: marker(dir) }, { seccomp: profile }), noSysAdmin), 125,
    /^ocivirt-init: seccomp: loading the filter: Permission denied \(without no_new_privs the kernel requires CAP_SYS_ADMIN\)$/m);
  dir = caseDir();
  const r = run(dir, config({ script: 'grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status', noNewPrivileges: true }, { seccomp: profile }), noSysAdmin);
  assert.is(r.code, 0, show(r));
  assert.match(r.stdout, /^Seccomp:\s+2$/m);
});

it('sysctl: written through /proc/sys in the container namespaces (a private netns here)', () => {
  const dir = caseDir();
  const r = run(dir, config({ script: 'cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range' },
    { sysctl: { 'net.ipv4.ip_forward': '1', 'net/ipv4/ping_group_range': '0 2147483647' } }), { unshare: ['--net'] });
  assert.is(r.code, 0, show(r));
  assert.equal(r.stdout.split('\n').map((l) => l.replace(/\s+/g, ' ')), ['1', '0 2147483647', '']);
});

it('a failing step: an rlimit the kernel refuses (hard above fs.nr_open)', () => {
  const dir = caseDir();
  const nrOpen = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8'));
  const r = run(dir, config({ script: marker(dir), rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: nrOpen + 1 }] }));
  refusedToRun(dir, r, 125, /^ocivirt-init: rlimit RLIMIT_NOFILE \(soft 1024, hard \d+\): Operation not permitted$/m);
});

it('a failing step: a sysctl file that is a symlink is not followed', () => {
  const dir = caseDir();
  const fake = join(dir, 'fakevm');
  mkdirSync(fake);
  writeFileSync(join(dir, 'target'), 'untouched');
  symlinkSync(join(dir, 'target'), join(fake, 'overcommit_memory'));
  const current = readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim();
  const r = run(dir, config({ script: marker(dir) }, { sysctl: { 'vm.overcommit_memory': current } }),
    { unshare: ['--mount'], wrap: `mount --bind ${fake} /proc/sys/vm` });
  refusedToRun(dir, r, 125, /^ocivirt-init: sysctl vm\.overcommit_memory: open \/proc\/sys\/vm\/overcommit_memory: Too many levels of symbolic links$/m);
  assert.is(readFileSync(join(dir, 'target'), 'utf8'), 'untouched');
});

it('a failing step: a sysctl file that is not on procfs (a bind mount over /proc/sys/...) is not written', () => {
  const dir = caseDir();
  const fake = join(dir, 'fakevm');
  mkdirSync(fake);
  writeFileSync(join(fake, 'overcommit_memory'), 'untouched');
  const current = readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim();
  const r = run(dir, config({ script: marker(dir) }, { sysctl: { 'vm.overcommit_memory': current } }),
    { unshare: ['--mount'], wrap: `mount --bind ${fake} /proc/sys/vm` });
  refusedToRun(dir, r, 125, /^ocivirt-init: sysctl vm\.overcommit_memory: \/proc\/sys\/vm\/overcommit_memory is not on procfs$/m);
  assert.is(readFileSync(join(fake, 'overcommit_memory'), 'utf8'), 'untouched');
});

it('a failing step: a user the namespace does not know (uid 5000 unmapped in a user namespace mapping 0-999)', async () => {
  const dir = caseDir();
  const specPath = join(dir, 'spec');
  const statusPath = join(dir, 'status');
  writeFileSync(specPath, encodeShimSpec(config({ script: marker(dir), user: { uid: 5000, gid: 0 } }), { statusPath }));
  // the maps are written from outside (as libvirt does for an idmapped domain), so setgroups stays allowed
  const child = spawn('unshare', ['--user', '--pid', '--fork', '--mount-proc', BUSYBOX, 'sh', '-c',
    `while [ ! -e ${dir}/mapped ]; do sleep 0.01; done; exec ${SHIM} ${specPath}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  // wait until unshare is in its own user namespace before writing its maps
  const ours = readlinkSync('/proc/self/ns/user');
  for (let i = 0; i < 400; i++) {
    let ns = ours;
    try { ns = readlinkSync(`/proc/${child.pid}/ns/user`); } catch { /* not yet */ }
    if (ns !== ours) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  writeFileSync(`/proc/${child.pid}/uid_map`, '0 0 1000\n');
  writeFileSync(`/proc/${child.pid}/gid_map`, '0 0 1000\n');
  writeFileSync(join(dir, 'mapped'), '');
  const code = await exited;
  refusedToRun(dir, { code, signal: null, stdout: '', stderr, status: readFileSync(statusPath, 'utf8') }, 125,
    /^ocivirt-init: uid 5000: Invalid argument$/m);
});

it('a failing step: a missing cwd; a program not found (127)', () => {
  let dir = caseDir();
  refusedToRun(dir, run(dir, config({ script: marker(dir), cwd: '/nonexistent' })), 125, /^ocivirt-init: cwd \/nonexistent: No such file or directory$/m);
  dir = caseDir();
  refusedToRun(dir, run(dir, config({ args: ['no-such-program'] })), 127, /^ocivirt-init: exec no-such-program: not found \(searched PATH=/m);
  dir = caseDir();
  refusedToRun(dir, run(dir, config({ args: ['no-such-program'], env: [] })), 127, /no PATH in the process env/);
});

it('a bare program name is looked up on the spec env PATH', () => {
  const dir = caseDir();
  const r = run(dir, config({ args: ['busybox', 'sh', '-c', 'echo found'], env: ['PATH=/nonexistent::/bin'] }));
  assert.is(r.code, 0, show(r));
  assert.is(r.stdout, 'found\n');
});

it('exit code 3 of the process is recorded and is the shim exit code', () => {
  const dir = caseDir();
  const r = run(dir, config({ script: 'exit 3' }));
  assert.is(r.code, 3, show(r));
  assert.is(r.status, 'exited 3\n');
});

it('a process killed by a signal is recorded as such (exit 128+N)', () => {
  const dir = caseDir();
  const r = run(dir, config({ script: 'kill -9 $$' }));
  assert.is(r.code, 137, show(r));
  assert.is(r.status, 'signaled 9\n');
});

/** The host pid of the shim: the child of `unshare --fork`. */
function childOf(ppid: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) return Number(name);
    } catch { /* gone */ }
  }
  return undefined;
}

it('signals sent to PID 1 (from the host, as virDomainSendProcessSignal does) reach the process', async () => {
  const dir = caseDir();
  const specPath = join(dir, 'spec');
  const statusPath = join(dir, 'status');
  const script = 'trap "echo got-usr1" USR1; trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done';
  writeFileSync(specPath, encodeShimSpec(config({ script }), { statusPath }));
  const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', SHIM, specPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waitFor = async (re: RegExp) => {
    for (let i = 0; i < 200 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 25));
    assert.match(out, re, `stdout: ${out}\nstderr: ${err}`);
  };
  child.stdout.on('data', (d) => (out += d));
  await waitFor(/ready/);
  const shimPid = childOf(child.pid!);
  assert.ok(shimPid, 'the shim process was not found');
  process.kill(shimPid, 'SIGUSR1');
  await waitFor(/got-usr1/);
  process.kill(shimPid, 'SIGTERM');
  const code = await exited;
  assert.match(out, /got-term/);
  assert.is(code, 7, `stdout: ${out}\nstderr: ${err}`);
  // signals from outside the container (pid 0 in its namespace) are recorded, the last one with the exit
  assert.is(readFileSync(statusPath, 'utf8'), 'exited 7\noutside-signal 15\n');
});

it('orphans reparented to PID 1 are reaped (no zombies left while the process runs)', () => {
  const dir = caseDir();
  const script = 'for i in 1 2 3 4 5; do sh -c "sleep 0.1 & exit 0"; done; sleep 1; ' +
    'for f in /proc/[0-9]*/stat; do cat $f; echo; done';
  const r = run(dir, config({ script }));
  assert.is(r.code, 0, show(r));
  const states = r.stdout.split('\n').filter((l) => l.includes(')')).map((l) => l.slice(l.lastIndexOf(')') + 2).split(' ')[0]);
  assert.ok(states.length >= 2, r.stdout);
  assert.not.ok(states.includes('Z'), `a zombie is left:\n${r.stdout}`);
});

it('outside a pid namespace the shim is a child subreaper: orphans come to it and are reaped', () => {
  const dir = caseDir();
  // the shim is the script's parent ($PPID): list the state of every process whose parent it is
  const script = 'for i in 1 2 3; do sh -c "sleep 0.1 & exit 0"; done; sleep 0.3; sh -c "sleep 2 & exit 0"; sleep 0.3; ' +
    'for f in /proc/[0-9]*/stat; do read -r line < $f 2>/dev/null || continue; set -- ${line##*) }; [ "$2" = "$PPID" ] && echo "child $1"; done; true';
  const r = run(dir, config({ script }), { pid1: false });
  assert.is(r.code, 0, show(r));
  const states = r.stdout.split('\n').filter((l) => l.startsWith('child ')).map((l) => l.slice(6));
  // the script itself (R/S) and the orphaned `sleep 2` (S) are the shim's children; no zombie among them
  assert.ok(states.length >= 2, `the orphan did not come to the shim:\n${show(r)}`);
  assert.not.ok(states.includes('Z'), `a zombie is left:\n${r.stdout}`);
});

// ---------- hostile spec files: refused before anything runs ----------

function refusedSpec(bytes: Buffer, message: RegExp, label: string): void {
  const dir = caseDir();
  const r = run(dir, bytes, { pid1: false });
  assert.is(r.code, 125, `${label}: ${show(r)}`);
  assert.match(r.stderr, message, label);
  assert.not.ok(existsSync(join(dir, 'ran')), `${label}: the process ran`);
}

it('every truncation of a valid spec is refused', () => {
  const dir = caseDir();
  const good = encodeShimSpec(config({ script: marker(dir), rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }] },
    { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 1, op: 'SCMP_CMP_EQ' }] }] } }));
  // the whole file runs (outside a pid namespace too)
  const ok = run(dir, good, { pid1: false });
  assert.is(ok.code, 0, show(ok));
  assert.ok(existsSync(join(dir, 'ran')));
  rmSync(join(dir, 'ran'));
  for (let len = 0; len < good.length; len++) {
    refusedSpec(good.subarray(0, len), /^ocivirt-init: spec: /m, `truncated at ${len}`);
  }
});

it('garbage, extra bytes and malformed records are refused', () => {
  const base = (records: string[]) => Buffer.from(['ocivirt-init-spec', '1', ...records].map((t) => `${t}\0`).join(''));
  const min = ['arg', '/bin/true', 'cwd', '/', 'user', '0', '0'];
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /truncated/],
    ['bad magic', Buffer.from('{"ociVersion":"1.0.0"}\n\0'), /bad magic/],
    ['JSON, no NUL', Buffer.from('{"ociVersion":"1.0.0"}\n'), /truncated/],
    ['version 2', Buffer.from('ocivirt-init-spec\x002\x00end\x00'), /unsupported version/],
    ['bytes after end', Buffer.concat([base([...min, 'end']), Buffer.from('x')]), /bytes after the end record/],
    ['unknown record', base([...min, 'capabilities', 'all', 'end']), /unknown record "capabilities"/],
    ['no arg', base(['cwd', '/', 'user', '0', '0', 'end']), /no arg record/],
    ['no cwd', base(['arg', '/bin/true', 'user', '0', '0', 'end']), /no cwd record/],
    ['no user', base(['arg', '/bin/true', 'cwd', '/', 'end']), /no user record/],
    ['relative cwd', base(['arg', '/bin/true', 'cwd', 'x', 'user', '0', '0', 'end']), /not absolute/],
    ['uid -1', base(['arg', '/bin/true', 'cwd', '/', 'user', '4294967295', '0', 'end']), /user uid: out of range/],
    ['uid sign', base(['arg', '/bin/true', 'cwd', '/', 'user', '+1', '0', 'end']), /not a decimal number/],
    ['uid leading zero', base(['arg', '/bin/true', 'cwd', '/', 'user', '01', '0', 'end']), /leading zero/],
    ['uid huge', base(['arg', '/bin/true', 'cwd', '/', 'user', '99999999999999999999999', '0', 'end']), /out of range/],
    ['two cwd', base([...min, 'cwd', '/', 'end']), /cwd given twice/],
    ['env without =', base([...min, 'env', 'NOPE', 'end']), /not NAME=VALUE/],
    ['umask 512', base([...min, 'umask', '512', 'end']), /umask: out of range/],
    ['oom 1001', base([...min, 'oom_score_adj', '1001', 'end']), /out of range/],
    ['oom -0', base([...min, 'oom_score_adj', '-0', 'end']), /-0/],
    ['rlimit unknown', base([...min, 'rlimit', 'RLIMIT_FOO', '1', '1', 'end']), /unknown resource/],
    ['rlimit soft>hard', base([...min, 'rlimit', 'RLIMIT_NOFILE', '2', '1', 'end']), /above hard/],
    ['rlimit twice', base([...min, 'rlimit', 'RLIMIT_NOFILE', '1', '1', 'rlimit', 'RLIMIT_NOFILE', '1', '1', 'end']), /given twice/],
    ['sysctl ..', base([...min, 'sysctl', 'net/../../x', '1', 'end']), /empty component|character outside/],
    ['sysctl abs', base([...min, 'sysctl', '/etc/passwd', '1', 'end']), /empty component/],
    ['seccomp without default', base([...min, 'seccomp_rule', 'mkdir', 'SCMP_ACT_KILL', '0', '0', 'end']), /without seccomp_default/],
    ['seccomp notify', base([...min, 'seccomp_default', 'SCMP_ACT_NOTIFY', '0', 'end']), /unsupported seccomp action/],
    ['seccomp errno on allow', base([...min, 'seccomp_default', 'SCMP_ACT_ALLOW', '1', 'end']), /takes no errno/],
    ['seccomp 7 args', base([...min, 'seccomp_default', 'SCMP_ACT_ALLOW', '0', 'seccomp_rule', 'x', 'SCMP_ACT_KILL', '0', '7', 'end']), /arg count: out of range/],
    ['seccomp arg index 6', base([...min, 'seccomp_default', 'SCMP_ACT_ALLOW', '0', 'seccomp_rule', 'x', 'SCMP_ACT_KILL', '0', '1', '6', 'SCMP_CMP_EQ', '0', '0', 'end']), /index: out of range/],
    ['seccomp bad op', base([...min, 'seccomp_default', 'SCMP_ACT_ALLOW', '0', 'seccomp_rule', 'x', 'SCMP_ACT_KILL', '0', '1', '0', 'EQ', '0', '0', 'end']), /unknown operator/],
    ['seccomp bad flag', base([...min, 'seccomp_default', 'SCMP_ACT_ALLOW', '0', 'seccomp_flag', 'SECCOMP_FILTER_FLAG_NEW_LISTENER', 'end']), /unsupported flag/],
    ['no NUL at the end', Buffer.from('ocivirt-init-spec\x001\x00end'), /truncated/],
  ];
  for (const [label, bytes, re] of cases) refusedSpec(bytes, re, label);
});

it('random garbage (seeded) is refused', () => {
  const seed = runSeed('shim garbage');
  const next = prng(seed);
  const words = ['ocivirt-init-spec', '1', 'arg', 'env', 'cwd', 'user', 'group', 'umask', 'rlimit', 'sysctl', 'seccomp_rule', 'end', '/', '0', '-1', 'A=', ''];
  for (let i = 0; i < 40; i++) {
    const parts: Buffer[] = [];
    const count = Math.floor(next() * 12);
    for (let j = 0; j < count; j++) {
      if (next() < 0.7) parts.push(Buffer.from(`${words[Math.floor(next() * words.length)]}\0`));
      else parts.push(Buffer.from(Array.from({ length: Math.floor(next() * 8) }, () => Math.floor(next() * 256))));
    }
    // never a complete valid spec: no `user` record can be well-formed without both numbers, so check the outcome only
    const bytes = Buffer.concat(parts);
    const dir = caseDir();
    const r = run(dir, bytes, { pid1: false });
    assert.is(r.code, 125, `seed ${seed} case ${i}: ${JSON.stringify(bytes.toString('latin1'))}\n${show(r)}`);
    assert.match(r.stderr, /^ocivirt-init: spec: /m);
  }
});

it('a spec that is not a regular file, a symlink, or too large is refused', () => {
  const dir = caseDir();
  const good = encodeShimSpec(config({ script: marker(dir) }));
  writeFileSync(join(dir, 'real'), good);
  symlinkSync(join(dir, 'real'), join(dir, 'link'));
  mkdirSync(join(dir, 'adir'));
  writeFileSync(join(dir, 'big'), Buffer.concat([good.subarray(0, good.length - 4), Buffer.alloc(5 << 20, 'A'), Buffer.from('\0end\0')]));
  const direct = (path: string) => spawnSync(SHIM, [path], { encoding: 'utf8' });
  let r = direct(join(dir, 'link'));
  assert.is(r.status, 125);
  assert.match(r.stderr, /spec: open .*link: Too many levels of symbolic links/);
  r = direct(join(dir, 'adir'));
  assert.is(r.status, 125);
  assert.match(r.stderr, /spec: .*adir is not a regular file/);
  r = direct(join(dir, 'big'));
  assert.is(r.status, 125);
  assert.match(r.stderr, /larger than 4194304 bytes/);
  r = spawnSync(SHIM, [], { encoding: 'utf8' });
  assert.is(r.status, 125);
  assert.match(r.stderr, /usage: ocivirt-init SPEC-FILE/);
  assert.not.ok(existsSync(join(dir, 'ran')));
});

test.after(() => rmSync(scratch, { recursive: true, force: true }));
test.run();
