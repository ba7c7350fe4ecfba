// How C types in libvirt-api.xml map to JavaScript, and which functions are hand-written instead.
// classify() returns either a generation plan or { skip: reason }.

/** A handle kind: `virDomain` -> virDomainPtr, VirDomain, virDomainRef and (unless said) virDomainFree. */
const handle = (c, free = `${c}Free`) => ({ type: `${c}Ptr`, c, ts: `V${c.slice(1)}`, ref: `${c}Ref`, free });

/** Object handles the binding wraps. Each is reference-counted by libvirt (virXxxRef / virXxxFree). */
export const HANDLES = [
  handle('virConnect', 'virConnectClose'),
  handle('virDomain'),
  handle('virNetwork'),
  handle('virNetworkPort'),
  handle('virDomainSnapshot'),
  handle('virDomainCheckpoint'),
  handle('virStream'),
  handle('virStoragePool'),
  handle('virInterface'),
  handle('virNodeDevice'),
  handle('virSecret'),
  handle('virNWFilter'),
  handle('virNWFilterBinding'),
];
const handleOf = (type) => HANDLES.findIndex((h) => h.type === type);

/** Written by hand in src/overrides.c (name -> what it does), like libvirt-python's override files. */
export const OVERRIDES = {
  virConnectClose: 'asynchronous; the handle is unusable afterwards, domains still holding the connection keep it open',
  virDomainFree: 'releases the handle now instead of at garbage collection',
  virNetworkFree: 'releases the handle now instead of at garbage collection',
  virNetworkPortFree: 'releases the handle now instead of at garbage collection',
  virDomainSnapshotFree: 'releases the handle now instead of at garbage collection',
  virDomainCheckpointFree: 'releases the handle now instead of at garbage collection',
  virConnectDomainEventRegisterAny: 'lifecycle events (event + detail) delivered on the JavaScript thread from libvirt\'s event-loop thread',
  virConnectDomainEventDeregisterAny: 'removes a callback registered with virConnectDomainEventRegisterAny',
  virConnectRegisterCloseCallback: 'tells JavaScript when the connection closed (libvirtd restarted, keepalive timeout)',
  virConnectUnregisterCloseCallback: 'removes the close callback',
  virDomainOpenConsole: 'as virDomainOpenConsoleStream: a non-blocking virStream read by libvirt\'s event loop, chunks delivered to a callback (virStreamClose ends it)',
  virDomainGetMemoryParameters: 'typed parameters as an object { name: value }',
  virDomainSetMemoryParameters: 'typed parameters from an object { name: value }, typed as libvirt reports them',
  virDomainGetBlkioParameters: 'typed parameters as an object { name: value }',
  virDomainSetBlkioParameters: 'typed parameters from an object { name: value }, typed as libvirt reports them',
  virDomainGetNumaParameters: 'typed parameters as an object { name: value }',
  virDomainSetNumaParameters: 'typed parameters from an object { name: value }, typed as libvirt reports them',
  virDomainGetSchedulerParametersFlags: 'typed parameters as an object { name: value } (count from virDomainGetSchedulerType)',
  virDomainSetSchedulerParametersFlags: 'typed parameters from an object { name: value }, typed as libvirt reports them',
};

/** Functions the overrides add that libvirt-api.xml does not name. */
export const EXTRA_EXPORTS = ['virDomainOpenConsoleStream', 'virStreamClose'];

const INT_TYPES = new Map([
  ['int', 'int32'],
  ['unsigned int', 'uint32'],
  ['long', 'int64'],
  ['unsigned long', 'uint64'],
  ['long long', 'int64'],
  ['unsigned long long', 'uint64'],
  ['size_t', 'uint64'],
  ['unsigned char', 'uint32'],
  ['unsigned short', 'uint32'],
  ['short', 'int32'],
  ['char', 'int32'],
]);

/** `int`, `unsigned long long`, an enum type or a typedef of one of those -> its reader kind. */
function intKind(type, api) {
  if (INT_TYPES.has(type)) return INT_TYPES.get(type);
  if (api.enumTypes.has(type)) return 'int32';
  const td = api.typedefs.get(type);
  if (td && INT_TYPES.has(td)) return INT_TYPES.get(td);
  return undefined;
}

const COUNT_NAME = /^(n[A-Za-z]*|max[A-Za-z]*|[a-z]*len|size)$/i;
const isCountArg = (a, api) => a && intKind(a.type, api) !== undefined && COUNT_NAME.test(a.name);

/** A struct made of integers only, so it can be returned as a plain object. */
function scalarStruct(ptrType, api) {
  const target = api.typedefs.get(ptrType);
  const m = target && /^(\w+) \*$/.exec(target);
  const st = m && api.structs.get(m[1]);
  if (!st || st.fields.length === 0) return undefined;
  const fields = [];
  for (const f of st.fields) {
    const kind = intKind(f.type, api);
    if (!kind) return undefined;
    fields.push({ name: f.name, kind });
  }
  return { name: st.name, fields };
}

/**
 * @returns {{skip: string} | {name: string, args: object[], ret: object, outs: object[]}}
 */
export function classify(fn, api) {
  if (/(Ref)$/.test(fn.name) && fn.args.length === 1 && handleOf(fn.args[0].type) >= 0)
    return { skip: 'reference counting is done by the binding (handles are released by free() or garbage collection)' };
  const args = [];
  const outs = [];
  for (let i = 0; i < fn.args.length; i++) {
    const a = fn.args[i];
    const prev = fn.args[i - 1];
    const next = fn.args[i + 1];
    const t = a.type;
    const h = handleOf(t);
    if (h >= 0) {
      args.push({ k: 'handle', name: a.name, handle: h });
      continue;
    }
    if (t === 'const char *') {
      args.push({ k: 'str', name: a.name });
      continue;
    }
    const ik = intKind(t, api);
    if (ik) {
      args.push({ k: 'int', name: a.name, ctype: t, kind: ik, optional: a.name === 'flags' && i === fn.args.length - 1 });
      continue;
    }
    // out-parameters: a single integer written by libvirt, unless the pointer is an array sized by a neighbour
    const pm = /^(.+) \*$/.exec(t);
    if (pm && intKind(pm[1], api) && !/char$/.test(pm[1])) {
      if (isCountArg(next, api) || isCountArg(prev, api))
        return { skip: `${a.name}: caller-sized array (${t} with a count argument); use the virConnectListAll*/typed variant` };
      if (/Params|Parameters|Stats|Info|Tune|PerfEvents|GuestVcpus/.test(fn.name) && /nparams/.test(a.name))
        return { skip: 'typed parameters (virTypedParameterPtr): hand-written families only' };
      outs.push({ k: 'out', name: a.name, ctype: pm[1], kind: intKind(pm[1], api) });
      args.push({ k: 'outref', name: a.name, out: outs.length - 1 });
      continue;
    }
    if (t === 'char *' && a.name === 'buf' && /GetUUIDString$/.test(fn.name)) {
      outs.push({ k: 'uuidstr', name: 'uuid' });
      args.push({ k: 'outref', name: a.name, out: outs.length - 1 });
      continue;
    }
    const st = scalarStruct(t, api);
    if (st) {
      outs.push({ k: 'struct', name: a.name, struct: st });
      args.push({ k: 'outref', name: a.name, out: outs.length - 1 });
      if (next && next.type === 'size_t' && next.name === 'size') {
        args.push({ k: 'sizeof', name: next.name, struct: st });
        i++;
      }
      continue;
    }
    const lm = /^(\w+Ptr) \*\*$/.exec(t);
    if (lm && handleOf(lm[1]) >= 0) {
      outs.push({ k: 'list', name: a.name, handle: handleOf(lm[1]) });
      args.push({ k: 'outref', name: a.name, out: outs.length - 1 });
      continue;
    }
    if (t === 'char ***') {
      outs.push({ k: 'strlist', name: a.name });
      args.push({ k: 'outref', name: a.name, out: outs.length - 1 });
      continue;
    }
    return { skip: `${a.name}: ${reasonFor(t)}` };
  }
  const rt = fn.ret.type;
  let ret;
  if (rt === 'void') ret = { k: 'void' };
  else if (rt === 'int') ret = { k: 'status' };
  else if (rt === 'char *') ret = { k: 'str', owned: true };
  else if (rt === 'const char *') ret = { k: 'str', owned: false };
  else if (handleOf(rt) >= 0) ret = { k: 'handle', handle: handleOf(rt) };
  else if (intKind(rt, api)) ret = { k: 'uint', ctype: rt };
  else return { skip: `returns ${rt}` };
  if (outs.some((o) => o.k === 'list' || o.k === 'strlist') && ret.k !== 'status')
    return { skip: 'list out-parameter without a count as result' };
  return { name: fn.name, args, ret, outs };
}

function reasonFor(type) {
  if (/TypedParameter/.test(type)) return 'typed parameters (virTypedParameterPtr): hand-written families only';
  if (/Callback|Func$/.test(type)) return `callback (${type}): needs a hand-written override`;
  if (type === 'void *') return 'opaque data pointer (callback data or raw buffer)';
  if (/^const char \*\*$/.test(type)) return 'string array argument (const char **)';
  if (/^char \*\*( const)?$/.test(type)) return `caller-sized string array (${type}); use the virConnectListAll*/virDomainListAll* variant`;
  if (/^unsigned char \*$/.test(type)) return 'raw byte buffer (unsigned char *): UUID bytes or CPU maps; the string forms are generated';
  if (/\*\*$/.test(type) || /Ptr \*$/.test(type)) return `array of structures or pointers (${type}) with its own free function`;
  if (/^(const )?unsigned char \*$/.test(type)) return `raw byte buffer (${type})`;
  if (/char \*\*|char \*$/.test(type)) return `caller-allocated string buffer or string array (${type})`;
  if (/Ptr$/.test(type)) return `structure (${type}) with non-integer fields or an unsupported handle`;
  return `unsupported type ${type}`;
}
