/** The runtime config a domain's XML says, before the metadata's leftovers are applied. */
import type { Domain } from '../xml/domain.js';
import type { ReverseContext } from './context.js';
import { mergeInto } from './json.js';
import { PASSES } from './passes/index.js';

/** The runtime-spec version written when the metadata does not record the original one. */
export const DEFAULT_OCI_VERSION = '1.2.1';

export function deriveConfig(d: Domain, ctx: ReverseContext): Record<string, unknown> {
  const config: Record<string, unknown> = { ociVersion: ctx.meta?.ociVersion ?? DEFAULT_OCI_VERSION };
  for (const pass of PASSES) mergeInto(config, pass.reverse(d, ctx));
  return config;
}
