/**
 * libvirt-binding against @unraid/libvirt, one command (under the integration lock, it defines domains):
 *   node dist/bench/libvirt/run.js [--domains N] [--runs N] [--calls N] [--events N] [--edits N]
 *
 * In the same run, on the same libvirtd:
 * - lookup + XML: N (default 1,000) defined domains, each looked up by name and its inactive XML
 *   read, 8 at a time, by each binding, interleaved round by round (median of --runs);
 * - define -> lifecycle event callback latency (our binding; @unraid/libvirt has no events);
 * - RSS after --calls (default 100,000) lookup + name calls, sampled every tenth, for each binding
 *   in a child process of its own (so one's heap does not count against the other);
 * - `virsh define` of an edited definition (what `virsh edit` does) -> `export.written` from the
 *   exporter, as the daemon runs it.
 * Every domain is named ocivirt-test-binding-bench-* and undefined at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Hypervisor, DomainGetXMLDescFlags } from '@unraid/libvirt';
import * as lv from 'libvirt-binding';
import { fromNative } from '../../src/convert/from-native.js';
import { Exporter } from '../../src/export/exporter.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { silentLogger, type EventLogger } from '../../src/log.js';

const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const N = arg('--domains', 1000);
const RUNS = arg('--runs', 3);
const CALLS = arg('--calls', 100_000);
const EVENTS = arg('--events', 200);
const EDITS = arg('--edits', 50);
const URI = process.env.OCIVIRT_BENCH_URI ?? 'lxc:///';
const PREFIX = 'ocivirt-test-binding-bench-';
const CONCURRENCY = 8;
const here = fileURLToPath(import.meta.url);

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const ms = (x: number) => `${x.toFixed(1)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;

function xml(name: string, arg = '300', uuid?: string): string {
  return `<domain type='lxc'><name>${name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ''}<memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sleep</init><initarg>${arg}</initarg></os><devices><console type='pty'/></devices></domain>`;
}

async function pool<T>(items: T[], fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** A child process: RSS every CALLS/10 lookup + getName calls through one binding. */
async function rssChild(which: 'ours' | 'unraid'): Promise<void> {
  const name = `${PREFIX}0000`;
  const samples: number[] = [];
  const every = CALLS / 10;
  if (which === 'ours') {
    const conn = await lv.virConnectOpen(URI);
    for (let i = 0; i < CALLS; i++) {
      const d = await lv.virDomainLookupByName(conn, name);
      await lv.virDomainGetName(d);
      lv.virDomainFree(d);
      if (i % every === 0) samples.push(process.memoryUsage.rss());
    }
    await lv.virConnectClose(conn);
  } else {
    const hv = new Hypervisor({ uri: URI });
    await hv.connectOpen();
    for (let i = 0; i < CALLS; i++) {
      const d = await hv.domainLookupByName(name);
      await d.getName();
      if (i % every === 0) samples.push(process.memoryUsage.rss());
    }
    await hv.connectClose();
  }
  samples.push(process.memoryUsage.rss());
  process.stdout.write(JSON.stringify(samples));
}

function rssRun(which: 'ours' | 'unraid'): number[] {
  const r = spawnSync(process.execPath, [here, '--rss-child', which, '--calls', String(CALLS)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`rss child ${which} failed`);
  return JSON.parse(r.stdout) as number[];
}

async function main(): Promise<void> {
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const conn = await lv.virConnectOpen(URI);
  const hv = new Hypervisor({ uri: URI });
  await hv.connectOpen();
  const names = Array.from({ length: N }, (_, i) => `${PREFIX}${String(i).padStart(4, '0')}`);
  say(`defining ${N} domains`);
  await pool(names, async (n) => lv.virDomainFree(await lv.virDomainDefineXML(conn, xml(n))));
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-libvirt-'));
  const out: string[] = [];
  try {
    // 1. lookup + XML of N domains
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      let t0 = performance.now();
      await pool(names, async (n) => {
        const d = await lv.virDomainLookupByName(conn, n);
        await lv.virDomainGetXMLDesc(d, lv.VIR_DOMAIN_XML_INACTIVE);
        lv.virDomainFree(d);
      });
      ours.push(performance.now() - t0);
      t0 = performance.now();
      await pool(names, async (n) => {
        const d = await hv.domainLookupByName(n);
        await hv.domainGetXMLDesc(d, DomainGetXMLDescFlags.INACTIVE);
      });
      theirs.push(performance.now() - t0);
      say(`lookup+XML round ${r + 1}: ours ${ms(ours[r]!)}, @unraid/libvirt ${ms(theirs[r]!)}`);
    }

    // 2. define -> event latency
    const waiting = new Map<string, (t: number) => void>();
    const id = await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
      if (e.event === lv.VIR_DOMAIN_EVENT_DEFINED) waiting.get(e.name)?.(performance.now());
    });
    const latencies: number[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const n = names[i % N]!;
      const d = await lv.virDomainLookupByName(conn, n);
      const uuid = await lv.virDomainGetUUIDString(d);
      lv.virDomainFree(d);
      const seen = new Promise<number>((resolve) => waiting.set(n, resolve));
      const t0 = performance.now();
      // a redefine must name the uuid on libvirt-lxc
      lv.virDomainFree(await lv.virDomainDefineXML(conn, xml(n, String(1000 + i), uuid)));
      latencies.push((await seen) - t0);
      waiting.delete(n);
    }
    await lv.virConnectDomainEventDeregisterAny(conn, id);
    say(`define -> event: p50 ${ms(pct(latencies, 50))}, p99 ${ms(pct(latencies, 99))}`);

    // 3. RSS over CALLS calls
    const rssOurs = rssRun('ours');
    const rssTheirs = rssRun('unraid');
    const mib = (b: number) => (b / 1048576).toFixed(1);
    say(`RSS ours ${rssOurs.map(mib).join(' ')} MiB; @unraid/libvirt ${rssTheirs.map(mib).join(' ')} MiB`);

    // 4. virsh define (virsh edit) -> export.written
    const managed = `${PREFIX}export`;
    const bundle = join(tmp, 'bundle');
    const config = {
      ociVersion: '1.0.2',
      process: { args: ['/bin/sleep', '300'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
      root: { path: 'rootfs' },
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }] },
    };
    const managedXml = (i: number) =>
      fromNative({ ...config, process: { ...config.process, args: ['/bin/sleep', String(300 + i)] } } as never, { bundleDir: bundle, name: managed, owner: { entry: managed } }).xml;
    lv.virDomainFree(await lv.virDomainDefineXML(conn, managedXml(0)));
    const written = new Map<number, (t: number) => void>();
    const quiet = silentLogger();
    const log: EventLogger = {
      ...quiet,
      info: (event, fields) => {
        if (event === 'export.written' && fields?.domain === managed) for (const [, f] of written) f(performance.now());
      },
    };
    const port = await connectLibvirt(URI);
    const exporter = new Exporter({ port, exportDir: join(tmp, 'export'), definitionsDir: '/etc/libvirt/lxc', exportAllDomains: false, prefix: PREFIX, checkIntervalMs: 3_600_000, log });
    await exporter.start();
    const editLat: number[] = [];
    for (let i = 1; i <= EDITS; i++) {
      const file = join(tmp, `edit-${i}.xml`);
      writeFileSync(file, managedXml(i));
      const seen = new Promise<number>((resolve) => written.set(i, resolve));
      const t0 = performance.now();
      const r = spawnSync('virsh', ['-q', '-c', URI, 'define', file], { stdio: 'ignore' });
      if (r.status !== 0) throw new Error('virsh define failed');
      editLat.push((await seen) - t0);
      written.delete(i);
    }
    await exporter.stop();
    await port.close();
    say(`virsh define -> export.written: p50 ${ms(pct(editLat, 50))}, p99 ${ms(pct(editLat, 99))}`);

    const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');
    out.push(
      `Machine: ${cpus().length} × ${cpus()[0]?.model}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, libvirt LXC at \`${URI}\`. Load average before/after: ${load0} / ${load1} (shared machine).`,
      '',
      '| measure | libvirt-binding | @unraid/libvirt |',
      '|---|---|---|',
      `| lookup + inactive XML of ${N} domains, ${CONCURRENCY} at a time (median of ${RUNS}) | ${ms(median(ours))} | ${ms(median(theirs))} |`,
      `| define → lifecycle event callback, ${EVENTS} defines: p50 / p99 | ${ms(pct(latencies, 50))} / ${ms(pct(latencies, 99))} | no events |`,
      `| RSS over ${CALLS.toLocaleString('en')} lookup + name calls (start → every 10% → end) | ${rssOurs.map(mib).join(' → ')} MiB | ${rssTheirs.map(mib).join(' → ')} MiB |`,
      `| \`virsh define\` of an edited definition → \`export.written\`, ${EDITS} edits: p50 / p99 (virsh's own start included) | ${ms(pct(editLat, 50))} / ${ms(pct(editLat, 99))} | — |`,
    );
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    say('undefining the bench domains');
    const all = await lv.virConnectListAllDomains(conn, 0);
    await pool(all, async (d) => {
      if ((await lv.virDomainGetName(d)).startsWith(PREFIX)) await lv.virDomainUndefine(d).catch(() => undefined);
      lv.virDomainFree(d);
    });
    await lv.virConnectClose(conn);
    await hv.connectClose();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv.includes('--rss-child')) await rssChild(process.argv[process.argv.indexOf('--rss-child') + 1] as 'ours' | 'unraid');
else await main();
