/**
 * Plain-JSON helpers for the converter: canonical text (sorted keys), deep equality, RFC 6901
 * pointers, and the diff that decides what the metadata must keep.
 */
import { createHash } from 'node:crypto';

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON text with object keys sorted at every level: equal values give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x === undefined ? null : x)).join(',')}]`;
  if (isPlainObject(v))
    return `{${Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export const escapeToken = (t: string) => t.replace(/~/g, '~0').replace(/\//g, '~1');
const unescapeToken = (t: string) => t.replace(/~1/g, '/').replace(/~0/g, '~');

export function pointerTokens(p: string): string[] {
  return p === '' ? [] : p.slice(1).split('/').map(unescapeToken);
}

/** `/process/args` -> `process.args`, for messages. */
export function pointerToField(p: string): string {
  return pointerTokens(p)
    .map((t, i) => (/^\d+$/.test(t) ? `[${t}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(t) ? (i ? '.' : '') + t : `[${JSON.stringify(t)}]`))
    .join('');
}

export function getAt(root: unknown, p: string): unknown {
  let cur: unknown = root;
  for (const t of pointerTokens(p)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else return undefined;
  }
  return cur;
}

/** Sets (or with `undefined`, deletes) the value at an object-only pointer, creating parents. */
export function setAt(root: Record<string, unknown>, p: string, value: unknown): void {
  const tokens = pointerTokens(p);
  let cur: Record<string, unknown> = root;
  for (const t of tokens.slice(0, -1)) {
    const next = cur[t];
    if (!isPlainObject(next)) {
      if (value === undefined) return;
      cur[t] = {};
    }
    cur = cur[t] as Record<string, unknown>;
  }
  const last = tokens[tokens.length - 1];
  if (last === undefined) return;
  if (value === undefined) delete cur[last];
  else cur[last] = value;
}

export interface Difference {
  /** JSON pointer. */
  path: string;
  /** The original value (undefined when the original has no such field). */
  original: unknown;
  /** The value derived from the XML (undefined when the XML does not carry the field). */
  derived: unknown;
}

/**
 * Where `derived` differs from `original`, descending into objects only (arrays are compared
 * whole: their items have no stable identity).
 */
export function diff(original: unknown, derived: unknown, path = ''): Difference[] {
  if (deepEqual(original, derived)) return [];
  if (isPlainObject(original) && isPlainObject(derived)) {
    const keys = [...new Set([...Object.keys(original), ...Object.keys(derived)])];
    return keys.flatMap((k) => diff(original[k], derived[k], path + '/' + escapeToken(k)));
  }
  return [{ path, original, derived }];
}

/** Fills fields `base` lacks from `extra`, descending into objects; `base` wins where both have one. */
export function fillMissing(base: Record<string, unknown>, extra: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(extra)) {
    const b = base[k];
    if (b === undefined) base[k] = structuredClone(v);
    else if (isPlainObject(b) && isPlainObject(v)) fillMissing(b, v);
  }
}

/** Deep merge of reverse fragments (objects merged, anything else replaced). */
export function mergeInto(base: Record<string, unknown>, frag: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(frag)) {
    if (v === undefined) continue;
    const b = base[k];
    if (isPlainObject(b) && isPlainObject(v)) mergeInto(b, v);
    else base[k] = v;
  }
}
