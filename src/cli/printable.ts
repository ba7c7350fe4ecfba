/**
 * Text the CLI prints one item a line (plan, sync, status) carries names and values from the
 * spool: an entry named "a\nfail    b" would otherwise print a line of its own. Control
 * characters (C0, DEL, C1), the Unicode line and paragraph separators and the bidirectional
 * overrides are shown escaped, and so is the backslash, so the escaped form is unambiguous.
 */
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => NAMED[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
