/**
 * Which zstd decoder for layers: streams one real zstd layer through each candidate in its own
 * process and reports throughput and peak RSS. zstd-napi is the project's dependency; the others
 * are looked up in OCIVIRT_ZSTD_ALT (a directory with node_modules, e.g. after
 * `npm install --prefix /tmp/zstd-alt fzstd simple-zstd@1`) and skipped when absent.
 *
 *   node dist/bench/unpack/zstd.js [layer.tar.zst] [--runs N]
 *
 * Without a file it takes the first layer of the unpack benchmark's image (run.js builds it) and
 * recompresses it with `zstd -3`, as a zstd-publishing registry would. Writes its table into
 * BENCHMARKS.md.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { fromFirstLayer } from './cache.js';
import { scavengeEvery } from '../../src/image/memory.js';
import { writeBenchSection } from '../section.js';

const altRequire = createRequire(join(process.env.OCIVIRT_ZSTD_ALT ?? '/tmp/zstd-alt', 'node_modules', 'x.js'));

type Decoder = () => Promise<Transform>;

const DECODERS: Record<string, Decoder> = {
  'zstd-napi (native binding, bundled libzstd)': async () => new (await import('zstd-napi')).DecompressStream(),
  'fzstd (pure JS)': async () => {
    const fzstd = altRequire('fzstd') as { Decompress: new (cb: (chunk: Uint8Array, final: boolean) => void) => { push(c: Uint8Array, final?: boolean): void } };
    const { Transform } = await import('node:stream');
    let d: { push(c: Uint8Array, final?: boolean): void };
    const t: Transform = new Transform({
      transform(chunk: Buffer, _e, done) {
        try {
          d.push(chunk);
          done();
        } catch (e) {
          done(e as Error);
        }
      },
      flush(done) {
        try {
          d.push(new Uint8Array(0), true);
          done();
        } catch (e) {
          done(e as Error);
        }
      },
    });
    d = new fzstd.Decompress((chunk) => t.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    return t;
  },
  'simple-zstd (spawns the zstd binary)': async () => {
    const { ZSTDDecompress } = altRequire('simple-zstd') as { ZSTDDecompress: () => Transform | Promise<Transform> };
    return await ZSTDDecompress();
  },
};

async function child(name: string, file: string): Promise<void> {
  const make = DECODERS[name];
  if (!make) throw new Error(`unknown decoder ${name}`);
  let bytes = 0;
  const scavenge = scavengeEvery(4 << 20); // as the unpack pipeline does
  const started = process.hrtime.bigint();
  await pipeline(
    createReadStream(file, { highWaterMark: 1 << 20 }),
    await make(),
    new Writable({
      write(chunk: Buffer, _e, done) {
        bytes += chunk.length;
        scavenge(chunk.length);
        done();
      },
    }),
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ bytes, ms, maxRssKiB: process.resourceUsage().maxRSS }) + '\n');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** Peak RSS of a child and its children (simple-zstd's zstd process), from GNU time. */
function measure(name: string, file: string): { bytes: number; ms: number; rssKiB: number } {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, self, '--child', name, file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name}: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { bytes: number; ms: number; maxRssKiB: number };
  const timeRss = Number(r.stderr.trim().split('\n').pop());
  return { bytes: out.bytes, ms: out.ms, rssKiB: Math.max(out.maxRssKiB, timeRss) };
}

const repo = fileURLToPath(new URL('../../../', import.meta.url));

const defaultLayer = () => fromFirstLayer('layer1.tar.zst', 'gzip -dc "$0" | zstd -3 -q -o "$1"');

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3] as string, process.argv[4] as string);
  const runsAt = process.argv.indexOf('--runs');
  const runs = runsAt > 0 ? Number(process.argv[runsAt + 1]) : 5;
  const file = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : defaultLayer();
  const compressed = statSync(file).size;
  const rows: string[] = [];
  for (const name of Object.keys(DECODERS)) {
    try {
      if (!name.startsWith('zstd-napi')) altRequire.resolve(name.split(' ')[0] as string);
    } catch {
      rows.push(`| ${name} | not installed | | |`);
      continue;
    }
    const results = Array.from({ length: runs }, () => measure(name, file));
    const ms = median(results.map((r) => r.ms));
    const bytes = results[0]?.bytes ?? 0;
    rows.push(`| ${name} | ${(bytes / 1048576 / (ms / 1000)).toFixed(0)} MiB/s | ${(ms / 1000).toFixed(2)} s | ${(Math.max(...results.map((r) => r.rssKiB)) / 1024).toFixed(0)} MiB |`);
  }
  const section = [
    '<!-- bench:zstd:start (written by `node dist/bench/unpack/zstd.js`; do not edit by hand) -->',
    '## zstd decoders for layers',
    '',
    `Command: \`node dist/bench/unpack/zstd.js --runs ${runs}\` (alternatives from \`npm install --prefix /tmp/zstd-alt fzstd simple-zstd\`), run ${new Date().toISOString()}.`,
    '',
    `Layer: the unpack benchmark's first layer recompressed with \`zstd -3\` (${(compressed / 1048576).toFixed(1)} MiB compressed). ` +
      `Median of ${runs} runs; each decoder streams the file in its own process into a byte counter (with the unpack pipeline's scavenge every 4 MiB); ` +
      'peak RSS by GNU time (children included). `@mongodb-js/zstd` was not measured: its install script downloads zstd from GitHub, which fails here, and it has no streaming API.',
    '',
    '| decoder | throughput (uncompressed) | time | peak RSS |',
    '| --- | --- | --- | --- |',
    ...rows,
    '<!-- bench:zstd:end -->',
  ].join('\n');
  writeBenchSection(repo, 'zstd', section);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
