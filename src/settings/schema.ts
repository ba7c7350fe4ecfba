/**
 * The JSON Schema of a settings file, for editors (VS Code, vim's coc-json, …), generated from the
 * key table so it cannot drift from what the daemon accepts. docs/entry-settings.schema.json is
 * this output; a test holds the two equal (`ocivirt validate --schema` prints it).
 */
import { ENTRY_KEYS } from './keys.js';

export const SCHEMA_ID = 'https://ocivirt.invalid/schemas/entry-settings.schema.json';

export function entrySettingsSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const k of ENTRY_KEYS) properties[k.key] = { ...k.schema, description: plain(k.doc) };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'ocivirt entry settings (NAME.ocivirt.json)',
    description: 'How one spool entry runs. See docs/entry-settings.md.',
    type: 'object',
    additionalProperties: false,
    properties,
  };
}

/** The schema as the file in docs/ holds it. */
export function entrySettingsSchemaText(): string {
  return JSON.stringify(entrySettingsSchema(), null, 2) + '\n';
}

/** Editors show descriptions as plain text: no Markdown backticks. */
function plain(doc: string): string {
  return doc.replace(/`/g, '');
}
