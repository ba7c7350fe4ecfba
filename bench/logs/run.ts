/**
 * Container output through the init shim's capture (shim/log.c):
 *   node dist/bench/logs/run.js [--rate MBps] [--seconds N] [--cap BYTES] [--burst MB] [--domain]
 *
 * Without --domain the shim runs alone (root: a pid namespace, no libvirt). With --domain the same
 * producer runs as the process of a real libvirt-lxc domain (lxc:///, named
 * ocivirt-test-bench-logs-<pid>, removed afterwards; run it under the integration lock), converted
 * and prepared as the daemon does (fromNative with the shim, prepareForStart), `virsh define` +
 * `start`; the host's /usr is bound read-only into it for Node.
 *
 * 1. paced: the shim runs a Node producer that prints 100-byte lines at --rate MB/s (default 50) for
 *    --seconds (default 60) with a log cap of --cap bytes per file (default 8 MiB); sampled every
 *    100 ms: the log directory's size, the logger's RSS. Reported: the rate reached, the longest
 *    a write to stdout blocked the producer, the largest the directory got, bytes dropped (the shim's
 *    notices), lines kept.
 * 2. burst: --burst MB (default 300) printed as fast as possible: the capture's throughput.
 * Writes its section into BENCHMARKS.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { encodeShimSpec } from '../../src/shim/spec.js';
import { fromNative } from '../../src/convert/from-native.js';
import { detectCgroupVersion } from '../../src/convert/host.js';
import { prepareForStart } from '../../src/shim/containers.js';
import { containerDir } from '../../src/shim/domain.js';
import { writeBenchSection } from '../section.js';

const arg = (name: string, dflt: number) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const RATE = arg('--rate', 50);
const SECONDS = arg('--seconds', 60);
const CAP = arg('--cap', 8 * 1024 * 1024);
const BURST = arg('--burst', 300);
const DOMAIN = process.argv.includes('--domain');
const URI = 'lxc:///';
const repo = fileURLToPath(new URL('../../..', import.meta.url));
const SHIM = join(repo, 'dist/shim/ocivirt-init');

// The producer: 100-byte lines in 64 KiB writes, paced to `rate` bytes/s (0: flat out), for `bytes`;
// records the longest single write (to a pipe the logger reads) in `report`.
const PRODUCER = `
const [rate, bytes, report] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
const fs = require('fs');
const line = 'x'.repeat(99) + '\\n';
const chunk = Buffer.from(line.repeat(655));
let sent = 0, worst = 0;
const t0 = Date.now();
while (sent < bytes) {
  const due = rate ? t0 + (sent / rate) * 1000 : 0;
  while (rate && Date.now() < due) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(1, due - Date.now()));
  const w0 = process.hrtime.bigint();
  for (let off = 0; off < chunk.length;) off += fs.writeSync(1, chunk, off);
  worst = Math.max(worst, Number(process.hrtime.bigint() - w0) / 1e6);
  sent += chunk.length;
}
fs.writeFileSync(report, JSON.stringify({ sent, ms: Date.now() - t0, worstWriteMs: worst }));
`;

interface Run { sent: number; ms: number; worstWriteMs: number; maxDirBytes: number; maxRssKiB: number; dropped: number; lines: number; wallMs: number }

/** The shim alone: PID 1 of a new pid namespace. Resolves when it ended. */
function shimAlone(dir: string, rate: number, bytes: number): { logDir: string; done: Promise<void> } {
  mkdirSync(join(dir, 'run'));
  const config = {
    ociVersion: '1.2.0',
    process: { cwd: '/', env: ['PATH=/usr/bin:/bin'], user: { uid: 0, gid: 0 }, args: [process.execPath, '-e', PRODUCER, String(rate), String(bytes), join(dir, 'report.json')] },
  } as unknown as RuntimeConfig;
  writeFileSync(join(dir, 'spec'), encodeShimSpec(config, { statusPath: join(dir, 'status'), log: { dir: join(dir, 'run/log'), fileBytes: CAP } }));
  const shim = spawn('unshare', ['--pid', '--fork', '--mount-proc', SHIM, join(dir, 'spec')], { stdio: 'inherit' });
  return { logDir: join(dir, 'run/log'), done: new Promise<void>((r) => shim.on('exit', () => r())) };
}

const virsh = (...args: string[]) => execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const DOMAIN_NAME = `ocivirt-test-bench-logs-${process.pid}`;

/** A libvirt-lxc domain running the producer through the shim, as the daemon makes it. Resolves when it shut off. */
async function inDomain(dir: string, rate: number, bytes: number): Promise<{ logDir: string; done: Promise<void> }> {
  const rootfs = join(dir, 'bundle', 'rootfs');
  for (const d of ['usr', 'proc', 'sys', 'dev', 'tmp', 'etc', 'report']) mkdirSync(join(rootfs, d), { recursive: true });
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) symlinkSync(`usr/${l}`, join(rootfs, l));
  mkdirSync(join(dir, 'report'));
  const config = {
    ociVersion: '1.2.0',
    process: { cwd: '/', env: ['PATH=/usr/bin:/bin'], user: { uid: 0, gid: 0 }, args: [process.execPath, '-e', PRODUCER, String(rate), String(bytes), '/report/report.json'] },
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/usr', type: 'bind', source: '/usr', options: ['rbind', 'ro'] },
      { destination: '/report', type: 'bind', source: join(dir, 'report'), options: ['rbind', 'rw'] },
    ],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  } as unknown as RuntimeConfig;
  const state = join(dir, 'state');
  const { domain, xml } = fromNative(config, { bundleDir: join(dir, 'bundle'), name: DOMAIN_NAME, cgroupVersion: detectCgroupVersion(), shim: { stateDir: state, logFileBytes: CAP } });
  await prepareForStart(domain);
  writeFileSync(join(dir, 'domain.xml'), xml);
  virsh('define', join(dir, 'domain.xml'));
  virsh('start', DOMAIN_NAME);
  const done = (async () => {
    while (virsh('domstate', DOMAIN_NAME).trim() !== 'shut off') await new Promise((r) => setTimeout(r, 200));
  })();
  return { logDir: join(containerDir(state, DOMAIN_NAME), 'run', 'log'), done };
}

function removeDomain(): void {
  try { virsh('destroy', DOMAIN_NAME); } catch { /* not running */ }
  try { virsh('undefine', DOMAIN_NAME); } catch { /* not defined */ }
}

async function runOnce(rate: number, bytes: number): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-bench-logs-'));
  try {
    const t0 = Date.now();
    const { logDir, done } = DOMAIN ? await inDomain(dir, rate, bytes) : shimAlone(dir, rate, bytes);
    let maxDirBytes = 0, maxRssKiB = 0;
    const sample = setInterval(() => {
      try {
        const files = readdirSync(logDir);
        maxDirBytes = Math.max(maxDirBytes, files.reduce((s, f) => s + statSync(join(logDir, f)).size, 0));
      } catch { /* not yet there */ }
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'ocivirt-log') continue; // (one bench at a time)
          const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
          if (rss) maxRssKiB = Math.max(maxRssKiB, Number(rss[1]));
        } catch { /* gone */ }
      }
    }, 100);
    await done;
    clearInterval(sample);
    const wallMs = Date.now() - t0;
    const report = JSON.parse(readFileSync(join(dir, DOMAIN ? 'report' : '', 'report.json'), 'utf8')) as { sent: number; ms: number; worstWriteMs: number };
    let dropped = 0, lines = 0;
    for (const f of ['previous', 'current']) {
      let text = '';
      try { text = readFileSync(join(logDir, f), 'latin1'); } catch { continue; }
      for (const m of text.matchAll(/ ocivirt F ocivirt-init: (\d+) bytes/g)) dropped += Number(m[1]);
      lines += (text.match(/ stdout F /g) ?? []).length;
    }
    return { ...report, maxDirBytes, maxRssKiB, dropped, lines, wallMs };
  } finally {
    if (DOMAIN) removeDomain();
    rmSync(dir, { recursive: true, force: true });
  }
}

const MB = 1e6;
const load0 = loadavg()[0]!.toFixed(1);
if (DOMAIN) removeDomain(); // a stale one of a killed run
const paced = await runOnce(RATE * MB, RATE * MB * SECONDS);
const burst = await runOnce(0, BURST * MB);
const row = (name: string, r: Run) =>
  `| ${name} | ${(r.sent / MB).toFixed(0)} MB | ${(r.sent / MB / (r.ms / 1000)).toFixed(1)} MB/s | ${r.worstWriteMs.toFixed(0)} ms | ` +
  `${(r.maxDirBytes / 1048576).toFixed(2)} MiB (cap 2 × ${(CAP / 1048576).toFixed(0)} MiB) | ${r.dropped} | ${r.lines} | ${(r.maxRssKiB / 1024).toFixed(1)} MiB |`;
const table = `| run | printed | rate reached | longest write | log dir, most | dropped (bytes) | lines kept | logger RSS |
|---|---|---|---|---|---|---|---|
${row(`paced ${RATE} MB/s for ${SECONDS} s`, paced)}
${row('flat out', burst)}`;
const command = (extra: string) => `\`npx tsc -p . && make -C shim && ${extra}node dist/bench/logs/run.js --rate ${RATE} --seconds ${SECONDS} --cap ${CAP} --burst ${BURST}${DOMAIN ? ' --domain' : ''}\``;
const when = `run ${new Date().toISOString()}, ${cpus().length} CPUs, load average before ${load0}`;
if (DOMAIN) {
  writeBenchSection(repo, 'logs-domain', `<!-- bench:logs-domain:start (written by \`node dist/bench/logs/run.js --domain\`; do not edit by hand) -->
### … and in a real libvirt-lxc domain

Command: ${command('flock /tmp/ocivirt-integration.lock ')} (${when})

The same producer as the process of a libvirt-lxc domain (lxc:///) made as the daemon makes one: converted with the
shim (its spec's \`log /.ocivirt/run/log ${CAP}\`), its directory prepared, \`virsh define\` + \`start\`; the host's
/usr bound read-only into it for Node. The log directory is the one \`ocivirt logs\` reads
(\`<state>/containers/<domain>/run/log\`), sampled from the host; the columns are as above.

${table}
<!-- bench:logs-domain:end -->`);
} else {
  writeBenchSection(repo, 'logs', `<!-- bench:logs:start (written by \`node dist/bench/logs/run.js\`; do not edit by hand) -->
## Container output: the shim's log capture

Command: ${command('')} (${when})

The shim as PID 1 of a pid namespace runs a Node producer printing 100-byte lines in 64 KiB writes to its stdout
(the pipe the shim's logger reads); no libvirt. "longest write" is the longest one write to stdout blocked
the producer (backpressure from the log); "log dir, most" the largest the log directory got (sampled
every 100 ms); "dropped" what the shim's notices say it dropped (only when its writer is stuck 500 ms);
"logger RSS" the logger process's peak resident memory.

${table}
<!-- bench:logs:end -->`);
}
