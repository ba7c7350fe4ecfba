/**
 * ocivirt's own `<metadata>` element (mapping notes §2.1): one element in our namespace holding
 * only what the domain XML cannot carry, plus the reconciler's ownership attributes.
 *
 *   <ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' schema='1' ociVersion='1.2.0'
 *       id='web-01' bundle='/srv/web-01' cgroupVersion='1' entry='web-01' instance='1b4e…' desiredDigest='sha256:…'>
 *     <ocivirt:annotation key='com.example.team'>payments &amp; billing</ocivirt:annotation>
 *     <ocivirt:exact field='/linux/resources/memory/limit' xmlValue='536871936'>536870913</ocivirt:exact>
 *     <ocivirt:residual encoding='base64'>eyJsaW51eCI6…</ocivirt:residual>
 *   </ocivirt:container>
 *
 * `exact` holds an original value that the XML carries only approximately, guarded by the value
 * to-native derives from the XML (`xmlValue`): it is used only while the XML still says that.
 * `residual` is a JSON fragment of fields the XML cannot carry at all. Children are read by local
 * name: libvirt's metadata API returns the element without its prefix.
 */
import { InputError } from '../errors.js';
import { attr, childElements, elem, textOf, type XmlElement } from './element.js';
import { isXmlSafeText } from './escape.js';

export const METADATA_NS = 'urn:ocivirt:metadata:1';
export const METADATA_PREFIX = 'ocivirt';
export const METADATA_SCHEMA = '1';

export interface ExactValue {
  /** JSON pointer (RFC 6901) into the runtime config. */
  field: string;
  /** What to-native derives from the XML at that field (JSON, or `sha256:` of it when long). */
  xmlValue: string;
  /** The original JSON value; undefined when the original config had no such field. */
  value: unknown;
}

export interface OciMetadata {
  schema: string;
  ociVersion?: string;
  /** The container id the name, UUID and MACs were derived from. */
  id?: string;
  bundle?: string;
  cgroupVersion?: 1 | 2;
  /** Ownership, for the reconciler: spool entry, owning instance, digest of the desired config, image digest. */
  entry?: string;
  /** The ocivirt instance that made the domain (reconcile/instance.ts); absent from domains older than it. */
  instance?: string;
  desiredDigest?: string;
  imageDigest?: string;
  annotations: { key: string; value: string }[];
  exact: ExactValue[];
  /** Sparse JSON object merged into the derived config. */
  residual?: Record<string, unknown>;
  /**
   * Read-only file or directory binds ocivirt adds itself (the generated /etc files of
   * network/etc-files.ts), not from the config: to-native leaves them out.
   */
  ownMounts?: OwnMount[];
  /**
   * What the domain said before the init shim took its place (src/shim/domain.ts): the `<os>`
   * init settings and `<capabilities>` of the converted config, given back by to-native.
   */
  shim?: Record<string, unknown>;
  /** The cap of each of the shim's log files (the `logFileBytes` attribute of the shim element). */
  logFileBytes?: number;
}

/** A bind ocivirt made: `<filesystem type='mount'>` of `source` at `target`, read-only. */
export interface OwnMount {
  source: string;
  target: string;
}

/** JSON text, or base64 of it when the text would not survive XML (CR, controls). */
function encodeJson(value: unknown): { text: string; base64: boolean } {
  const text = JSON.stringify(value);
  if (isXmlSafeText(text)) return { text, base64: false };
  return { text: Buffer.from(text, 'utf8').toString('base64'), base64: true };
}

function decodeJson(el: XmlElement, what: string): unknown {
  const raw = textOf(el).trim();
  const text = attr(el, 'encoding') === 'base64' ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError(`metadata ${what} is not valid JSON`, { field: `metadata/${METADATA_PREFIX}:container` });
  }
}

export function metadataToElement(m: OciMetadata): XmlElement {
  const p = METADATA_PREFIX;
  const children: XmlElement[] = [];
  for (const a of m.annotations) children.push(elem(`${p}:annotation`, { key: a.key }, [a.value]));
  for (const e of m.exact) {
    if (e.value === undefined) {
      children.push(elem(`${p}:exact`, { field: e.field, xmlValue: e.xmlValue, absent: 'yes' }));
    } else {
      const { text, base64 } = encodeJson(e.value);
      children.push(elem(`${p}:exact`, { field: e.field, xmlValue: e.xmlValue, encoding: base64 ? 'base64' : undefined }, [text]));
    }
  }
  for (const o of m.ownMounts ?? []) children.push(elem(`${p}:mount`, { source: o.source, target: o.target }));
  if (m.residual !== undefined) {
    const b64 = Buffer.from(JSON.stringify(m.residual), 'utf8').toString('base64');
    children.push(elem(`${p}:residual`, { encoding: 'base64' }, [b64]));
  }
  if (m.shim !== undefined) {
    const b64 = Buffer.from(JSON.stringify(m.shim), 'utf8').toString('base64');
    children.push(elem(`${p}:shim`, { encoding: 'base64', logFileBytes: m.logFileBytes === undefined ? undefined : String(m.logFileBytes) }, [b64]));
  }
  const el = elem(
    `${p}:container`,
    {
      [`xmlns:${p}`]: METADATA_NS,
      schema: m.schema,
      ociVersion: m.ociVersion,
      id: m.id,
      bundle: m.bundle,
      cgroupVersion: m.cgroupVersion === undefined ? undefined : String(m.cgroupVersion),
      entry: m.entry,
      instance: m.instance,
      desiredDigest: m.desiredDigest,
      imageDigest: m.imageDigest,
    },
    children,
  );
  el.uri = METADATA_NS;
  return el;
}

export function isOurMetadata(el: XmlElement): boolean {
  return el.uri === METADATA_NS && el.local === 'container';
}

export function metadataFromElement(el: XmlElement): OciMetadata {
  const cg = attr(el, 'cgroupVersion');
  const m: OciMetadata = {
    schema: attr(el, 'schema') ?? METADATA_SCHEMA,
    ociVersion: attr(el, 'ociVersion'),
    id: attr(el, 'id'),
    bundle: attr(el, 'bundle'),
    cgroupVersion: cg === '2' ? 2 : cg === '1' ? 1 : undefined,
    entry: attr(el, 'entry'),
    instance: attr(el, 'instance'),
    desiredDigest: attr(el, 'desiredDigest'),
    imageDigest: attr(el, 'imageDigest'),
    annotations: [],
    exact: [],
  };
  for (const key of Object.keys(m) as (keyof OciMetadata)[]) if (m[key] === undefined) delete m[key];
  for (const c of childElements(el)) {
    if (c.local === 'annotation') m.annotations.push({ key: attr(c, 'key') ?? '', value: textOf(c) });
    else if (c.local === 'exact') {
      const field = attr(c, 'field') ?? '';
      const xmlValue = attr(c, 'xmlValue') ?? '';
      m.exact.push({ field, xmlValue, value: attr(c, 'absent') === 'yes' ? undefined : decodeJson(c, `exact ${field}`) });
    } else if (c.local === 'mount') {
      const source = attr(c, 'source');
      const target = attr(c, 'target');
      if (source !== undefined && target !== undefined) (m.ownMounts ??= []).push({ source, target });
    } else if (c.local === 'residual') {
      const r = decodeJson(c, 'residual');
      if (typeof r === 'object' && r !== null && !Array.isArray(r)) m.residual = r as Record<string, unknown>;
    } else if (c.local === 'shim') {
      const r = decodeJson(c, 'shim');
      if (typeof r === 'object' && r !== null && !Array.isArray(r)) m.shim = r as Record<string, unknown>;
      // a decimal number or nothing (the spec's own check refuses one out of range at start)
      const bytes = attr(c, 'logFileBytes');
      if (bytes !== undefined && /^[0-9]{1,15}$/.test(bytes)) m.logFileBytes = Number(bytes);
    }
  }
  return m;
}
