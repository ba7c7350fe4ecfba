/** Runs `virt-xml-validate FILE domain` over a batch of domain XML texts; returns the failures. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function virtXmlValidateAll(xmls: { label: string; xml: string }[], jobs = 4): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-xmlvalidate-'));
  const failures: string[] = [];
  try {
    const queue = xmls.map((x, i) => ({ ...x, file: join(dir, `d${i}.xml`) }));
    for (const q of queue) writeFileSync(q.file, q.xml);
    await Promise.all(
      Array.from({ length: jobs }, async () => {
        for (let q = queue.shift(); q; q = queue.shift()) {
          try {
            await run('virt-xml-validate', [q.file, 'domain']);
          } catch (e) {
            const err = e as { stderr?: string; message: string };
            failures.push(`${q.label}: ${(err.stderr ?? err.message).trim()}\n${q.xml}`);
          }
        }
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return failures;
}
