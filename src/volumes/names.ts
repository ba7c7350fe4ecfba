/**
 * Where volumes live and what they are called. A named volume is `<state>/volumes/<name>` (its
 * name checked by the settings' VOLUME_NAME: no '/', no '..', a safe charset); an image VOLUME's
 * anonymous volume is keyed by the entry's domain and the path, under a name that starts with
 * `_`, which a named volume cannot; a settings file may name only its own entry's anonymous volume
 * (mounts.ts), so never another entry's.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { isValidDomainName } from '../convert/identity.js';
import { ANONYMOUS_VOLUME_NAME, VOLUME_NAME } from '../settings/keys.js';

export function volumesDir(stateDir: string): string {
  return join(stateDir, 'volumes');
}

/** `_<domain>.<12 hex of sha256(path)>`: one per entry and image VOLUME path. */
export function anonymousVolumeName(domainName: string, path: string): string {
  return `_${domainName}.${createHash('sha256').update(path).digest('hex').slice(0, 12)}`;
}

/** The domain an anonymous volume belongs to, or undefined for a named one. */
export function anonymousOwner(name: string): string | undefined {
  const m = ANONYMOUS_VOLUME_NAME.exec(name);
  return m && isValidDomainName(m[1]!) ? m[1] : undefined;
}

/** A name ocivirt may have given a volume directory (named or anonymous); anything else is not a volume. */
export function isVolumeName(name: string): boolean {
  return (VOLUME_NAME.test(name) && name !== '.' && name !== '..') || anonymousOwner(name) !== undefined;
}
