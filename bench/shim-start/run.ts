/**
 * bench/shim-start: what the init shim adds to a container's start, on the real libvirtd.
 *
 * One busybox bundle config, converted three ways (src/convert/from-native.ts, as the daemon
 * does, each with a rootfs of its own):
 *   - without the shim: the converter's domain without `shim` (libvirt runs the process as init);
 *   - with the shim: the same config through /.ocivirt/init (the daemon's domains);
 *   - with the shim, hardened as podman writes it: containers-common's default seccomp profile
 *     (test/shim/fixtures/default-seccomp.json), no_new_privs, an rlimit, podman's default
 *     capability set: the shim's whole setup.
 * The process is `sh -c 'touch /tmp/started; exec sleep 1000'`. Each run does what a drop makes the
 * daemon do once the entry is read: convert the config, make the shim's directory (binary copy and
 * spec, staged and renamed), define, start (startChecked, then virDomainCreate). It times from the
 * conversion and from the start call until /tmp/started appears in the rootfs on the host (inotify):
 * the process running. Then the domain is destroyed and undefined, its shim directory removed. The
 * spool side of a drop (watcher, digest checks, unpack) is the same with and without the shim and is
 * not in it. Rounds run the three one after another, the order rotating each round, one warm-up
 * round not counted.
 * Run it under the integration lock (it defines domains ocivirt-test-bench-shim-*, undefined at the end):
 *   npx tsc -p . && make -s -C shim && flock /tmp/ocivirt-integration.lock node dist/bench/shim-start/run.js [--runs N]
 * Writes its section into BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, watch } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { detectCgroupVersion, rootfsExecutableResolver } from '../../src/convert/host.js';
import { fromNative } from '../../src/convert/from-native.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { startChecked } from '../../src/reconcile/start-check.js';
import { prepareContainer, removeContainer } from '../../src/shim/containers.js';
import { buildBusyboxRootfs, cleanupDomains } from '../../test/helpers/libvirt.js';
import { repoRoot } from '../../test/helpers/schema.js';
import { writeBenchSection } from '../section.js';
import { percentile } from '../stats.js';

const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const RUNS = arg('--runs', 10);
const URI = 'lxc:///';
const PREFIX = 'ocivirt-test-bench-shim-';
/** podman's default capabilities (containers.conf default_capabilities). */
const PODMAN_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT'];

interface Variant { key: string; label: string; shim: boolean; process?: Record<string, unknown>; linux?: Record<string, unknown> }
const VARIANTS: Variant[] = [
  { key: 'plain', label: 'without the shim (libvirt runs the process)', shim: false },
  { key: 'shim', label: 'with the shim', shim: true },
  {
    key: 'hardened',
    label: 'with the shim, podman-like: default seccomp profile, no_new_privs, rlimit, 11 capabilities',
    shim: true,
    process: {
      noNewPrivileges: true,
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }],
      capabilities: { bounding: PODMAN_CAPS, effective: PODMAN_CAPS, permitted: PODMAN_CAPS },
    },
    linux: { seccomp: JSON.parse(readFileSync(join(repoRoot(), 'test/shim/fixtures/default-seccomp.json'), 'utf8')) as unknown },
  },
];

function config(v: Variant): RuntimeConfig {
  return {
    ociVersion: '1.0.2',
    process: { args: ['/bin/sh', '-c', 'touch /tmp/started; exec sleep 1000'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, ...v.process },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }], ...v.linux },
  } as unknown as RuntimeConfig;
}

/** Resolves with performance.now() when `path` exists (inotify on its directory). */
function appears(dir: string, name: string, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = watch(dir);
    const timer = setTimeout(() => (w.close(), reject(new Error(`${join(dir, name)} did not appear within ${ms} ms`))), ms);
    const check = () => {
      if (!existsSync(join(dir, name))) return;
      const t = performance.now();
      clearTimeout(timer);
      w.close();
      resolve(t);
    };
    w.on('change', check);
    check();
  });
}

async function waitShutOff(port: LibvirtPort, name: string): Promise<void> {
  for (let i = 0; i < 200 && (await port.state(name)) !== 'shutoff'; i++) await new Promise((r) => setTimeout(r, 50));
}

interface Sample { returned: number; running: number; defined: number }

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-shim-'));
  const stateDir = join(tmp, 'state');
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  cleanupDomains(PREFIX);
  const port = await connectLibvirt(URI);
  const samples = new Map<string, Sample[]>(VARIANTS.map((v) => [v.key, []]));
  try {
    const cgroupVersion = detectCgroupVersion();
    for (const v of VARIANTS) buildBusyboxRootfs(join(tmp, v.key, 'rootfs'));
    /** What the daemon does for an entry once it is read: convert, the shim's directory, define. */
    const defineAsDaemon = async (v: Variant): Promise<void> => {
      const bundleDir = join(tmp, v.key);
      const { domain, xml } = fromNative(config(v), {
        bundleDir,
        name: `${PREFIX}${v.key}`,
        cgroupVersion,
        resolveExecutable: rootfsExecutableResolver(join(bundleDir, 'rootfs')),
        ...(v.shim ? { shim: { stateDir } } : {}),
      });
      await prepareContainer(domain);
      await port.define(xml);
    };
    for (let round = 0; round <= RUNS; round++) {
      for (let i = 0; i < VARIANTS.length; i++) {
        const v = VARIANTS[(round + i) % VARIANTS.length]!;
        const name = `${PREFIX}${v.key}`;
        const tmpDir = join(tmp, v.key, 'rootfs', 'tmp');
        rmSync(join(tmpDir, 'started'), { force: true });
        const running = appears(tmpDir, 'started', 30_000);
        const tc = performance.now();
        await defineAsDaemon(v);
        const t0 = performance.now();
        await startChecked(port, name);
        const returned = performance.now();
        const ran = await running;
        if (round > 0) samples.get(v.key)!.push({ returned: returned - t0, running: ran - t0, defined: ran - tc });
        await port.destroy(name);
        await waitShutOff(port, name);
        await port.undefine(name);
        await removeContainer(stateDir, name);
      }
    }
  } finally {
    for (const v of VARIANTS) {
      await port.destroy(`${PREFIX}${v.key}`).catch(() => undefined);
      await port.undefine(`${PREFIX}${v.key}`).catch(() => undefined);
      await removeContainer(stateDir, `${PREFIX}${v.key}`);
    }
    await port.close();
    cleanupDomains(PREFIX);
    rmSync(tmp, { recursive: true, force: true });
  }
  const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');

  const ms = (x: number) => `${Math.round(x)} ms`;
  const p50 = (key: string, f: keyof Sample) => percentile(samples.get(key)!.map((s) => s[f]), 50);
  const rows = VARIANTS.map((v) => {
    const running = samples.get(v.key)!.map((s) => s.running);
    const returned = samples.get(v.key)!.map((s) => s.returned);
    const defined = samples.get(v.key)!.map((s) => s.defined);
    return `| ${v.label} | ${ms(percentile(defined, 50))} | ${ms(percentile(defined, 99))} | ${ms(percentile(running, 50))} | ${ms(percentile(running, 99))} | ${ms(Math.min(...running))}–${ms(Math.max(...running))} | ${ms(percentile(returned, 50))} |`;
  });
  const uname = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const section = [
    '<!-- bench:shim-start:start (written by `node dist/bench/shim-start/run.js`; do not edit by hand) -->',
    '## Shim start overhead',
    '',
    `Command: \`npx tsc -p . && make -s -C shim && flock /tmp/ocivirt-integration.lock node dist/bench/shim-start/run.js --runs ${RUNS}\` (run ${new Date().toISOString()})`,
    '',
    `Machine: nproc ${cpus().length}, ${cpus()[0]?.model ?? 'cpu'}, kernel ${uname}, Node ${process.version}, libvirt LXC at \`${URI}\`. ` +
      `Load average before/after: ${load0} / ${load1} (shared machine: the other sessions' builds and tests ran meanwhile).`,
    '',
    'One busybox config converted as the daemon does, without and with the init shim; the process is ' +
      "`sh -c 'touch /tmp/started; exec sleep 1000'`. Each run does what a drop makes the daemon do once the entry is read " +
      '(convert, make the shim directory, define, then the start call: startChecked and virDomainCreate), timed from the ' +
      'conversion and from the start call to /tmp/started appearing in the rootfs (inotify on the host): the process running. ' +
      'The spool side of a drop (watcher, digests, unpack) is the same with and without the shim and is not timed here. ' +
      `${RUNS} runs each (one warm-up round not counted), the variants interleaved, destroyed and undefined between runs.`,
    '',
    '| domain | convert+define+start → running, p50 | p99 | start → running, p50 | p99 | min–max | start call returned, p50 |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Overhead at the median, from the conversion: the shim ${ms(p50('shim', 'defined') - p50('plain', 'defined'))}, ` +
      `the shim with the podman-like setup ${ms(p50('hardened', 'defined') - p50('plain', 'defined'))}; ` +
      `from the start call: ${ms(p50('shim', 'running') - p50('plain', 'running'))} and ${ms(p50('hardened', 'running') - p50('plain', 'running'))}.`,
    '<!-- bench:shim-start:end -->',
  ].join('\n');
  writeBenchSection(repoRoot(), 'shim-start', section);
}

await main();
