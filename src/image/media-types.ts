/**
 * The media types an image may use, and what each means for us. Anything not listed is refused by
 * name: guessing the format of a hostile blob is how parsers get confused.
 */

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  /** Legacy docker-save layers carry no media type; this is the one we give them. */
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

export interface LayerMediaType {
  compression: Compression;
  /**
   * Docker's own gzip type has long been used for uncompressed blobs too (docker-save, old
   * registries), so for Docker types the magic bytes decide, as Docker and containerd do.
   */
  sniff: boolean;
}

const LAYER_TYPES: Record<string, LayerMediaType> = {
  'application/vnd.oci.image.layer.v1.tar': { compression: 'none', sniff: false },
  'application/vnd.oci.image.layer.v1.tar+gzip': { compression: 'gzip', sniff: false },
  'application/vnd.oci.image.layer.v1.tar+zstd': { compression: 'zstd', sniff: false },
  // deprecated non-distributable types: same bytes, only the distribution rule differs
  'application/vnd.oci.image.layer.nondistributable.v1.tar': { compression: 'none', sniff: false },
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': { compression: 'gzip', sniff: false },
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': { compression: 'zstd', sniff: false },
  [MT.dockerLayer]: { compression: 'none', sniff: true },
  'application/vnd.docker.image.rootfs.diff.tar.gzip': { compression: 'gzip', sniff: true },
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': { compression: 'gzip', sniff: true },
  'application/vnd.docker.image.rootfs.diff.tar.zstd': { compression: 'zstd', sniff: true },
};

export function layerMediaType(mediaType: string): LayerMediaType | undefined {
  return Object.hasOwn(LAYER_TYPES, mediaType) ? LAYER_TYPES[mediaType] : undefined;
}

export const KNOWN_LAYER_TYPES: readonly string[] = Object.keys(LAYER_TYPES);

export function isIndexType(mediaType: string): boolean {
  return mediaType === MT.ociIndex || mediaType === MT.dockerManifestList;
}

export function isManifestType(mediaType: string): boolean {
  return mediaType === MT.ociManifest || mediaType === MT.dockerManifest;
}

export function isConfigType(mediaType: string): boolean {
  return mediaType === MT.ociConfig || mediaType === MT.dockerConfig;
}

/** Magic bytes, for sniffing Docker layers and for clear errors on mislabelled ones. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  // a zstd stream may start with a skippable frame (magic 0x184D2A5?)
  if (head.length >= 4 && (head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) return 'zstd';
  return 'none';
}
