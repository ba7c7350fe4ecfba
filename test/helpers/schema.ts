/**
 * The official runtime-spec JSON schema, for tests only (the product validates by hand in
 * src/oci/validate.ts and never reads these files).
 *
 * The schemas declare `"$schema": ".../draft-04/schema#"`. Ajv 8's default class knows only
 * draft-07 and later and refuses to compile them ("no schema with key or ref ...draft-04..."),
 * so this uses `ajv-draft-04`, Ajv's own draft-04 class (draft-04 meta-schema and keyword
 * semantics), rather than stripping `$schema` and validating with the wrong draft.
 *
 * The files have no `id`; they reference each other by file name (`defs.json#/definitions/...`),
 * so every file is registered under its own name and the refs resolve against that.
 */
import AjvDraft04 from 'ajv-draft-04';
import type { ErrorObject, ValidateFunction } from 'ajv-draft-04';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest ancestor of this file holding the project's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'ocivirt') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no ocivirt package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The runtime-spec schemas and examples, kept in the repository (test/oci-schemas/SOURCE says from where). */
export function schemasDir(): string {
  return join(repoRoot(), 'test', 'oci-schemas');
}

let compiled: ValidateFunction | undefined;

function configValidator(): ValidateFunction {
  if (compiled) return compiled;
  const dir = join(schemasDir(), 'runtime-spec');
  // A CommonJS module: under NodeNext its default import is the module, the class is `.default`.
  const ajv = new AjvDraft04.default({ allErrors: true, strict: false });
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.json')).sort())
    ajv.addSchema(JSON.parse(readFileSync(join(dir, name), 'utf8')) as object, name);
  const validate = ajv.getSchema('config-schema.json');
  if (!validate) throw new Error(`config-schema.json not found in ${dir}`);
  compiled = validate;
  return validate;
}

function describe(e: ErrorObject): string {
  return `${e.instancePath || '(root)'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`;
}

/** Every violation of the runtime-spec config schema, one line each; empty when valid. */
export function runtimeSchemaErrors(config: unknown): string[] {
  const validate = configValidator();
  return validate(config) ? [] : (validate.errors ?? []).map(describe);
}

/** Throws, listing ajv's errors, when `config` breaks the runtime-spec config schema. */
export function assertRuntimeSchemaValid(config: unknown): void {
  const errors = runtimeSchemaErrors(config);
  if (errors.length > 0) throw new Error(`config breaks the runtime-spec schema:\n  ${errors.join('\n  ')}`);
}
