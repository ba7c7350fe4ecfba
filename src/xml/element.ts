/**
 * A generic XML element tree: what saxes gives us, kept with namespaces so that elements we do
 * not model (foreign metadata, unknown devices) can be written back unchanged.
 */
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { InputError } from '../errors.js';
import { escapeAttr, escapeText } from './escape.js';

export interface XmlAttr {
  /** Qualified name as written (`key`, `xmlns:lxc`). */
  name: string;
  value: string;
}

export interface XmlElement {
  /** Qualified name as written (`lxc:namespace`). */
  name: string;
  /** Namespace URI ('' for none). */
  uri: string;
  local: string;
  attrs: XmlAttr[];
  children: XmlNode[];
}

export type XmlNode = XmlElement | string;

export function isElement(n: XmlNode): n is XmlElement {
  return typeof n !== 'string';
}

/** Far deeper than any domain XML, metadata included. */
export const MAX_XML_DEPTH = 256;

/** Parses a whole document into its root element. Malformed XML becomes an InputError naming the file. */
export function parseXmlDocument(xml: string, file?: string): XmlElement {
  const parser = new SaxesParser({ xmlns: true, position: true });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let failure: string | undefined;
  parser.on('error', (e) => {
    if (failure === undefined) failure = e.message;
  });
  parser.on('opentag', (tag: SaxesTagNS) => {
    // Hostile depth would overflow the recursive walks below and is quadratic in saxes' xmlns scopes.
    if (stack.length >= MAX_XML_DEPTH) throw new Error(`elements nested deeper than ${MAX_XML_DEPTH} levels`);
    const el: XmlElement = {
      name: tag.name,
      uri: tag.uri ?? '',
      local: tag.local ?? tag.name,
      attrs: Object.values(tag.attributes).map((a) => ({ name: a.name, value: a.value })),
      children: [],
    };
    const parent = stack[stack.length - 1];
    if (parent) parent.children.push(el);
    else root = el;
    stack.push(el);
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  const addText = (t: string) => {
    const parent = stack[stack.length - 1];
    if (!parent) return;
    const last = parent.children[parent.children.length - 1];
    if (typeof last === 'string') parent.children[parent.children.length - 1] = last + t;
    else parent.children.push(t);
  };
  parser.on('text', addText);
  parser.on('cdata', addText);
  try {
    parser.write(xml).close();
  } catch (e) {
    failure ??= (e as Error).message;
  }
  if (failure !== undefined || !root)
    throw new InputError(`not well-formed XML: ${(failure ?? 'no root element').replace(/\s*\n\s*/g, ' ')}`, { file });
  return root;
}

export function childElements(el: XmlElement): XmlElement[] {
  return el.children.filter(isElement);
}

/** The concatenated text content of an element (its direct text children only). */
export function textOf(el: XmlElement): string {
  return el.children.filter((c): c is string => typeof c === 'string').join('');
}

export function attr(el: XmlElement, name: string): string | undefined {
  return el.attrs.find((a) => a.name === name)?.value;
}

/** Attributes other than namespace declarations, as a record. */
export function attrRecord(el: XmlElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of el.attrs) if (a.name !== 'xmlns' && !a.name.startsWith('xmlns:')) out[a.name] = a.value;
  return out;
}

export function elem(name: string, attrs: Record<string, string | undefined> = {}, children: XmlNode[] = []): XmlElement {
  const list: XmlAttr[] = [];
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) list.push({ name: k, value: v });
  const colon = name.indexOf(':');
  return { name, uri: '', local: colon < 0 ? name : name.slice(colon + 1), attrs: list, children };
}

/**
 * Writes an element the way libvirt formats XML: two-space indentation, single-quoted
 * attributes, elements with only text on one line. `inScope` maps prefixes already declared by
 * ancestors to their URIs; a prefix this subtree uses but nobody declared gets declared here,
 * so raw elements lifted out of their document stay well-formed.
 */
export function serializeElement(el: XmlElement, indent: string, inScope: Map<string, string> = new Map()): string {
  const scope = new Map(inScope);
  const attrs = [...el.attrs];
  for (const a of attrs) {
    if (a.name === 'xmlns') scope.set('', a.value);
    else if (a.name.startsWith('xmlns:')) scope.set(a.name.slice(6), a.value);
  }
  const colon = el.name.indexOf(':');
  const prefix = colon < 0 ? '' : el.name.slice(0, colon);
  if (el.uri !== '' && scope.get(prefix) !== el.uri) {
    attrs.unshift({ name: prefix === '' ? 'xmlns' : `xmlns:${prefix}`, value: el.uri });
    scope.set(prefix, el.uri);
  }
  const open = `<${el.name}${attrs.map((a) => ` ${a.name}='${escapeAttr(a.value)}'`).join('')}`;
  const kids = el.children.filter((c) => typeof c !== 'string' || c.trim() !== '' || el.children.every((x) => typeof x === 'string'));
  if (kids.length === 0) return `${indent}<${open.slice(1)}/>`;
  if (kids.every((c) => typeof c === 'string')) return `${indent}${open}>${escapeText(kids.join(''))}</${el.name}>`;
  const lines = [`${indent}${open}>`];
  for (const c of kids) {
    if (typeof c === 'string') lines.push(`${indent}  ${escapeText(c.trim())}`);
    else lines.push(serializeElement(c, indent + '  ', scope));
  }
  lines.push(`${indent}</${el.name}>`);
  return lines.join('\n');
}

/**
 * A canonical string for comparing raw elements by meaning: namespace URI + local name,
 * sorted attributes without namespace declarations, whitespace-only text dropped.
 */
export function canonicalElement(el: XmlElement): string {
  const attrs = Object.entries(attrRecord(el))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .sort();
  const kids = el.children
    .map((c) => (typeof c === 'string' ? (c.trim() === '' ? '' : JSON.stringify(c)) : canonicalElement(c)))
    .filter((s) => s !== '');
  return `{${el.uri}}${el.local}[${attrs.join(',')}](${kids.join(',')})`;
}
