/**
 * The schema test helper agrees with the runtime-spec project's own examples: every `good-*`
 * config passes the official schema, every `bad-*` one is refused (or is not JSON at all).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertRuntimeSchemaValid, runtimeSchemaErrors, schemasDir } from '../helpers/schema.js';

const examplesDir = join(schemasDir(), 'runtime-spec-examples');
const examples = readdirSync(examplesDir).filter((n) => n.endsWith('.json')).sort();

test('the examples are there (good and bad)', () => {
  assert.ok(examples.filter((n) => n.startsWith('good-')).length >= 5);
  assert.ok(examples.filter((n) => n.startsWith('bad-')).length >= 3);
});

for (const name of examples) {
  const text = readFileSync(join(examplesDir, name), 'utf8');
  if (name.startsWith('good-')) {
    test(`${name} passes the official schema`, () => {
      assertRuntimeSchemaValid(JSON.parse(text));
    });
  } else if (name.startsWith('bad-')) {
    test(`${name} is refused by the official schema (or is not JSON)`, () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return; // bad-invalid-json: refused before any schema
      }
      assert.ok(runtimeSchemaErrors(parsed).length > 0, `${name} should break the schema`);
      assert.throws(() => assertRuntimeSchemaValid(parsed), /breaks the runtime-spec schema/);
    });
  }
}

test('errors name the JSON path of the field', () => {
  const errors = runtimeSchemaErrors({ ociVersion: '1.0.0', process: { cwd: '/', user: { uid: -1, gid: 0 } } });
  assert.ok(errors.some((e) => e.startsWith('/process/user/uid ')), errors.join('\n'));
});

test('cross-file $refs are followed (defs-linux.json via config-linux.json)', () => {
  const base = { ociVersion: '1.0.0', linux: { namespaces: [{ type: 'pid' }] } };
  assert.equal(runtimeSchemaErrors(base), []);
  const bad = { ociVersion: '1.0.0', linux: { namespaces: [{ type: 'bogus' }] } };
  assert.ok(runtimeSchemaErrors(bad).some((e) => e.startsWith('/linux/namespaces/0/type')));
});

test.run();
