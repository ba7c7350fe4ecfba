/**
 * One layer as a verified stream of uncompressed tar bytes: blob -> digest/size check ->
 * decompression -> diffID check. Nothing is buffered beyond stream chunks, and a mismatch
 * anywhere destroys the output with an error naming the layer, so the consumer (the layer
 * applier) fails instead of finishing on bad bytes.
 */
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import type { Readable, Transform } from 'node:stream';
import { DecompressStream } from 'zstd-napi';
import { InputError } from '../errors.js';
import { VerifyingStream } from './digest.js';
import { scavengeEvery } from './memory.js';
import { detectCompression, type Compression } from './media-types.js';
import type { ResolvedLayer } from './resolve.js';
import type { ImageSource } from './source.js';

export interface LayerStream {
  /** Uncompressed tar bytes; errors if any check fails. */
  output: Readable;
  /** Settles when every byte has passed every check (rejects with the first failure). */
  verified: Promise<LayerStreamStats>;
  /** Stops reading (on the consumer's failure). */
  abort(err: Error): void;
}

export interface LayerStreamStats {
  compression: Compression;
  compressedBytes: number;
  uncompressedBytes: number;
}

function decompressor(c: Compression): Transform | undefined {
  // 64 KiB output chunks: larger ones bought no speed and cost memory (measured)
  if (c === 'gzip') return createGunzip({ chunkSize: 1 << 16 });
  // the zstd CLI's own default: frames that need a window over 128 MiB are refused, not allocated
  if (c === 'zstd') return new DecompressStream({ windowLogMax: 27 });
  return undefined;
}

export async function openLayerStream(
  source: ImageSource,
  layer: ResolvedLayer,
  onCompressedBytes?: (n: number) => void,
): Promise<LayerStream> {
  const file = source.path;
  const head = await source.store.head(layer.blobName, 4);
  const found = detectCompression(head);
  let compression = layer.compression;
  if (layer.sniff) compression = found;
  else if (found !== compression && !(compression === 'none' && found === 'none'))
    throw new InputError(
      `${layer.label}: media type ${layer.mediaType} says ${compression === 'none' ? 'uncompressed' : compression}, but the blob ${found === 'none' ? 'is not ' + compression : 'is ' + found}`,
      { file },
    );

  const raw = await source.store.open(layer.blobName);
  const blobCheck = new VerifyingStream({
    ...(layer.digest ? { digest: layer.digest } : {}),
    ...(layer.size !== undefined ? { size: layer.size } : {}),
    label: `${layer.label} blob`,
    file,
    ...(onCompressedBytes ? { onBytes: onCompressedBytes } : {}),
  });
  const diffCheck = new VerifyingStream({
    digest: layer.diffId,
    label: `${layer.label} uncompressed content (diffID ${layer.diffId.text})`,
    file,
    onBytes: scavengeEvery(4 << 20),
  });
  const inflate = decompressor(compression);
  const stages: (Readable | Transform)[] = inflate ? [raw, blobCheck, inflate, diffCheck] : [raw, blobCheck, diffCheck];

  const verified = pipeline(stages as unknown as [Readable, ...Transform[]]).then(
    () => ({ compression, compressedBytes: blobCheck.bytes, uncompressedBytes: diffCheck.bytes }),
    (e: unknown) => {
      throw explain(e, layer, compression, file);
    },
  );
  return {
    output: diffCheck,
    verified,
    abort: (err) => raw.destroy(err),
  };
}

/** Decompressor errors are terse (`unexpected end of file`); say which layer and what it means. */
function explain(e: unknown, layer: ResolvedLayer, compression: Compression, file: string): Error {
  if (e instanceof InputError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ERR_STREAM_PREMATURE_CLOSE') return err;
  if (err.code?.startsWith('Z_') || compression === 'zstd' && !err.code)
    return new InputError(`${layer.label}: corrupt ${compression} stream: ${err.message}`, { file });
  return err;
}
