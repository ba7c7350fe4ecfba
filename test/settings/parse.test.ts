/**
 * The settings file's keys: each key's documented examples pass both the checker and the JSON
 * Schema shipped in docs/, each refused value fails both (so the two cannot drift apart); unknown
 * keys and wrong types fail with one line naming the file and the key; role rules; the shipped
 * schema is exactly the generated one and the docs page shows every key.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import AjvModule from 'ajv';
const Ajv = AjvModule.default;
import { InputError } from '../../src/errors.js';
import { checkRole, ENTRY_KEYS, entrySettingsSchema, entrySettingsSchemaText, parseEntrySettings } from '../../src/settings/index.js';
import { repoRoot } from '../helpers/schema.js';

const FILE = '/spool/web.ocivirt.json';
const ajv = new Ajv({ strict: false, allErrors: true });
const validate = ajv.compile(entrySettingsSchema());

function refusal(value: unknown): InputError {
  try {
    parseEntrySettings(value, FILE);
  } catch (e) {
    if (e instanceof InputError) return e;
    throw e;
  }
  throw new Error(`accepted ${JSON.stringify(value)}`);
}

test('every key: its examples pass the checker and the schema; its refused values fail both', () => {
  for (const k of ENTRY_KEYS) {
    assert.ok(k.examples.length > 0 && k.refused.length > 0, `${k.key}: no examples`);
    for (const v of k.examples) {
      parseEntrySettings({ [k.key]: v }, FILE);
      assert.ok(validate({ [k.key]: v }), `${k.key}: schema refuses ${JSON.stringify(v)}: ${ajv.errorsText(validate.errors)}`);
    }
    for (const v of k.refused) {
      const e = refusal({ [k.key]: v });
      assert.ok(e.message.startsWith(`${FILE}: ${k.key}`), `${k.key}: ${e.message}`);
      assert.not.ok(e.message.includes('\n'));
      assert.not.ok(validate({ [k.key]: v }), `${k.key}: schema accepts ${JSON.stringify(v)}`);
    }
  }
});

test('unknown keys are refused by name, with a hint for a wrong case', () => {
  assert.is(refusal({ Image: 'x.tar' }).message, `${FILE}: Image: unknown key (did you mean 'image'?); see docs/entry-settings.md`);
  assert.is(refusal({ mounts: [] }).message, `${FILE}: mounts: unknown key; see docs/entry-settings.md`);
  assert.not.ok(validate({ mounts: [] }));
  // a hostile key is shown quoted and cut, never as raw text
  const key = `a\n${'x'.repeat(500)}`;
  const msg = refusal({ [key]: 1 }).message;
  assert.not.ok(msg.includes('\n'));
  assert.ok(msg.length < 200, msg);
});

test('the root must be an object; values are normalised', () => {
  assert.is(refusal([]).message, `${FILE}: must be a JSON object`);
  assert.is(refusal(null).message, `${FILE}: must be a JSON object`);
  const s = parseEntrySettings({ memory: '256M', workdir: '/srv//app/', volumes: ['/srv/data/:/data:ro', 'cache:/var/cache'] }, FILE);
  assert.is(s.memory, 256 * 1024 * 1024);
  assert.is(s.workdir, '/srv/app/');
  assert.equal(s.volumes, [
    { kind: 'bind', source: '/srv/data/', destination: '/data', readOnly: true },
    { kind: 'named', name: 'cache', destination: '/var/cache', readOnly: false },
  ]);
  assert.is(parseEntrySettings({ memory: '1.5g' }, FILE).memory, 1.5 * 1024 ** 3);
  assert.equal(parseEntrySettings({ publish: ['127.0.0.1:5353:53/udp'] }, FILE).publish, [{ hostIp: '127.0.0.1', hostPort: 5353, port: 53, protocol: 'udp' }]);
});

test('wrong types and forms name the key and the member', () => {
  assert.is(refusal({ env: { A: 1 } }).message, `${FILE}: env.A: must be a string, or null to unset it, got 1`);
  assert.is(refusal({ command: ['ok', 2] }).message, `${FILE}: command[1]: must be a string, got 2`);
  assert.is(refusal({ networks: [{ network: 'default', ip: '10.0.0.1' }] }).message, `${FILE}: networks[0].ip: must be "A.B.C.D/P", got "10.0.0.1"`);
  assert.match(refusal({ annotations: { 'org.ocivirt.settings.restart': 'always' } }).message, /annotations\.org\.ocivirt\.settings\.restart: keys under/);
  assert.match(refusal({ annotations: { 'org.ocivirt.start': 'true' } }).message, /use the key "start"/);
  assert.match(refusal({ command: ['a\u0000b'] }).message, /command\[0\]: must not contain control characters/);
});

test('what a file may hold depends on what it belongs to', () => {
  const role = (value: object, r: 'bundle' | 'image' | 'container') => {
    try {
      checkRole(parseEntrySettings(value, FILE), r, FILE);
      return 'ok';
    } catch (e) {
      return (e as Error).message;
    }
  };
  assert.is(role({ env: { A: '1' } }, 'bundle'), 'ok');
  assert.match(role({ ref: 'x' }, 'bundle'), /^\/spool\/web\.ocivirt\.json: ref: a runtime bundle is no image/);
  assert.match(role({ image: 'x.tar' }, 'image'), /: image: the settings of an image entry run that image/);
  assert.is(role({ imageOnly: true }, 'image'), 'ok');
  assert.is(role({ ref: 'v2', env: { A: '1' } }, 'image'), 'ok');
  assert.match(role({ imageOnly: true, env: { A: '1' } }, 'image'), /: env: an image-only entry has no container of its own/);
  assert.match(role({ env: { A: '1' } }, 'container'), /: image: required/);
  assert.match(role({ image: 'x.tar', imageOnly: true }, 'container'), /: imageOnly: only an image entry's own settings/);
  assert.is(role({ image: 'x.tar', ref: 'v1' }, 'container'), 'ok');
});

test('docs/entry-settings.schema.json is the generated schema', () => {
  const shipped = readFileSync(join(repoRoot(), 'docs/entry-settings.schema.json'), 'utf8');
  assert.is(shipped, entrySettingsSchemaText(), 'regenerate it: bin/ocivirt validate --schema > docs/entry-settings.schema.json');
});

test('docs/entry-settings.md describes every key with an example', () => {
  const doc = readFileSync(join(repoRoot(), 'docs/entry-settings.md'), 'utf8');
  for (const k of ENTRY_KEYS) {
    const section = doc.split(/^### /m).find((s) => s.startsWith(`\`${k.key}\``));
    assert.ok(section !== undefined, `no "### \`${k.key}\`" section`);
    assert.match(section!, /```json/, `${k.key}: no example`);
    // the example in the doc is a valid settings file
    const example = /```json\n([\s\S]*?)```/.exec(section!)![1]!;
    parseEntrySettings(JSON.parse(example), 'docs example');
    assert.ok(example.includes(`"${k.key}"`), `${k.key}: its example does not use it`);
  }
});

test.run();
