/**
 * Reading and checking a settings file: through the spool's one-fd reader (never a symlink, a
 * FIFO or a device, bounded in size), JSON with line and column on a syntax error, then every key
 * against the table (keys.ts): unknown keys and wrong types are refused with one line naming the
 * file and the key. Which keys make sense depends on what the file belongs to (`checkRole`).
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import { parseJsonText } from '../oci/bundle.js';
import { SETTINGS_SUFFIX } from '../spool/names.js';
import { readSmallRegularFile, UnreadableFile } from '../spool/read.js';
import { ENTRY_KEYS, KEY_NAMES, quotedKey, type EntrySettings, type KeySpec } from './keys.js';

/** A settings file is a few hundred bytes; 1 MiB is generous and keeps a hostile one cheap. */
export const MAX_SETTINGS_BYTES = 1024 * 1024;


export interface ReadSettings {
  settings: EntrySettings;
  /** sha256 of the file's bytes: part of the desired-definition digest. */
  digest: string;
  file: string;
}

/**
 * What a settings file belongs to: a runtime bundle, an image entry (its own container, or an
 * image only), or nothing (it is its own entry: a container of the image it names).
 */
export type SettingsRole = 'bundle' | 'image' | 'container';

const BY_KEY = new Map<string, KeySpec>(ENTRY_KEYS.map((k) => [k.key, k]));

/** Checks a parsed JSON value against the table. */
export function parseEntrySettings(value: unknown, file: string): EntrySettings {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InputError('must be a JSON object', { file });
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const spec = BY_KEY.get(key);
    if (spec === undefined) {
      const near = KEY_NAMES.find((k) => k.toLowerCase() === key.toLowerCase()) ?? KEY_NAMES.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
      throw new InputError(`unknown key${near ? ` (did you mean '${near}'?)` : ''}; see docs/entry-settings.md`, { file, field: fieldName(key) });
    }
    out[key] = spec.check(v, { file, field: key });
  }
  return out as EntrySettings;
}

/** A key as a message may show it: a hostile file's key can hold anything. */
function fieldName(key: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(key) ? key : quotedKey(key);
}

/** Which keys the file may hold, given what it belongs to. */
export function checkRole(s: EntrySettings, role: SettingsRole, file: string): void {
  const refuse = (key: keyof EntrySettings, why: string) => {
    if (s[key] !== undefined) throw new InputError(why, { file, field: key });
  };
  if (role === 'bundle') {
    const why = 'a runtime bundle is no image: only a settings file of an image entry, or one without an entry of its own, chooses an image';
    for (const k of ['image', 'ref', 'platform', 'imageOnly'] as const) refuse(k, why);
  } else if (role === 'image') {
    refuse('image', 'the settings of an image entry run that image; "image" belongs in a settings file without an entry of its own');
    if (s.imageOnly === true) {
      const other = Object.keys(s).find((k) => k !== 'imageOnly');
      if (other !== undefined)
        throw new InputError('an image-only entry has no container of its own, so nothing else applies to it (each settings entry naming the image says how its container runs)', { file, field: other });
    }
  } else {
    if (s.image === undefined) throw new InputError(`required: a settings file without an entry of its stem is a container of the image entry it names (or name it like an entry: NAME${SETTINGS_SUFFIX} beside NAME/ or NAME.tar)`, { file, field: 'image' });
    refuse('imageOnly', 'only an image entry\'s own settings can mark it as an image only');
  }
}

/** Reads, parses and checks `path` (the role is checked by the caller, who knows it). */
export async function readEntrySettings(path: string): Promise<ReadSettings> {
  let data: Buffer;
  try {
    data = (await readSmallRegularFile(path, MAX_SETTINGS_BYTES)).data;
  } catch (e) {
    if (e instanceof UnreadableFile) throw new InputError(`${e.message}${e.code === 'ELOOP' ? ': a settings file must be a regular file in the spool' : ''}`, { file: path });
    throw e;
  }
  return parseSettingsBytes(data, path);
}

export function parseSettingsBytes(data: Buffer, file: string): ReadSettings {
  const value = parseJsonText(data.toString('utf8'), file);
  return { settings: parseEntrySettings(value, file), digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, file };
}

/** Edit distance (insert, delete, replace, swap of neighbours): how far a typo is from a key. */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2 || b.length > 64) return 3;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[a.length]![b.length]!;
}
