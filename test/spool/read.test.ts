/**
 * Reading spool files (issue 8 item 5): config.json is read once, through one handle opened
 * without following symlinks and without blocking, after the scan saw a regular file. Swapping
 * config.json, or the whole bundle directory, for a symlink between the scan and the read never
 * defines a domain from a host file; a FIFO or a device is refused at once, never waited on.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readBundleConfig } from '../../src/oci/bundle.js';
import { desiredDomain } from '../../src/reconcile/desired.js';
import { scanSpool } from '../../src/spool/index.js';
import { openSpoolEntry, openSpoolFile, readSmallRegularFile } from '../../src/spool/read.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { rejects } from '../helpers/rejects.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-spool-read-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A spool with one bundle `web`, and outside it a "host" directory with a valid config of its own. */
function setup() {
  const root = join(tmp, String(++n));
  const spool = join(root, 'spool');
  writeMinimalBundle(join(spool, 'web'), 'from the spool');
  writeMinimalBundle(join(root, 'host', 'secret'), 'from a host file');
  return { spool, web: join(spool, 'web'), host: join(root, 'host', 'secret') };
}

const argsOf = (d: Awaited<ReturnType<typeof desiredDomain>>) => JSON.stringify(d.domain);

test('config.json swapped for a symlink to a host file between the scan and the read: refused, nothing read from the host', async () => {
  const { spool, web, host } = setup();
  const { entries } = await scanSpool(spool);
  assert.equal(entries.map((e) => e.name), ['web']);
  // the swap, right after the scan saw a regular config.json
  rmSync(join(web, 'config.json'));
  symlinkSync(join(host, 'config.json'), join(web, 'config.json'));
  await rejects(desiredDomain(entries[0]!, {}, 1), /config\.json: is a symlink/);
});

test('the bundle directory swapped for a symlink to a host directory after the scan: refused', async () => {
  const { spool, web, host } = setup();
  const { entries } = await scanSpool(spool);
  renameSync(web, `${web}.old`);
  symlinkSync(host, web);
  await rejects(desiredDomain(entries[0]!, {}, 1), /is a symlink/);
});

test('unswapped, the same entry reads as before (and from the spool)', async () => {
  const { spool } = setup();
  const { entries } = await scanSpool(spool);
  const d = await desiredDomain(entries[0]!, {}, 1);
  assert.match(argsOf(d), 'from the spool');
});

test('a FIFO, a device and a /proc file are refused at once, never waited on', async () => {
  const root = join(tmp, String(++n));
  mkdirSync(root);
  execFileSync('mkfifo', [join(root, 'fifo')]); // no writer ever opens it: a blocking open would hang
  for (const path of [join(root, 'fifo'), '/dev/zero', '/dev/tty']) {
    await rejects(readSmallRegularFile(path), /is not a regular file|cannot be opened/);
    await rejects(openSpoolFile(path), /is not a regular file|cannot be opened/);
  }
  // /proc/kmsg stats as a regular file of size 0 and blocks a reader until the kernel logs:
  // with O_NONBLOCK the read ends at once (EAGAIN, or EPERM without the capability)
  const kmsg = await readSmallRegularFile('/proc/kmsg', 1024).then(
    (x) => `read ${x.data.length}`,
    (e: Error) => e.message,
  );
  assert.ok(kmsg !== undefined);
  // a bundle whose config.json is a FIFO: refused, the pass goes on
  const bundle = join(root, 'b');
  mkdirSync(bundle);
  execFileSync('mkfifo', [join(bundle, 'config.json')]);
  await rejects(readBundleConfig(bundle), /config\.json: is not a regular file/);
});

test('size limit: checked with fstat, and again while reading', async () => {
  const root = join(tmp, String(++n));
  mkdirSync(root);
  writeFileSync(join(root, 'big'), Buffer.alloc(2048));
  await rejects(readSmallRegularFile(join(root, 'big'), 1024), /is larger than 1024 bytes/);
  assert.is((await readSmallRegularFile(join(root, 'big'), 2048)).data.length, 2048);
  await rejects(openSpoolEntry(join(root, 'nope'), 'directory'), /is missing/);
});

test.run();
