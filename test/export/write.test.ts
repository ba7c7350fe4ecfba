import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { definitionName } from '../../src/export/exporter.js';
import { exportableName } from '../../src/export/export-domain.js';
import { readExportedCanonical, writeConfigAtomically } from '../../src/export/write.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ocivirt-export-'));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = (args: string[]) => ({ ociVersion: '1.0.2', root: { path: '/r' }, process: { args, cwd: '/' } }) as unknown as RuntimeConfig;

test('definition file names map to domain names; other files do not', () => {
  assert.is(definitionName('web-1.xml'), 'web-1');
  assert.is(definitionName('web-1.xml.new'), 'web-1');
  assert.is(definitionName('autostart'), undefined);
  assert.is(definitionName('web-1.xml~'), undefined);
  assert.is(definitionName(undefined), undefined);
});

test('names that are not one safe path component are not exported', () => {
  assert.ok(exportableName('web-1'));
  for (const bad of ['', '.', '..', '.hidden', 'a/b', 'a\0b']) assert.not.ok(exportableName(bad), bad);
});

test('config.json is written whole, owner-only, leaving no temporary file; canonical reading ignores formatting', async () => {
  const bundle = join(dir, 'web');
  await writeConfigAtomically(bundle, config(['/bin/a']));
  await writeConfigAtomically(bundle, config(['/bin/b']));
  assert.equal(await readdir(bundle), ['config.json']);
  assert.is((await stat(bundle)).mode & 0o777, 0o700);
  assert.is((await stat(join(bundle, 'config.json'))).mode & 0o777, 0o600);
  assert.equal(JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')).process.args, ['/bin/b']);
  assert.is(await readExportedCanonical(bundle), JSON.stringify({ ociVersion: '1.0.2', process: { args: ['/bin/b'], cwd: '/' }, root: { path: '/r' } }));
  assert.is(await readExportedCanonical(join(dir, 'none')), undefined);
});

test('a symlink where the bundle directory should be is refused, nothing written through it', async () => {
  const target = join(dir, 'elsewhere');
  await mkdir(target);
  await symlink(target, join(dir, 'linked'));
  try {
    await writeConfigAtomically(join(dir, 'linked'), config(['/bin/a']));
    assert.unreachable('wrote through a symlink');
  } catch (e) {
    assert.match((e as Error).message, /not a directory/);
  }
  assert.equal(await readdir(target), []);
});

test.run();
