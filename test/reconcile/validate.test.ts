/**
 * `ocivirt validate`: the daemon's own rules on a whole spool or on single items, one line per
 * problem naming the file and the field, exit 0 or 2, --json; and nothing written to the spool
 * or the state directory. The same bad entries fail `sync --once` with the same message.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syncOnce } from '../../src/reconcile/sync.js';
import { validatePaths } from '../../src/reconcile/validate.js';
import { silentLogger } from '../../src/log.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { baseLayerEntries, ImageBuilder, tmp, treeListing, writeFiles } from '../image/fixtures.js';

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
let root = '';
let spool = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-validate-'));
  spool = join(root, 'spool');
  mkdirSync(spool, { mode: 0o700 });
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

function goodSpool(): void {
  writeMinimalBundle(join(spool, 'web'));
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ env: { A: '1' }, memory: '64M' }));
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }], config: { Cmd: ['/bin/sh'] } });
  writeFiles(join(spool, 'base'), b.layoutFiles([m]));
  writeFileSync(join(spool, 'base.ocivirt.json'), JSON.stringify({ imageOnly: true }));
  writeFileSync(join(spool, 'api.ocivirt.json'), JSON.stringify({ image: 'base', user: 'app', command: ['/bin/sh', '-c', 'x'] }));
}

const run = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: '' } });

test('a good spool: exit 0, every entry checked, the spool untouched and no state directory made', () => {
  goodSpool();
  const before = treeListing(spool);
  const r = run('validate', spool);
  assert.is(r.stderr, '');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^validate: 3 entries checked, 0 problems$/m);
  assert.equal(treeListing(spool), before);
  assert.equal(readdirSync(root), ['spool']);
});

test('problems: exit 2, one line each naming file and field, the same line sync --once logs', async () => {
  goodSpool();
  writeFileSync(join(spool, 'typo.ocivirt.json'), JSON.stringify({ image: 'base', memroy: '1G' }));
  writeFileSync(join(spool, 'far.ocivirt.json'), JSON.stringify({ image: 'base', volumes: ['/etc:/x'] }));
  writeFileSync(join(spool, 'gone.ocivirt.json'), JSON.stringify({ image: 'gone.tar' }));
  writeFileSync(join(spool, 'notes.txt'), 'x');
  const r = run('validate', spool);
  assert.is(r.status, 2);
  const lines = r.stderr.trim().split('\n').sort();
  assert.equal(lines, [
    `${spool}/far.ocivirt.json: volumes[0]: host path "/etc" resolves to /etc, outside the bundle and the allowed mount sources (none configured)`,
    `${spool}/gone.ocivirt.json: image: no entry "gone.tar" in the spool`,
    `${spool}/notes.txt: is a file but neither an image archive (.oci.tar, .tar.gz, .tgz, .tar, .oci) nor a settings file (NAME.ocivirt.json)`,
    `${spool}/typo.ocivirt.json: memroy: unknown key (did you mean 'memory'?); see docs/entry-settings.md`,
  ]);
  // the daemon's pass says the very same
  const daemon = await syncOnce(new FakeLibvirt(), { spoolDir: spool, stateDir: join(root, 'state'), log: silentLogger(), retryDelayMs: 1 });
  assert.equal(daemon.failed.map((f) => f.error).sort(), lines);

  const json = JSON.parse(run('validate', '--json', spool).stdout) as { ok: boolean; problems: { entry: string; file?: string; field?: string; reason: string }[] };
  assert.is(json.ok, false);
  assert.equal(json.problems.find((p) => p.entry === 'typo.ocivirt.json'), {
    entry: 'typo.ocivirt.json',
    file: join(spool, 'typo.ocivirt.json'),
    field: 'memroy',
    reason: "unknown key (did you mean 'memory'?); see docs/entry-settings.md",
  });
});

test('single items: a settings file is checked with its entry and its image; a bundle alone', async () => {
  goodSpool();
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ user: 'nobody' }));
  const r = await validatePaths([join(spool, 'web.ocivirt.json')], {});
  assert.equal(r.checked.map((c) => c.entry), ['web']);
  assert.equal(r.problems.map((p) => p.message), [`${spool}/web.ocivirt.json: user: user "nobody" cannot be resolved: the image has no /etc/passwd`]);
  const api = await validatePaths([join(spool, 'api.ocivirt.json'), join(spool, 'base')], {});
  assert.equal(api.checked.map((c) => c.entry), ['api.ocivirt.json', 'base']);
  assert.equal(api.problems, []);
  const missing = run('validate', join(spool, 'nothing'));
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /nothing: cannot be examined \(ENOENT\)/);
});

test('--schema prints the settings schema; no PATH is a usage error', () => {
  const r = run('validate', '--schema');
  assert.is(r.status, 0);
  assert.is((JSON.parse(r.stdout) as { title: string }).title, 'ocivirt entry settings (NAME.ocivirt.json)');
  assert.is(run('validate').status, 2);
});

test.run();
