/** Every bench writes its figures into BENCHMARKS.md between its own markers, and prints them. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Replaces the `<!-- bench:NAME:start … -->` … `<!-- bench:NAME:end -->` section (or appends it). */
export function writeBenchSection(repo: string, name: string, section: string): void {
  const file = join(repo, 'BENCHMARKS.md');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\n';
  const re = new RegExp(`<!-- bench:${name}:start[\\s\\S]*?<!-- bench:${name}:end -->`);
  writeFileSync(file, re.test(old) ? old.replace(re, () => section) : `${old.trimEnd()}\n\n${section}\n`);
  process.stdout.write(section + '\n');
}
