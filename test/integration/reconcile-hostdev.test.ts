/**
 * hostDeviceAllowList on the real libvirtd, through the configuration file: a passed-through
 * host device is refused by default, defined once the file allows it, both by `sync --once`'s
 * pass and by the daemon's; a device not on the list stays refused.
 */
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/load.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce, syncOptionsFromConfig, syncPass } from '../../src/reconcile/sync.js';
import { TEST_PREFIX, TEST_URI, cleanupDomains, isDefined, makeTempDir, removeTempDir, virsh, writeBusyboxBundle } from '../helpers/libvirt.js';

// namePrefix is at most 32 characters
const PREFIX = `${TEST_PREFIX}hd${process.pid}-`;
let tmp = '';
let port: LibvirtPort;

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('hostdev');
  port = await connectLibvirt(TEST_URI);
});

test.after(async () => {
  await port?.close();
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

/** A busybox bundle asking for the host's device node `path`. */
function deviceBundle(dir: string, path: string, major: number, minor: number): void {
  writeBusyboxBundle(dir);
  const file = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(file, 'utf8')) as { linux: Record<string, unknown> };
  config.linux.devices = [{ path, type: 'c', major, minor }];
  writeFileSync(file, JSON.stringify(config));
}

/** The pass options `sync --once` and the daemon take from this configuration file. */
async function optionsFrom(label: string, allow: unknown) {
  const file = join(tmp, `${label}.json`);
  writeFileSync(
    file,
    JSON.stringify({ spoolDir: join(tmp, label, 'spool'), stateDir: join(tmp, label, 'state'), exportDir: join(tmp, label, 'export'), namePrefix: `${PREFIX}${label}-`, startPolicy: 'annotation', ...(allow ? { hostDeviceAllowList: allow } : {}) }),
  );
  const { config } = await loadConfig({ file, env: {} });
  return { ...syncOptionsFromConfig(config, silentLogger()), retryDelayMs: 50 };
}

test('sync --once: refused by default; with /dev/fuse allowed, that entry is defined with its hostdev and /dev/net/tun still refused', async () => {
  for (const label of ['deny', 'allow']) {
    const spool = join(tmp, label, 'spool');
    deviceBundle(join(spool, 'fuse'), '/dev/fuse', 10, 229);
    deviceBundle(join(spool, 'tun'), '/dev/net/tun', 10, 200);
  }
  const denied = await syncOnce(port, await optionsFrom('deny', undefined));
  assert.equal(denied.failed.map((f) => f.item.entry).sort(), ['fuse', 'tun']);
  assert.match(denied.failed[0]!.error ?? '', 'is not in the allowed devices (none configured)');

  const allowed = await syncOnce(port, await optionsFrom('allow', { devices: ['/dev/fuse'] }));
  assert.equal(allowed.failed.map((f) => [f.item.entry, f.error]), [['tun', `${join(tmp, 'allow', 'spool', 'tun', 'config.json')}: linux.devices[0].path: host device "/dev/net/tun" is not in the allowed devices (/dev/fuse)`]]);
  const name = `${PREFIX}allow-fuse`;
  assert.ok(isDefined(name));
  assert.match(virsh('dumpxml', '--inactive', name), /<hostdev mode='capabilities' type='misc'>[\s\S]*<char>\/dev\/fuse<\/char>/);
});

test('the daemon pass takes the same setting', async () => {
  const spool = join(tmp, 'pass', 'spool');
  deviceBundle(join(spool, 'fuse'), '/dev/fuse', 10, 229);
  const pass = async (allow: unknown) =>
    syncPass(port, await optionsFrom('pass', allow), { scope: 'all', settled: () => true, known: new Map(), unpackEvents: true });
  const denied = await pass(undefined);
  assert.equal(denied.results.map((r) => [r.item.action, r.ok]), [['fail', false]]);
  const allowed = await pass({ devices: ['/dev/fuse'] });
  assert.equal(allowed.results.map((r) => [r.item.action, r.ok]), [['create', true]]);
  assert.ok(isDefined(`${PREFIX}pass-fuse`));
});

test.run();
