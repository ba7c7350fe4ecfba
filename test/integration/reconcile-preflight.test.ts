/**
 * Pre-flight on the real libvirtd: an entry libvirt would define but never start (read-only root
 * without /proc, init missing from the rootfs) is refused before define, alone, with its path
 * named; a read-only root that has its mount points is defined and starts.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce } from '../../src/reconcile/sync.js';
import {
  TEST_PREFIX,
  TEST_URI,
  cleanupDomains,
  domainState,
  isDefined,
  makeTempDir,
  removeTempDir,
  waitForInit,
  writeBusyboxBundle,
} from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}preflight-${process.pid}-`;
let tmp = '';
let port: LibvirtPort;

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('preflight');
  port = await connectLibvirt(TEST_URI);
});

test.after(async () => {
  await port?.close();
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

/** A busybox bundle whose root is read-only. */
function readonlyBundle(dir: string, args: string[]): void {
  writeBusyboxBundle(dir, { args, annotations: { 'org.ocivirt.start': 'true' } });
  const file = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(file, 'utf8')) as { root: { path: string; readonly?: boolean } };
  config.root.readonly = true;
  writeFileSync(file, JSON.stringify(config));
}

test('refused before define: read-only root without /proc, init not in the rootfs; the good entry is defined and runs', async () => {
  const spool = join(tmp, 'spool');
  readonlyBundle(join(spool, 'noproc'), ['/bin/sleep', '300']);
  rmSync(join(spool, 'noproc', 'rootfs', 'proc'), { recursive: true });
  writeBusyboxBundle(join(spool, 'noinit'), { args: ['/usr/local/bin/app'] });
  readonlyBundle(join(spool, 'good'), ['/bin/sleep', '300']);
  // where the init shim is mounted: a read-only root must have it, as /proc
  mkdirSync(join(spool, 'good', 'rootfs', '.ocivirt'));
  readonlyBundle(join(spool, 'noshim'), ['/bin/sleep', '300']);

  const r = await syncOnce(port, { spoolDir: spool, stateDir: join(tmp, 'state'), prefix: PREFIX, log: silentLogger(), retryDelayMs: 50 });
  const failed = new Map(r.failed.map((f) => [f.item.entry, f.error ?? '']));
  assert.equal([...failed.keys()].sort(), ['noinit', 'noproc', 'noshim']);
  assert.match(failed.get('noshim')!, `${join(spool, 'noshim', 'config.json')}: root.readonly:`);
  assert.match(failed.get('noshim')!, 'has no directory /.ocivirt, where ocivirt\'s init shim is mounted');
  assert.match(failed.get('noproc')!, `${join(spool, 'noproc', 'config.json')}: root.readonly:`);
  assert.match(failed.get('noproc')!, 'has no directory /proc');
  assert.match(failed.get('noinit')!, `${join(spool, 'noinit', 'config.json')}: process.args[0]:`);
  assert.match(failed.get('noinit')!, '/usr/local/bin/app is not an executable file in the rootfs');
  assert.not.ok(isDefined(`${PREFIX}noproc`));
  assert.not.ok(isDefined(`${PREFIX}noinit`));
  assert.is(domainState(`${PREFIX}good`), 'running');
  await waitForInit(`${PREFIX}good`, ['/bin/sleep', '300']);
});

test.run();
