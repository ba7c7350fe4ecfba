/**
 * The sync benchmark, one command:  node dist/bench/sync/run.js [--domains N] [--runs N]
 *
 * Builds N (default 1,000) runtime bundles in a temp spool, then, in the same run and
 * interleaved round by round:
 * - the floor: N bare `domainDefineXML` calls through the binding, one after the other, with the
 *   very XML from-native makes for those bundles (converted beforehand, not timed), and the same
 *   N calls 4 at a time (the reconciler's default concurrency);
 * - a cold `ocivirt sync --once` over the spool (process start, spool scan, N conversions, N
 *   defines, status file), and then a warm one over the unchanged spool (N reads, no writes).
 * Every domain is undefined between rounds (not timed). Reports medians, per-domain cost, the
 * ratio to the floor (target: within 3×) and writes the section into BENCHMARKS.md.
 * The binding is imported here only to measure the floor; ocivirt itself reaches libvirt only
 * through its port.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Hypervisor } from '@unraid/libvirt';
import { fromNative } from '../../src/convert/from-native.js';
import { detectCgroupVersion } from '../../src/convert/host.js';
import { readBundleConfig } from '../../src/oci/bundle.js';
import { writeBenchSection } from '../section.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const N = arg('--domains', 1000);
const RUNS = arg('--runs', 3);
const URI = process.env.OCIVIRT_BENCH_URI ?? 'lxc:///';
const PREFIX = 'ocivirt-bench-sync-';

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function virshNames(): string[] {
  const r = spawnSync('virsh', ['-q', '-c', URI, 'list', '--all', '--name'], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(PREFIX));
}

async function undefineAll(hv: Hypervisor): Promise<void> {
  // the binding frees a Domain's pointer when it is garbage-collected, even while a call uses it
  const held = [];
  for (const name of virshNames()) {
    const d = await hv.domainLookupByName(name);
    held.push(d);
    await hv.domainUndefine(d);
  }
  held.length = 0;
}

function writeSpool(spool: string): void {
  for (let i = 0; i < N; i++) {
    const b = join(spool, `b${String(i).padStart(4, '0')}`);
    mkdirSync(join(b, 'rootfs', 'bin'), { recursive: true, mode: 0o700 });
    // an init in the rootfs (an entry without one is refused before define); never started here
    writeFileSync(join(b, 'rootfs', 'bin', 'sleep'), '', { mode: 0o755 });
    const config = {
      ociVersion: '1.0.2',
      process: { terminal: true, user: { uid: 0, gid: 0 }, args: ['/bin/sleep', String(i)], env: ['PATH=/bin', `INDEX=${i}`], cwd: '/' },
      root: { path: 'rootfs' },
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
        resources: { memory: { limit: 268435456 }, cpu: { shares: 512 } },
      },
    };
    writeFileSync(join(b, 'config.json'), JSON.stringify(config));
  }
}

/** The XML `sync` will send, for the floor to send too. */
async function floorXmls(spool: string): Promise<string[]> {
  const out: string[] = [];
  const cgroupVersion = detectCgroupVersion();
  for (let i = 0; i < N; i++) {
    const entry = `b${String(i).padStart(4, '0')}`;
    const { config, bundleDir } = await readBundleConfig(join(spool, entry));
    out.push(fromNative(config, { bundleDir, name: `${PREFIX}${entry}`, cgroupVersion, owner: { entry } }).xml);
  }
  return out;
}

async function defineAll(hv: Hypervisor, xmls: string[], concurrency: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < xmls.length) await hv.domainDefineXML(xmls[next++]!);
    }),
  );
  return performance.now() - t0;
}

function timedSync(spool: string, state: string): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(join(repo, 'bin/ocivirt'), ['sync', '--once', '--spool', spool, '--state', state, '--uri', URI], {
    encoding: 'utf8',
    env: { ...process.env, OCIVIRT_NAME_PREFIX: PREFIX, OCIVIRT_CONFIG: join(state, '..', 'ocivirt.json') },
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`ocivirt sync --once exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return { ms, stdout: r.stdout.trim().split('\n').pop() ?? '' };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const range = (xs: number[]) => `${secs(Math.min(...xs))}–${secs(Math.max(...xs))}`;

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-sync-'));
  const spool = join(tmp, 'spool');
  const hv = new Hypervisor({ uri: URI });
  await hv.connectOpen();
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const floorSeq: number[] = [];
  const floorPar: number[] = [];
  const cold: number[] = [];
  const warm: number[] = [];
  let summary = '';
  try {
    mkdirSync(spool, { mode: 0o700 });
    writeFileSync(join(tmp, 'ocivirt.json'), JSON.stringify({}));
    writeSpool(spool);
    const xmls = await floorXmls(spool);
    await undefineAll(hv);
    for (let run = 0; run < RUNS; run++) {
      floorSeq.push(await defineAll(hv, xmls, 1));
      await undefineAll(hv);
      floorPar.push(await defineAll(hv, xmls, 4));
      await undefineAll(hv);
      const state = join(tmp, `state-${run}`);
      const c = timedSync(spool, state);
      cold.push(c.ms);
      summary = c.stdout;
      if (virshNames().length !== N) throw new Error(`sync defined ${virshNames().length} domains, not ${N}`);
      warm.push(timedSync(spool, state).ms);
      await undefineAll(hv);
      log(`round ${run + 1}/${RUNS}: floor ${secs(floorSeq.at(-1)!)} (4 at once ${secs(floorPar.at(-1)!)}), cold sync ${secs(cold.at(-1)!)}, warm ${secs(warm.at(-1)!)}`);
    }
  } finally {
    await undefineAll(hv).catch(() => undefined);
    await hv.connectClose().catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
  const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const ratio = median(cold) / median(floorSeq);
  const section = [
    '<!-- bench:sync:start (written by `node dist/bench/sync/run.js`; do not edit by hand) -->',
    `## Sync: cold \`sync --once\` over ${N} bundles vs the bare define floor`,
    '',
    `Command: \`npx tsc -p . && node dist/bench/sync/run.js --domains ${N} --runs ${RUNS}\` (run ${new Date().toISOString()})`,
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, libvirt LXC driver at \`${URI}\`. ` +
      `Load average before/after: ${load0} / ${load1} (a shared machine: other engineers build and test on it at the same time).`,
    '',
    `Each bundle: a config.json (process, env, namespaces, memory and cpu limits) and an empty rootfs. The floor sends the same ${N} domain XMLs ` +
      'from-native makes for them through `domainDefineXML` on one open connection (conversion not timed). A cold sync is the whole ' +
      '`ocivirt sync --once` process: start, connect, scan, convert, list and read existing domains, define, status file. The warm pass ' +
      `runs right after it over the unchanged spool (zero defines). Domains are undefined between rounds. Median of ${RUNS} rounds, interleaved.`,
    '',
    '| measurement | median | range | per domain |',
    '| --- | --- | --- | --- |',
    `| floor: ${N} × \`domainDefineXML\`, one at a time | ${secs(median(floorSeq))} | ${range(floorSeq)} | ${(median(floorSeq) / N).toFixed(2)} ms |`,
    `| floor: ${N} × \`domainDefineXML\`, 4 at a time | ${secs(median(floorPar))} | ${range(floorPar)} | ${(median(floorPar) / N).toFixed(2)} ms |`,
    `| cold \`ocivirt sync --once\` (${N} created) | ${secs(median(cold))} | ${range(cold)} | ${(median(cold) / N).toFixed(2)} ms |`,
    `| warm \`ocivirt sync --once\` (${N} unchanged) | ${secs(median(warm))} | ${range(warm)} | ${(median(warm) / N).toFixed(2)} ms |`,
    '',
    `Last cold pass said: \`${summary}\``,
    '',
    `Target: cold sync within 3× of the one-at-a-time floor: ${ratio <= 3 ? 'yes' : 'NO'} (${ratio.toFixed(2)}×).`,
    '<!-- bench:sync:end -->',
  ].join('\n');
  writeBenchSection(repo, 'sync', section);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
