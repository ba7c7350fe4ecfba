/**
 * Opening an image wherever it is, recognised by content rather than by name: an OCI
 * image-layout directory, the same layout as one tar (oci-archive, and Docker 25+ `docker save`),
 * or a legacy `docker save` tarball (manifest.json + `<id>/layer.tar`). The result lists the
 * images it holds (with their refs) and reads blobs with verification.
 */
import { lstat } from 'node:fs/promises';
import { posix } from 'node:path';
import { InputError } from '../errors.js';
import { digestOf, parseDigest, shortDigest, type Digest } from './digest.js';
import { parseIndex, parseJson, type Descriptor, type ImageIndex } from './documents.js';
import { DirStore, openEntry, TarStore, type FileStore } from './store.js';
import { normaliseMemberName } from './tar-index.js';
import { inflateArchive, type Inflated, type InflateOptions } from './inflate.js';

/** JSON documents above this are refused (containerd uses 20 MiB for the same reason). */
export const DEFAULT_MAX_JSON_BYTES = 16 << 20;

export type SourceFormat = 'oci-layout' | 'oci-archive' | 'docker-archive' | 'docker-oci-archive' | 'docker-directory';

/** One image named at the top of the source (an index.json entry, or a manifest.json entry). */
export type TopEntry =
  | { kind: 'descriptor'; refs: string[]; descriptor: Descriptor }
  | { kind: 'legacy'; refs: string[]; config: string; layers: string[]; position: number };

export interface ImageSource {
  readonly path: string;
  readonly format: SourceFormat;
  readonly store: FileStore;
  readonly entries: TopEntry[];
  readonly maxJsonBytes: number;
  close(): Promise<void>;
}

export function blobPath(d: Digest): string {
  // safe by construction: parseDigest admits only a known algorithm and exact lowercase hex
  return `blobs/${d.algorithm}/${d.encoded}`;
}

/** How a source is opened: limits for JSON documents, and where a gzip-compressed archive is inflated. */
export interface OpenSourceOptions {
  maxJsonBytes?: number;
  inflate?: InflateOptions;
}

/**
 * The image at `path`, held open from here on (the spool's rule: a swap of its name after this
 * leads nowhere). A directory is a DirStore; a file is sniffed and indexed through the same
 * handle, or inflated from it (gzip) into a copy of ours.
 */
async function detectStore(path: string, opts: OpenSourceOptions): Promise<{ store: FileStore; release?: () => Promise<void> }> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    throw new InputError(`cannot read image: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: path });
  }
  if (st.isDirectory()) return { store: await DirStore.open(path) };
  if (st.isSymbolicLink()) throw new InputError('is a symlink: give the image directory or archive itself', { file: path });
  if (!st.isFile()) throw new InputError('is neither a directory nor a regular file', { file: path });
  const file = await openEntry(path, 'file');
  const head = Buffer.alloc(512);
  let inflated: Inflated | undefined;
  try {
    await file.handle.read(head, 0, 512, 0);
    // docker save | gzip: inflated once (by content, whatever the name), then read as any archive
    if (head[0] === 0x1f && head[1] === 0x8b) inflated = await inflateArchive(file.handle, file.stat, path, opts.inflate);
    else if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd)
      throw new InputError('is a zstd-compressed file: decompress it first (images are read in place, which needs an uncompressed tar)', { file: path });
    else if (head.toString('latin1', 257, 262) !== 'ustar' && !looksLikeV7Tar(head))
      throw new InputError('is not an image: neither an OCI layout directory, an oci-archive nor a docker-save tarball (plain or gzip-compressed)', { file: path });
  } catch (e) {
    await file.close();
    throw e;
  }
  if (inflated === undefined) return { store: await TarStore.of(path, file) };
  await file.close();
  try {
    return { store: await TarStore.open(inflated.path, path), release: inflated.release };
  } catch (e) {
    await inflated.release();
    throw e;
  }
}

/** A pre-POSIX tar header still has a valid checksum. */
function looksLikeV7Tar(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  const text = h.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').trim();
  return /^[0-7]+$/.test(text) && parseInt(text, 8) === sum;
}

async function readJsonFile(store: FileStore, name: string, maxBytes: number): Promise<unknown | undefined> {
  const bytes = await store.readSmall(name, maxBytes);
  return bytes === undefined ? undefined : parseJson(bytes, { file: `${store.path}:${name}` });
}

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

function parseDockerManifest(v: unknown, file: string): DockerManifestEntry[] {
  if (!Array.isArray(v)) throw new InputError('must be a JSON array', { file, field: '(root)' });
  return v.map((e, i) => {
    const field = `[${i}]`;
    if (typeof e !== 'object' || e === null) throw new InputError('must be an object', { file, field });
    const o = e as Record<string, unknown>;
    if (typeof o.Config !== 'string') throw new InputError('required string', { file, field: `${field}.Config` });
    const tags = o.RepoTags ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string'))
      throw new InputError('must be an array of strings', { file, field: `${field}.RepoTags` });
    if (!Array.isArray(o.Layers) || !o.Layers.every((t) => typeof t === 'string'))
      throw new InputError('required array of strings', { file, field: `${field}.Layers` });
    return { Config: o.Config, RepoTags: tags as string[], Layers: o.Layers as string[] };
  });
}

/** A member path from manifest.json: relative, and never above the archive's root. */
function checkArchivePath(p: string, file: string, field: string): string {
  const norm = posix.normalize(p);
  if (p === '' || p.startsWith('/') || norm === '..' || norm.startsWith('../'))
    throw new InputError(`path ${JSON.stringify(p)} leaves the archive`, { file, field });
  return normaliseMemberName(norm);
}

function refsOf(d: Descriptor): string[] {
  const refs: string[] = [];
  for (const key of ['org.opencontainers.image.ref.name', 'io.containerd.image.name']) {
    const v = d.annotations[key];
    if (v !== undefined && v !== '' && !refs.includes(v)) refs.push(v);
  }
  return refs;
}

export async function openImageSource(path: string, opts: OpenSourceOptions = {}): Promise<ImageSource> {
  const maxJsonBytes = opts.maxJsonBytes ?? DEFAULT_MAX_JSON_BYTES;
  const detected = await detectStore(path, opts);
  const { store } = detected;
  const close = async () => {
    await store.close();
    await detected.release?.();
  };
  try {
    const layout = await readJsonFile(store, 'oci-layout', 64 << 10);
    const dockerManifest = await readJsonFile(store, 'manifest.json', maxJsonBytes);
    if (layout !== undefined) {
      const file = `${path}:oci-layout`;
      const version = (layout as Record<string, unknown> | null)?.imageLayoutVersion;
      if (typeof version !== 'string') throw new InputError('required string', { file, field: 'imageLayoutVersion' });
      if (!/^1\.\d+\.\d+$/.test(version)) throw new InputError(`unsupported image layout version ${JSON.stringify(version)} (1.x only)`, { file, field: 'imageLayoutVersion' });
      const indexFile = `${path}:index.json`;
      const indexJson = await readJsonFile(store, 'index.json', maxJsonBytes);
      if (indexJson === undefined) throw new InputError('OCI layout without index.json', { file: path });
      const index: ImageIndex = parseIndex(indexJson, undefined, { file: indexFile });
      const entries: TopEntry[] = index.manifests.map((d) => ({ kind: 'descriptor', refs: refsOf(d), descriptor: d }));
      if (dockerManifest !== undefined) addRepoTags(entries, parseDockerManifest(dockerManifest, `${path}:manifest.json`));
      const format: SourceFormat =
        store.kind === 'directory' ? 'oci-layout' : dockerManifest !== undefined ? 'docker-oci-archive' : 'oci-archive';
      return { path, format, store, entries, maxJsonBytes, close };
    }
    if (dockerManifest !== undefined) {
      const file = `${path}:manifest.json`;
      const entries: TopEntry[] = parseDockerManifest(dockerManifest, file).map((e, i) => ({
        kind: 'legacy',
        refs: [...new Set(e.RepoTags)],
        config: checkArchivePath(e.Config, file, `[${i}].Config`),
        layers: e.Layers.map((l, j) => checkArchivePath(l, file, `[${i}].Layers[${j}]`)),
        position: i,
      }));
      return {
        path,
        format: store.kind === 'directory' ? 'docker-directory' : 'docker-archive',
        store,
        entries,
        maxJsonBytes,
        close,
      };
    }
    throw new InputError(
      store.kind === 'directory'
        ? 'is not an image: no oci-layout file (OCI image layout) and no manifest.json (docker save)'
        : 'is a tar archive but not an image: no oci-layout member (oci-archive) and no manifest.json (docker save)',
      { file: path },
    );
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * Docker 25+ archives are OCI layouts whose manifest.json names the same images by RepoTag.
 * Its entries point at the config blob, not the manifest, so tags are attached by reading no
 * blob at all: an index entry whose containerd image name is the same reference already carries
 * it; the RepoTag itself is added to entries that Docker annotated with that name.
 */
function addRepoTags(entries: TopEntry[], docker: DockerManifestEntry[]): void {
  for (const e of docker)
    for (const tag of e.RepoTags)
      for (const entry of entries)
        if (entry.refs.some((r) => normaliseDockerRef(r) === normaliseDockerRef(tag)) && !entry.refs.includes(tag))
          entry.refs.push(tag);
}

/** `alpine` -> `docker.io/library/alpine:latest`, as Docker and containerd spell references. */
export function normaliseDockerRef(ref: string): string {
  let name = ref;
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  if (slash === -1) name = `docker.io/library/${name}`;
  else if (!first.includes('.') && !first.includes(':') && first !== 'localhost') name = `docker.io/${name}`;
  const lastSlash = name.lastIndexOf('/');
  if (!name.includes('@') && !name.slice(lastSlash).includes(':')) name += ':latest';
  return name;
}

export function refMatches(entry: TopEntry, ref: string): boolean {
  return entry.refs.some((r) => r === ref || normaliseDockerRef(r) === normaliseDockerRef(ref));
}

/** Reads a JSON blob named by a descriptor, checking size before and digest after. */
export async function readBlobJson(source: ImageSource, d: Descriptor, label: string): Promise<unknown> {
  const name = blobPath(d.digest);
  const where = { file: source.path };
  if (d.size > source.maxJsonBytes)
    throw new InputError(`${label} ${shortDigest(d.digest)} declares ${d.size} bytes, over the ${source.maxJsonBytes}-byte limit for JSON documents`, where);
  const actual = await source.store.size(name);
  if (actual === undefined) throw new InputError(`${label} blob ${d.digest.text} is missing (${name})`, where);
  if (actual !== d.size) throw new InputError(`${label} blob ${d.digest.text} is ${actual} bytes, its descriptor says ${d.size}`, where);
  const bytes = (await source.store.readSmall(name, source.maxJsonBytes)) as Buffer;
  const got = digestOf(bytes, d.digest.algorithm);
  if (got.encoded !== d.digest.encoded)
    throw new InputError(`${label} blob ${d.digest.text} does not match its digest: content hashes to ${got.text}`, where);
  return parseJson(bytes, { file: `${source.path}:${name}` });
}

/** The digest a legacy docker-save config file name promises, if it follows Docker's naming. */
export function legacyConfigDigest(name: string): Digest | undefined {
  const m = /^(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(name);
  return m ? parseDigest(`sha256:${m[1]}`) : undefined;
}
