/**
 * The unpack benchmark, one command:  node dist/bench/unpack/run.js [--runs N]
 *
 * Builds (once, cached under $OCIVIRT_BENCH_CACHE or ~/.cache/ocivirt-bench) a realistic image:
 * a `debootstrap --variant=minbase` Debian bookworm (plus python3 and perl, for >= 10k files)
 * packed by umoci into a gzip layer, and a second gzip layer with whiteouts (docs, man pages, apt
 * caches removed) and new and rewritten files. Then times, interleaved in one run and in rotating
 * order, `ocivirt unpack` vs `umoci unpack` vs GNU tar extracting the same layer blobs in order,
 * each into a fresh directory; reports medians and peak RSS (the whole process tree's VmHWM, polled
 * from /proc) and writes the table into BENCHMARKS.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, lstatSync } from 'node:fs';
import { cpus, homedir, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeBenchSection } from '../section.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cache = process.env.OCIVIRT_BENCH_CACHE ?? join(homedir(), '.cache', 'ocivirt-bench');
const mirror = process.env.OCIVIRT_BENCH_MIRROR ?? 'http://deb.debian.org/debian';
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
const IMAGE_VERSION = 'v2'; // bump when the image recipe changes

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function baseRootfs(): string {
  const done = join(cache, 'rootfs-bookworm-minbase');
  if (existsSync(done)) return done;
  const partial = join(cache, 'rootfs.partial');
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(cache, { recursive: true });
  log(`debootstrap --variant=minbase --include=python3,perl bookworm from ${mirror} (once; a few minutes)`);
  sh('debootstrap', ['--variant=minbase', '--include=python3,perl', 'bookworm', partial, mirror]);
  renameSync(partial, done);
  return done;
}

/** The OCI layout, built by umoci from the debootstrapped tree (two gzip layers). */
function image(): string {
  const dir = join(cache, `image-${IMAGE_VERSION}`);
  const layout = join(dir, 'layout');
  if (existsSync(join(dir, 'done'))) return layout;
  const rootfs = baseRootfs();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log('building the image with umoci (once)');
  sh('umoci', ['init', '--layout', layout]);
  sh('umoci', ['new', '--image', `${layout}:t`]);
  const build = join(dir, 'build');
  sh('umoci', ['unpack', '--image', `${layout}:t`, build]);
  sh('cp', ['-a', `${rootfs}/.`, join(build, 'rootfs')]);
  sh('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:t`, build]);
  // layer 2: deletions become whiteouts; new and rewritten files
  const r = join(build, 'rootfs');
  for (const p of ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'var/cache/apt', 'var/lib/apt/lists'])
    rmSync(join(r, p), { recursive: true, force: true });
  mkdirSync(join(r, 'opt/app'), { recursive: true });
  for (const p of ['usr/lib/python3.11', 'usr/share/perl', 'usr/share/locale']) sh('cp', ['-a', join(r, p), join(r, 'opt/app/')]);
  writeFileSync(join(r, 'etc/motd'), 'rewritten in layer 2\n');
  sh('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:t`, build]);
  sh('umoci', ['config', '--image', `${layout}:t`, '--config.cmd', '/bin/bash']);
  rmSync(build, { recursive: true, force: true });
  writeFileSync(join(dir, 'done'), new Date().toISOString());
  return layout;
}

function layerBlobs(layout: string): string[] {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.slice(7));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  return manifest.layers.map((l: { digest: string }) => blob(l.digest));
}

/** Files (non-directories) and bytes of a tree. */
function treeStats(root: string): { files: number; dirs: number; bytes: number } {
  let files = 0, dirs = 0, bytes = 0;
  const walk = (p: string) => {
    for (const name of readdirSync(p)) {
      const q = join(p, name);
      const st = lstatSync(q);
      if (st.isDirectory()) {
        dirs++;
        walk(q);
      } else {
        files++;
        if (st.isFile()) bytes += st.size;
      }
    }
  };
  walk(root);
  return { files, dirs, bytes };
}

/** VmHWM (peak RSS) in KiB of a process, or 0 if it is gone. */
function hwm(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(' ').filter(Boolean).map(Number)) {
        out.push(c);
        visit(c);
      }
    }
  };
  visit(pid);
  return out;
}

interface Sample {
  ms: number;
  rssKiB: number;
}

/** Runs a command, timing it and polling the peak RSS of its process tree. */
function timed(cmd: string, args: string[]): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const peaks = new Map<number, number>();
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const poll = () => {
      if (child.pid === undefined) return;
      for (const pid of [child.pid, ...descendants(child.pid)]) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, hwm(pid)));
    };
    const timer = setInterval(poll, 5);
    child.on('exit', () => poll());
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ ms, rssKiB: [...peaks.values()].reduce((a, b) => a + b, 0) });
    });
  });
}

interface Tool {
  name: string;
  command: string;
  run(dest: string): Promise<Sample>;
}

function tools(layout: string, blobs: string[]): Tool[] {
  const tarScript = `set -e; mkdir -p "$0"; for b in "$@"; do tar -xzpf "$b" -C "$0" --numeric-owner; done`;
  return [
    {
      name: 'ocivirt unpack',
      command: `ocivirt unpack --ref t <layout> <dest>`,
      run: (dest) => timed(process.execPath, [join(repo, 'bin/ocivirt'), 'unpack', '--ref', 't', layout, dest]),
    },
    {
      name: 'umoci unpack',
      command: `umoci unpack --image <layout>:t <dest>`,
      run: (dest) => timed('umoci', ['unpack', '--image', `${layout}:t`, dest]),
    },
    {
      name: 'GNU tar (layers in order)',
      command: `for each layer: tar -xzpf <blob> -C <dest> --numeric-owner`,
      run: (dest) => timed('sh', ['-c', tarScript, join(dest, 'rootfs'), ...blobs]),
    },
  ];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

function firstLine(cmd: string, args: string[]): string {
  try {
    return sh(cmd, args).split('\n')[0]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const layout = image();
  const blobs = layerBlobs(layout);
  const work = join(cache, 'work');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const list = tools(layout, blobs);
  const load0 = loadavg();

  // a warm-up of each (page cache, JIT), then RUNS interleaved rounds in rotating order
  const samples = new Map<string, Sample[]>(list.map((t) => [t.name, []]));
  let stats: ReturnType<typeof treeStats> | undefined;
  for (let round = -1; round < RUNS; round++) {
    const order = list.map((_, i) => list[(i + Math.max(round, 0)) % list.length] as Tool);
    for (const t of order) {
      const dest = join(work, 'dest');
      rmSync(dest, { recursive: true, force: true });
      sh('sync', []);
      const s = await t.run(dest);
      if (round >= 0) samples.get(t.name)?.push(s);
      if (stats === undefined && t.name === 'ocivirt unpack') stats = treeStats(join(dest, 'rootfs'));
      log(`${round < 0 ? 'warm-up' : `round ${round + 1}/${RUNS}`}: ${t.name} ${(s.ms / 1000).toFixed(2)} s, peak RSS ${(s.rssKiB / 1024).toFixed(0)} MiB`);
    }
  }
  rmSync(work, { recursive: true, force: true });
  const load1 = loadavg();

  const med = (n: string) => median((samples.get(n) ?? []).map((s) => s.ms));
  const tarMs = med('GNU tar (layers in order)');
  const umociMs = med('umoci unpack');
  const rows = list.map((t) => {
    const s = samples.get(t.name) ?? [];
    const ms = s.map((x) => x.ms);
    return `| ${t.name} | ${(med(t.name) / 1000).toFixed(2)} s | ${(Math.min(...ms) / 1000).toFixed(2)}–${(Math.max(...ms) / 1000).toFixed(2)} s | ${(med(t.name) / tarMs).toFixed(2)}× | ${(Math.max(...s.map((x) => x.rssKiB)) / 1024).toFixed(0)} MiB | \`${t.command}\` |`;
  });
  const ours = samples.get('ocivirt unpack') ?? [];
  const oursMs = med('ocivirt unpack');
  const oursRss = Math.max(...ours.map((x) => x.rssKiB)) / 1024;
  const compressed = blobs.reduce((n, b) => n + lstatSync(b).size, 0);
  const verdict = [
    `- faster than umoci: ${oursMs < umociMs ? 'yes' : 'NO'} (umoci takes ${(umociMs / oursMs).toFixed(2)}× our time)`,
    `- within 1.3× of GNU tar: ${oursMs <= 1.3 * tarMs ? 'yes' : 'NO'} (${(oursMs / tarMs).toFixed(2)}×)`,
    `- peak RSS under 150 MB: ${oursRss * 1.048576 < 150 ? 'yes' : 'NO'} (${oursRss.toFixed(0)} MiB)`,
  ];
  const section = [
    '<!-- bench:unpack:start (written by `node dist/bench/unpack/run.js`; do not edit by hand) -->',
    '## Unpack: ocivirt vs umoci vs GNU tar',
    '',
    `Command: \`npx tsc -p . && node dist/bench/unpack/run.js --runs ${RUNS}\` (run ${new Date().toISOString()})`,
    '',
    `Image: Debian bookworm \`debootstrap --variant=minbase --include=python3,perl\`, packed by umoci into ${blobs.length} gzip layers ` +
      `(${(compressed / 1048576).toFixed(0)} MiB compressed); the second layer removes docs, man pages and apt caches (whiteouts) ` +
      `and adds (a copy of python3.11, perl and locales under /opt/app) and rewrites files. Unpacked tree: ${stats?.files ?? '?'} files and links, ${stats?.dirs ?? '?'} directories, ${((stats?.bytes ?? 0) / 1048576).toFixed(0)} MiB.`,
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, ${firstLine('uname', ['-sr'])}, ` +
      `Node ${process.version}, ${firstLine('umoci', ['--version'])}, ${firstLine('tar', ['--version'])}, ${firstLine('gzip', ['--version'])}. ` +
      `Load average before/after: ${load0.map((x) => x.toFixed(2)).join(' ')} / ${load1.map((x) => x.toFixed(2)).join(' ')} ` +
      '(a shared machine: other engineers build and test on it at the same time).',
    '',
    `Each tool extracts into a fresh directory on the same filesystem; \`sync\` before each run; one warm-up round, then ${RUNS} rounds ` +
      'interleaved in rotating order. Peak RSS is the sum of VmHWM over the process tree (tar counts its gzip child).',
    '',
    '| tool | median | range | vs GNU tar | peak RSS | command |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'Targets:',
    ...verdict,
    '<!-- bench:unpack:end -->',
  ].join('\n');
  writeBenchSection(repo, 'unpack', section);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
