// Emits generated/functions.c: one async Node-API function per generated libvirt function.
// Each reads its arguments on the JavaScript thread (taking a reference on every handle), runs the
// libvirt call on a libuv worker thread, and resolves with the converted result or rejects with
// libvirt's error (code, domain, message) copied on that worker thread.
import { HANDLES } from './mapping.mjs';

/** The handle kinds runtime.h names (LVB_*), checked against HANDLES at compile time. */
const ENUM_KINDS = {
  LVB_CONNECT: 'virConnect',
  LVB_DOMAIN: 'virDomain',
  LVB_NETWORK: 'virNetwork',
  LVB_NETWORK_PORT: 'virNetworkPort',
  LVB_SNAPSHOT: 'virDomainSnapshot',
  LVB_CHECKPOINT: 'virDomainCheckpoint',
  LVB_STREAM: 'virStream',
};

const cHandle = (i) => `${HANDLES[i].c}Ptr`;

function field(a, fn) {
  switch (a.k) {
    case 'handle':
      return `  void *a_${a.name};`;
    case 'str':
      return `  char *a_${a.name};`;
    case 'int':
      return `  ${a.ctype} a_${a.name};`;
    default:
      return undefined;
  }
}

function outField(o) {
  switch (o.k) {
    case 'out':
      return `  ${o.ctype} o_${o.name};`;
    case 'uuidstr':
      return `  char o_${o.name}[VIR_UUID_STRING_BUFLEN];`;
    case 'struct':
      return `  ${o.struct.name} o_${o.name};`;
    case 'list':
      return `  ${cHandle(o.handle)} *o_${o.name};`;
    case 'strlist':
      return `  char **o_${o.name};`;
  }
  throw new Error(`unknown out ${o.k}`);
}

function retField(r) {
  switch (r.k) {
    case 'void':
      return '';
    case 'status':
      return '  int ret;';
    case 'str':
      return '  char *ret;';
    case 'handle':
      return '  void *ret;';
    case 'uint':
      return `  ${r.ctype} ret;`;
  }
  throw new Error(`unknown return ${r.k}`);
}

function callArg(a, p) {
  switch (a.k) {
    case 'handle':
      return `(${cHandle(a.handle)})c->a_${a.name}`;
    case 'str':
    case 'int':
      return `c->a_${a.name}`;
    case 'outref': {
      const o = p.outs[a.out];
      return o.k === 'uuidstr' ? `c->o_${o.name}` : `&c->o_${o.name}`;
    }
    case 'sizeof':
      return `sizeof(${a.struct.name})`;
  }
  throw new Error(`unknown arg ${a.k}`);
}

function execute(p) {
  const call = `${p.name}(${p.args.map((a) => callArg(a, p)).join(', ')})`;
  const lines = [];
  switch (p.ret.k) {
    case 'void':
      lines.push(`  ${call};`);
      break;
    case 'status':
      lines.push(`  c->ret = ${call};`, '  if (c->ret < 0) lvb_capture_error(b);');
      break;
    case 'str':
      if (p.ret.owned) lines.push(`  c->ret = ${call};`, '  if (!c->ret && virGetLastError()) lvb_capture_error(b);');
      else lines.push(`  const char *r = ${call};`, '  c->ret = lvb_strdup(r);', '  if (!r && virGetLastError()) lvb_capture_error(b);');
      break;
    case 'handle':
      lines.push(`  c->ret = ${call};`, '  if (!c->ret) lvb_capture_error(b);');
      break;
    case 'uint':
      lines.push(`  c->ret = ${call};`, '  if (virGetLastError()) lvb_capture_error(b);');
      break;
  }
  // the call's references on its handle arguments, dropped here: the last one may talk to libvirtd
  for (const a of p.args) if (a.k === 'handle') lines.push(`  lvb_unref(${a.handle}, c->a_${a.name});`);
  return lines.join('\n');
}

function outValue(o) {
  switch (o.k) {
    case 'out':
      return `lvb_num(env, (double)c->o_${o.name})`;
    case 'uuidstr':
      return `lvb_str(env, c->o_${o.name})`;
    case 'struct':
      return `s_${o.struct.name}(env, &c->o_${o.name})`;
    case 'list':
      return `l_${o.handle}(env, (void **)c->o_${o.name}, c->ret), c->o_${o.name} = NULL`;
    case 'strlist':
      return `lvb_strlist(env, c->o_${o.name}, c->ret), c->o_${o.name} = NULL`;
  }
  throw new Error(`unknown out ${o.k}`);
}

function retValue(r) {
  switch (r.k) {
    case 'void':
      return 'NULL';
    case 'status':
    case 'uint':
      return 'lvb_num(env, (double)c->ret)';
    case 'str':
      return 'lvb_str(env, c->ret)';
    case 'handle': {
      return `(v = lvb_wrap(env, ${r.handle}, c->ret), c->ret = NULL, v)`;
    }
  }
  throw new Error(`unknown return ${r.k}`);
}

function result(p) {
  const lines = ['  napi_value v = NULL;', '  (void)v;'];
  const outs = p.outs;
  if (outs.length === 0) {
    lines.push(`  return ${retValue(p.ret)};`);
  } else if (outs.length === 1 && p.ret.k === 'status') {
    lines.push(`  return (v = ${outValue(outs[0])}, v);`);
  } else {
    lines.push('  napi_value obj, x;', '  napi_create_object(env, &obj);');
    if (p.ret.k !== 'status' && p.ret.k !== 'void')
      lines.push(`  x = ${retValue(p.ret)};`, '  napi_set_named_property(env, obj, "ret", x);');
    for (const o of outs) lines.push(`  x = (v = ${outValue(o)}, v);`, `  napi_set_named_property(env, obj, "${o.name}", x);`);
    lines.push('  return obj;');
  }
  return lines.join('\n');
}

function cleanup(p) {
  const lines = [];
  for (const a of p.args) if (a.k === 'str') lines.push(`  free(c->a_${a.name});`);
  if (p.ret.k === 'str') lines.push('  free(c->ret);');
  if (p.ret.k === 'handle') lines.push(`  lvb_release_later(${p.ret.handle}, c->ret);`);
  for (const o of p.outs) {
    if (o.k === 'list')
      lines.push(`  if (c->o_${o.name}) { for (int i = 0; i < c->ret; i++) lvb_release_later(${o.handle}, c->o_${o.name}[i]); free(c->o_${o.name}); }`);
    if (o.k === 'strlist') lines.push(`  if (c->o_${o.name}) { for (int i = 0; i < c->ret; i++) free(c->o_${o.name}[i]); free(c->o_${o.name}); }`);
  }
  return lines.join('\n');
}

function reader(p) {
  const lines = [];
  let idx = 0;
  const taken = [];
  for (const a of p.args) {
    if (a.k === 'handle') {
      lines.push(`  if (lvb_arg_handle(env, argv[${idx++}], ${a.handle}, &c->a_${a.name}, F, "${a.name}")) goto fail;`);
      taken.push(`  lvb_release_later(${a.handle}, c->a_${a.name});`);
    } else if (a.k === 'str') {
      lines.push(`  if (lvb_arg_string(env, argv[${idx++}], &c->a_${a.name}, F, "${a.name}")) goto fail;`);
      taken.push(`  free(c->a_${a.name});`);
    } else if (a.k === 'int') {
      const signed = a.kind.startsWith('int');
      const t = signed ? 'int64_t' : 'uint64_t';
      const rd = signed ? 'lvb_arg_i64' : 'lvb_arg_u64';
      const range =
        a.kind === 'int32'
          ? `t_${a.name} < INT32_MIN || t_${a.name} > INT32_MAX`
          : a.kind === 'uint32'
            ? `t_${a.name} > UINT32_MAX`
            : '0';
      lines.push(
        `  { ${t} t_${a.name};`,
        `    if (${rd}(env, argv[${idx++}], &t_${a.name}, F, "${a.name}", ${a.optional ? 1 : 0})) goto fail;`,
        `    if (${range}) { napi_throw_range_error(env, NULL, "${p.name}: ${a.name} out of range"); goto fail; }`,
        `    c->a_${a.name} = (${a.ctype})t_${a.name}; }`,
      );
    }
  }
  return { lines: lines.join('\n'), argc: idx, undo: taken.join('\n') };
}

function emitFunction(p) {
  const r = reader(p);
  const fields = [
    '  lvb_call base;',
    ...p.args.map((a) => field(a, p)).filter(Boolean),
    ...p.outs.map(outField),
    retField(p.ret),
  ].filter(Boolean);
  return `
/* ---- ${p.name} ---- */
typedef struct {
${fields.join('\n')}
} c_${p.name};

static void x_${p.name}(lvb_call *b) {
  c_${p.name} *c = (c_${p.name} *)b;
${execute(p)}
}

static napi_value r_${p.name}(napi_env env, lvb_call *b) {
  c_${p.name} *c = (c_${p.name} *)b;
  (void)c;
${result(p)}
}

static void k_${p.name}(lvb_call *b) {
  c_${p.name} *c = (c_${p.name} *)b;
  (void)c;
${cleanup(p)}
}

static napi_value j_${p.name}(napi_env env, napi_callback_info info) {
  static const char F[] = "${p.name}";
  size_t argc = ${Math.max(r.argc, 1)};
  napi_value argv[${Math.max(r.argc, 1)}];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  c_${p.name} *c = calloc(1, sizeof *c);
  if (!c) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  c->base.fname = F;
  c->base.execute = x_${p.name};
  c->base.result = r_${p.name};
  c->base.cleanup = k_${p.name};
${r.lines}
  return lvb_queue(env, &c->base);
fail:
${r.undo}
  free(c);
  return NULL;
}
`;
}

function emitStruct(st) {
  return `
static napi_value s_${st.name}(napi_env env, const ${st.name} *s) {
  napi_value obj;
  napi_create_object(env, &obj);
${st.fields.map((f) => `  napi_set_named_property(env, obj, "${f.name}", lvb_num(env, (double)s->${f.name}));`).join('\n')}
  return obj;
}
`;
}

export function emitC(plans) {
  const structs = new Map();
  const lists = new Set();
  for (const p of plans)
    for (const o of p.outs) {
      if (o.k === 'struct') structs.set(o.struct.name, o.struct);
      if (o.k === 'list') lists.add(o.handle);
    }
  const kinds = HANDLES.map(
    (h, i) => `static int ref_${i}(void *p) { return ${h.ref}((${h.c}Ptr)p); }
static int rel_${i}(void *p) { return ${h.free}((${h.c}Ptr)p); }`,
  );
  return `/* Generated by generator/generate.mjs from libvirt-api.xml: do not edit. */
#include "../src/runtime.h"
#include <stdlib.h>
#include <string.h>

${kinds.join('\n')}
const lvb_kind_t lvb_kinds[] = {
${HANDLES.map((h, i) => `  {"${h.c}", ref_${i}, rel_${i}},`).join('\n')}
};
const int lvb_nkinds = ${HANDLES.length};
/* runtime.h names the kinds the overrides use: they must be where this table has them */
_Static_assert(${Object.entries(ENUM_KINDS).map(([e, c]) => `${e} == ${HANDLES.findIndex((h) => h.c === c)}`).join(' && ')}, "runtime.h's LVB_* kinds follow generator/mapping.mjs's HANDLES order");

static napi_value lvb_strlist(napi_env env, char **list, int n) {
  napi_value arr;
  napi_create_array_with_length(env, n < 0 ? 0 : (size_t)n, &arr);
  for (int i = 0; i < n; i++) {
    napi_set_element(env, arr, (uint32_t)i, lvb_str(env, list[i]));
    free(list[i]);
  }
  free(list);
  return arr;
}
${[...lists]
  .map(
    (h) => `
static napi_value l_${h}(napi_env env, void **list, int n) {
  napi_value arr;
  napi_create_array_with_length(env, n < 0 ? 0 : (size_t)n, &arr);
  for (int i = 0; i < n; i++) napi_set_element(env, arr, (uint32_t)i, lvb_wrap(env, ${h}, list[i]));
  free(list);
  return arr;
}`,
  )
  .join('\n')}
${[...structs.values()].map(emitStruct).join('')}
${plans.map(emitFunction).join('')}

void lvb_register_generated(napi_env env, napi_value exports) {
  static const napi_property_descriptor props[] = {
${plans.map((p) => `    {"${p.name}", NULL, j_${p.name}, NULL, NULL, NULL, napi_enumerable, NULL},`).join('\n')}
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
`;
}
