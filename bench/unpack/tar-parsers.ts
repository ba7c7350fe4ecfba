/**
 * Why ocivirt parses tar itself: parse-only throughput of our push reader (src/layer/tar-reader.ts)
 * against tar-stream and node-tar's Parser, on the unpack benchmark's first layer (uncompressed,
 * cached), interleaved, in this process. Data is read and dropped; nothing is written to disk.
 *   node dist/bench/unpack/tar-parsers.js [--runs N] [file.tar]
 * Writes its section of BENCHMARKS.md (between the bench:tar-parsers markers).
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { fromFirstLayer } from './cache.js';
import { Parser as NodeTarParser } from 'tar';
import { extract as tarStreamExtract } from 'tar-stream';
import { DEFAULT_LIMITS } from '../../src/layer/index.js';
import { TarReader } from '../../src/layer/tar-reader.js';
import { writeBenchSection } from '../section.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

const defaultTar = () => fromFirstLayer('layer1.tar', 'gzip -dc "$0" > "$1"');

type Parse = (file: string) => Promise<number>; // resolves to the entry count

const PARSERS: Record<string, Parse> = {
  'read only (no parsing)': async (file) => {
    await pipeline(createReadStream(file, { highWaterMark: 1 << 16 }), new Writable({ write: (_c, _e, cb) => cb() }));
    return 0;
  },
  'ocivirt TarReader': async (file) => {
    let entries = 0;
    const reader = new TarReader({ entry: () => void entries++, data: () => {}, entryEnd: () => {} }, DEFAULT_LIMITS);
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 16 })) reader.write(chunk as Buffer);
    reader.end();
    return entries;
  },
  'tar-stream 3': async (file) => {
    let entries = 0;
    const ex = tarStreamExtract();
    ex.on('entry', (_h, stream, next) => {
      entries++;
      stream.on('end', next);
      stream.resume();
    });
    await pipeline(createReadStream(file, { highWaterMark: 1 << 16 }), ex);
    return entries;
  },
  'node-tar 7 Parser': async (file) => {
    let entries = 0;
    const parser = new NodeTarParser({ onReadEntry: (e) => (entries++, e.resume()) });
    await new Promise<void>((resolve, reject) => {
      parser.on('end', resolve);
      parser.on('error', reject);
      createReadStream(file, { highWaterMark: 1 << 16 }).on('error', reject).pipe(parser);
    });
    return entries;
  },
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const runsAt = process.argv.indexOf('--runs');
  const runs = runsAt > 0 ? Number(process.argv[runsAt + 1]) : 5;
  const file = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : defaultTar();
  const names = Object.keys(PARSERS);
  const cpu: Record<string, number[]> = {};
  const wall: Record<string, number[]> = {};
  const entries: Record<string, number> = {};
  for (let round = -1; round < runs; round++) {
    // round -1 warms the page cache and the JIT; then rotating order, so no parser always goes first
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + Math.max(round, 0)) % names.length] as string;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      entries[name] = await PARSERS[name]!(file);
      const t = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (round < 0) continue;
      (wall[name] ??= []).push(t);
      (cpu[name] ??= []).push((c.user + c.system) / 1000);
    }
  }
  const mib = statSync(file).size / 1048576;
  const rows = names.map((n) => {
    const w = median(wall[n]!);
    return `| ${n} | ${(median(cpu[n]!) / 1000).toFixed(2)} s | ${(w / 1000).toFixed(2)} s | ${(mib / (w / 1000)).toFixed(0)} MiB/s | ${entries[n] || '—'} |`;
  });
  const section = [
    '<!-- bench:tar-parsers:start (written by `node dist/bench/unpack/tar-parsers.js`; do not edit by hand) -->',
    '## Tar parsers: parse only',
    '',
    `Command: \`npx tsc -p . && node dist/bench/unpack/tar-parsers.js --runs ${runs}\` (run ${new Date().toISOString()})`,
    '',
    `Input: the unpack benchmark's first layer, uncompressed (${mib.toFixed(0)} MiB). Each parser reads the file in 64 KiB chunks and drops the data; ` +
      `one warm-up round, then ${runs} rounds in rotating order, in one process; medians. Load average: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}.`,
    '',
    '| parser | CPU (user+sys) | wall | throughput | entries seen |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'Neither library reads GNU or PAX sparse files; ours does, and checks every limit before it allocates.',
    '<!-- bench:tar-parsers:end -->',
  ].join('\n');
  writeBenchSection(repo, 'tar-parsers', section);
}

await main();
