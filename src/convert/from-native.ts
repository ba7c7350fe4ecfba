/**
 * from-native: an OCI runtime config -> a libvirt-lxc domain (mapping notes §1, §2).
 *
 * One pass per OCI section writes its part of the domain; a defaults pass makes it look like
 * libvirt's dumpxml. Then the passes run in reverse on that domain: wherever the config they
 * derive differs from the original, the metadata keeps the original (an `exact` value guarded
 * by what the XML says, or a `residual` field the XML cannot carry at all), so to-native gives
 * the original config back. Each field kept that way is a warning; `strict` refuses them.
 */
import { basename, posix } from 'node:path';
import { InputError } from '../errors.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import { buildDomainXml } from '../xml/build.js';
import type { OwnMount } from '../xml/metadata.js';
import { emptyDomain, type Domain } from '../xml/domain.js';
import { libvirtArch, Warnings, type ForwardContext, type FromNativeOptions, refuse } from './context.js';
import { applyLibvirtDefaults } from './defaults.js';
import { deriveConfig } from './derive.js';
import { guardOf } from './guard.js';
import { detectCgroupVersion } from './host.js';
import { isValidDomainName, sanitizeDomainName } from './identity.js';
import { canonicalJson, diff, escapeToken, isPlainObject, pointerToField, setAt, sha256Hex } from './json.js';
import { PASSES } from './passes/index.js';
import { encodeShimSpec } from '../shim/spec.js';
import { containerDir, DEFAULT_LOG_FILE_BYTES, GRANTABLE_CAPS, isShimSysctl, SHIM_MOUNT, withShim } from '../shim/domain.js';

export type { FromNativeOptions } from './context.js';

const OCI_VERSION = /^1\.[0-3]\.\d+(?:[-+].*)?$/;
const OTHER_PLATFORMS = ['solaris', 'windows', 'vm', 'zos', 'freebsd'] as const;

export interface FromNativeResult {
  domain: Domain;
  xml: string;
  warnings: string[];
}

function domainName(config: RuntimeConfig, opts: FromNativeOptions): string {
  if (opts.name !== undefined) {
    if (!isValidDomainName(opts.name))
      throw new InputError(`'${opts.name}' is not a valid domain name: use 1 to 63 of [a-z0-9-], not starting with '-'`, { field: 'name' });
    return opts.name;
  }
  if (config.hostname !== undefined && isValidDomainName(config.hostname)) return config.hostname;
  const fromId = opts.id === undefined ? undefined : sanitizeDomainName(opts.id);
  const name = fromId ?? sanitizeDomainName(basename(opts.bundleDir));
  if (name === undefined) throw new InputError('no valid domain name can be derived; pass one with --name', { file: opts.file, field: 'name' });
  return name;
}

/** The config as from-native reads it: a copy with `root.path` made absolute. */
export function canonicalInput(config: RuntimeConfig, bundleDir: string): RuntimeConfig {
  const copy = structuredClone(config);
  if (copy.root?.path !== undefined) copy.root.path = posix.resolve(bundleDir, copy.root.path);
  return copy;
}

/** sha256 of the canonical config: the reconciler's "has the desired state changed" digest. */
/**
 * Bump when a change to the converter changes the XML it makes for the same config: the digest
 * then changes too, so the reconciler redefines instead of taking the difference for a hand edit.
 */
export const CONVERTER_VERSION = 2; // 2: every domain runs the init shim

/**
 * Digest of everything the desired definition is made from: the config, the conversion inputs
 * and the converter's version. Stored in the metadata; equal digests mean the same desired domain.
 */
export function desiredDigest(
  config: RuntimeConfig,
  inputs: { name: string; bundle: string; cgroupVersion: number; hostArch: string; settings?: string; ownMounts?: readonly OwnMount[]; shim?: string; logFileBytes?: number },
): string {
  return `sha256:${sha256Hex(canonicalJson({ converter: CONVERTER_VERSION, config, ...inputs }))}`;
}

/** Spec structures (not free-form maps like sysctl or annotations) whose members are warned one by one. */
const STRUCTS = /^(?:\/process(?:\/user|\/capabilities)?|\/linux(?:\/resources(?:\/(?:memory|cpu|blockIO))?)?|\/hooks)?$/;

/** The fields of a value kept in the residual, for warnings: spec structures member by member. */
function leafFields(path: string, value: unknown): string[] {
  if (STRUCTS.test(path) && isPlainObject(value) && Object.keys(value).length)
    return Object.entries(value).flatMap(([k, v]) => leafFields(`${path}/${escapeToken(k)}`, v));
  return [pointerToField(path)];
}

/** Fields the init shim enforces (src/shim/): kept in the metadata for to-native, but no warning. */
const SHIM_ENFORCED = ['process.rlimits', 'process.noNewPrivileges', 'process.oomScoreAdj', 'process.user.additionalGids', 'process.user.umask', 'process.capabilities', 'process.env', 'linux.seccomp'];

function enforcedByShim(field: string): boolean {
  return SHIM_ENFORCED.some((f) => field === f || field.startsWith(f + '.') || field.startsWith(f + '['));
}

/** Values that ask for nothing (`false`, `[]`, `{}`): kept, but nothing to warn about. */
function isNoOp(value: unknown): boolean {
  return value === false || (Array.isArray(value) && value.length === 0) || (isPlainObject(value) && Object.keys(value).length === 0);
}

export function fromNative(config: RuntimeConfig, opts: FromNativeOptions): FromNativeResult {
  const where = { opts };
  if (typeof config.ociVersion !== 'string' || !OCI_VERSION.test(config.ociVersion))
    refuse(where, 'ociVersion', `'${String(config.ociVersion)}' is not a supported runtime-spec version (1.0.x to 1.3.x)`);
  for (const p of OTHER_PLATFORMS)
    if (config[p] !== undefined) refuse(where, p, 'only Linux containers can run under libvirt-lxc');
  if (!opts.bundleDir.startsWith('/')) throw new Error(`fromNative: bundleDir must be absolute, got '${opts.bundleDir}'`);

  const original = canonicalInput(config, opts.bundleDir);
  const name = domainName(original, opts);
  const warnings = new Warnings();
  const ctx: ForwardContext = {
    opts,
    id: opts.id ?? name,
    cgroupVersion: opts.cgroupVersion ?? detectCgroupVersion(),
    hostArch: opts.hostArch ?? libvirtArch(),
    warnings,
  };
  if (opts.shim !== undefined)
    (original.mounts ?? []).forEach((m, i) => {
      const dest = posix.normalize(m.destination ?? '');
      if (dest === SHIM_MOUNT || dest.startsWith(SHIM_MOUNT + '/')) refuse(where, `mounts[${i}].destination`, `${SHIM_MOUNT} is where ocivirt's init shim is mounted`);
    });
  const d = emptyDomain(name);
  for (const pass of PASSES) pass.forward(original, d, ctx);
  applyLibvirtDefaults(d, ctx.hostArch);

  const meta = d.metadata.ours!;
  Object.assign(meta, {
    ociVersion: original.ociVersion,
    id: ctx.id,
    bundle: opts.bundleDir,
    cgroupVersion: ctx.cgroupVersion,
    ...(opts.owner ? { entry: opts.owner.entry } : {}),
    ...(opts.owner?.instance ? { instance: opts.owner.instance } : {}),
    // the entry's settings file (when it has one) is part of what the domain is made from
    desiredDigest: desiredDigest(original, {
      name,
      bundle: opts.bundleDir,
      cgroupVersion: ctx.cgroupVersion,
      hostArch: ctx.hostArch,
      ...(opts.owner?.settingsDigest !== undefined ? { settings: opts.owner.settingsDigest } : {}),
      ...(opts.ownMounts?.length ? { ownMounts: opts.ownMounts } : {}),
      ...(opts.shim !== undefined ? { shim: opts.shim.stateDir, logFileBytes: opts.shim.logFileBytes ?? DEFAULT_LOG_FILE_BYTES } : {}),
    }),
    ...(opts.owner?.imageDigest ? { imageDigest: opts.owner.imageDigest } : {}),
    ...(opts.ownMounts?.length ? { ownMounts: opts.ownMounts.map((o) => ({ source: o.source, target: o.target })) } : {}),
  });

  // What the XML does not carry exactly, the metadata keeps.
  const derived = deriveConfig(d, { meta, id: ctx.id, cgroupVersion: ctx.cgroupVersion, hostArch: ctx.hostArch, warnings: new Warnings(), opts });
  const residual: Record<string, unknown> = {};
  for (const dif of diff(original, derived)) {
    if (dif.derived === undefined) {
      setAt(residual, dif.path, dif.original);
      if (!isNoOp(dif.original))
        for (const field of leafFields(dif.path, dif.original)) {
          if (opts.shim !== undefined && field === 'linux.sysctl') {
            for (const key of Object.keys(original.linux?.sysctl ?? {}).filter((k) => !isShimSysctl(k, original)))
              warnings.add(`linux.sysctl[${JSON.stringify(key)}]`, 'not set by the init shim (libvirt-lxc mounts /proc/sys read-only but for net.*, which is the container\'s own only with its own network namespace); kept in the domain metadata');
          } else if (!warnings.covers(field) && !(opts.shim !== undefined && enforcedByShim(field)))
            warnings.add(field, 'not enforced by libvirt-lxc; kept in the domain metadata');
        }
    } else meta.exact.push({ field: dif.path, xmlValue: guardOf(dif.derived), value: dif.original });
  }
  if (Object.keys(residual).length) meta.residual = residual;
  if (opts.shim !== undefined) {
    // what the shim cannot load (SCMP_ACT_NOTIFY, a listener …) is refused now, naming the field
    try {
      encodeShimSpec(original, { capabilities: { grantable: GRANTABLE_CAPS } });
    } catch (e) {
      throw e instanceof InputError && opts.file !== undefined ? e.inFile(opts.file) : e;
    }
    withShim(d, original, containerDir(opts.shim.stateDir, name), opts.shim.logFileBytes ?? DEFAULT_LOG_FILE_BYTES);
  }

  if (opts.strict && warnings.list.length) {
    const first = warnings.list[0]!;
    throw new InputError(`${first.message} (refused by --strict)`, { file: opts.file, field: first.field });
  }
  return { domain: d, xml: buildDomainXml(d), warnings: warnings.lines() };
}
