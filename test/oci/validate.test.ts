/**
 * validateRuntimeConfig: the runtime-spec project's examples, Debian's `runc spec`, and one test per
 * rule showing the error names the file, the JSON path of the field and a one-line reason.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import { MAX_NESTING, validateRuntimeConfig } from '../../src/oci/validate.js';
import { repoRoot, runtimeSchemaErrors, schemasDir } from '../helpers/schema.js';

const examplesDir = join(schemasDir(), 'runtime-spec-examples');
/** Good examples of platforms ocivirt refuses: refused for the platform section, nothing else. */
const OTHER_PLATFORM_EXAMPLES: Record<string, string> = {
  'good-freebsd-example.json': 'freebsd',
  'good-freebsd-minimal.json': 'freebsd',
  'good-zos-example.json': 'zos',
  'good-zos-minimal.json': 'zos',
};
/** Good examples that predate runtime-spec 1.0 (ociVersion "0.5.0-dev"): refused for the version only. */
const PRE_1_0_EXAMPLES = ['good-spec-example.json'];

function refusal(value: unknown, file = 'b/config.json'): InputError {
  try {
    validateRuntimeConfig(value, file);
  } catch (e) {
    if (e instanceof InputError) return e;
    throw e;
  }
  throw new Error(`accepted: ${JSON.stringify(value)}`);
}

const minimal = () => ({
  ociVersion: '1.2.0',
  root: { path: 'rootfs' },
  process: { cwd: '/', args: ['sh'], user: { uid: 0, gid: 0 } },
});

for (const name of readdirSync(examplesDir).filter((n) => n.endsWith('.json')).sort()) {
  const text = readFileSync(join(examplesDir, name), 'utf8');
  if (PRE_1_0_EXAMPLES.includes(name)) {
    test(`example ${name} is refused for its pre-1.0 ociVersion only`, () => {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const e = refusal(parsed, name);
      assert.is(e.field, 'ociVersion');
      validateRuntimeConfig({ ...parsed, ociVersion: '1.3.0' }, name);
    });
  } else if (name.startsWith('good-') && !(name in OTHER_PLATFORM_EXAMPLES)) {
    test(`example ${name} is accepted`, () => {
      const parsed = JSON.parse(text) as unknown;
      assert.is(validateRuntimeConfig(parsed, name), parsed);
    });
  } else if (name in OTHER_PLATFORM_EXAMPLES) {
    test(`example ${name} is refused for its platform section only`, () => {
      const e = refusal(JSON.parse(text), name);
      assert.is(e.field, OTHER_PLATFORM_EXAMPLES[name]);
      assert.match(e.reason, /Linux containers only/);
    });
  } else if (name.startsWith('bad-')) {
    test(`example ${name} is refused`, () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return; // not JSON: the CLI refuses it before validation (test/cli-bad-input.test.ts)
      }
      const e = refusal(parsed, name);
      assert.is(e.file, name);
    });
  }
}

test('the bad examples are refused for the field the spec project meant', () => {
  const field = (n: string) => refusal(JSON.parse(readFileSync(join(examplesDir, n), 'utf8'))).field;
  assert.is(field('bad-linux-hugepage.json'), 'linux.resources.hugepageLimits[0].pageSize');
  assert.is(field('bad-linux-netdevice.json'), 'linux.netDevices.eth0.name');
  assert.is(field('bad-linux-rdma.json'), 'linux.resources.rdma.mlx5_1.hcaHandles');
  assert.is(field('bad-freebsd-vnet-disable.json'), 'freebsd');
});

test("Debian's `runc spec` config is accepted (ociVersion 1.0.2-dev)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-validate-'));
  try {
    const r = spawnSync('runc', ['spec'], { cwd: dir, encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { ociVersion: string };
    assert.match(cfg.ociVersion, /^1\./);
    validateRuntimeConfig(cfg, 'config.json');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("umoci's config (umoci new + config + unpack) is accepted, as the official schema accepts it", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-validate-'));
  try {
    const umoci = (...args: string[]) => {
      const r = spawnSync('umoci', args, { cwd: dir, encoding: 'utf8' });
      assert.is(r.status, 0, `umoci ${args.join(' ')}: ${r.stderr}`);
    };
    umoci('init', '--layout', 'img');
    umoci('new', '--image', 'img:t');
    umoci('config', '--image', 'img:t', '--config.env', 'A=1', '--config.cmd', '/bin/sh', '--config.user', '1000:1000', '--config.workingdir', '/srv');
    umoci('unpack', '--image', 'img:t', 'bundle');
    const cfg = JSON.parse(readFileSync(join(dir, 'bundle', 'config.json'), 'utf8')) as { process: { user: { uid: number } } };
    assert.is(cfg.process.user.uid, 1000);
    assert.equal(runtimeSchemaErrors(cfg), []);
    validateRuntimeConfig(cfg, 'config.json');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ociVersion: 1.0.x to 1.3.x accepted (with pre-release/build), others refused naming the range', () => {
  for (const v of ['1.0.0', '1.0.2-dev', '1.1.0', '1.2.1', '1.3.0', '1.3.10+build.5'])
    validateRuntimeConfig({ ...minimal(), ociVersion: v });
  for (const v of ['1.4.0', '2.0.0', '0.9.0', '1.0', '1.01.0', 'latest', '']) {
    const e = refusal({ ...minimal(), ociVersion: v });
    assert.is(e.field, 'ociVersion');
    assert.match(e.reason, /1\.0\.x to 1\.3\.x/);
  }
  assert.is(refusal({ ...minimal(), ociVersion: 1 }).field, 'ociVersion');
  const { ociVersion: _, ...noVersion } = minimal();
  assert.is(refusal(noVersion).field, 'ociVersion');
});

test('the message is one line: <file>: <field>: <reason>, with the bad value escaped', () => {
  const cfg = minimal();
  cfg.process.args = ['sh', '-c', 7 as unknown as string];
  const e = refusal(cfg, '/spool/web/config.json');
  assert.is(e.field, 'process.args[2]');
  assert.is(e.message, '/spool/web/config.json: process.args[2]: must be a string, got an integer');
  const nasty = refusal({ ...minimal(), ociVersion: '9\n9\u0000' + 'x'.repeat(100) });
  assert.not.match(nasty.message, /\n/);
  assert.ok(nasty.message.length < 200);
});

test('deeply nested or huge values in a wrong place are refused without serializing them', () => {
  const e = refusal({ ...minimal(), process: { cwd: '/', user: { uid: [[[1]]], gid: 0 } } });
  assert.is(e.field, 'process.user.uid');
  assert.is(e.reason, 'must be an integer (uint32), got an array [...]');
  const huge = refusal({ ...minimal(), hostname: { a: 'x'.repeat(1e6) } });
  assert.is(huge.message, 'b/config.json: hostname: must be a string, got an object');
});

test('nesting deeper than 64 levels is refused (even in unknown fields), without recursion', () => {
  const nested = (n: number) => JSON.parse(`${'['.repeat(n)}1${']'.repeat(n)}`) as unknown;
  validateRuntimeConfig({ ...minimal(), 'x-vendor': nested(MAX_NESTING - 2) });
  let e = refusal({ ...minimal(), 'x-vendor': nested(MAX_NESTING) });
  assert.match(e.field!, /^\["x-vendor"\](\[0\])+$/);
  assert.match(e.reason, /nested deeper than 64 levels/);
  e = refusal({ ...minimal(), 'x-vendor': nested(300000) });
  assert.match(e.reason, /nested deeper than 64 levels/);
});

test('not an object at the top is refused at (root)', () => {
  for (const v of [null, [], 'x', 3]) assert.is(refusal(v).field, '(root)');
});

test('other platforms are refused by section', () => {
  for (const p of ['windows', 'solaris', 'vm', 'zos', 'freebsd']) {
    const e = refusal({ ...minimal(), [p]: {} });
    assert.is(e.field, p);
  }
});

test('required fields: root, root.path, process.cwd, process.user, uid, gid', () => {
  const cases: [(c: ReturnType<typeof minimal>) => void, string][] = [
    [(c) => delete (c as Partial<typeof c>).root, 'root'],
    [(c) => delete (c.root as Partial<typeof c.root>).path, 'root.path'],
    [(c) => (c.root.path = ''), 'root.path'],
    [(c) => delete (c.process as Partial<typeof c.process>).cwd, 'process.cwd'],
    [(c) => delete (c.process as Partial<typeof c.process>).user, 'process.user'],
    [(c) => delete (c.process.user as Partial<typeof c.process.user>).uid, 'process.user.uid'],
    [(c) => delete (c.process.user as Partial<typeof c.process.user>).gid, 'process.user.gid'],
  ];
  for (const [mutate, field] of cases) {
    const c = minimal();
    mutate(c);
    const e = refusal(c);
    assert.is(e.field, field);
    assert.match(e.reason, /required|non-empty/);
  }
});

test('integer ranges: uint32, int64, uint16, file mode, and non-integers', () => {
  const check = (patch: object, field: string, reason: RegExp) => {
    const e = refusal({ ...minimal(), ...patch });
    assert.is(e.field, field);
    assert.match(e.reason, reason);
  };
  check({ process: { cwd: '/', user: { uid: -1, gid: 0 } } }, 'process.user.uid', /uint32/);
  check({ process: { cwd: '/', user: { uid: 2 ** 32, gid: 0 } } }, 'process.user.uid', /uint32/);
  check({ process: { cwd: '/', user: { uid: 1.5, gid: 0 } } }, 'process.user.uid', /integer/);
  check({ linux: { resources: { memory: { limit: 2 ** 70 } } } }, 'linux.resources.memory.limit', /int64/);
  check({ linux: { resources: { blockIO: { weight: 65536 } } } }, 'linux.resources.blockIO.weight', /uint16/);
  check({ linux: { devices: [{ type: 'c', path: '/dev/x', major: 1, minor: 3, fileMode: 512 }] } }, 'linux.devices[0].fileMode', /file mode/);
  check({ hooks: { prestart: [{ path: '/bin/true', timeout: 0 }] } }, 'hooks.prestart[0].timeout', /at least 1/);
  // The edges themselves are fine.
  validateRuntimeConfig({ ...minimal(), process: { cwd: '/', user: { uid: 2 ** 32 - 1, gid: 0 } } });
  validateRuntimeConfig({ ...minimal(), linux: { resources: { memory: { limit: 9223372036854775807, swap: -1 } } } });
});

test('enums: namespace, device, rlimit, rootfsPropagation, scheduler, ioPriority, cgroup rule type', () => {
  const check = (patch: object, field: string) => assert.is(refusal({ ...minimal(), ...patch }).field, field);
  check({ linux: { namespaces: [{ type: 'net' }] } }, 'linux.namespaces[0].type');
  check({ linux: { devices: [{ type: 'x', path: '/dev/x' }] } }, 'linux.devices[0].type');
  check({ process: { ...minimal().process, rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] } }, 'process.rlimits[0].type');
  check({ linux: { rootfsPropagation: 'rshared' } }, 'linux.rootfsPropagation');
  check({ process: { ...minimal().process, scheduler: { policy: 'SCHED_FAST' } } }, 'process.scheduler.policy');
  check({ process: { ...minimal().process, ioPriority: { class: 'IOPRIO_CLASS_NONE' } } }, 'process.ioPriority.class');
  check({ linux: { resources: { devices: [{ allow: true, type: 'u' }] } } }, 'linux.resources.devices[0].type');
});

test('patterns: env NAME=value, absolute paths, capability names, hugepage size, cpu list', () => {
  const check = (patch: object, field: string) => assert.is(refusal({ ...minimal(), ...patch }).field, field);
  const p = minimal().process;
  check({ process: { ...p, env: ['PATH=/bin', 'NOVALUE'] } }, 'process.env[1]');
  check({ process: { ...p, env: ['=x'] } }, 'process.env[0]');
  check({ process: { ...p, cwd: 'relative' } }, 'process.cwd');
  check({ mounts: [{ destination: 'proc', type: 'proc', source: 'proc' }] }, 'mounts[0].destination');
  check({ hooks: { poststop: [{ path: 'true' }] } }, 'hooks.poststop[0].path');
  check({ linux: { maskedPaths: ['/proc/kcore', 'proc/x'] } }, 'linux.maskedPaths[1]');
  check({ linux: { namespaces: [{ type: 'network', path: 'run/netns/x' }] } }, 'linux.namespaces[0].path');
  check({ process: { ...p, capabilities: { bounding: ['CAP_CHOWN', 'chown'] } } }, 'process.capabilities.bounding[1]');
  check({ linux: { resources: { hugepageLimits: [{ pageSize: '2mb', limit: 1 }] } } }, 'linux.resources.hugepageLimits[0].pageSize');
  check({ process: { ...p, execCPUAffinity: { initial: 'all' } } }, 'process.execCPUAffinity.initial');
  check({ process: { ...p, args: [] } }, 'process.args');
  check({ process: { ...p, args: ['a\u0000b'] } }, 'process.args[0]');
});

test('uniqueness: namespace types and rlimit types', () => {
  let e = refusal({ ...minimal(), linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'pid' }] } });
  assert.is(e.field, 'linux.namespaces[2]');
  assert.match(e.reason, /duplicate namespace type "pid" \(also at linux\.namespaces\[0\]\)/);
  const rl = (type: string) => ({ type, soft: 1, hard: 2 });
  e = refusal({ ...minimal(), process: { ...minimal().process, rlimits: [rl('RLIMIT_NOFILE'), rl('RLIMIT_NOFILE')] } });
  assert.is(e.field, 'process.rlimits[1]');
});

test('maps: annotation keys with dots are quoted in the path; empty keys and non-string values refused', () => {
  let e = refusal({ ...minimal(), annotations: { 'org.example.x': 1 } });
  assert.is(e.field, 'annotations["org.example.x"]');
  e = refusal({ ...minimal(), annotations: { '': 'x' } });
  assert.is(e.field, 'annotations[""]');
  e = refusal({ ...minimal(), linux: { sysctl: { 'net.ipv4.ip_forward': true } } });
  assert.is(e.field, 'linux.sysctl["net.ipv4.ip_forward"]');
});

test('device major/minor are required except for FIFOs', () => {
  const e = refusal({ ...minimal(), linux: { devices: [{ type: 'c', path: '/dev/null', minor: 3 }] } });
  assert.is(e.field, 'linux.devices[0].major');
  validateRuntimeConfig({ ...minimal(), linux: { devices: [{ type: 'p', path: '/dev/fifo' }] } });
});

test('unknown fields are ignored, as the spec requires; inherited properties are not fields', () => {
  validateRuntimeConfig({ ...minimal(), 'x-vendor': { anything: [1] }, process: { ...minimal().process, extra: 1 } });
  // "constructor" is on every object's prototype: it must not be read as a field.
  const parsed = JSON.parse('{"ociVersion":"1.0.0","root":{"path":"r"},"__proto__":{"process":5}}') as unknown;
  validateRuntimeConfig(parsed);
});

test('seccomp is checked loosely: unknown-but-well-formed actions and arches pass, junk does not', () => {
  const sc = (seccomp: object) => ({ ...minimal(), linux: { seccomp } });
  validateRuntimeConfig(sc({ defaultAction: 'SCMP_ACT_KILL_FUTURE', architectures: ['SCMP_ARCH_NEWCPU'] }));
  assert.is(refusal(sc({ defaultAction: 'allow' })).field, 'linux.seccomp.defaultAction');
  assert.is(refusal(sc({ architectures: ['x86_64'], defaultAction: 'SCMP_ACT_ALLOW' })).field, 'linux.seccomp.architectures[0]');
  assert.is(refusal(sc({})).field, 'linux.seccomp.defaultAction');
  assert.is(
    refusal(sc({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [], action: 'SCMP_ACT_ERRNO' }] })).field,
    'linux.seccomp.syscalls[0].names',
  );
});

test('the product never loads a schema library or the schema files (only tests do)', () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(pkg.dependencies ?? {})) assert.not.match(dep, /ajv|schema|zod|joi/i, `runtime dependency ${dep}`);
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : n.endsWith('.ts') ? [join(d, n)] : []));
  const sources = walk(join(repoRoot(), 'src'));
  assert.ok(sources.length > 10);
  for (const f of sources) {
    const text = readFileSync(f, 'utf8');
    assert.not.match(text, /from ['"]ajv/, f);
    // as a string literal, i.e. a path the code could open (comments may name the schema)
    assert.not.match(text, /['"`][^'"`\n]*(shared\/schemas|schemas\/runtime-spec|config-schema\.json|defs-linux\.json)[^'"`\n]*['"`]/, f);
  }
});

test.run();
