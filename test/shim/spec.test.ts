/**
 * The shim spec encoder: every field the shim enforces is encoded as the tokens shim/README.md
 * documents, and what the shim cannot enforce is refused with an InputError naming the field.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { encodeShimSpec, shimSpecTokens } from '../../src/shim/spec.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemasDir } from '../helpers/schema.js';

function config(extra: { process?: Record<string, unknown>; linux?: Record<string, unknown> } = {}): RuntimeConfig {
  return {
    ociVersion: '1.2.0',
    process: { cwd: '/', args: ['/bin/sh'], user: { uid: 0, gid: 0 }, ...extra.process },
    ...(extra.linux ? { linux: extra.linux } : {}),
  } as RuntimeConfig;
}

const tokens = (c: RuntimeConfig, statusPath?: string) =>
  shimSpecTokens(encodeShimSpec(c, statusPath === undefined ? {} : { statusPath }));

function refused(c: RuntimeConfig, field: string, reason: RegExp): void {
  try {
    encodeShimSpec(c);
  } catch (e) {
    assert.instance(e, InputError);
    assert.is((e as InputError).field, field, (e as Error).message);
    assert.match((e as InputError).reason, reason);
    return;
  }
  assert.unreachable(`expected ${field} to be refused`);
}

test('minimal: magic, arg, cwd, user, end, NUL-terminated', () => {
  const bytes = encodeShimSpec(config());
  assert.is(bytes.toString('latin1'), 'ocivirt-init-spec\x001\x00arg\x00/bin/sh\x00cwd\x00/\x00user\x000\x000\x00end\x00');
});

test('every process field the shim enforces', () => {
  const t = tokens(config({
    process: {
      args: ['sh', '-c', 'echo "a & b" <x> ]]>', ''],
      env: ['PATH=/bin', 'EMPTY=', 'AMP=a&b<c]]>', 'EQ=x=y'],
      cwd: '/srv/app',
      user: { uid: 1000, gid: 100, umask: 0o027, additionalGids: [5, 7] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }, { type: 'RLIMIT_CORE', soft: 0, hard: 2 ** 64 }],
      oomScoreAdj: -500,
      noNewPrivileges: true,
    },
    linux: { sysctl: { 'net.ipv4.ip_forward': '1', 'kernel/msgmax': '8192' } },
  }), '/.ocivirt/run/status');
  assert.equal(t, [
    'ocivirt-init-spec', '1',
    'arg', 'sh', 'arg', '-c', 'arg', 'echo "a & b" <x> ]]>', 'arg', '',
    'env', 'PATH=/bin', 'env', 'EMPTY=', 'env', 'AMP=a&b<c]]>', 'env', 'EQ=x=y',
    'cwd', '/srv/app',
    'user', '1000', '100', 'group', '5', 'group', '7', 'umask', '23',
    'rlimit', 'RLIMIT_NOFILE', '1024', '4096', 'rlimit', 'RLIMIT_CORE', '0', '18446744073709551615',
    'oom_score_adj', '-500', 'no_new_privs',
    'sysctl', 'net.ipv4.ip_forward', '1', 'sysctl', 'kernel/msgmax', '8192',
    'status', '/.ocivirt/run/status',
    'end',
  ]);
});

test('noNewPrivileges false and no optional fields: nothing extra', () => {
  const t = tokens(config({ process: { noNewPrivileges: false, env: [] } }));
  assert.not.ok(t.includes('no_new_privs'));
  assert.not.ok(t.includes('env'));
});

test('seccomp: default, arches, flags, one rule per name, args with valueTwo defaulting to 0, EPERM default errno', () => {
  const t = tokens(config({
    linux: {
      seccomp: {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: 38,
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
        flags: ['SECCOMP_FILTER_FLAG_LOG'],
        syscalls: [
          { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
          { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0xffffffff, op: 'SCMP_CMP_EQ' }] },
          { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 2114060288, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
          { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
          { names: ['ptrace'], action: 'SCMP_ACT_TRACE', errnoRet: 5 },
          { names: ['kexec_load'], action: 'SCMP_ACT_KILL_PROCESS' },
        ],
      },
    },
  }));
  const start = t.indexOf('seccomp_default');
  assert.equal(t.slice(start, -1), [
    'seccomp_default', 'SCMP_ACT_ERRNO', '38',
    'seccomp_arch', 'SCMP_ARCH_X86_64', 'seccomp_arch', 'SCMP_ARCH_X86',
    'seccomp_flag', 'SECCOMP_FILTER_FLAG_LOG',
    'seccomp_rule', 'read', 'SCMP_ACT_ALLOW', '0', '0',
    'seccomp_rule', 'write', 'SCMP_ACT_ALLOW', '0', '0',
    'seccomp_rule', 'personality', 'SCMP_ACT_ALLOW', '0', '1', '0', 'SCMP_CMP_EQ', '4294967295', '0',
    'seccomp_rule', 'clone', 'SCMP_ACT_ALLOW', '0', '1', '0', 'SCMP_CMP_MASKED_EQ', '2114060288', '0',
    'seccomp_rule', 'mkdir', 'SCMP_ACT_ERRNO', '1', '0',
    'seccomp_rule', 'ptrace', 'SCMP_ACT_TRACE', '5', '0',
    'seccomp_rule', 'kexec_load', 'SCMP_ACT_KILL_PROCESS', '0', '0',
  ]);
});

test('seccomp: the default errno of SCMP_ACT_ERRNO is EPERM', () => {
  const t = tokens(config({ linux: { seccomp: { defaultAction: 'SCMP_ACT_ERRNO' } } }));
  assert.equal(t.slice(t.indexOf('seccomp_default'), -1), ['seccomp_default', 'SCMP_ACT_ERRNO', '1']);
});

test('seccomp: what the shim cannot do is refused, naming the field', () => {
  const sc = (s: Record<string, unknown>) => config({ linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', ...s } } });
  refused(sc({ listenerPath: '/run/agent.sock' }), 'linux.seccomp.listenerPath', /seccomp agent/);
  refused(sc({ listenerMetadata: 'x' }), 'linux.seccomp.listenerMetadata', /seccomp agent/);
  refused(sc({ defaultAction: 'SCMP_ACT_NOTIFY' }), 'linux.seccomp.defaultAction', /agent/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_NOTIFY' }] }), 'linux.seccomp.syscalls[0].action', /agent/);
  refused(sc({ defaultAction: 'SCMP_ACT_FOO' }), 'linux.seccomp.defaultAction', /not a seccomp action/);
  refused(config({ linux: { seccomp: {} } }), 'linux.seccomp.defaultAction', /missing/);
  refused(sc({ flags: ['SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV'] }), 'linux.seccomp.flags[0]', /not a seccomp filter flag/);
  refused(sc({ architectures: ['SCMP_ARCH_VAX'] }), 'linux.seccomp.architectures[0]', /architecture/);
  refused(sc({ defaultErrnoRet: 1 }), 'linux.seccomp.defaultErrnoRet', /takes no errno/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', errnoRet: 1 }] }), 'linux.seccomp.syscalls[0].errnoRet', /takes no errno/);
  refused(sc({ syscalls: [{ names: [], action: 'SCMP_ACT_KILL' }] }), 'linux.seccomp.syscalls[0].names', /at least one/);
  refused(sc({ syscalls: [{ names: [''], action: 'SCMP_ACT_KILL' }] }), 'linux.seccomp.syscalls[0].names[0]', /empty/);
  refused(sc({ syscalls: [{ names: ['a\0b'], action: 'SCMP_ACT_KILL' }] }), 'linux.seccomp.syscalls[0].names[0]', /NUL/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', comment: 'hi' }] }), 'linux.seccomp.syscalls[0].comment', /not a field the shim can enforce/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] }] }),
    'linux.seccomp.syscalls[0].args[0].index', /0 to 5/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', args: [{ index: 0, value: 0, op: 'SCMP_CMP_XX' }] }] }),
    'linux.seccomp.syscalls[0].args[0].op', /operator/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', args: [{ index: 0, value: 2 ** 60, op: 'SCMP_CMP_EQ' }] }] }),
    'linux.seccomp.syscalls[0].args[0].value', /2\^53/);
  refused(sc({ syscalls: [{ names: ['x'], action: 'SCMP_ACT_KILL', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }),
    'linux.seccomp.syscalls[0].args[0].value', /unsigned/);
});

test('seccomp: a uint64 of 2^64 - 1, as JSON.parse reads it, is kept exact', () => {
  const c = JSON.parse('{"ociVersion":"1.2.0","process":{"cwd":"/","args":["/x"],"user":{"uid":0,"gid":0}},' +
    '"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_KILL",' +
    '"args":[{"index":1,"value":18446744073709551615,"valueTwo":18446744073709551615,"op":"SCMP_CMP_MASKED_EQ"}]}]}}}') as RuntimeConfig;
  const t = tokens(c);
  assert.equal(t.slice(t.indexOf('seccomp_rule'), -1),
    ['seccomp_rule', 'x', 'SCMP_ACT_KILL', '0', '1', '1', 'SCMP_CMP_MASKED_EQ', '18446744073709551615', '18446744073709551615']);
});

test('process fields the shim cannot carry are refused, naming the field', () => {
  refused({ ociVersion: '1.2.0' }, 'process', /required/);
  refused(config({ process: { args: [] } }), 'process.args', /program/);
  refused(config({ process: { args: [''] } }), 'process.args[0]', /empty/);
  refused(config({ process: { args: ['/bin/sh', 'a\0b'] } }), 'process.args[1]', /NUL/);
  refused(config({ process: { env: ['NOEQUALS'] } }), 'process.env[0]', /NAME=VALUE/);
  refused(config({ process: { env: ['=x'] } }), 'process.env[0]', /NAME=VALUE/);
  refused(config({ process: { env: ['A=\0'] } }), 'process.env[0]', /NUL/);
  refused(config({ process: { cwd: 'rel' } }), 'process.cwd', /absolute/);
  refused(config({ process: { user: { uid: 4294967295, gid: 0 } } }), 'process.user.uid', /4294967294/);
  refused(config({ process: { user: { uid: 0, gid: -1 } } }), 'process.user.gid', /integer/);
  refused(config({ process: { user: { uid: 0, gid: 0, umask: 0o1000 } } }), 'process.user.umask', /511/);
  refused(config({ process: { user: { uid: 0, gid: 0, additionalGids: [1, 1.5] } } }), 'process.user.additionalGids[1]', /integer/);
  refused(config({ process: { rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] } }), 'process.rlimits[0].type', /rlimit/);
  refused(config({ process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1, hard: 1 }, { type: 'RLIMIT_NOFILE', soft: 2, hard: 2 }] } }),
    'process.rlimits[1].type', /twice/);
  refused(config({ process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 2, hard: 1 }] } }), 'process.rlimits[0].soft', /above the hard/);
  refused(config({ process: { rlimits: [{ type: 'RLIMIT_NOFILE', soft: 2 ** 62, hard: 2 ** 62 }] } }), 'process.rlimits[0].soft', /2\^53/);
  refused(config({ process: { oomScoreAdj: 1001 } }), 'process.oomScoreAdj', /-1000 to 1000/);
  refused(config({ linux: { sysctl: { 'net..x': '1' } } }), 'linux.sysctl["net..x"]', /sysctl name/);
  refused(config({ linux: { sysctl: { '../../etc/passwd': '1' } } }), 'linux.sysctl["../../etc/passwd"]', /sysctl name/);
  refused(config({ linux: { sysctl: { 'net.a': 'x\0' } } }), 'linux.sysctl["net.a"]', /NUL/);
  assert.throws(() => encodeShimSpec(config(), { statusPath: 'run/status' }), /statusPath: .*not absolute/);
});

test("runtime-spec's good-spec-example.json encodes (nothing in it is refused)", () => {
  const example = JSON.parse(readFileSync(join(schemasDir(), 'runtime-spec-examples', 'good-spec-example.json'), 'utf8')) as RuntimeConfig;
  const t = tokens(example);
  assert.equal(t.slice(t.indexOf('user'), t.indexOf('seccomp_default')), [
    'user', '1', '1', 'group', '5', 'group', '6',
    'rlimit', 'RLIMIT_CORE', '1024', '1024', 'rlimit', 'RLIMIT_NOFILE', '1024', '1024',
    'no_new_privs', 'sysctl', 'net.ipv4.ip_forward', '1', 'sysctl', 'net.core.somaxconn', '256',
  ]);
  assert.equal(t.slice(t.indexOf('seccomp_default')), [
    'seccomp_default', 'SCMP_ACT_ALLOW', '0', 'seccomp_arch', 'SCMP_ARCH_X86', 'seccomp_arch', 'SCMP_ARCH_X32',
    'seccomp_rule', 'getcwd', 'SCMP_ACT_ERRNO', '1', '0', 'seccomp_rule', 'chmod', 'SCMP_ACT_ERRNO', '1', '0', 'end',
  ]);
});

test('shimSpecTokens refuses bytes without a final NUL', () => {
  assert.throws(() => shimSpecTokens(Buffer.from('ocivirt-init-spec\x001')), /NUL/);
});

test.run();
