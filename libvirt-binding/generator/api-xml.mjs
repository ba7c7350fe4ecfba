// A reader for libvirt-api.xml. The file is machine-written by libvirt's apibuild.py with a fixed
// shape (single-quoted attributes, no nesting beyond function/arg and struct/field), so a small
// tag scanner is enough and the build needs no XML package.

const ENTITIES = { amp: '&', apos: "'", quot: '"', lt: '<', gt: '>' };
const unescape = (s) => s.replace(/&(amp|apos|quot|lt|gt);/g, (_, e) => ENTITIES[e]);

function attrs(tag) {
  const out = {};
  for (const m of tag.matchAll(/(\w+)='([^']*)'/g)) out[m[1]] = unescape(m[2]);
  return out;
}

/**
 * @returns {{ functions: {name: string, ret: {type: string}, args: {name: string, type: string, info: string}[]}[],
 *   enums: Map<string, {name: string, type: string, value: number}>, enumTypes: Set<string>,
 *   typedefs: Map<string, string>, structs: Map<string, {name: string, fields: {name: string, type: string}[]}> }}
 */
export function parseApi(xml) {
  const functions = [];
  for (const m of xml.matchAll(/<function (name='[^']*'[^>]*)>([\s\S]*?)<\/function>/g)) {
    const head = attrs(m[1]);
    const body = m[2];
    const ret = body.match(/<return ([^>]*?)\/?>/);
    const args = [...body.matchAll(/<arg ([^>]*?)\/>/g)].map((a) => attrs(a[1]));
    functions.push({ name: head.name, ret: attrs(ret ? ret[1] : "type='void'"), args });
  }
  functions.sort((a, b) => a.name.localeCompare(b.name));

  const raw = new Map();
  for (const m of xml.matchAll(/<enum ([^>]*?)\/>/g)) {
    const a = attrs(m[1]);
    raw.set(a.name, a);
  }
  const enums = new Map();
  const resolveValue = (name, depth = 0) => {
    const e = raw.get(name);
    if (!e || depth > 10) return undefined;
    if (/^-?\d+$/.test(e.value)) return Number(e.value);
    return resolveValue(e.value, depth + 1);
  };
  for (const [name, e] of raw) {
    const value = resolveValue(name);
    if (value !== undefined) enums.set(name, { name, type: e.type, value });
  }
  const enumTypes = new Set([...raw.values()].map((e) => e.type));

  const typedefs = new Map();
  for (const m of xml.matchAll(/<typedef ([^>]*?)\/?>/g)) {
    const a = attrs(m[1]);
    typedefs.set(a.name, a.type);
  }
  const structs = new Map();
  for (const m of xml.matchAll(/<struct ([^>]*?)(\/>|>([\s\S]*?)<\/struct>)/g)) {
    const head = attrs(m[1]);
    const fields = [...(m[3] ?? '').matchAll(/<field ([^>]*?)\/>/g)].map((f) => attrs(f[1]));
    structs.set(head.name, { name: head.name, fields });
  }
  return { functions, enums, enumTypes, typedefs, structs };
}
