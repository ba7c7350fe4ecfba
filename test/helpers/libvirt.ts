/**
 * Test harness for integration tests on the real libvirtd: domain naming, cleanup through virsh
 * (independent of the code under test), busybox rootfs fixtures, and proof that a container's
 * init really runs (the domain id is the libvirt_lxc controller's pid; the init is its child).
 */
import { SHIM_INIT } from '../../src/shim/domain.js';
import { test } from 'uvu';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export const TEST_PREFIX = 'ocivirt-test-';
export const TEST_URI = process.env.OCIVIRT_TEST_URI ?? 'lxc:///';
const BUSYBOX = '/bin/busybox';

/** Runs virsh on the test URI; returns stdout. Throws with virsh's stderr on failure. */
export function virsh(...args: string[]): string {
  try {
    return execFileSync('virsh', ['-q', '-c', TEST_URI, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`virsh ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

export function listDomainNames(): string[] {
  return virsh('list', '--all', '--name')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

export function domainState(name: string): string {
  return virsh('domstate', name).trim();
}

export function isDefined(name: string): boolean {
  return listDomainNames().includes(name);
}

/**
 * Destroys and undefines every domain whose name starts with `prefix` (which must be a test
 * prefix). libvirtd is shared and other tests restart it, so an unanswered listing is retried
 * for a while rather than leaving domains behind.
 */
export function cleanupDomains(prefix: string = TEST_PREFIX): void {
  if (!prefix.startsWith(TEST_PREFIX)) throw new Error(`cleanupDomains: refusing prefix '${prefix}' (not ${TEST_PREFIX}*)`);
  for (let attempt = 1; attempt <= 30; attempt++) {
    let names: string[];
    try {
      names = listDomainNames().filter((n) => n.startsWith(prefix));
    } catch {
      execFileSync('sleep', ['1']);
      continue;
    }
    if (names.length === 0) return;
    for (const name of names) {
      try {
        virsh('destroy', name);
      } catch {
        /* not running */
      }
      try {
        virsh('undefine', name);
      } catch {
        /* transient: gone with destroy */
      }
    }
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function cmdlineOf(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw === '' ? [] : raw.replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

export interface RunningInit {
  controllerPid: number;
  initPid: number;
  cmdline: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until the domain's init (the controller's child) runs `expectedCmdline` in its own pid
 * namespace. The init execs a few tens of ms after start returns, so this polls.
 */
export async function waitForInit(name: string, expectedCmdline: string[], timeoutMs = 10_000): Promise<RunningInit> {
  const want = JSON.stringify(expectedCmdline);
  const deadline = Date.now() + timeoutMs;
  let seen = 'nothing';
  while (Date.now() < deadline) {
    const id = Number(virsh('domid', name).trim());
    if (Number.isInteger(id) && id > 0) {
      // through ocivirt's init shim (src/shim/domain.ts) the process is the shim's child
      const candidates = childrenOf(id).flatMap((c) => (cmdlineOf(c)?.[0] === SHIM_INIT ? [c, ...childrenOf(c)] : [c]));
      for (const child of candidates) {
        const cmd = cmdlineOf(child);
        seen = `controller ${id}, child ${child}: ${JSON.stringify(cmd)}`;
        if (JSON.stringify(cmd) === want) {
          if (readlinkSync(`/proc/${child}/ns/pid`) === readlinkSync('/proc/self/ns/pid'))
            throw new Error(`${name}: init ${child} is not in its own pid namespace`);
          return { controllerPid: id, initPid: child, cmdline: cmd ?? [] };
        }
      }
    }
    await sleep(50);
  }
  throw new Error(`${name}: init ${want} not seen running within ${timeoutMs} ms (last seen: ${seen})`);
}

/**
 * Runs `argv` inside the domain's namespaces; returns its stdout. libvirtd learns the init's pid
 * from the controller a moment after the init runs, and until then refuses with "Init pid is not yet
 * available" (VIR_ERR_OPERATION_INVALID), so that one refusal is retried for a while.
 */
export function enterNamespace(name: string, argv: string[], timeoutMs = 10_000): string {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return virsh('lxc-enter-namespace', name, '--noseclabel', ...argv);
    } catch (e) {
      if (!/Init pid is not yet available/.test((e as Error).message) || Date.now() > deadline) throw e;
      execFileSync('sleep', ['0.1']);
    }
  }
}

/** The argv of pid 1 as seen from inside the container (needs `cat` in its rootfs): the init shim when there is one. */
export function pid1Inside(name: string): string[] {
  return enterNamespace(name, ['/bin/cat', '/proc/1/cmdline']).replace(/\0$/, '').split('\0');
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitForExit(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  return !isAlive(pid);
}

/** A temp dir under os.tmpdir(); remove it with `removeTempDir`. */
export function makeTempDir(label: string): string {
  return mkdtempSync(join(tmpdir(), `ocivirt-test-${label}-`));
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A test file's sandbox: domains named `prefix*` are removed before its tests (stale ones of a
 * killed run) and after them, even when they fail; a temp dir lives as long as the file's tests.
 * Returns the temp dir (made when the tests start).
 */
export function domainSandbox(prefix: string, label: string): () => string {
  let dir = '';
  test.before(() => {
    cleanupDomains(prefix);
    dir = makeTempDir(label);
  });
  test.after(() => {
    cleanupDomains(prefix);
    removeTempDir(dir);
  });
  return () => dir;
}

/**
 * A minimal busybox rootfs in `dir`: Debian's static busybox at /bin/busybox with every applet
 * linked at its usual place, plus the mount points libvirt-lxc uses.
 */
export function buildBusyboxRootfs(dir: string): string {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'tmp', 'run', 'etc', 'root'])
    mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  const applets = execFileSync(BUSYBOX, ['--list-full'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '' && l !== 'bin/busybox');
  for (const applet of applets) {
    const at = join(dir, applet);
    mkdirSync(dirname(at), { recursive: true });
    try {
      symlinkSync('/bin/busybox', at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return dir;
}

/** Counts the port's calls by method, so a test can prove a pass made no libvirt writes. */
export function countingPort<P extends object>(port: P): { port: P; counts: Map<string, number>; writes: () => number } {
  const counts = new Map<string, number>();
  const wrapped = new Proxy(port, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => {
        counts.set(prop, (counts.get(prop) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const WRITES = ['define', 'undefine', 'start', 'stop', 'sendSignal', 'destroy'];
  return { port: wrapped, counts, writes: () => WRITES.reduce((n, m) => n + (counts.get(m) ?? 0), 0) };
}

export interface BundleSpec {
  args?: string[];
  env?: string[];
  annotations?: Record<string, string>;
}

/** A runtime bundle `<dir>` (config.json + busybox rootfs) as a minimal container runtime would get it. */
export function writeBusyboxBundle(dir: string, spec: BundleSpec = {}): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  buildBusyboxRootfs(join(dir, 'rootfs'));
  writeBundleConfig(dir, spec);
  return dir;
}

/** (Re)writes only config.json, atomically (a watcher or a pass never sees half a file). */
export function writeBundleConfig(dir: string, spec: BundleSpec = {}): void {
  const config = {
    ociVersion: '1.0.2',
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: spec.args ?? ['/bin/sleep', '300'],
      env: spec.env ?? ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
    },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }] },
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  };
  const tmp = join(dir, `.config.json.${process.pid}`);
  writeFileSync(tmp, JSON.stringify(config, null, 2));
  renameSync(tmp, join(dir, 'config.json'));
}

/**
 * The memory limit of the container's own cgroup, read inside the container: the cgroup its pid 1
 * is in (/proc/1/cgroup), under the hierarchy libvirt mounts at /sys/fs/cgroup (v1 or v2).
 */
export function memoryLimitInside(domain: string): number {
  const lines = enterNamespace(domain, ['/bin/cat', '/proc/1/cgroup']).trim().split('\n');
  const v1 = lines.map((l) => l.split(':')).find((f) => f[1]?.split(',').includes('memory'));
  const candidates = v1 ? [`/sys/fs/cgroup/memory${v1[2]}/memory.limit_in_bytes`, '/sys/fs/cgroup/memory/memory.limit_in_bytes'] : [`/sys/fs/cgroup${lines.find((l) => l.startsWith('0::'))?.slice(3) ?? ''}/memory.max`, '/sys/fs/cgroup/memory.max'];
  const seen: string[] = [];
  for (const p of candidates) {
    try {
      const v = Number(enterNamespace(domain, ['/bin/cat', p.replace(/\/+/g, '/')]).trim());
      if (v < 2 ** 62) return v;
      seen.push(`${p}=${v}`);
    } catch (e) {
      seen.push(`${p}: ${(e as Error).message}`);
    }
  }
  throw new Error(`${domain}: no memory limit visible inside the container (/proc/1/cgroup: ${lines.join(' | ')}; ${seen.join('; ')})`);
}

/** The pid of a running domain's init (the libvirt_lxc controller's child), whatever it runs. */
export function initPidOf(name: string): number {
  const id = Number(virsh('domid', name).trim());
  const child = Number.isInteger(id) && id > 0 ? childrenOf(id)[0] : undefined;
  if (child === undefined) throw new Error(`${name}: no running init`);
  return child;
}
