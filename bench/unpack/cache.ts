/** The unpack benchmark's cache (built by run.ts) and its image's layers, for the other benches. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export const benchCache = process.env.OCIVIRT_BENCH_CACHE ?? join(homedir(), '.cache', 'ocivirt-bench');

/**
 * `out` in the cache, made once from the benchmark image's first (gzip) layer by the shell
 * `command`, which gets the blob as $0 and `out` as $1.
 */
export function fromFirstLayer(name: string, command: string): string {
  const out = join(benchCache, name);
  if (existsSync(out)) return out;
  const image = readdirSync(benchCache).filter((n) => n.startsWith('image-')).sort().pop();
  if (!image) throw new Error(`no benchmark image in ${benchCache}: run node dist/bench/unpack/run.js first`);
  const layout = join(benchCache, image, 'layout');
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.slice(7));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  const r = spawnSync('sh', ['-c', command, blob(manifest.layers[0].digest), out]);
  if (r.status !== 0) throw new Error(`making ${out} failed: ${r.stderr}`);
  return out;
}
