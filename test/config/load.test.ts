import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

test.run();
