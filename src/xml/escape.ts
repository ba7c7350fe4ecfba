/**
 * XML 1.0 escaping as libvirt writes it (mapping notes §6.1): `& < >` in text; in attributes
 * (always single-quoted) also `'` and `"`, plus TAB, LF and CR as character references, because
 * attribute normalisation would otherwise turn them into spaces.
 */

export function escapeText(s: string): string {
  return s.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

const ATTR_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  "'": '&apos;',
  '"': '&quot;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

export function escapeAttr(s: string): string {
  return s.replace(/[&<>'"\t\n\r]/g, (c) => ATTR_ESCAPES[c] ?? c);
}

/**
 * Characters XML 1.0 cannot carry at all: controls other than TAB/LF/CR, lone surrogates,
 * U+FFFE and U+FFFF.
 */
const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when the string survives a trip through XML text unchanged (CR is normalised to LF by parsers). */
export function isXmlSafeText(s: string): boolean {
  return !NOT_XML_CHAR.test(s) && !s.includes('\r');
}

/** True when the string can be written as an attribute value (CR is safe there as `&#13;`). */
export function isXmlSafeAttr(s: string): boolean {
  return !NOT_XML_CHAR.test(s);
}

/** Why a string cannot be carried in XML text, or undefined when it can. */
export function xmlTextProblem(s: string): string | undefined {
  if (s.includes('\r')) return 'contains a carriage return, which XML parsers turn into a line feed';
  const m = NOT_XML_CHAR.exec(s);
  if (m) return `contains the character U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}, which XML 1.0 cannot carry`;
  return undefined;
}
