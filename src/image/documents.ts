/**
 * The JSON documents of an image (index, manifest, image config, descriptors), parsed once into
 * typed values with errors that name the blob and the field. Only what we use is typed; unknown
 * fields are ignored as the spec requires.
 */
import { InputError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';
import { isConfigType, isIndexType, isManifestType } from './media-types.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations: Record<string, string>;
  urls?: string[];
}

export interface ImageIndex {
  manifests: Descriptor[];
}

export interface ImageManifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** The image config's `config` object (conversion.md names the fields we read). */
export interface ExecConfig {
  User?: string;
  ExposedPorts?: Record<string, unknown>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, unknown>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  /** Docker's HEALTHCHECK (not in the OCI spec): Test, Interval, Timeout, StartPeriod, Retries. */
  Healthcheck?: Record<string, unknown>;
}

export interface ImageConfig {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
  author?: string;
  created?: string;
  config: ExecConfig;
  diffIds: Digest[];
}

type Where = { file?: string; field?: string };
type Obj = Record<string, unknown>;

function at(where: Where, field: string): Where {
  return { file: where.file, field: where.field ? `${where.field}.${field}` : field };
}

export function parseJson(bytes: Buffer, where: Where): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new InputError(`not valid JSON (${(e as Error).message})`, where);
  }
}

function object(v: unknown, where: Where): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InputError('must be a JSON object', where);
  return v as Obj;
}

function optString(o: Obj, key: string, where: Where): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InputError('must be a string', at(where, key));
  return v;
}

function optStringArray(o: Obj, key: string, where: Where): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new InputError('must be an array of strings', at(where, key));
  return v as string[];
}

function optStringMap(o: Obj, key: string, where: Where): Record<string, string> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  const m = object(v, at(where, key));
  for (const [k, val] of Object.entries(m))
    if (typeof val !== 'string') throw new InputError('must be a string', at(where, `${key}[${JSON.stringify(k)}]`));
  return m as Record<string, string>;
}

function optObjectKeys(o: Obj, key: string, where: Where): Record<string, unknown> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  return object(v, at(where, key));
}

function parsePlatform(v: unknown, where: Where): Platform {
  const o = object(v, where);
  const os = optString(o, 'os', where);
  const architecture = optString(o, 'architecture', where);
  if (os === undefined) throw new InputError('required string', at(where, 'os'));
  if (architecture === undefined) throw new InputError('required string', at(where, 'architecture'));
  const p: Platform = { os, architecture };
  const variant = optString(o, 'variant', where);
  if (variant) p.variant = variant;
  const osVersion = optString(o, 'os.version', where);
  if (osVersion) p.osVersion = osVersion;
  const osFeatures = optStringArray(o, 'os.features', where);
  if (osFeatures) p.osFeatures = osFeatures;
  return p;
}

export function parseDescriptor(v: unknown, where: Where): Descriptor {
  const o = object(v, where);
  const mediaType = optString(o, 'mediaType', where);
  if (mediaType === undefined) throw new InputError('required string', at(where, 'mediaType'));
  const digest = parseDigest(o.digest, at(where, 'digest'));
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw new InputError('must be a non-negative integer', at(where, 'size'));
  const d: Descriptor = { mediaType, digest, size, annotations: optStringMap(o, 'annotations', where) ?? {} };
  if (o.platform !== undefined && o.platform !== null) d.platform = parsePlatform(o.platform, at(where, 'platform'));
  const urls = optStringArray(o, 'urls', where);
  if (urls) d.urls = urls;
  return d;
}

function checkSchemaVersion(o: Obj, where: Where): void {
  if (o.schemaVersion !== 2) throw new InputError(`unsupported schemaVersion ${JSON.stringify(o.schemaVersion)} (only 2)`, at(where, 'schemaVersion'));
}

/**
 * A document's own `mediaType` must agree with the descriptor that led to it (CVE-2021-41190:
 * an ambiguous blob read as an index by one tool and a manifest by another).
 */
function checkEmbeddedType(o: Obj, expected: string | undefined, where: Where): string | undefined {
  const own = optString(o, 'mediaType', where);
  if (own !== undefined && expected !== undefined && own !== expected)
    throw new InputError(`says mediaType ${JSON.stringify(own)} but was referenced as ${JSON.stringify(expected)}`, at(where, 'mediaType'));
  return own;
}

export function parseIndex(v: unknown, descriptorType: string | undefined, where: Where): ImageIndex {
  const o = object(v, where);
  checkSchemaVersion(o, where);
  const own = checkEmbeddedType(o, descriptorType, where);
  if (own !== undefined && !isIndexType(own)) throw new InputError(`is not an index (mediaType ${JSON.stringify(own)})`, where);
  if ('config' in o || 'layers' in o) throw new InputError('has "config" or "layers": a manifest, not an index', where);
  if (!Array.isArray(o.manifests)) throw new InputError('required array', at(where, 'manifests'));
  return { manifests: o.manifests.map((m, i) => parseDescriptor(m, at(where, `manifests[${i}]`))) };
}

export function parseManifest(v: unknown, descriptorType: string | undefined, where: Where): ImageManifest {
  const o = object(v, where);
  checkSchemaVersion(o, where);
  const own = checkEmbeddedType(o, descriptorType, where);
  const mediaType = own ?? descriptorType;
  if (mediaType !== undefined && !isManifestType(mediaType))
    throw new InputError(`is not an image manifest (mediaType ${JSON.stringify(mediaType)})`, where);
  if ('manifests' in o) throw new InputError('has "manifests": an index, not a manifest', where);
  const config = parseDescriptor(o.config, at(where, 'config'));
  if (!isConfigType(config.mediaType))
    throw new InputError(`unsupported config media type ${JSON.stringify(config.mediaType)}: not a container image`, at(where, 'config.mediaType'));
  if (!Array.isArray(o.layers)) throw new InputError('required array', at(where, 'layers'));
  const layers = o.layers.map((l, i) => parseDescriptor(l, at(where, `layers[${i}]`)));
  return { mediaType: mediaType ?? '', config, layers };
}

export function parseImageConfig(v: unknown, where: Where): ImageConfig {
  const o = object(v, where);
  const os = optString(o, 'os', where);
  const architecture = optString(o, 'architecture', where);
  if (os === undefined) throw new InputError('required string', at(where, 'os'));
  if (architecture === undefined) throw new InputError('required string', at(where, 'architecture'));
  const rootfs = object(o.rootfs, at(where, 'rootfs'));
  if (rootfs.type !== 'layers') throw new InputError('must be "layers"', at(where, 'rootfs.type'));
  if (!Array.isArray(rootfs.diff_ids)) throw new InputError('required array', at(where, 'rootfs.diff_ids'));
  const diffIds = rootfs.diff_ids.map((d, i) => parseDigest(d, at(where, `rootfs.diff_ids[${i}]`)));
  const cw = at(where, 'config');
  const c = o.config === undefined || o.config === null ? {} : object(o.config, cw);
  const exec: ExecConfig = {};
  const user = optString(c, 'User', cw);
  if (user !== undefined) exec.User = user;
  const env = optStringArray(c, 'Env', cw);
  if (env) exec.Env = env;
  const entrypoint = optStringArray(c, 'Entrypoint', cw);
  if (entrypoint) exec.Entrypoint = entrypoint;
  const cmd = optStringArray(c, 'Cmd', cw);
  if (cmd) exec.Cmd = cmd;
  const wd = optString(c, 'WorkingDir', cw);
  if (wd !== undefined) exec.WorkingDir = wd;
  const labels = optStringMap(c, 'Labels', cw);
  if (labels) exec.Labels = labels;
  const ports = optObjectKeys(c, 'ExposedPorts', cw);
  if (ports) exec.ExposedPorts = ports;
  const volumes = optObjectKeys(c, 'Volumes', cw);
  if (volumes) exec.Volumes = volumes;
  const stop = optString(c, 'StopSignal', cw);
  if (stop !== undefined) exec.StopSignal = stop;
  const health = optObjectKeys(c, 'Healthcheck', cw);
  if (health) {
    optStringArray(health, 'Test', at(cw, 'Healthcheck'));
    exec.Healthcheck = health;
  }
  const cfg: ImageConfig = { os, architecture, config: exec, diffIds };
  const variant = optString(o, 'variant', where);
  if (variant) cfg.variant = variant;
  const osVersion = optString(o, 'os.version', where);
  if (osVersion) cfg.osVersion = osVersion;
  const osFeatures = optStringArray(o, 'os.features', where);
  if (osFeatures) cfg.osFeatures = osFeatures;
  const author = optString(o, 'author', where);
  if (author !== undefined) cfg.author = author;
  const created = optString(o, 'created', where);
  if (created !== undefined) cfg.created = created;
  return cfg;
}
