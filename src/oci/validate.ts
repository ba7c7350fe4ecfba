/**
 * Validation of runtime-spec config.json input (the product's own, not a schema library):
 * returns the typed config or throws InputError naming the file and the field.
 * STUB: to be completed (see the validation work item).
 */
import { InputError } from '../errors.js';
import type { RuntimeConfig } from './runtime-spec.js';

export function validateRuntimeConfig(value: unknown, file?: string): RuntimeConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InputError('must be a JSON object', { file, field: '(root)' });
  const v = value as Record<string, unknown>;
  if (typeof v.ociVersion !== 'string') throw new InputError('required string', { file, field: 'ociVersion' });
  return v as unknown as RuntimeConfig;
}
