/**
 * From a source to one image: pick the entry by ref, walk nested indexes and manifest lists to
 * the manifest for the wanted platform, read and verify the manifest and config, and describe
 * each layer (where its bytes are, how they are compressed, what they must hash to).
 */
import { InputError } from '../errors.js';
import { digestOf, shortDigest, type Digest } from './digest.js';
import {
  parseImageConfig,
  parseIndex,
  parseJson,
  parseManifest,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type Platform,
} from './documents.js';
import { isIndexType, isManifestType, KNOWN_LAYER_TYPES, layerMediaType, MT, type Compression } from './media-types.js';
import { formatPlatform, platformMatches, preference } from './platform.js';
import { blobPath, legacyConfigDigest, readBlobJson, refMatches, type ImageSource, type TopEntry } from './source.js';

/** Index nesting deeper than this is a loop or an attack. */
const MAX_INDEX_DEPTH = 8;
/** Docker stops at 127 layers and systemd at 4096; each layer costs a worker and a pass. */
export const MAX_LAYERS = 1000;

function checkLayerCount(n: number, file: string): void {
  if (n > MAX_LAYERS) throw new InputError(`has ${n} layers, more than the ${MAX_LAYERS} we unpack`, { file });
}

export interface ResolvedLayer {
  /** 0-based position in the manifest. */
  index: number;
  mediaType: string;
  compression: Compression;
  /** Decide the compression from the magic bytes (Docker media types, legacy layers). */
  sniff: boolean;
  /** Where the bytes are inside the source. */
  blobName: string;
  /** The blob's digest and size; legacy docker-save layers have neither (the diffID covers them). */
  digest?: Digest;
  size?: number;
  diffId: Digest;
  /** For messages: `layer 2/5 (sha256:0123…)`. */
  label: string;
}

export interface ResolvedImage {
  /** The manifest's digest; for legacy docker-save a digest of the manifest we derive from it. */
  manifestDigest: Digest;
  configDigest: Digest;
  platform: Platform;
  config: ImageConfig;
  layers: ResolvedLayer[];
  /** The refs of the chosen top-level entry. */
  refs: string[];
}

export interface SelectOptions {
  ref?: string;
  platform: Platform;
  /** The platform was given explicitly, with a variant. */
  explicitVariant: boolean;
}

function describeEntries(entries: TopEntry[]): string {
  const names = entries.map((e) => (e.refs.length ? e.refs.join(', ') : e.kind === 'descriptor' ? `(no ref) ${shortDigest(e.descriptor.digest)}` : '(no ref)'));
  return names.join('; ');
}

/** Entries that are the same image (tags of one digest) count once. */
function distinct(entries: TopEntry[]): TopEntry[] {
  const seen = new Map<string, TopEntry>();
  for (const e of entries) {
    const key = e.kind === 'descriptor' ? e.descriptor.digest.text : `legacy:${e.config}:${e.layers.join(',')}`;
    const prev = seen.get(key);
    if (prev) prev.refs = [...new Set([...prev.refs, ...e.refs])];
    else seen.set(key, { ...e, refs: [...e.refs] });
  }
  return [...seen.values()];
}

/** How the caller lets its user choose an image: `--ref` on the command line, a settings key in the spool. */
export type ChoiceHint = (choice: 'ref' | 'platform', value?: string) => string;

export const commandLineHint: ChoiceHint = (choice, value) => (value === undefined ? `choose one with --${choice}` : `choose it with --${choice} ${value}`);

/**
 * Which image of an input to take is the caller's to say. The message is written with a hint the
 * caller can replace (`reworded`); `unmatched` says the value asked for matches nothing offered.
 */
export class SelectionError extends InputError {
  constructor(
    readonly choice: 'ref' | 'platform',
    readonly unmatched: boolean,
    private readonly text: (hint: ChoiceHint | undefined) => string,
    where: { file: string },
  ) {
    super(text(commandLineHint), where);
  }
  /** The message with another hint (or none). */
  describe(hint: ChoiceHint | undefined): string {
    return this.text(hint);
  }
}

export async function resolveImage(source: ImageSource, opts: SelectOptions): Promise<ResolvedImage> {
  if (source.entries.length === 0) throw new InputError('holds no image (empty index)', { file: source.path });
  let candidates = source.entries;
  if (opts.ref !== undefined) {
    candidates = candidates.filter((e) => refMatches(e, opts.ref as string));
    if (candidates.length === 0)
      throw new SelectionError('ref', true, () => `no image with ref '${opts.ref}'; the image offers: ${describeEntries(distinct(source.entries))}`, { file: source.path });
  }
  candidates = distinct(candidates);
  if (candidates.length > 1) {
    // index.json may list per-platform manifests directly: then the platform decides
    const all = candidates.filter((e): e is Extract<TopEntry, { kind: 'descriptor' }> => e.kind === 'descriptor');
    if (all.length === candidates.length && all.every((e) => e.descriptor.platform !== undefined)) {
      const synthetic = all.map((e) => e.descriptor);
      const chosen = await choosePlatform(source, synthetic, opts, 'index.json', 0);
      const refs = [...new Set(all.filter((e) => e.descriptor.digest.text === chosen.digest.text).flatMap((e) => e.refs))];
      return resolveManifest(source, chosen, opts, refs);
    }
    const n = candidates.length;
    throw new SelectionError('ref', false, (hint) => `holds ${n} images; ${(hint ?? commandLineHint)('ref')}: ${describeEntries(candidates)}`, { file: source.path });
  }
  const entry = candidates[0] as TopEntry;
  if (entry.kind === 'legacy') return resolveLegacy(source, entry, opts);
  const manifestDesc = await descend(source, entry.descriptor, opts, 'index.json', 0);
  return resolveManifest(source, manifestDesc, opts, entry.refs);
}

/** Walks indexes down to one manifest descriptor. */
async function descend(source: ImageSource, d: Descriptor, opts: SelectOptions, label: string, depth: number): Promise<Descriptor> {
  if (isManifestType(d.mediaType)) return d;
  if (!isIndexType(d.mediaType)) {
    if (d.mediaType === 'application/vnd.docker.distribution.manifest.v1+json' || d.mediaType === 'application/vnd.docker.distribution.manifest.v1+prettyjws')
      throw new InputError(`${label}: Docker schema 1 manifests are not supported (convert with skopeo copy)`, { file: source.path });
    throw new InputError(`${label}: unsupported media type ${JSON.stringify(d.mediaType)} (expected an image index or manifest)`, { file: source.path });
  }
  if (depth >= MAX_INDEX_DEPTH) throw new InputError(`indexes nested deeper than ${MAX_INDEX_DEPTH} levels`, { file: source.path });
  const where = `index ${shortDigest(d.digest)}`;
  const index = parseIndex(await readBlobJson(source, d, 'index'), d.mediaType, { file: `${source.path}:${blobPath(d.digest)}` });
  const chosen = await choosePlatform(source, index.manifests, opts, where, depth + 1);
  return chosen;
}

/** Platform-less nested indexes expanded in one resolution: more is a fan-out bomb, not an image. */
const MAX_EXPANDED_INDEXES = 64;

/**
 * Lists what an index (and any nested index without a platform) offers. A nested index named
 * twice is expanded once (the same digest is the same list), and the expansions are counted, so
 * an index repeating one nested index thousands of times at every level costs nothing.
 */
async function offered(
  source: ImageSource,
  list: Descriptor[],
  depth: number,
  expanded: Set<string> = new Set(),
): Promise<{ d: Descriptor; p: Platform | undefined }[]> {
  const out: { d: Descriptor; p: Platform | undefined }[] = [];
  for (const d of list) {
    if (d.platform !== undefined || !isIndexType(d.mediaType)) {
      out.push({ d, p: d.platform });
      continue;
    }
    if (expanded.has(d.digest.text)) continue;
    expanded.add(d.digest.text);
    if (depth >= MAX_INDEX_DEPTH) throw new InputError(`indexes nested deeper than ${MAX_INDEX_DEPTH} levels`, { file: source.path });
    if (expanded.size > MAX_EXPANDED_INDEXES)
      throw new InputError(`more than ${MAX_EXPANDED_INDEXES} nested indexes without a platform: refusing to expand further`, { file: source.path });
    const nested = parseIndex(await readBlobJson(source, d, 'index'), d.mediaType, { file: `${source.path}:${blobPath(d.digest)}` });
    out.push(...(await offered(source, nested.manifests, depth + 1, expanded)));
  }
  return out;
}

/** Attestations and other artifacts ride in indexes as `unknown/unknown` manifests. */
function isArtifact(d: Descriptor): boolean {
  return d.platform?.os === 'unknown' || d.annotations['vnd.docker.reference.type'] !== undefined;
}

async function choosePlatform(source: ImageSource, list: Descriptor[], opts: SelectOptions, where: string, depth: number): Promise<Descriptor> {
  const all = (await offered(source, list, depth)).filter((o) => !isArtifact(o.d));
  const withPlatform = all.filter((o) => o.p !== undefined);
  const matches = withPlatform
    .filter((o) => platformMatches(opts.platform, o.p as Platform, opts.explicitVariant))
    .sort((a, b) => preference(opts.platform, a.p as Platform) - preference(opts.platform, b.p as Platform));
  const best = matches[0];
  if (best !== undefined) return descend(source, best.d, opts, where, depth);
  // one manifest without a platform: its config says what it is (checked after reading it)
  const bare = all.filter((o) => o.p === undefined);
  if (withPlatform.length === 0 && bare.length === 1) return descend(source, (bare[0] as { d: Descriptor }).d, opts, where, depth);
  const offers = withPlatform.map((o) => formatPlatform(o.p as Platform));
  const found = `${offers.length ? [...new Set(offers)].join(', ') : '(no platforms)'}${bare.length ? ` and ${bare.length} manifest(s) without a platform` : ''}`;
  throw new SelectionError('platform', true, (hint) => `no manifest for platform ${formatPlatform(opts.platform)} in ${where}; it offers: ${found}${hint ? ` (${hint('platform')})` : ''}`, {
    file: source.path,
  });
}

function checkConfigPlatform(source: ImageSource, config: ImageConfig, opts: SelectOptions): Platform {
  const p: Platform = { os: config.os, architecture: config.architecture };
  if (config.variant) p.variant = config.variant;
  if (!platformMatches(opts.platform, p, opts.explicitVariant))
    throw new SelectionError('platform', false, (hint) => `the image is for ${formatPlatform(p)}, not ${formatPlatform(opts.platform)}${hint ? ` (${hint('platform', formatPlatform(p))})` : ''}`, { file: source.path });
  return p;
}

function layersOf(manifest: ImageManifest, config: ImageConfig, file: string): ResolvedLayer[] {
  checkLayerCount(manifest.layers.length, file);
  if (manifest.layers.length !== config.diffIds.length)
    throw new InputError(`manifest has ${manifest.layers.length} layers but the config has ${config.diffIds.length} diff_ids`, { file });
  return manifest.layers.map((l, i) => {
    const kind = layerMediaType(l.mediaType);
    const label = `layer ${i + 1}/${manifest.layers.length} (${shortDigest(l.digest)})`;
    if (kind === undefined)
      throw new InputError(
        `${label}: unsupported layer media type ${JSON.stringify(l.mediaType)} (supported: ${KNOWN_LAYER_TYPES.join(', ')})`,
        { file, field: `layers[${i}].mediaType` },
      );
    return {
      index: i,
      mediaType: l.mediaType,
      compression: kind.compression,
      sniff: kind.sniff,
      blobName: blobPath(l.digest),
      digest: l.digest,
      size: l.size,
      diffId: config.diffIds[i] as Digest,
      label,
    };
  });
}

async function resolveManifest(source: ImageSource, d: Descriptor, opts: SelectOptions, refs: string[]): Promise<ResolvedImage> {
  const file = `${source.path}:${blobPath(d.digest)}`;
  const manifest = parseManifest(await readBlobJson(source, d, 'manifest'), d.mediaType, { file });
  const configFile = `${source.path}:${blobPath(manifest.config.digest)}`;
  const config = parseImageConfig(await readBlobJson(source, manifest.config, 'config'), { file: configFile });
  const platform = checkConfigPlatform(source, config, opts);
  const layers = layersOf(manifest, config, file);
  for (const l of layers) {
    if ((await source.store.size(l.blobName)) === undefined) {
      const urls = manifest.layers[l.index]?.urls;
      throw new InputError(
        `${l.label} blob ${l.digest?.text} is missing${urls?.length ? ` (a foreign layer at ${urls[0]}; ocivirt does not download)` : ''}`,
        { file: source.path },
      );
    }
  }
  return { manifestDigest: d.digest, configDigest: manifest.config.digest, platform, config, layers, refs };
}

async function resolveLegacy(source: ImageSource, e: Extract<TopEntry, { kind: 'legacy' }>, opts: SelectOptions): Promise<ResolvedImage> {
  const file = `${source.path}:${e.config}`;
  const bytes = await source.store.readSmall(e.config, source.maxJsonBytes);
  if (bytes === undefined) throw new InputError(`config ${e.config} named in manifest.json is missing`, { file: source.path });
  const promised = legacyConfigDigest(e.config);
  const computed = digestOf(bytes);
  if (promised !== undefined && promised.encoded !== computed.encoded)
    throw new InputError(`config does not match the digest its name promises: content hashes to ${computed.text}`, { file });
  const config = parseImageConfig(parseJson(bytes, { file }), { file });
  const platform = checkConfigPlatform(source, config, opts);
  checkLayerCount(e.layers.length, `${source.path}:manifest.json`);
  if (e.layers.length !== config.diffIds.length)
    throw new InputError(`manifest.json lists ${e.layers.length} layers but the config has ${config.diffIds.length} diff_ids`, { file: `${source.path}:manifest.json` });
  const layers: ResolvedLayer[] = [];
  for (const [i, name] of e.layers.entries()) {
    const size = await source.store.size(name);
    if (size === undefined) throw new InputError(`layer ${name} named in manifest.json is missing`, { file: source.path });
    layers.push({
      index: i,
      mediaType: MT.dockerLayer,
      compression: 'none',
      sniff: true,
      blobName: name,
      size,
      diffId: config.diffIds[i] as Digest,
      label: `layer ${i + 1}/${e.layers.length} (${name})`,
    });
  }
  // docker-save has no manifest; the config digest pins every diffID, so a document naming the
  // config and the layer diffIDs identifies the image as a manifest digest would
  const derived = JSON.stringify({ mediaType: MT.dockerManifest, config: computed.text, diffIds: config.diffIds.map((d) => d.text) });
  return { manifestDigest: digestOf(Buffer.from(derived)), configDigest: computed, platform, config, layers, refs: e.refs };
}
