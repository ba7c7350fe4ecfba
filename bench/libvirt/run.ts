/**
 * libvirt-binding against @unraid/libvirt, one command (under the integration lock, it defines domains):
 *   node dist/bench/libvirt/run.js [--domains N] [--runs N] [--calls N] [--events N] [--edits N]
 *
 * In the same run, on the same libvirtd:
 * - lookup + XML: N (default 1,000) defined domains, each looked up by name and its inactive XML
 *   read, 8 at a time, by each binding in a child process of its own; one warm-up round, then
 *   --runs rounds (median), each through the domains in slices of 100, both bindings per slice,
 *   the first alternating;
 * - define -> lifecycle event callback latency (our binding; @unraid/libvirt has no events);
 * - RSS after --calls (default 100,000) lookup + name calls, sampled every tenth after a full GC,
 *   for each binding in a child process of its own;
 * - `virsh define` of an edited definition (what `virsh edit` does) -> `export.written` from the
 *   exporter, as the daemon runs it.
 * Writes its section into BENCHMARKS.md. Every domain is named ocivirt-test-binding-bench-* and
 * undefined at the end.
 *
 * A process loads one binding only, each as an application using it alone would: loading
 * libvirt-binding registers its event loop with libvirt for every connection of the process, and
 * @unraid/libvirt, which registers none, would otherwise run on it. So both bindings and the
 * modules that load libvirt-binding (the adapter) are imported where they are used.
 * A lifecycle callback does not keep Node alive, so every wait for one holds a timer.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { EventLogger } from '../../src/log.js';
import { writeBenchSection } from '../section.js';

type Which = 'ours' | 'unraid';

const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const N = arg('--domains', 1000);
const RUNS = arg('--runs', 3);
const CALLS = arg('--calls', 100_000);
const EVENTS = arg('--events', 200);
const EDITS = arg('--edits', 50);
const URI = process.env.OCIVIRT_BENCH_URI ?? 'lxc:///';
const PREFIX = 'ocivirt-test-binding-bench-';
const CONCURRENCY = 8;
/** Domains per slice of a lookup + XML round (see there). */
const SLICE = 100;
const here = fileURLToPath(import.meta.url);
const repo = fileURLToPath(new URL('../../../', import.meta.url));
/** A wait for a callback that has not come after this long counts as a miss. */
const WAIT_MS = 10_000;

const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const ms = (x: number) => `${x.toFixed(1)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (b: number) => (b / 1048576).toFixed(1);
const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]! : NaN);

const names = Array.from({ length: N }, (_, i) => `${PREFIX}${String(i).padStart(4, '0')}`);

function xml(name: string, arg = '300', uuid?: string): string {
  return `<domain type='lxc'><name>${name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ''}<memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sleep</init><initarg>${arg}</initarg></os><devices><console type='pty'/></devices></domain>`;
}

/**
 * @unraid/libvirt frees a domain's pointer when its Domain object is garbage-collected, even while
 * a call on it runs ("invalid domain pointer in virDomainGetXMLDesc", or worse): its calls are
 * awaited with the Domain used afterwards, so it stays reachable until they end.
 */
let kept: unknown;
const keep = (d: unknown) => {
  kept = d;
};

/** Resolves with what `arm` hands its callback, or undefined after WAIT_MS; the timer keeps Node alive meanwhile. */
function within<T>(arm: (done: (v: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), WAIT_MS);
    arm((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

async function pool<T>(items: T[], fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** One binding's calls: a process that uses it imports no other binding. */
interface Client {
  lookupXml(name: string): Promise<void>;
  lookupName(name: string): Promise<void>;
  close(): Promise<void>;
}

async function client(which: Which): Promise<Client> {
  if (which === 'ours') {
    const lv = await import('libvirt-binding');
    const conn = await lv.virConnectOpen(URI);
    return {
      lookupXml: async (n) => {
        const d = await lv.virDomainLookupByName(conn, n);
        await lv.virDomainGetXMLDesc(d, lv.VIR_DOMAIN_XML_INACTIVE);
        lv.virDomainFree(d);
      },
      lookupName: async (n) => {
        const d = await lv.virDomainLookupByName(conn, n);
        await lv.virDomainGetName(d);
        lv.virDomainFree(d);
      },
      close: async () => {
        await lv.virConnectClose(conn);
      },
    };
  }
  const { Hypervisor, DomainGetXMLDescFlags } = await import('@unraid/libvirt');
  const hv = new Hypervisor({ uri: URI });
  await hv.connectOpen();
  return {
    lookupXml: async (n) => {
      const d = await hv.domainLookupByName(n);
      await hv.domainGetXMLDesc(d, DomainGetXMLDescFlags.INACTIVE);
      keep(d);
    },
    lookupName: async (n) => {
      const d = await hv.domainLookupByName(n);
      await d.getName();
      keep(d);
    },
    close: () => hv.connectClose(),
  };
}

type SliceResult = { ms: number; cpu: number };

/** A child process: lookup + XML of the slices of `names` the parent asks for, timed here. */
async function lookupChild(which: Which): Promise<void> {
  const c = await client(which);
  process.on('message', (m: { from: number; to: number } | 'exit') => {
    void (async () => {
      if (m === 'exit') {
        await c.close();
        process.disconnect();
        return;
      }
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await pool(names.slice(m.from, m.to), (n) => c.lookupXml(n));
      const cpu = process.cpuUsage(c0);
      process.send!({ ms: performance.now() - t0, cpu: (cpu.user + cpu.system) / 1000 } satisfies SliceResult);
    })();
  });
  process.send!('ready');
}

/** The next message from a child. */
function reply<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`bench child exited with ${code}`));
    child.once('exit', onExit);
    child.once('message', (m) => {
      child.off('exit', onExit);
      resolve(m as T);
    });
  });
}

async function lookupChildren(): Promise<Record<Which, ChildProcess>> {
  const start = (which: Which) => spawn(process.execPath, [here, '--lookup-child', which, '--domains', String(N)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const kids = { ours: start('ours'), unraid: start('unraid') };
  await Promise.all([reply(kids.ours), reply(kids.unraid)]);
  return kids;
}

/** A child process: RSS every CALLS/10 lookup + getName calls through one binding, after a full GC. */
async function rssChild(which: Which): Promise<void> {
  const name = names[0]!;
  const samples: number[] = [];
  const every = CALLS / 10;
  // a full collection first, so the samples show what stays, not the young generation's churn
  const rss = () => {
    (globalThis as { gc?: () => void }).gc?.();
    return process.memoryUsage.rss();
  };
  const c = await client(which);
  for (let i = 0; i < CALLS; i++) {
    await c.lookupName(name);
    if (i % every === 0) samples.push(rss());
  }
  await c.close();
  // the end: after the last call, and again once the finalizers of the last handles have run
  samples.push(rss());
  await new Promise((resolve) => setTimeout(resolve, 100));
  samples.push(rss());
  process.stdout.write(JSON.stringify(samples));
}

function rssRun(which: Which): number[] {
  const r = spawnSync(process.execPath, ['--expose-gc', here, '--rss-child', which, '--calls', String(CALLS), '--domains', String(N)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`rss child ${which} failed`);
  return JSON.parse(r.stdout) as number[];
}

async function main(): Promise<void> {
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  // this process uses libvirt-binding (defines, events, the exporter's port); @unraid/libvirt only runs in children
  const lv = await import('libvirt-binding');
  const { fromNative } = await import('../../src/convert/from-native.js');
  const { Exporter } = await import('../../src/export/exporter.js');
  const { connectLibvirt } = await import('../../src/libvirt/adapter.js');
  const { silentLogger } = await import('../../src/log.js');
  const conn = await lv.virConnectOpen(URI);
  say(`defining ${N} domains`);
  await pool(names, async (n) => lv.virDomainFree(await lv.virDomainDefineXML(conn, xml(n))));
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-libvirt-'));
  try {
    // 1. lookup + XML of N domains, each binding in a child process of its own. Each round goes
    // through the domains in slices of SLICE, both bindings per slice, the first alternating: a
    // burst of load from elsewhere on a shared machine then falls on both instead of on one
    // binding's whole round.
    const kids = await lookupChildren();
    const times = { ours: [] as number[], unraid: [] as number[] };
    // CPU time of each binding's process (all its threads): steadier than wall time on a shared machine
    const cpuTimes = { ours: [] as number[], unraid: [] as number[] };
    try {
      for (let r = -1; r < RUNS; r++) {
        // round -1 warms both up (JIT, libvirtd's caches) and is not counted
        const got = { ours: 0, unraid: 0 };
        const gotCpu = { ours: 0, unraid: 0 };
        for (let k = 0; k * SLICE < N; k++) {
          for (const which of (k + r) % 2 === 0 ? (['ours', 'unraid'] as const) : (['unraid', 'ours'] as const)) {
            kids[which].send({ from: k * SLICE, to: (k + 1) * SLICE });
            const res = await reply<SliceResult>(kids[which]);
            got[which] += res.ms;
            gotCpu[which] += res.cpu;
          }
        }
        if (r >= 0) {
          for (const which of ['ours', 'unraid'] as const) {
            times[which].push(got[which]);
            cpuTimes[which].push(gotCpu[which]);
          }
        }
        say(
          `lookup+XML ${r < 0 ? 'warm-up' : `round ${r + 1}`}: ours ${ms(got.ours)} (CPU ${ms(gotCpu.ours)}), ` +
            `@unraid/libvirt ${ms(got.unraid)} (CPU ${ms(gotCpu.unraid)})`,
        );
      }
    } finally {
      for (const kid of Object.values(kids)) kid.send('exit');
      await Promise.all(Object.values(kids).map((kid) => new Promise((resolve) => (kid.exitCode !== null ? resolve(null) : kid.once('exit', resolve)))));
    }

    // 2. define -> event latency
    const waiting = new Map<string, (t: number) => void>();
    const id = await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
      if (e.event === lv.VIR_DOMAIN_EVENT_DEFINED) waiting.get(e.name)?.(performance.now());
    });
    const latencies: number[] = [];
    let eventMisses = 0;
    for (let i = 0; i < EVENTS; i++) {
      const n = names[i % N]!;
      const d = await lv.virDomainLookupByName(conn, n);
      const uuid = await lv.virDomainGetUUIDString(d);
      lv.virDomainFree(d);
      const seen = within<number>((done) => waiting.set(n, done));
      const t0 = performance.now();
      // a redefine must name the uuid on libvirt-lxc
      lv.virDomainFree(await lv.virDomainDefineXML(conn, xml(n, String(1000 + i), uuid)));
      const t = await seen;
      waiting.delete(n);
      if (t === undefined) eventMisses++;
      else latencies.push(t - t0);
    }
    await lv.virConnectDomainEventDeregisterAny(conn, id);
    say(`define -> event: p50 ${ms(pct(latencies, 50))}, p99 ${ms(pct(latencies, 99))}, ${eventMisses} missed`);

    // 3. RSS over CALLS calls
    const rssOurs = rssRun('ours');
    const rssTheirs = rssRun('unraid');
    say(`RSS ours ${rssOurs.map(mib).join(' ')} MiB; @unraid/libvirt ${rssTheirs.map(mib).join(' ')} MiB`);

    // 4. virsh define (virsh edit) -> export.written
    const managed = `${PREFIX}export`;
    const bundle = join(tmp, 'bundle');
    const config = {
      ociVersion: '1.0.2',
      process: { args: ['/bin/sleep', '300'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
      root: { path: 'rootfs' },
      linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
    };
    const managedXml = (i: number) =>
      fromNative({ ...config, process: { ...config.process, args: ['/bin/sleep', String(300 + i)] } } as never, { bundleDir: bundle, name: managed, owner: { entry: managed } }).xml;
    lv.virDomainFree(await lv.virDomainDefineXML(conn, managedXml(0)));
    let written: ((t: number) => void) | undefined;
    const quiet = silentLogger();
    const log: EventLogger = {
      ...quiet,
      info: (event, fields) => {
        if (event === 'export.written' && fields?.domain === managed) written?.(performance.now());
      },
    };
    const port = await connectLibvirt(URI);
    const exporter = new Exporter({ port, exportDir: join(tmp, 'export'), definitionsDir: '/etc/libvirt/lxc', exportAllDomains: false, prefix: PREFIX, checkIntervalMs: 3_600_000, log });
    await exporter.start();
    const editLat: number[] = [];
    let editMisses = 0;
    for (let i = 1; i <= EDITS; i++) {
      const file = join(tmp, `edit-${i}.xml`);
      writeFileSync(file, managedXml(i));
      const seen = within<number>((done) => (written = done));
      const t0 = performance.now();
      // not spawnSync: the exporter must be free to run while virsh does (it is another process in real use)
      const status = await new Promise<number | null>((resolve, reject) =>
        spawn('virsh', ['-q', '-c', URI, 'define', file], { stdio: 'ignore' }).on('error', reject).on('close', resolve),
      );
      if (status !== 0) throw new Error(`virsh define exited with ${status}`);
      const t = await seen;
      written = undefined;
      if (t === undefined) editMisses++;
      else editLat.push(t - t0);
    }
    await exporter.stop();
    await port.close();
    say(`virsh define -> export.written: p50 ${ms(pct(editLat, 50))}, p99 ${ms(pct(editLat, 99))}, ${editMisses} missed`);

    const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');
    const yes = (ok: boolean) => (ok ? 'yes' : 'NO');
    const lookupRatio = median(times.ours) / median(times.unraid);
    // flat: what stays after a full GC grows by less than 2 MiB from the first tenth to the end
    const growth = (xs: number[]) => xs.at(-1)! - xs[1]!;
    const flat = (xs: number[]) => growth(xs) < 2 * 1048576;
    const eventP99 = pct(latencies, 99);
    const editP99 = pct(editLat, 99);
    const section = [
      '<!-- bench:libvirt:start (written by `node dist/bench/libvirt/run.js`; do not edit by hand) -->',
      '## libvirt binding: libvirt-binding vs @unraid/libvirt',
      '',
      `Command: \`npx tsc -p . && flock /tmp/ocivirt-integration.lock node dist/bench/libvirt/run.js --domains ${N} --runs ${RUNS} --calls ${CALLS} --events ${EVENTS} --edits ${EDITS}\` (run ${new Date().toISOString()})`,
      '',
      `Machine: nproc ${cpus().length}, ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, libvirt LXC at \`${URI}\`. ` +
        `Load average before/after: ${load0} / ${load1} (shared machine).`,
      '',
      `Lookup + XML: ${N} defined domains, each looked up by name and its inactive XML read, ${CONCURRENCY} at a time, one connection per binding, ` +
        `each binding in a child process of its own that loads no other binding (as an application using it alone); a warm-up round, then ${RUNS} rounds, ` +
        `each through the domains in slices of ${SLICE}, both bindings per slice, the first alternating (a burst of load from elsewhere falls on both); time and CPU measured in each child. ` +
        `Events: ${EVENTS} redefinitions of a domain, each timed from the call to the callback. ` +
        `RSS: ${CALLS.toLocaleString('en')} × (lookup by name + get name) per binding, each in a child process of its own, sampled after a full GC. ` +
        `Export: \`virsh define\` of the edited definition of a managed domain (what \`virsh edit\` does when it saves), timed from the spawn of virsh (its own start included) to the exporter's \`export.written\` log event, ${EDITS} edits. ` +
        `A wait for a callback that never came (${WAIT_MS / 1000} s) counts as a miss.`,
      '',
      '| measure | libvirt-binding | @unraid/libvirt | target | met |',
      '| --- | --- | --- | --- | --- |',
      `| lookup + inactive XML of ${N} domains (median of ${RUNS}; rounds) | ${ms(median(times.ours))} (${times.ours.map((x) => x.toFixed(0)).join(', ')}) | ${ms(median(times.unraid))} (${times.unraid.map((x) => x.toFixed(0)).join(', ')}) | ours no slower | ${yes(lookupRatio <= 1)} (${lookupRatio.toFixed(3)}×) |`,
      `| the same rounds: CPU time of the binding's process (median; rounds) | ${ms(median(cpuTimes.ours))} (${cpuTimes.ours.map((x) => x.toFixed(0)).join(', ')}) | ${ms(median(cpuTimes.unraid))} (${cpuTimes.unraid.map((x) => x.toFixed(0)).join(', ')}) | — | — |`,
      `| define → lifecycle event callback, ${EVENTS} defines: p50 / p99 / max | ${ms(pct(latencies, 50))} / ${ms(eventP99)} / ${ms(Math.max(...latencies))}, ${eventMisses} missed | no events | p99 < 100 ms | ${yes(eventP99 < 100 && eventMisses === 0)} |`,
      `| RSS over ${CALLS.toLocaleString('en')} calls, MiB (start, every 10%, end, end + 100 ms) | ${rssOurs.map(mib).join(' ')} | ${rssTheirs.map(mib).join(' ')} | flat (< 2 MiB from 10% to the end) | ours ${yes(flat(rssOurs))} (${mib(growth(rssOurs))} MiB); theirs ${yes(flat(rssTheirs))} (${mib(growth(rssTheirs))} MiB) |`,
      `| \`virsh define\` of an edited definition → \`export.written\`, ${EDITS} edits: p50 / p99 / max | ${ms(pct(editLat, 50))} / ${ms(editP99)} / ${ms(Math.max(...editLat))}, ${editMisses} missed | — | p99 < 300 ms | ${yes(editP99 < 300 && editMisses === 0)} |`,
      '<!-- bench:libvirt:end -->',
    ].join('\n');
    writeBenchSection(repo, 'libvirt', section);
  } finally {
    say('undefining the bench domains');
    const all = await lv.virConnectListAllDomains(conn, 0);
    await pool(all, async (d) => {
      if ((await lv.virDomainGetName(d)).startsWith(PREFIX)) await lv.virDomainUndefine(d).catch(() => undefined);
      lv.virDomainFree(d);
    });
    await lv.virConnectClose(conn);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const child = (flag: string) => (process.argv.includes(flag) ? (process.argv[process.argv.indexOf(flag) + 1] as Which) : undefined);
if (child('--rss-child')) await rssChild(child('--rss-child')!);
else if (child('--lookup-child')) await lookupChild(child('--lookup-child')!);
else await main();
