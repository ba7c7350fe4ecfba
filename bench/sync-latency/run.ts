/**
 * bench/sync-latency: the daemon as operators run it (`ocivirt daemon`, a child process, JSON log
 * on stdout), on the real libvirtd.
 *   1. rename into the spool -> `domain.defined` received: p50/p99 over N bundles dropped one at a
 *      time the documented way (`cp -a mybundle .incoming-X`, then rename to spool/X; the next after
 *      the previous is defined), then L made with `cp -al` from one template and renamed in one every
 *      G ms (a steady stream: every link changes the shared files' ctimes), then M dropped at once;
 *   2. `virsh memtune --hard-limit … --config` returned -> `export.written` received, K domains;
 *   3. idle: CPU time (utime+stime from /proc) and RSS of the daemon over S seconds with the M
 *      domains managed, after it has settled.
 * Times are taken in this process when the daemon's log line arrives, so they include the pipe.
 * Writes its section into BENCHMARKS.md. Domains are ocivirt-test-bench-…, all undefined after.
 *
 *   npx tsc -p . && node dist/bench/sync-latency/run.js [--one N] [--stream L] [--stream-gap G] [--many M] [--exports K] [--idle S]
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { DaemonProcess, bundleConfig, busyboxCopy, daemonDirs, writeConfig, writeSmallBundle, type LogEvent } from '../../test/daemon/harness.js';
import { repoRoot } from '../../test/helpers/schema.js';
import { writeBenchSection } from '../section.js';
import { percentile } from '../stats.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const ONE = arg('one', 200);
const STREAM = arg('stream', 50);
/** The stream's pace: one drop every this many ms (a steady stream, not a burst: "at once" is the burst). */
const STREAM_GAP_MS = arg('stream-gap', 100);
const MANY = arg('many', 1000);
const EXPORTS = arg('exports', 50);
const IDLE_S = arg('idle', 60);
const PREFIX = 'ocivirt-test-bench-';
const URI = 'lxc:///';
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

const run = promisify(execFile);
const virsh = (...a: string[]) => execFileSync('virsh', ['-q', '-c', URI, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const pct = percentile;
const ms = (x: number) => `${x.toFixed(1)} ms`;

function undefineAll(): void {
  const names = virsh('list', '--all', '--name')
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(PREFIX));
  for (const n of names) {
    try {
      virsh('destroy', n);
    } catch {
      /* not running */
    }
    try {
      virsh('undefine', n);
    } catch {
      /* gone */
    }
  }
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15 of stat)
}
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** Index of the first `domain.defined` for `entry` at or after `from`, waiting for it. */
async function definedAt(d: DaemonProcess, entry: string, from: number): Promise<number> {
  await d.waitForEntry('domain.defined', entry, 120_000, from);
  const i = d.lines.findIndex((e, k) => k >= from && e.event === 'domain.defined' && e.entry === entry);
  return d.arrivals[i]!;
}

/** The daemon runs with the NODE_OPTIONS the systemd unit gives it (read from the unit, so they cannot drift). */
const nodeOptions = /^Environment="NODE_OPTIONS=([^"]*)"$/m.exec(readFileSync(join(repoRoot(), 'systemd', 'ocivirt.service'), 'utf8'))?.[1] ?? '';

async function main(): Promise<void> {
  undefineAll();
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-latency-'));
  const dirs = daemonDirs(join(tmp, 'd'));
  const busybox = busyboxCopy(tmp);
  const configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 2000, concurrency: 8 });
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const cfg = bundleConfig(['/bin/busybox', 'sleep', '1000']);
  let daemon: DaemonProcess | undefined;
  try {
    daemon = await DaemonProcess.start(configFile, { NODE_OPTIONS: nodeOptions });
    const d = daemon;
    await d.waitFor((e) => e.event === 'sync.completed' && e.scope === 'all', 30_000, 'first resync');

    // 1a. one at a time, the documented way: `cp -a mybundle .incoming-X && mv .incoming-X spool/X`
    const mybundle = join(tmp, 'mybundle');
    writeSmallBundle(mybundle, busybox, cfg);
    const oneLat: number[] = [];
    for (let i = 0; i < ONE; i++) {
      const incoming = join(dirs.staging, `.incoming-one-${i}`);
      execFileSync('cp', ['-a', mybundle, incoming]);
      const from = d.lines.length;
      const t0 = performance.now();
      renameSync(incoming, join(dirs.spool, `one-${i}`));
      oneLat.push((await definedAt(d, `one-${i}`, from)) - t0);
    }

    // 1c. a steady stream of `cp -al` copies of one template, one renamed in every STREAM_GAP_MS
    const template = join(tmp, 'template');
    writeSmallBundle(template, busybox, cfg);
    const streamFrom = d.lines.length;
    const streamDropped: number[] = [];
    const streamStart = performance.now();
    for (let i = 0; i < STREAM; i++) {
      const incoming = join(dirs.staging, `.incoming-linked-${i}`);
      await run('cp', ['-al', template, incoming]); // async: the daemon's lines keep arriving meanwhile
      streamDropped.push(performance.now());
      renameSync(incoming, join(dirs.spool, `linked-${i}`));
      const due = streamStart + (i + 1) * STREAM_GAP_MS;
      if (performance.now() < due) await sleep(due - performance.now());
    }
    const streamEnd = performance.now();
    const isLinked = (e: LogEvent) => (e.event === 'domain.defined' || e.event === 'entry.failed') && String(e.entry).startsWith('linked-');
    await d.waitForCount(isLinked, STREAM, 120_000, 'stream defined');
    const streamLat: number[] = [];
    let firstLinked = Infinity;
    for (let k = streamFrom; k < d.lines.length; k++) {
      const e = d.lines[k]!;
      if (e.event !== 'domain.defined' || !String(e.entry).startsWith('linked-')) continue;
      streamLat.push(d.arrivals[k]! - streamDropped[Number(String(e.entry).slice(7))]!);
      firstLinked = Math.min(firstLinked, d.arrivals[k]!);
    }

    // 1b. many at once
    for (let i = 0; i < MANY; i++) writeSmallBundle(join(dirs.staging, `many-${i}`), busybox, cfg);
    await sleep(50);
    const from = d.lines.length;
    const dropped: number[] = [];
    for (let i = 0; i < MANY; i++) {
      dropped.push(performance.now());
      renameSync(join(dirs.staging, `many-${i}`), join(dirs.spool, `many-${i}`));
    }
    const isMany = (e: LogEvent) => (e.event === 'domain.defined' || e.event === 'entry.failed') && String(e.entry).startsWith('many-');
    await d.waitForCount(isMany, MANY, 600_000, 'many defined');
    const manyLat: number[] = [];
    let lastAt = 0;
    for (let k = from; k < d.lines.length; k++) {
      const e = d.lines[k]!;
      if (e.event !== 'domain.defined' || !String(e.entry).startsWith('many-')) continue;
      const i = Number(String(e.entry).slice(5));
      manyLat.push(d.arrivals[k]! - dropped[i]!);
      lastAt = Math.max(lastAt, d.arrivals[k]!);
    }
    const manyTotal = lastAt - dropped[0]!;
    const manyFailed = d.events((e) => e.event === 'entry.failed' && String(e.entry).startsWith('many-')).length;

    // 2. export after memtune --config
    await sleep(3000); // the exports of the new domains themselves are done
    const exportLat: number[] = [];
    for (let i = 0; i < EXPORTS; i++) {
      const name = `${PREFIX}many-${i}`;
      const at = d.lines.length;
      virsh('memtune', name, '--hard-limit', String(200_000 + i * 1024), '--config');
      const t0 = performance.now();
      await d.waitFor((e) => e.event === 'export.written' && e.domain === name, 30_000, `export ${name}`, at);
      const k = d.lines.findIndex((e, j) => j >= at && e.event === 'export.written' && e.domain === name);
      exportLat.push(d.arrivals[k]! - t0);
    }

    // 3. idle
    await sleep(5000);
    const pid = d.child.pid!;
    const managed = ONE + STREAM + MANY;
    const c0 = cpuTicks(pid);
    const t0 = performance.now();
    const rss: number[] = [];
    while (performance.now() - t0 < IDLE_S * 1000) {
      rss.push(rssMiB(pid));
      await sleep(1000);
    }
    const idleCpu = ((cpuTicks(pid) - c0) / TICKS / ((performance.now() - t0) / 1000)) * 100;
    const rssMax = Math.max(...rss);
    const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');

    const yes = (ok: boolean) => (ok ? 'yes' : 'NO');
    const section = [
      '<!-- bench:sync-latency:start (written by `node dist/bench/sync-latency/run.js`; do not edit by hand) -->',
      '## Daemon latency: spool rename -> domain.defined, libvirt change -> export, idle cost',
      '',
      `Command: \`npx tsc -p . && node dist/bench/sync-latency/run.js --one ${ONE} --stream ${STREAM} --stream-gap ${STREAM_GAP_MS} --many ${MANY} --exports ${EXPORTS} --idle ${IDLE_S}\` (run ${new Date().toISOString()})`,
      '',
      `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, libvirt LXC at \`${URI}\`. ` +
        `Load average before/after: ${load0} / ${load1} (shared machine).`,
      '',
      '`ocivirt daemon` runs as a child process; each time is taken in the bench process when the daemon\'s JSON log line arrives. ' +
        'Bundles: config.json and a one-file rootfs. One at a time: the documented flow, `cp -a mybundle staging/.incoming-X` then a rename to spool/X ' +
        '(timed from the rename). Stream: `cp -al template staging/.incoming-X` then the rename, one every G ms (--stream-gap), so every new copy changes the ctimes of the files all earlier ones share. ' +
        'At once: built in the staging directory, then renamed in. ' +
        'Export latency runs from `virsh memtune --hard-limit … --config` returning to `export.written` arriving. ' +
        `Idle: the daemon with ${managed} managed domains, CPU time from /proc/<pid>/stat over ${IDLE_S} s, RSS sampled every second. ` +
        `The daemon runs with the unit's \`NODE_OPTIONS=${nodeOptions}\`.`,
      '',
      '| measurement | p50 | p99 | max | target | met |',
      '| --- | --- | --- | --- | --- | --- |',
      `| rename -> domain.defined, ${ONE} one at a time | ${ms(pct(oneLat, 50))} | ${ms(pct(oneLat, 99))} | ${ms(Math.max(...oneLat))} | p50 ≤ 50 ms, p99 ≤ 250 ms | ${yes(pct(oneLat, 50) <= 50 && pct(oneLat, 99) <= 250)} |`,
      `| rename -> domain.defined, ${STREAM} \`cp -al\` copies in a stream (one every ${STREAM_GAP_MS} ms) | ${ms(pct(streamLat, 50))} | ${ms(pct(streamLat, 99))} | ${ms(Math.max(...streamLat))} | p50 ≤ 50 ms, p99 ≤ 250 ms | ${yes(pct(streamLat, 50) <= 50 && pct(streamLat, 99) <= 250)} |`,
      `| rename -> domain.defined, ${MANY} at once | ${ms(pct(manyLat, 50))} | ${ms(pct(manyLat, 99))} | ${ms(Math.max(...manyLat))} | — | — |`,
      `| memtune --config -> export.written, ${EXPORTS} domains | ${ms(pct(exportLat, 50))} | ${ms(pct(exportLat, 99))} | ${ms(Math.max(...exportLat))} | p99 ≤ 1 s | ${yes(pct(exportLat, 99) <= 1000)} |`,
      '',
      `Stream: ${STREAM} drops over ${((streamEnd - streamStart) / 1000).toFixed(2)} s; the first was defined ${((firstLinked - streamStart) / 1000).toFixed(2)} s after the stream began${firstLinked < streamEnd ? ', while it went on' : ', after it ended'}.`,
      '',
      `${MANY} at once: the last defined ${(manyTotal / 1000).toFixed(2)} s after the first rename (${(manyTotal / MANY).toFixed(1)} ms per domain), ${manyFailed} failed.`,
      '',
      `| idle with ${managed} managed domains | value | target | met |`,
      '| --- | --- | --- | --- |',
      `| CPU over ${IDLE_S} s | ${idleCpu.toFixed(2)} % | < 1 % | ${yes(idleCpu < 1)} |`,
      `| RSS (max of samples) | ${rssMax.toFixed(0)} MiB | < 150 MB | ${yes(rssMax * 1.048576 < 150)} |`,
      '<!-- bench:sync-latency:end -->',
    ].join('\n');
    writeBenchSection(repoRoot(), 'sync-latency', section);
  } finally {
    await daemon?.stop();
    undefineAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
