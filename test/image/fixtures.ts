/**
 * Images built by code for the image tests: blobs with real digests, layouts written to disk,
 * the same layouts as oci-archives, and both docker-save shapes. Helpers write exactly what they
 * are told, so tests can tamper with any part.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { dir, file, symlink, tar, type Entry } from '../helpers/tar.js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
  urls?: string[];
}

export type Compression = 'none' | 'gzip' | 'zstd';

export const LAYER_TYPE: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

export function compress(data: Buffer, c: Compression): Buffer {
  if (c === 'gzip') return gzipSync(data);
  if (c === 'zstd') return zstdCompress(data);
  return data;
}

export interface LayerInput {
  entries?: Entry[];
  /** Raw tar bytes instead of entries. */
  tar?: Buffer;
  compression?: Compression;
  mediaType?: string;
  /** Rewrite the stored (compressed) bytes after the diffID was computed. */
  mangle?: (stored: Buffer) => Buffer;
  /** Override the diffID recorded in the config. */
  diffId?: string;
}

export interface ImageInput {
  layers: LayerInput[];
  os?: string;
  architecture?: string;
  variant?: string;
  config?: Record<string, unknown>;
  /** Extra top-level image config fields. */
  extra?: Record<string, unknown>;
  manifestMediaType?: string;
}

export class ImageBuilder {
  readonly blobs = new Map<string, Buffer>();

  blob(bytes: Buffer | string, mediaType: string): Desc {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    const hex = sha256(b);
    this.blobs.set(hex, b);
    return { mediaType, digest: `sha256:${hex}`, size: b.length };
  }

  json(value: unknown, mediaType: string): Desc {
    return this.blob(JSON.stringify(value), mediaType);
  }

  /** Builds config + manifest for an image; returns the manifest descriptor. */
  image(input: ImageInput): Desc & { config: Desc; layers: Desc[]; diffIds: string[] } {
    const layers: Desc[] = [];
    const diffIds: string[] = [];
    for (const l of input.layers) {
      const raw = l.tar ?? tar(l.entries ?? []);
      const c = l.compression ?? 'gzip';
      let stored = compress(raw, c);
      if (l.mangle) stored = l.mangle(stored);
      layers.push(this.blob(stored, l.mediaType ?? LAYER_TYPE[c]));
      diffIds.push(l.diffId ?? `sha256:${sha256(raw)}`);
    }
    const config = this.json(
      {
        architecture: input.architecture ?? 'amd64',
        os: input.os ?? 'linux',
        ...(input.variant ? { variant: input.variant } : {}),
        config: input.config ?? { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
        ...input.extra,
      },
      'application/vnd.oci.image.config.v1+json',
    );
    const mt = input.manifestMediaType ?? 'application/vnd.oci.image.manifest.v1+json';
    const manifest = this.json({ schemaVersion: 2, mediaType: mt, config, layers }, mt);
    return { ...manifest, config, layers, diffIds };
  }

  index(manifests: Desc[], mediaType = 'application/vnd.oci.image.index.v1+json'): Desc {
    return this.json({ schemaVersion: 2, mediaType, manifests }, mediaType);
  }

  /** The files of a layout: oci-layout, index.json and blobs. */
  layoutFiles(top: Desc[]): Map<string, Buffer> {
    const files = new Map<string, Buffer>();
    files.set('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    files.set('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: top })));
    for (const [hex, b] of this.blobs) files.set(`blobs/sha256/${hex}`, b);
    return files;
  }
}

export function tmp(prefix = 'ocivirt-image-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A maker of temp dirs for one test file, all removed after its tests (uvu's default suite). */
export function scratchDirs(): () => string {
  const dirs: string[] = [];
  test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  return () => {
    const d = tmp();
    dirs.push(d);
    return d;
  };
}

export function writeFiles(root: string, files: Map<string, Buffer>): string {
  for (const [name, data] of files) {
    const p = join(root, name);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, data);
  }
  return root;
}

/** A tar of the given files (with directory entries), as skopeo's oci-archive or docker save writes it. */
export function archiveOf(files: Map<string, Buffer>, extra: Entry[] = []): Buffer {
  const dirs = new Set<string>();
  for (const name of files.keys()) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/') + '/');
  }
  return tar([...[...dirs].sort().map((d) => dir(d)), ...[...files].map(([n, d]) => file(n, d)), ...extra]);
}

export interface LegacyImage {
  tags: string[];
  layers: Buffer[]; // uncompressed tars
  config?: Record<string, unknown>;
  architecture?: string;
}

/**
 * A legacy `docker save` tarball: `<id>/layer.tar` per layer (a repeated layer is stored once and
 * linked by a symlink, as Docker does), `<config-hex>.json`, manifest.json, repositories.
 */
export function dockerLegacyArchive(images: LegacyImage[], opts: { mangleManifest?: (m: unknown[]) => unknown } = {}): Buffer {
  const entries: Entry[] = [];
  const seen = new Map<string, string>(); // diffID -> first path
  const manifest: unknown[] = [];
  for (const img of images) {
    const diffIds = img.layers.map((l) => `sha256:${sha256(l)}`);
    const cfg = Buffer.from(
      JSON.stringify({
        architecture: img.architecture ?? 'amd64',
        os: 'linux',
        config: img.config ?? { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
      }),
    );
    const cfgName = `${sha256(cfg)}.json`;
    entries.push(file(cfgName, cfg));
    const layerPaths: string[] = [];
    img.layers.forEach((l, i) => {
      const id = sha256(`${diffIds.slice(0, i + 1).join(',')}|${cfgName}`);
      const path = `${id}/layer.tar`;
      entries.push(dir(`${id}/`), file(`${id}/VERSION`, '1.0'));
      const first = seen.get(diffIds[i] as string);
      if (first) entries.push({ name: path, type: '2', linkname: `../${first}` });
      else {
        entries.push(file(path, l));
        seen.set(diffIds[i] as string, path);
      }
      layerPaths.push(path);
    });
    manifest.push({ Config: cfgName, RepoTags: img.tags, Layers: layerPaths });
  }
  const m = opts.mangleManifest ? opts.mangleManifest(manifest) : manifest;
  entries.push(file('manifest.json', JSON.stringify(m)));
  return tar(entries);
}

/** A small layer with a shell-ish tree and user databases. */
export function baseLayerEntries(): Entry[] {
  return [
    dir('bin/'),
    file('bin/sh', '#!fake shell\n', { mode: 0o755 }),
    dir('etc/'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n'),
    file('etc/group', 'root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,root\n'),
    dir('home/'),
    dir('home/app/', { uid: 1000, gid: 1000 }),
  ];
}

/** Awaits `p` and asserts it fails with an InputError whose message matches; returns the error. */
export async function expectInputError(p: Promise<unknown>, pattern: RegExp): Promise<InputError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, InputError, `expected InputError, got ${(e as Error)?.stack}`);
    assert.match((e as Error).message, pattern);
    return e as InputError;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
  throw new Error('unreachable');
}

/** A layer that starts: Debian's static busybox, the given applets linked to it, root in /etc. */
export function busyboxLayerEntries(applets: readonly string[] = ['sh', 'sleep', 'cat']): Entry[] {
  return [
    dir('bin/'),
    file('bin/busybox', readFileSync('/bin/busybox'), { mode: 0o755 }),
    ...applets.map((a) => symlink(`bin/${a}`, 'busybox')),
    dir('etc/'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
    file('etc/group', 'root:x:0:\n'),
  ];
}

/** Every path under `root` with its size and mtime: proof that nothing was written there. */
export function treeListing(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${relative(root, p)} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}
