import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/config/load.js';
import { defaultConfig, SETTINGS } from '../../src/config/settings.js';
import { InputError } from '../../src/errors.js';
import { repoRoot } from '../helpers/schema.js';

let dir = '';
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ocivirt-config-'));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, content);
  return p;
}

async function refusal(p: Promise<unknown>): Promise<InputError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, InputError);
    return e as InputError;
  }
  assert.unreachable('expected an InputError');
  throw new Error('unreachable');
}

test('config/ocivirt.json holds exactly the built-in defaults', async () => {
  const shipped = JSON.parse(await readFile(join(repoRoot(), 'config/ocivirt.json'), 'utf8'));
  assert.equal(shipped, JSON.parse(JSON.stringify(defaultConfig())));
});

test('docs/configuration.md documents every setting with its default', async () => {
  const doc = await readFile(join(repoRoot(), 'docs/configuration.md'), 'utf8');
  for (const s of SETTINGS) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${s.key}\` |`));
    assert.ok(row, `no row for ${s.key}`);
    assert.ok(row!.includes(JSON.stringify(s.default)), `${s.key}: default not in the row`);
    if (s.env) assert.ok(row!.includes(s.env), `${s.key}: env var not in the row`);
  }
});

test('no file named and no default file: the defaults', async () => {
  const loaded = await loadConfig({ env: {}, defaultFile: join(dir, 'absent-default.json') });
  assert.is(loaded.file, undefined);
  assert.equal(loaded.config, defaultConfig());
});

test('OCIVIRT_CONFIG names the file, and then it must exist', async () => {
  const f = await file('via-env.json', JSON.stringify({ namePrefix: 'ct-' }));
  assert.is((await loadConfig({ env: { OCIVIRT_CONFIG: f } })).config.namePrefix, 'ct-');
  const e = await refusal(loadConfig({ env: { OCIVIRT_CONFIG: join(dir, 'missing.json') } }));
  assert.match(e.message, /ENOENT/);
});

test('file, then environment, then flags override', async () => {
  const f = await file('layers.json', JSON.stringify({ spoolDir: '/srv/spool', concurrency: 8, updatePolicy: 'restart', bindAllowList: ['/srv/shared/'] }));
  const { config, file: used } = await loadConfig({
    file: f,
    env: { OCIVIRT_CONCURRENCY: '16', OCIVIRT_SPOOL: '/env/spool', OCIVIRT_EXPORT_ALL: 'yes' },
    flags: { spoolDir: '/flag/spool' },
  });
  assert.is(used, f);
  assert.is(config.spoolDir, '/flag/spool');
  assert.is(config.concurrency, 16);
  assert.is(config.updatePolicy, 'restart');
  assert.is(config.exportAllDomains, true);
  assert.equal(config.bindAllowList, ['/srv/shared']);
  assert.is(config.stateDir, defaultConfig().stateDir);
});

test('errors name the file and the key', async () => {
  const f = await file('bad-enum.json', JSON.stringify({ updatePolicy: 'later' }));
  const e = await refusal(loadConfig({ file: f, env: {} }));
  assert.is(e.file, f);
  assert.is(e.field, 'updatePolicy');
  assert.match(e.message, /next-start/);

  const typo = await file('typo.json', JSON.stringify({ spooldir: '/x' }));
  const t = await refusal(loadConfig({ file: typo, env: {} }));
  assert.is(t.field, 'spooldir');
  assert.match(t.message, /did you mean 'spoolDir'/);

  const comments = await file('comments.json', '{ // no\n "uri": "lxc:///" }');
  const c = await refusal(loadConfig({ file: comments, env: {} }));
  assert.is(c.file, comments);
  assert.match(c.message, /not valid JSON/);

  const rel = await file('relative.json', JSON.stringify({ stateDir: 'state' }));
  assert.is((await refusal(loadConfig({ file: rel, env: {} }))).field, 'stateDir');

  const lim = await file('limits.json', JSON.stringify({ unpackLimits: { maxBytes: -1 } }));
  assert.is((await refusal(loadConfig({ file: lim, env: {} }))).field, 'unpackLimits.maxBytes');

  const allow = await file('allow.json', JSON.stringify({ bindAllowList: ['/ok', 'relative'] }));
  assert.is((await refusal(loadConfig({ file: allow, env: {} }))).field, 'bindAllowList[1]');
});

test('environment and flag errors say where they came from', async () => {
  const e = await refusal(loadConfig({ env: { OCIVIRT_CONCURRENCY: 'many' } }));
  assert.is(e.file, 'environment');
  assert.is(e.field, 'OCIVIRT_CONCURRENCY');
  const b = await refusal(loadConfig({ env: { OCIVIRT_STRICT: 'maybe' } }));
  assert.is(b.field, 'OCIVIRT_STRICT');
  const f = await refusal(loadConfig({ env: {}, flags: { stateDir: 'rel' }, flagNames: { stateDir: '--state' } }));
  assert.is(f.file, 'command line');
  assert.is(f.field, '--state');
});

test('an explicit file that does not exist is an error', async () => {
  const e = await refusal(loadConfig({ file: join(dir, 'nope.json'), env: {} }));
  assert.match(e.message, /ENOENT/);
});

test('the export directory may not be inside the spool', async () => {
  const e = await refusal(loadConfig({ env: {}, flags: { spoolDir: '/srv/spool', exportDir: '/srv/spool/export' } }));
  assert.is(e.field, 'exportDir');
  const same = await refusal(loadConfig({ env: {}, flags: { spoolDir: '/srv/x', stateDir: '/srv/x' } }));
  assert.match(same.message, /separate directories/);
});

test('a config file others could write is refused, whatever it says (it is root-equivalent)', async () => {
  const body = JSON.stringify({ bindAllowList: ['/'], allowDevices: true, allowInsecureDirs: true });
  const open = await file('world.json', body);
  await chmod(open, 0o666);
  let e = await refusal(loadConfig({ file: open, env: {} }));
  assert.is(e.file, open);
  assert.match(e.reason, /writable by group or others \(mode 0666\)/);
  await chmod(open, 0o620);
  e = await refusal(loadConfig({ file: open, env: {} }));
  assert.match(e.reason, /mode 0620/);
  // the default file and OCIVIRT_CONFIG get the same rule
  e = await refusal(loadConfig({ env: {}, defaultFile: open }));
  assert.match(e.reason, /writable by group or others/);
  e = await refusal(loadConfig({ env: { OCIVIRT_CONFIG: open } }));
  assert.match(e.reason, /writable by group or others/);
  await chmod(open, 0o644);
  assert.is((await loadConfig({ file: open, env: {} })).config.allowDevices, true);
});

test('a config file owned by another user, or in a directory others can write, is refused', async () => {
  const owned = await file('owned.json', '{}');
  await chown(owned, 12345, 0);
  let e = await refusal(loadConfig({ file: owned, env: {} }));
  assert.match(e.reason, /owned by uid 12345/);

  const shared = join(dir, 'shared');
  await mkdir(shared);
  await chmod(shared, 0o777); // not sticky: anyone can swap the file
  const inShared = join(shared, 'ocivirt.json');
  await writeFile(inShared, '{}');
  e = await refusal(loadConfig({ file: inShared, env: {} }));
  assert.match(e.reason, /parent .*shared is writable by group or others without the sticky bit/);

  // through a symlink the file it resolves to is checked
  const link = join(dir, 'link.json');
  await symlink(inShared, link);
  e = await refusal(loadConfig({ file: link, env: {} }));
  assert.match(e.reason, /shared is writable/);
  await chmod(shared, 0o755);
  assert.is((await loadConfig({ file: link, env: {} })).file, link);
});

test('a config path that is a FIFO is refused at once, not read', async () => {
  const fifo = join(dir, 'fifo.json');
  assert.is(spawnSync('mkfifo', [fifo]).status, 0);
  const e = await refusal(loadConfig({ file: fifo, env: {} }));
  assert.match(e.reason, /not a regular file/);
});

test.run();
