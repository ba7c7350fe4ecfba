/** The guard of an `exact` leftover: what to-native derives from the XML at that field. */
import { canonicalJson, sha256Hex } from './json.js';

export function guardOf(derived: unknown): string {
  const text = canonicalJson(derived);
  return text.length <= 64 ? text : `sha256:${sha256Hex(text).slice(0, 32)}`;
}
