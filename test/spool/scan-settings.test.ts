/**
 * Settings files in the scan: `NAME.ocivirt.json` belongs to the entry of its stem (bundle,
 * layout or any image archive name), or is an entry itself when nothing has that stem; its
 * change moves the entry's fingerprint; archive names by suffix; a per-entry pass widened to
 * the paired items finds the same entries a full scan does.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scanSpool } from '../../src/spool/scan.js';
import { entryStem } from '../../src/spool/names.js';
import { inspectSome, widenScope } from '../../src/reconcile/scope.js';

let spool = '';
test.before.each(() => {
  spool = mkdtempSync(join(tmpdir(), 'ocivirt-scan-settings-'));
});
test.after.each(() => {
  rmSync(spool, { recursive: true, force: true });
});

const CONFIG = JSON.stringify({ ociVersion: '1.2.0', root: { path: 'rootfs' }, process: { cwd: '/', args: ['sh'], user: { uid: 0, gid: 0 } } });
function bundle(name: string): void {
  mkdirSync(join(spool, name, 'rootfs'), { recursive: true });
  writeFileSync(join(spool, name, 'config.json'), CONFIG);
}
function settings(name: string, value: unknown = {}): void {
  writeFileSync(join(spool, name), JSON.stringify(value));
}

test('stems: image suffixes and the settings suffix are cut, the longest first', () => {
  assert.equal(
    ['web', 'web.tar', 'web.tar.gz', 'web.tgz', 'web.oci', 'web.oci.tar', 'web.ocivirt.json', 'a.b.tar', '.tar'].map(entryStem),
    ['web', 'web', 'web', 'web', 'web', 'web', 'web', 'a.b', '.tar'],
  );
});

test('image archives by any of their names are entries (their content decides later); a .oci directory is a layout', async () => {
  for (const n of ['a.tar', 'b.tar.gz', 'c.tgz', 'd.oci', 'e.oci.tar']) writeFileSync(join(spool, n), 'x');
  mkdirSync(join(spool, 'f.oci'));
  writeFileSync(join(spool, 'f.oci', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(spool, 'f.oci', 'index.json'), '{"schemaVersion":2,"manifests":[]}');
  writeFileSync(join(spool, 'g.zip'), 'x');
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries.map((e) => `${e.name} ${e.kind} ${e.domainName}`), ['a.tar archive a', 'b.tar.gz archive b', 'c.tgz archive c', 'd.oci archive d', 'e.oci.tar archive e', 'f.oci layout f']);
  assert.equal(refused.map((r) => r.name), ['g.zip']);
});

test('a settings file pairs with the bundle or image of its stem; alone, it is an entry of its own', async () => {
  bundle('web-1');
  settings('web-1.ocivirt.json', { env: { A: '1' } });
  writeFileSync(join(spool, 'db.tar.gz'), 'x');
  settings('db.ocivirt.json', { imageOnly: true });
  settings('api.ocivirt.json', { image: 'db.tar.gz' });
  const { entries, refused } = await scanSpool(spool);
  assert.equal(refused, []);
  assert.equal(
    entries.map((e) => [e.name, e.kind, e.domainName, e.settings?.name ?? null]),
    [
      ['api.ocivirt.json', 'settings', 'api', null],
      ['db.tar.gz', 'archive', 'db', 'db.ocivirt.json'],
      ['web-1', 'bundle', 'web-1', 'web-1.ocivirt.json'],
    ],
  );
  assert.is(entries.find((e) => e.name === 'web-1')?.settings?.path, join(spool, 'web-1.ocivirt.json'));
});

test('the settings file is part of the fingerprint: added, rewritten, removed', async () => {
  bundle('web');
  const fp = async () => (await scanSpool(spool)).entries.find((e) => e.name === 'web')!.fingerprint;
  const bare = await fp();
  settings('web.ocivirt.json', { env: { A: '1' } });
  const first = await fp();
  assert.is.not(first, bare);
  rmSync(join(spool, 'web.ocivirt.json'));
  settings('web.ocivirt.json', { env: { A: '2' } });
  assert.is.not(await fp(), first);
  rmSync(join(spool, 'web.ocivirt.json'));
  assert.is(await fp(), bare);
});

test('a symlinked or non-regular settings file still belongs to its entry (reading it refuses it there)', async () => {
  bundle('web');
  symlinkSync('/etc/passwd', join(spool, 'web.ocivirt.json'));
  mkdirSync(join(spool, 'lonely.ocivirt.json'));
  const { entries, refused } = await scanSpool(spool);
  assert.equal(refused, []);
  assert.equal(entries.map((e) => [e.name, e.kind, e.settings?.name ?? null]), [
    ['lonely.ocivirt.json', 'settings', null],
    ['web', 'bundle', 'web.ocivirt.json'],
  ]);
});

test('a refused item keeps its settings file: the file does not become an entry of its own', async () => {
  symlinkSync('/tmp', join(spool, 'evil'));
  settings('evil.ocivirt.json', { image: 'x.tar' });
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries, []);
  assert.equal(refused.map((r) => r.name), ['evil']);
});

test('a standalone settings entry and an entry of the same domain name collide like any two entries', async () => {
  bundle('web');
  settings('Web.ocivirt.json', { image: 'x.tar' });
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries, []);
  assert.equal(refused.map((r) => r.name), ['Web.ocivirt.json', 'web']);
});

test('a per-entry pass over a settings file looks at its entry too, and finds what a full scan finds', async () => {
  bundle('web');
  settings('web.ocivirt.json', { env: { A: '1' } });
  settings('api.ocivirt.json', { image: 'base.tar' });
  writeFileSync(join(spool, 'base.tar'), 'x');
  const full = await scanSpool(spool);
  const one = await inspectSome(spool, widenScope(new Set(['web.ocivirt.json'])), '', new Map());
  assert.equal(one.entries, full.entries.filter((e) => e.name === 'web'));
  // a change of an image entry reaches the containers that named it
  const wide = widenScope(new Set(['base.tar']), new Map([['api.ocivirt.json', 'base.tar']]));
  assert.ok(wide.has('api.ocivirt.json') && wide.has('base.tar') && wide.has('base.ocivirt.json'));
  const some = await inspectSome(spool, wide, '', new Map());
  assert.equal(some.entries.map((e) => e.name), ['api.ocivirt.json', 'base.tar']);
});

test.run();
