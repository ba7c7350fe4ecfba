// Emits generated/index.js (the ESM entry: native functions + constants) and generated/index.d.ts.
import { EXTRA_EXPORTS, HANDLES } from './mapping.mjs';

const tsHandle = (i) => HANDLES[i].ts;

function tsArg(a) {
  switch (a.k) {
    case 'handle':
      return `${a.name}: ${tsHandle(a.handle)}`;
    case 'str':
      return `${a.name}: string | null`;
    case 'int':
      return `${a.name}${a.optional ? '?' : ''}: ${a.kind.endsWith('64') ? 'number | bigint' : 'number'}`;
    default:
      return undefined;
  }
}

function tsOut(o) {
  switch (o.k) {
    case 'out':
      return 'number';
    case 'uuidstr':
      return 'string';
    case 'struct':
      return o.struct.name;
    case 'list':
      return `${tsHandle(o.handle)}[]`;
    case 'strlist':
      return 'string[]';
  }
  throw new Error(o.k);
}

function tsRet(r) {
  switch (r.k) {
    case 'void':
      return 'void';
    case 'status':
    case 'uint':
      return 'number';
    case 'str':
      return 'string';
    case 'handle':
      return tsHandle(r.handle);
  }
  throw new Error(r.k);
}

function tsResult(p) {
  if (p.outs.length === 0) return tsRet(p.ret);
  if (p.outs.length === 1 && p.ret.k === 'status') return tsOut(p.outs[0]);
  const parts = [];
  if (p.ret.k !== 'status' && p.ret.k !== 'void') parts.push(`ret: ${tsRet(p.ret)}`);
  for (const o of p.outs) parts.push(`${o.name}: ${tsOut(o)}`);
  return `{ ${parts.join('; ')} }`;
}

/** Hand-written overrides (src/overrides.c, lib/*.js): their declarations. */
const OVERRIDE_DTS = `
/** Releases the handle now (otherwise garbage collection does). Using it afterwards throws a TypeError. */
export declare function virDomainFree(domain: VirDomain): void;
export declare function virNetworkFree(network: VirNetwork): void;
export declare function virNetworkPortFree(port: VirNetworkPort): void;
export declare function virDomainSnapshotFree(snapshot: VirDomainSnapshot): void;
export declare function virDomainCheckpointFree(checkpoint: VirDomainCheckpoint): void;
/** Closes the connection handle; domains still referencing it keep the connection open until they are freed. */
export declare function virConnectClose(conn: VirConnect): Promise<number>;

export interface DomainLifecycleEvent {
  /** the domain's name and UUID */
  name: string;
  uuid: string;
  /** virDomainEventType (VIR_DOMAIN_EVENT_DEFINED, _STARTED, _STOPPED, ...) */
  event: number;
  /** the detail enum of that event type (VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, ...) */
  detail: number;
}
/**
 * Registers a domain event callback (only VIR_DOMAIN_EVENT_ID_LIFECYCLE is supported), for every
 * domain when \`domain\` is null. The callback runs on the JavaScript thread. Resolves with the
 * callback id for virConnectDomainEventDeregisterAny. The registration does not keep the process alive.
 */
export declare function virConnectDomainEventRegisterAny(
  conn: VirConnect,
  domain: VirDomain | null,
  eventID: number,
  callback: (event: DomainLifecycleEvent) => void,
): Promise<number>;
export declare function virConnectDomainEventDeregisterAny(conn: VirConnect, callbackID: number): Promise<number>;
/** Calls \`callback(reason)\` (VIR_CONNECT_CLOSE_REASON_*) once when the connection closes. */
export declare function virConnectRegisterCloseCallback(conn: VirConnect, callback: (reason: number) => void): Promise<number>;
export declare function virConnectUnregisterCloseCallback(conn: VirConnect): Promise<number>;

/** Typed parameters by name: numbers (64-bit ones exact up to 2^53), booleans, strings. */
export type TypedParams = Record<string, number | boolean | string>;
/** flags: VIR_DOMAIN_AFFECT_CURRENT (0), _LIVE or _CONFIG. */
export declare function virDomainGetMemoryParameters(domain: VirDomain, flags?: number): Promise<TypedParams>;
export declare function virDomainGetBlkioParameters(domain: VirDomain, flags?: number): Promise<TypedParams>;
export declare function virDomainGetNumaParameters(domain: VirDomain, flags?: number): Promise<TypedParams>;
export declare function virDomainGetSchedulerParametersFlags(domain: VirDomain, flags?: number): Promise<TypedParams>;
/** Each value is converted to the type libvirt reports for that name; an unknown name rejects (VIR_ERR_INVALID_ARG). */
export declare function virDomainSetMemoryParameters(domain: VirDomain, params: Record<string, number | bigint | boolean | string>, flags?: number): Promise<void>;
export declare function virDomainSetBlkioParameters(domain: VirDomain, params: Record<string, number | bigint | boolean | string>, flags?: number): Promise<void>;
export declare function virDomainSetNumaParameters(domain: VirDomain, params: Record<string, number | bigint | boolean | string>, flags?: number): Promise<void>;
export declare function virDomainSetSchedulerParametersFlags(domain: VirDomain, params: Record<string, number | bigint | boolean | string>, flags?: number): Promise<void>;

/**
 * Opens the domain's console (devname null: the first) on a non-blocking stream. \`onData\` gets
 * (null, chunk) for each chunk, (null, null) at the end, (error) on failure, on the JavaScript thread.
 * flags: VIR_DOMAIN_CONSOLE_FORCE takes the console over from another client.
 */
export declare function virDomainOpenConsoleStream(
  domain: VirDomain,
  devname: string | null,
  flags: number,
  onData: (err: LibvirtError | null, chunk: Buffer | null) => void,
): Promise<VirStream>;
/** Stops reading and aborts the stream; the handle is unusable afterwards. */
export declare function virStreamClose(stream: VirStream): Promise<void>;
`;

export function emitDts(plans, overridden, api) {
  const structs = new Map();
  for (const p of plans) for (const o of p.outs) if (o.k === 'struct') structs.set(o.struct.name, o.struct);
  const out = [
    '// Generated by generator/generate.mjs from libvirt-api.xml: do not edit.',
    '/// <reference types="node" />',
    '',
    '/** A libvirt failure: `code` is a virErrorNumber (VIR_ERR_*), `domain` a virErrorDomain (VIR_FROM_*). */',
    'export interface LibvirtError extends Error {',
    "  name: 'LibvirtError';",
    '  code: number;',
    '  domain: number;',
    '  level: number;',
    '  /** the libvirt function that failed */',
    '  func: string;',
    '}',
    '/** True for errors raised by libvirt (as opposed to TypeErrors for bad arguments). */',
    'export declare function isLibvirtError(e: unknown): e is LibvirtError;',
    '',
    ...HANDLES.map((h) => `export interface ${h.ts} { readonly type: '${h.c}' }`),
    '',
    ...[...structs.values()].map(
      (st) => `export interface ${st.name} {\n${st.fields.map((f) => `  ${f.name}: number;`).join('\n')}\n}`,
    ),
    '',
    ...plans.map((p) => `export declare function ${p.name}(${p.args.map(tsArg).filter(Boolean).join(', ')}): Promise<${tsResult(p)}>;`),
    OVERRIDE_DTS,
    ...[...api.enums.values()].map((e) => `export declare const ${e.name}: ${e.value};`),
    '',
  ];
  return out.join('\n');
}

export function emitJs(plans, overridden, api) {
  const names = [...plans.map((p) => p.name), ...overridden.map((o) => o.name).filter((n) => n !== 'virDomainOpenConsole'), ...EXTRA_EXPORTS];
  return [
    '// Generated by generator/generate.mjs from libvirt-api.xml: do not edit.',
    "import { createRequire } from 'node:module';",
    'const require = createRequire(import.meta.url);',
    "const native = require('../build/Release/binding.node');",
    '',
    "export const isLibvirtError = (e) => e instanceof Error && e.name === 'LibvirtError' && typeof e.code === 'number';",
    ...names.map((n) => `export const ${n} = native.${n};`),
    '',
    ...[...api.enums.values()].map((e) => `export const ${e.name} = ${e.value};`),
    '',
  ].join('\n');
}
