/**
 * Domain names from spool entry names: `web-1/` or `web-1.tar` -> `web-1`, made valid for
 * libvirt and for the container's hostname (which libvirt-lxc derives from the domain name):
 * only [a-z0-9-], at most 63 characters, not starting with '-', with an optional prefix.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';

export const MAX_DOMAIN_NAME = 63;
/** Room a prefix may take, so every entry keeps a readable part of its own name. */
export const MAX_PREFIX = 32;
const VALID_NAME = /^[a-z0-9][a-z0-9-]*$/;

/** Refuses a prefix that could not start a valid domain name (a configuration error). */
export function checkNamePrefix(prefix: string): void {
  if (prefix === '') return;
  if (!VALID_NAME.test(prefix) || prefix.length > MAX_PREFIX)
    throw new InputError(
      `${JSON.stringify(prefix)} is not a valid domain name prefix: use a-z, 0-9 and '-', start with a letter or digit, at most ${MAX_PREFIX} characters`,
      { field: 'prefix' },
    );
}

export function isValidDomainName(name: string): boolean {
  return name.length <= MAX_DOMAIN_NAME && VALID_NAME.test(name);
}

/**
 * The domain name for an entry's base name (`.tar` already removed), or a reason it has none.
 * Upper case is lowered and every other character outside [a-z0-9-] becomes '-'; a name that
 * is still too long keeps its first characters and gets a short hash of the whole name, so two
 * long names sharing a beginning stay apart.
 */
export function domainNameFor(baseName: string, prefix = ''): { name: string } | { reason: string } {
  checkNamePrefix(prefix);
  const cleaned = baseName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '');
  if (cleaned === '') return { reason: `${JSON.stringify(baseName)} has no letter or digit to name a domain after` };
  let name = prefix + cleaned;
  if (name.length > MAX_DOMAIN_NAME) {
    const hash = createHash('sha256').update(baseName).digest('hex').slice(0, 8);
    name = `${name.slice(0, MAX_DOMAIN_NAME - hash.length - 1)}-${hash}`;
  }
  return { name };
}

/** A spool file named like this holds the settings of the entry of its stem (src/settings/). */
export const SETTINGS_SUFFIX = '.ocivirt.json';

/**
 * Names an image archive (or a layout directory) may carry; its content decides what it is. The
 * longest that matches is cut to give the entry's stem (`web.tar.gz` -> `web`).
 */
export const IMAGE_SUFFIXES = ['.oci.tar', '.tar.gz', '.tgz', '.tar', '.oci'] as const;

export function isSettingsName(name: string): boolean {
  return name.endsWith(SETTINGS_SUFFIX) && name.length > SETTINGS_SUFFIX.length;
}

/**
 * The stem of a spool item: what its domain is named after and what its settings file is named
 * after (`web-1/`, `web-1.tar`, `web-1.ocivirt.json` -> `web-1`). It depends on the name only,
 * so a gone entry's domain can still be found.
 */
export function entryStem(name: string): string {
  if (isSettingsName(name)) return name.slice(0, -SETTINGS_SUFFIX.length);
  for (const s of IMAGE_SUFFIXES) if (name.endsWith(s) && name.length > s.length) return name.slice(0, -s.length);
  return name;
}

/** Every spool name whose item shares `name`'s stem: the items a change of `name` may pair or unpair. */
export function namesOfStem(stem: string): string[] {
  return [stem, ...IMAGE_SUFFIXES.map((s) => stem + s), stem + SETTINGS_SUFFIX];
}
