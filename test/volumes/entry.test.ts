/**
 * Volumes through the one pipeline: a settings entry's named volume becomes a bind mount of
 * `<state>/volumes/NAME` in the domain (added after the trust check, so no allow-list is needed
 * for it), its data survives a redefinition, and `volumeUsers` names the domain that mounts it and
 * the entry that names it; an unused volume has no users.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { desiredState } from '../../src/reconcile/desired.js';
import { ensureVolume, volumesDir, volumeUsers } from '../../src/volumes/index.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { writeMinimalBundle } from '../helpers/bundle.js';

let dir = '';
let spool = '';
let state = '';
test.before.each(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'ocivirt-volumes-entry-')));
  spool = join(dir, 'spool');
  state = join(dir, 'state');
  mkdirSync(spool, { mode: 0o700 });
  mkdirSync(state, { mode: 0o700 });
  writeMinimalBundle(join(spool, 'web'));
  mkdirSync(join(spool, 'web', 'rootfs', 'data'));
  writeFileSync(join(spool, 'web', 'rootfs', 'data', 'seed'), 'seeded');
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ volumes: ['cache:/data'] }));
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('a named volume is made, seeded and mounted into the domain; its data survives a redefinition', async () => {
  const first = await desiredState(spool, { stateDir: state, spoolDir: spool, bindAllowList: [] });
  assert.equal(first.failed, []);
  const fs = first.desired[0]!.domain.devices.filesystems.find((f) => f.target === '/data');
  assert.ok(fs, 'the volume is mounted at /data');
  assert.is(fs!.type, 'mount');
  assert.is(fs!.source.dir, join(volumesDir(state), 'cache'));
  assert.is(readFileSync(join(volumesDir(state), 'cache', 'seed'), 'utf8'), 'seeded');
  // the container writes; the entry changes (redefinition): the data stays
  writeFileSync(join(volumesDir(state), 'cache', 'written'), 'kept');
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ volumes: ['cache:/data'], env: { A: '1' } }));
  const second = await desiredState(spool, { stateDir: state, spoolDir: spool, bindAllowList: [] });
  assert.equal(second.failed, []);
  assert.is(readFileSync(join(volumesDir(state), 'cache', 'written'), 'utf8'), 'kept');
});

test('volumeUsers names the domain that mounts a volume and the entry that names it; an unused one has none', async () => {
  const { desired } = await desiredState(spool, { stateDir: state, spoolDir: spool, bindAllowList: [] });
  await ensureVolume(state, 'spare');
  const port = new FakeLibvirt();
  await port.define(buildDomainXml(desired[0]!.domain));
  const users = await volumeUsers(state, { port, spoolDir: spool });
  assert.equal(users.get('cache'), ['domain web (/data)', 'entry web (/data)']);
  assert.is(users.get('spare'), undefined);
  // the entry removed: the defined domain still uses it
  rmSync(join(spool, 'web.ocivirt.json'));
  assert.equal((await volumeUsers(state, { port, spoolDir: spool })).get('cache'), ['domain web (/data)']);
});

test.run();
