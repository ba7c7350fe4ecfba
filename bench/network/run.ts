/**
 * bench/network: drop -> published port answers, on the real libvirtd.
 *
 * A running `ocivirt daemon` (child process, JSON log on stdout) watches a spool holding one OCI
 * image, `web` (Debian's static busybox with sh and httpd, `{"imageOnly": true}`). For each of N
 * containers a settings entry `web-I.ocivirt.json` naming that image, with `networks` (an address
 * allocated from the bench's own isolated libvirt network) and `publish` (a host port of its own
 * -> 80), is written beside the spool beforehand and renamed in; the time runs from that rename to
 * the first HTTP answer, with the container's own page ("hello from web-I"), on the published port
 * at the network's bridge address (a host address: loopback is not forwarded). A first container
 * before them unpacks the image (reported on its own). The network has STP off unless `--stp on`
 * (libvirt's default network has it on: the kernel then holds every new port ~4 s).
 *
 * Reference: what a user would otherwise do by hand for the same container: a hand-written
 * libvirt-lxc domain XML (the same busybox tree, prepared beforehand and not timed; the same init
 * command; an `<interface type='network'>` with a fixed address and a default route), then
 * `virsh define`, `virsh start` and `nft -f -` adding the same two DNAT rules ocivirt writes
 * (prerouting + output) to a table made beforehand; timed from the spawn of `virsh define` to the
 * same first answer on host port 18300+I. The two run interleaved (one container of each at a
 * time, alternating which goes first), each alone on the machine.
 *
 * Everything the bench makes is removed in `finally`: the domains (ocivirt-test-bench-net-…),
 * the network (ocivirt-test-bench-net), the reference's nft table and the daemon instance's own.
 * Run it under the integration lock:
 *   npx tsc -p . && flock /tmp/ocivirt-integration.lock node dist/bench/network/run.js [--containers N] [--stp on|off]
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { tableName } from '../../src/network/ports.js';
import { readInstanceId } from '../../src/reconcile/instance.js';
import { DaemonProcess, daemonDirs, writeConfig } from '../../test/daemon/harness.js';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../../test/image/fixtures.js';
import { buildBusyboxRootfs, cleanupDomains } from '../../test/helpers/libvirt.js';
import { fetchText, freeSubnet, removeNetwork, startIsolatedNetwork } from '../../test/helpers/network.js';
import { repoRoot } from '../../test/helpers/schema.js';
import { dir } from '../../test/helpers/tar.js';
import { writeBenchSection } from '../section.js';
import { percentile } from '../stats.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('containers', 20);
/** `--stp on`: the network as libvirt's default one is (STP on): every new bridge port waits ~4 s before it forwards. */
const STP = process.argv.includes('--stp') ? process.argv[process.argv.indexOf('--stp') + 1] === 'on' : false;
/** `--log FILE`: the daemon's log lines, each with its arrival time here (performance.now() ms). */
const LOG = process.argv.includes('--log') ? process.argv[process.argv.indexOf('--log') + 1] : undefined;
const PREFIX = 'ocivirt-test-bench-net-';
const NETWORK = 'ocivirt-test-bench-net';
const BRIDGE = 'ocvbnet0';
const REF_TABLE = `ocivirt-bench-ref-${process.pid}`;
const OURS_PORT = 18200;
const REF_PORT = 18300;
const URI = 'lxc:///';
/** A container that does not answer within this long counts as a failure of the run. */
const ANSWER_TIMEOUT_MS = 60_000;

const run = promisify(execFile);
const pct = percentile;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const page = (name: string) => `hello from ${name}`;
/** The init both sides run: writes the container's own page, then busybox httpd in the foreground. */
const initArgs = (name: string) => ['-c', `echo '${page(name)}' > /www/index.html; exec /bin/busybox httpd -f -p 80 -h /www`];

function nft(script: string): void {
  execFileSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

function deleteTable(name: string): void {
  try {
    execFileSync('nft', ['list', 'table', 'ip', name], { stdio: 'ignore' });
  } catch {
    return; // not there
  }
  execFileSync('nft', ['delete', 'table', 'ip', name]);
}

/** Polls `url` every 10 ms until it answers `body`; the time it did, or throws after the timeout. */
async function answeredAt(url: string, body: string): Promise<number> {
  const end = performance.now() + ANSWER_TIMEOUT_MS;
  let last: unknown;
  for (;;) {
    try {
      if ((await fetchText(url)).trim() === body) return performance.now();
      last = new Error('another page');
    } catch (e) {
      last = e;
    }
    if (performance.now() > end) throw new Error(`${url} did not answer "${body}" within ${ANSWER_TIMEOUT_MS} ms: ${String(last)}`);
    await sleep(10);
  }
}

/** The hand-written definition of the reference container `name`: rootfs, init, one interface. */
function referenceXml(name: string, rootfs: string, ip: string, gateway: string): string {
  const args = initArgs(name)
    .map((a) => `<initarg>${a.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}</initarg>`)
    .join('');
  return `<domain type='lxc'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sh</init>${args}</os>
  <devices>
    <filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem>
    <interface type='network'>
      <source network='${NETWORK}'/>
      <ip address='${ip}' family='ipv4' prefix='24'/>
      <route family='ipv4' address='0.0.0.0' prefix='0' gateway='${gateway}'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
`;
}

/** The two rules ocivirt writes for a published port, by hand (nft/ports.ts's form). */
function referenceRules(hostPort: number, ip: string): string {
  const m = `tcp dport ${hostPort} dnat to ${ip}:80`;
  return `add rule ip ${REF_TABLE} prerouting fib daddr type local ${m}\nadd rule ip ${REF_TABLE} output fib daddr type local ip daddr != 127.0.0.0/8 ${m}\n`;
}

async function main(): Promise<void> {
  cleanupDomains(PREFIX);
  removeNetwork(NETWORK);
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-bench-network-'));
  const dirs = daemonDirs(join(tmp, 'd'));
  let daemon: DaemonProcess | undefined;
  const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
  const port = await connectLibvirt(URI);
  try {
    const subnet = freeSubnet(215);
    const gateway = `${subnet}.1`;
    await startIsolatedNetwork(port, NETWORK, BRIDGE, subnet, STP);

    // the image: busybox with sh and httpd, and /www; an image only (its containers are settings entries)
    const b = new ImageBuilder();
    const m = b.image({ layers: [{ entries: [...busyboxLayerEntries(['sh', 'httpd']), dir('www/')] }], config: { Entrypoint: ['/bin/sh'], Cmd: ['-c', 'exit 0'], Env: ['PATH=/bin'] } });
    writeFiles(join(dirs.staging, 'web'), b.layoutFiles([m]));
    writeFileSync(join(dirs.staging, 'web.ocivirt.json'), JSON.stringify({ imageOnly: true }));
    renameSync(join(dirs.staging, 'web'), join(dirs.spool, 'web'));
    renameSync(join(dirs.staging, 'web.ocivirt.json'), join(dirs.spool, 'web.ocivirt.json'));

    // the reference's trees, made beforehand (a user has theirs ready): busybox, /www
    const template = join(tmp, 'ref-template');
    buildBusyboxRootfs(template);
    mkdirSync(join(template, 'www'));
    for (let i = 0; i < N; i++) cpSync(template, join(tmp, `ref-${i}`), { recursive: true, verbatimSymlinks: true });
    nft(`add table ip ${REF_TABLE}\ntable ip ${REF_TABLE} {\n\tchain prerouting { type nat hook prerouting priority dstnat; policy accept; }\n\tchain output { type nat hook output priority -100; policy accept; }\n}\n`);

    const configFile = join(tmp, 'ocivirt.json');
    writeConfig(configFile, dirs, { namePrefix: PREFIX, startPolicy: 'always', stopTimeoutSec: 1 });
    daemon = await DaemonProcess.start(configFile);
    const d = daemon;
    await d.waitFor((e) => e.event === 'sync.completed' && e.scope === 'all', 60_000, 'first resync');

    type Phases = { total: number; defined: number; started: number; ports: number };
    const ours: Phases[] = [];
    const ref: { total: number; defined: number; started: number; rules: number }[] = [];

    // every settings file is written beside the spool now, long before its rename: a file renamed
    // in within the clock tick of its last write waits for the watcher's quiet time (see BENCHMARKS.md)
    const names = ['web-first', ...Array.from({ length: N }, (_, i) => `web-${i}`)];
    names.forEach((name, k) => {
      const settings = { image: 'web', command: initArgs(name), networks: [NETWORK], publish: [`${OURS_PORT + k}:80`] };
      writeFileSync(join(dirs.staging, `${name}.ocivirt.json`), JSON.stringify(settings));
    });
    await sleep(100);
    let published = 0;
    const dropOurs = async (k: number): Promise<Phases> => {
      const name = names[k]!;
      const entry = `${name}.ocivirt.json`;
      const from = d.lines.length;
      const rules = ++published; // this container's rule joins the table
      const t0 = performance.now();
      renameSync(join(dirs.staging, entry), join(dirs.spool, entry));
      const t = await answeredAt(`http://${gateway}:${OURS_PORT + k}/`, page(name));
      // its log line may arrive after the port already answers
      await d.waitFor((e) => e.event === 'ports.applied' && e.rules === rules, 30_000, `ports.applied with ${rules} rules`, from);
      const at = (event: string, pred: (e: Record<string, unknown>) => boolean = (e) => e.entry === entry) => {
        const j = d.lines.findIndex((e, n) => n >= from && e.event === event && pred(e));
        return j < 0 ? NaN : d.arrivals[j]! - t0;
      };
      return { total: t - t0, defined: at('domain.defined'), started: at('domain.started'), ports: at('ports.applied', (e) => e.rules === rules) };
    };
    // the image's first container unpacks it (shared by the others): measured on its own
    const first = await dropOurs(0);
    const measureOurs = async (i: number) => void ours.push(await dropOurs(i + 1));

    const measureRef = async (i: number) => {
      const name = `${PREFIX}ref-${i}`;
      const ip = `${subnet}.${50 + i}`;
      const xmlFile = join(tmp, `ref-${i}.xml`);
      writeFileSync(xmlFile, referenceXml(name, join(tmp, `ref-${i}`), ip, gateway));
      const t0 = performance.now();
      await run('virsh', ['-q', '-c', URI, 'define', xmlFile]);
      const defined = performance.now() - t0;
      await run('virsh', ['-q', '-c', URI, 'start', name]);
      const started = performance.now() - t0;
      await new Promise<void>((resolve, reject) => {
        const child = execFile('nft', ['-f', '-'], (err) => (err ? reject(err) : resolve()));
        child.stdin!.end(referenceRules(REF_PORT + i, ip));
      });
      const rules = performance.now() - t0;
      const t = await answeredAt(`http://${gateway}:${REF_PORT + i}/`, page(name));
      ref.push({ total: t - t0, defined, started, rules });
    };

    for (let i = 0; i < N; i++) {
      if (i % 2 === 0) {
        await measureOurs(i);
        await measureRef(i);
      } else {
        await measureRef(i);
        await measureOurs(i);
      }
    }
    if (LOG !== undefined) writeFileSync(LOG, d.lines.map((e, k) => JSON.stringify({ at: Math.round(d.arrivals[k]!), ...e })).join('\n') + '\n');
    const load1 = loadavg().map((x) => x.toFixed(2)).join(' ');
    const failed = d.events((e) => e.event === 'entry.failed' || e.event === 'ports.refused' || e.event === 'ports.failed').length;

    const row = (label: string, xs: number[]) => `| ${label} | ${ms(pct(xs, 50))} | ${ms(pct(xs, 99))} | ${ms(Math.min(...xs))}–${ms(Math.max(...xs))} |`;
    const section = [
      '<!-- bench:network:start (written by `node dist/bench/network/run.js`; do not edit by hand) -->',
      '## Network: spool drop -> published port answers',
      '',
      `Command: \`npx tsc -p . && flock /tmp/ocivirt-integration.lock node dist/bench/network/run.js --containers ${N} --stp ${STP ? 'on' : 'off'}\` (run ${new Date().toISOString()})`,
      '',
      `Machine: nproc ${cpus().length}, ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, libvirt LXC at \`${URI}\`, ` +
        `\`${execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim()}\`. Load average before/after: ${load0} / ${load1} (shared machine).`,
      '',
      `${N} containers, one at a time: busybox httpd, each on the bench's own isolated libvirt network (no \`<forward>\`; STP ${STP ? "on, as libvirt's default network" : 'off'}) with one published port. ` +
        'ocivirt: a running `ocivirt daemon` watches a spool holding one OCI image (busybox with sh and httpd, `imageOnly`, unpacked by a first container before the timed ones); each container is a settings entry naming it, ' +
        'with `networks` (an address allocated from the network) and `publish` (a host port of its own to 80), written beside the spool beforehand and renamed in; timed from the rename. ' +
        'By hand (the reference): a hand-written domain XML with an `<interface type=\'network\'>`, a fixed address and a default route, on a busybox tree prepared beforehand (not timed; ' +
        'ocivirt copies the image\'s tree per container inside its time), then `virsh define`, `virsh start` and `nft -f -` adding the two DNAT rules ocivirt writes to a table made beforehand; ' +
        'timed from the spawn of `virsh define`. Both run the same init (`sh -c` writing the page, then `busybox httpd -f`). The end is the first HTTP answer with the container\'s own page on ' +
        'the published port at the network\'s bridge address (a host address; loopback is not forwarded), polled every 10 ms. The two alternate container by container (which goes first too). ' +
        'Phase times are when the daemon\'s log line arrived (ocivirt) or the command returned (by hand).',
      '',
      '| measurement | p50 | p99 | range |',
      '| --- | --- | --- | --- |',
      row(`ocivirt: drop -> port answers, ${N} containers`, ours.map((x) => x.total)),
      row('… of which drop -> `domain.defined`', ours.map((x) => x.defined)),
      row('… drop -> `domain.started`', ours.map((x) => x.started)),
      row('… drop -> `ports.applied`', ours.map((x) => x.ports)),
      row(`by hand: \`virsh define\` -> port answers, ${N} containers`, ref.map((x) => x.total)),
      row('… of which `virsh define` returned', ref.map((x) => x.defined)),
      row('… `virsh start` returned', ref.map((x) => x.started)),
      row('… `nft -f -` returned', ref.map((x) => x.rules)),
      '',
      `The image's first container (\`web-first\`, before the ${N}, not in the rows above) also unpacked the image: drop -> port answers ${ms(first.total)} (\`domain.defined\` at ${ms(first.defined)}).`,
      '',
      `ocivirt / by hand, p50: ${(pct(ours.map((x) => x.total), 50) / pct(ref.map((x) => x.total), 50)).toFixed(2)}×; p99: ${(pct(ours.map((x) => x.total), 99) / pct(ref.map((x) => x.total), 99)).toFixed(2)}×. ` +
        `Daemon errors during the run (entry.failed, ports.refused, ports.failed): ${failed}.`,
      '<!-- bench:network:end -->',
    ].join('\n');
    writeBenchSection(repoRoot(), 'network', section);
  } finally {
    await daemon?.stop();
    cleanupDomains(PREFIX);
    const instance = await readInstanceId(dirs.state).catch(() => undefined);
    const cleanups = [() => deleteTable(REF_TABLE), () => instance !== undefined && deleteTable(tableName(instance)), () => removeNetwork(NETWORK)];
    for (const c of cleanups) {
      try {
        c();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
    await port.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
