/**
 * `unpackImage`: any image source -> a verified runtime bundle (`rootfs/` + `config.json`), built
 * in a staging directory beside the target and swapped in only when everything passed. The CLI
 * and the daemon both call this.
 */
import { chmod, lstat, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../errors.js';
import { readUserDb } from '../fsroot/userdb.js';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { applyLayer, type ApplyLayerOptions, type LayerStats } from '../layer/index.js';
import type { EventLogger } from '../log.js';
import { IMAGE_CONVERTER_VERSION, imageConfigToRuntimeConfig } from '../convert/image-config.js';
import { validateRuntimeConfig } from '../oci/validate.js';
import {
  bundlePaths,
  checkReplaceable,
  commitStaging,
  createStaging,
  discardStaging,
  lockBundle,
  readRecord,
  repairBundle,
  RECORD_FILE,
  type BundlePaths,
  type UnpackRecord,
} from './bundle-dir.js';
import type { ExecConfig, Platform } from './documents.js';
import { sha256Hex, VerifyingStream, type Digest } from './digest.js';
import { DEFAULT_MAX_RATIO, openLayerStream } from './layer-stream.js';
import type { Compression } from './media-types.js';
import { formatPlatform, hostPlatform, parsePlatform } from './platform.js';
import { resolveImage, type ResolvedImage, type ResolvedLayer } from './resolve.js';
import { openImageSource, type ImageSource, type SourceFormat } from './source.js';


export interface LayerProgress {
  layer: number;
  layers: number;
  label: string;
  /** Compressed bytes read so far and in total (total unknown for some legacy layers). */
  bytes: number;
  totalBytes: number | undefined;
  done: boolean;
}

export interface UnpackOptions {
  /** `org.opencontainers.image.ref.name` or a docker RepoTag. */
  ref?: string;
  /** `os/arch[/variant]`; the host's platform by default. */
  platform?: string;
  /** Unpack even if the bundle already holds this manifest. */
  force?: boolean;
  /**
   * The bundle directory is a parent: each image version (manifest digest, plus options that
   * change the tree) is unpacked into its own `<bundleDir>/<version>/`, so a new version never
   * replaces a tree a running container may still use. Old versions are the caller's to collect.
   */
  versioned?: boolean;
  /** Create device nodes from layers (skipped with a warning by default). */
  allowDevices?: boolean;
  /** Limits per layer: the applier's, and the inflation ratio (their defaults otherwise). */
  limits?: ApplyLayerOptions['limits'] & { maxRatio?: number };
  maxJsonBytes?: number;
  /** Where gzip-compressed archives are inflated (and kept while unchanged); a temporary directory otherwise. */
  inflateCacheDir?: string | undefined;
  log?: EventLogger;
  /** Stops the unpack: the layer worker is terminated and the staging directory discarded. */
  signal?: AbortSignal | undefined;
  onProgress?: (p: LayerProgress) => void;
  onWarning?: (message: string) => void;
}

export interface UnpackedLayer {
  index: number;
  mediaType: string;
  digest: string | undefined;
  diffId: string;
  compression: Compression;
  compressedBytes: number;
  uncompressedBytes: number;
  durationMs: number;
}

export interface UnpackResult {
  bundleDir: string;
  source: string;
  format: SourceFormat;
  manifestDigest: string;
  configDigest: string;
  platform: string;
  refs: string[];
  /** The image config's process part (Entrypoint, Cmd, Env …): settings apply over it. */
  exec: ExecConfig;
  layers: UnpackedLayer[];
  /** The bundle already held this manifest, so no layer was unpacked. */
  skipped: boolean;
  /** Skipped, but its config.json (made by another converter version) was derived again. */
  reconverted?: boolean;
  warnings: string[];
  durations: { resolveMs: number; layersMs: number; configMs: number; commitMs: number; totalMs: number };
}

function optionsKey(opts: UnpackOptions): string {
  return JSON.stringify({ allowDevices: opts.allowDevices === true });
}

const DEFAULT_OPTIONS_KEY = optionsKey({});

/** `<16 hex of the manifest digest>`, plus a hash of the options when they are not the defaults. */
export function bundleVersionName(manifest: Digest, key: string = DEFAULT_OPTIONS_KEY): string {
  const short = manifest.encoded.slice(0, 16);
  return key === DEFAULT_OPTIONS_KEY ? short : `${short}-${sha256Hex(key).slice(0, 8)}`;
}

/** A version directory's name as `bundleVersionName` makes them. */
export const BUNDLE_VERSION_NAME = /^[0-9a-f]{16}(-[0-9a-f]{8})?$/;

/** Puts back what a crash left at the target, then makes sure the target may be replaced. */
async function prepareTarget(paths: BundlePaths, sourcePath: string, opts: UnpackOptions): Promise<void> {
  for (const m of await repairBundle(paths)) opts.log?.warn('image.repaired', { entry: sourcePath, bundle: paths.target, repair: m }, m);
  await checkReplaceable(paths);
}

/** The parent of versioned bundles is a real directory (or absent), never a file or a link. */
async function checkVersionsParent(dir: string): Promise<void> {
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st !== undefined && !st.isDirectory()) throw new InputError('exists and is not a directory', { file: dir });
}

async function bundleComplete(target: string): Promise<boolean> {
  try {
    return (await stat(join(target, 'config.json'))).isFile() && (await stat(join(target, 'rootfs'))).isDirectory();
  } catch {
    return false;
  }
}

export async function unpackImage(sourcePath: string, bundleDir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const t0 = performance.now();
  const wanted: Platform = opts.platform ? parsePlatform(opts.platform) : hostPlatform();
  const explicitVariant = opts.platform !== undefined && wanted.variant !== undefined;
  const paths = bundlePaths(bundleDir);

  const unlock = await lockBundle(paths);
  try {
    return await unpackLocked(sourcePath, paths, opts, wanted, explicitVariant, t0);
  } finally {
    await unlock();
  }
}

async function unpackLocked(
  sourcePath: string,
  given: BundlePaths,
  opts: UnpackOptions,
  wanted: Platform,
  explicitVariant: boolean,
  t0: number,
): Promise<UnpackResult> {
  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    opts.onWarning?.(m);
  };
  if (opts.versioned) await checkVersionsParent(given.target);
  else await prepareTarget(given, sourcePath, opts);

  const source = await openImageSource(sourcePath, {
    ...(opts.maxJsonBytes !== undefined ? { maxJsonBytes: opts.maxJsonBytes } : {}),
    inflate: {
      cacheDir: opts.inflateCacheDir,
      maxRatio: opts.limits?.maxRatio,
      minFreeBytes: opts.limits?.minFreeBytes,
      signal: opts.signal,
      onTrailing: (bytes) => warn(`${sourcePath}: ${bytes} bytes after the end of its gzip stream ignored (as gzip(1) does)`),
    },
  });
  try {
    const image = await resolveImage(source, { ...(opts.ref !== undefined ? { ref: opts.ref } : {}), platform: wanted, explicitVariant });
    // the lock taken on the parent covers its versions
    const paths = opts.versioned ? bundlePaths(join(given.target, bundleVersionName(image.manifestDigest, optionsKey(opts)))) : given;
    if (opts.versioned) await prepareTarget(paths, sourcePath, opts);
    const tResolved = performance.now();
    const base = {
      bundleDir: paths.target,
      source: sourcePath,
      format: source.format,
      manifestDigest: image.manifestDigest.text,
      configDigest: image.configDigest.text,
      platform: formatPlatform(image.platform),
      refs: image.refs,
      exec: image.config.config,
    };

    const record = await readRecord(paths.target);
    if (
      !opts.force &&
      record?.manifestDigest === image.manifestDigest.text &&
      record.optionsKey === optionsKey(opts) &&
      (await bundleComplete(paths.target))
    ) {
      const reconverted = record.converter !== IMAGE_CONVERTER_VERSION;
      if (reconverted) {
        // made by another converter: its config.json may say what this one never would (an image
        // label as an ocivirt annotation). The tree is the same layers' and stays: a running
        // container may use it; only the config is derived again, then the record.
        const config = await deriveBundleConfig(source, image, join(paths.target, 'rootfs'), warn);
        await writeFileAtomically(join(paths.target, 'config.json'), config, 0o644);
        await writeFileAtomically(join(paths.target, RECORD_FILE), recordText(base, opts, image), 0o600);
        opts.log?.info('image.reconverted', { entry: sourcePath, digest: base.manifestDigest, bundle: paths.target, from: record.converter ?? 1, to: IMAGE_CONVERTER_VERSION });
      } else opts.log?.info('image.unchanged', { entry: sourcePath, digest: base.manifestDigest, bundle: paths.target });
      const total = performance.now() - t0;
      return { ...base, layers: [], skipped: true, ...(reconverted ? { reconverted } : {}), warnings, durations: { resolveMs: tResolved - t0, layersMs: 0, configMs: 0, commitMs: 0, totalMs: total } };
    }

    await createStaging(paths);
    try {
      const rootfs = join(paths.staging, 'rootfs');
      await mkdir(rootfs);
      await chmod(rootfs, 0o755); // whatever the umask: non-root users in the container must reach /
      const layers: UnpackedLayer[] = [];
      for (const layer of image.layers) {
        opts.signal?.throwIfAborted();
        layers.push(await unpackLayer(source, image, layer, rootfs, opts, warn));
      }
      opts.signal?.throwIfAborted(); // aborted after the last layer: nothing more is written
      const tLayers = performance.now();
      opts.log?.info('image.verified', {
        entry: sourcePath,
        digest: base.manifestDigest,
        config: base.configDigest,
        layers: layers.length,
        bytes: layers.reduce((n, l) => n + l.compressedBytes, 0),
      });

      const config = await deriveBundleConfig(source, image, rootfs, warn);
      await writeFile(join(paths.staging, 'config.json'), config, { mode: 0o644, flush: true });
      await writeFile(join(paths.staging, RECORD_FILE), recordText(base, opts, image), { mode: 0o600, flush: true });
      const tConfig = performance.now();
      await commitStaging(paths, opts.signal);
      const tEnd = performance.now();
      const result: UnpackResult = {
        ...base,
        layers,
        skipped: false,
        warnings,
        durations: { resolveMs: tResolved - t0, layersMs: tLayers - tResolved, configMs: tConfig - tLayers, commitMs: tEnd - tConfig, totalMs: tEnd - t0 },
      };
      opts.log?.info('image.unpacked', { entry: sourcePath, digest: base.manifestDigest, bundle: paths.target, durationMs: Math.round(result.durations.totalMs), warnings: warnings.length });
      return result;
    } catch (e) {
      await discardStaging(paths);
      throw e;
    }
  } finally {
    await source.close();
  }
}

async function unpackLayer(
  source: ImageSource,
  image: ResolvedImage,
  layer: ResolvedLayer,
  rootfs: string,
  opts: UnpackOptions,
  warn: (m: string) => void,
): Promise<UnpackedLayer> {
  const started = performance.now();
  const n = image.layers.length;
  let bytes = 0;
  let lastEmit = 0;
  const report = (done: boolean) => {
    const p: LayerProgress = { layer: layer.index, layers: n, label: layer.label, bytes, totalBytes: layer.size, done };
    opts.onProgress?.(p);
    const now = performance.now();
    if (opts.log && (done || now - lastEmit >= 1000)) {
      lastEmit = now;
      opts.log.info('layer.progress', { entry: source.path, digest: layer.digest?.text, layer: layer.index + 1, layers: n, bytes, totalBytes: layer.size, done });
    }
  };
  report(false);
  const { maxRatio = DEFAULT_MAX_RATIO, ...limits } = opts.limits ?? {};
  const stream = await openLayerStream(source, layer, {
    onCompressedBytes: (k) => {
      bytes += k;
      report(false);
    },
    onTrailing: (trailing, compression) => {
      const m = `${layer.label}: ${trailing} bytes after the end of the ${compression} stream ignored (the blob digest covers them)`;
      warn(m);
      opts.log?.warn('layer.trailing', { entry: source.path, digest: layer.digest?.text, diffId: layer.diffId.text, layer: layer.index + 1, layers: n, compression, bytes: trailing }, m);
    },
    maxRatio,
  });
  const applied = applyLayer(rootfs, stream.output, {
    layer: `${source.path}: ${layer.label}`,
    limits,
    allowDevices: opts.allowDevices === true,
    onWarning: warn,
    signal: opts.signal,
  }).then(
    (stats: LayerStats) => {
      stream.output.resume(); // whatever follows the end of the archive still has to be hashed
      return stats;
    },
    (e: unknown) => {
      stream.abort(e as Error);
      throw e;
    },
  );
  const both = Promise.allSettled([stream.verified, applied]);
  // aborted: the applier stops at once; the blob may be what hangs (a read that never returns), so
  // nothing waits on its stream or reads it again
  await applied.catch(() => undefined);
  opts.signal?.throwIfAborted();
  const [verified, appliedResult] = await both;
  if (appliedResult.status === 'rejected') {
    // the applier stopped early, before the digest could be checked; a tampered blob is the
    // root cause of whatever it tripped over, so check the blob alone (no decompression: a bomb
    // stays defused) and report that first
    await verifyBlob(source, layer);
    // a corrupt compressed stream or a wrong diffID is the root cause too (the applier only saw
    // the stream end); when the applier failed on its own, the stream carries its error back
    if (verified.status === 'rejected' && verified.reason instanceof InputError) throw inFile(verified.reason, source.path);
    throw inFile(appliedResult.reason, source.path);
  }
  if (verified.status === 'rejected') throw verified.reason;
  const v = verified.value;
  report(true);
  const out: UnpackedLayer = {
    index: layer.index,
    mediaType: layer.mediaType,
    digest: layer.digest?.text,
    diffId: layer.diffId.text,
    compression: v.compression,
    compressedBytes: v.compressedBytes,
    uncompressedBytes: v.uncompressedBytes,
    durationMs: performance.now() - started,
  };
  opts.log?.info('layer.applied', { entry: source.path, digest: out.digest, diffId: out.diffId, layer: layer.index + 1, layers: n, bytes: out.compressedBytes, uncompressedBytes: out.uncompressedBytes, durationMs: Math.round(out.durationMs) });
  return out;
}

/** Reads a layer blob once more, only to check its digest and size (throws their error). */
async function verifyBlob(source: ImageSource, layer: ResolvedLayer): Promise<void> {
  if (layer.digest === undefined) return; // legacy docker-save: only the diffID covers the bytes
  const check = new VerifyingStream({
    digest: layer.digest,
    ...(layer.size !== undefined ? { size: layer.size } : {}),
    label: `${layer.label} blob`,
    file: source.path,
  });
  await pipeline(await source.store.open(layer.blobName), check, new Writable({ write: (_c, _e, done) => done() }));
}

function inFile(e: unknown, file: string): unknown {
  return e instanceof InputError ? e.inFile(file) : e;
}

/** The record of this unpack, as written beside config.json. */
function recordText(base: { manifestDigest: string; configDigest: string; platform: string; source: string }, opts: UnpackOptions, image: ResolvedImage): string {
  const rec: UnpackRecord = {
    tool: 'ocivirt',
    manifestDigest: base.manifestDigest,
    configDigest: base.configDigest,
    platform: base.platform,
    optionsKey: optionsKey(opts),
    converter: IMAGE_CONVERTER_VERSION,
    source: base.source,
    refs: image.refs,
    unpackedAt: new Date().toISOString(),
  };
  return JSON.stringify(rec, null, 2) + '\n';
}

/** The bundle's config.json text, from the image config and the unpacked rootfs's user database. */
async function deriveBundleConfig(source: ImageSource, image: ResolvedImage, rootfs: string, warn: (m: string) => void): Promise<string> {
  const { passwd, group } = await readUserDb(rootfs).catch((e: unknown) => {
    throw e instanceof InputError ? new InputError(`${e.reason} (the unpacked image)`, { file: source.path }) : e;
  });
  const { config, warnings } = imageConfigToRuntimeConfig({
    image: image.config,
    passwd,
    group,
    rootPath: 'rootfs',
    file: `${source.path}:${image.configDigest.text}`,
  });
  for (const w of warnings) warn(w);
  validateRuntimeConfig(config, 'config.json (generated)');
  return JSON.stringify(config, null, 2) + '\n';
}
