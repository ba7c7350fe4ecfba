/** The hostDeviceAllowList setting: read from the file, checked, and handed to the passes. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/load.js';
import { InputError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { syncOptionsFromConfig } from '../../src/reconcile/sync.js';

const dir = mkdtempSync(join(tmpdir(), 'ocivirt-test-hostdev-config-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function load(value: unknown) {
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ hostDeviceAllowList: value }));
  return (await loadConfig({ file, env: {} })).config;
}

async function refusal(value: unknown): Promise<string> {
  try {
    await load(value);
  } catch (e) {
    assert.instance(e, InputError);
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(value)}`);
}

test('by default nothing may be passed through', async () => {
  const c = (await loadConfig({ env: {}, defaultFile: join(dir, 'absent.json') })).config;
  assert.equal(c.hostDeviceAllowList, { devices: [], netDevices: [] });
});

test('devices and interfaces from the file reach the pass options', async () => {
  const c = await load({ devices: ['/dev/fuse', '/dev//net/tun/'], netDevices: ['eth1'] });
  assert.equal(c.hostDeviceAllowList, { devices: ['/dev/fuse', '/dev/net/tun'], netDevices: ['eth1'] });
  assert.equal(syncOptionsFromConfig(c, silentLogger()).hostDeviceAllowList, c.hostDeviceAllowList);
  assert.equal((await load({ netDevices: ['veth0'] })).hostDeviceAllowList, { devices: [], netDevices: ['veth0'] });
});

test('logFileBytes from the file reaches the pass options (the cap each definition carries)', async () => {
  const file = join(dir, 'log.json');
  writeFileSync(file, JSON.stringify({ logFileBytes: 1048576 }));
  const c = (await loadConfig({ file, env: {} })).config;
  assert.is(syncOptionsFromConfig(c, silentLogger()).logFileBytes, 1048576);
});

test('bad values are refused naming the key', async () => {
  assert.match(await refusal(['/dev/fuse']), 'hostDeviceAllowList: must be an object');
  assert.match(await refusal({ devices: ['dev/fuse'] }), 'hostDeviceAllowList.devices[0]: must be an absolute path');
  assert.match(await refusal({ netDevices: ['eth0/1'] }), 'hostDeviceAllowList.netDevices[0]: must be a network interface name');
  assert.match(await refusal({ netDevices: ['a-very-long-interface'] }), 'hostDeviceAllowList.netDevices[0]');
  assert.match(await refusal({ netDevices: 'eth0' }), 'hostDeviceAllowList.netDevices: must be an array');
  assert.match(await refusal({ disks: [] }), 'hostDeviceAllowList.disks: unknown key');
});

test.run();
