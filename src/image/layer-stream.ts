/**
 * One layer as a verified stream of uncompressed tar bytes: blob -> digest/size check ->
 * decompression -> diffID check. Nothing is buffered beyond stream chunks, and a mismatch
 * anywhere destroys the output with an error naming the layer, so the consumer (the layer
 * applier) fails instead of finishing on bad bytes.
 */
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { InputError } from '../errors.js';
import { CorruptStreamError } from './codec-error.js';
import { VerifyingStream } from './digest.js';
import { gunzip } from './gzip.js';
import { scavengeEvery } from './memory.js';
import { detectCompression, type Compression } from './media-types.js';
import type { ResolvedLayer } from './resolve.js';
import type { ImageSource } from './source.js';
import { zstdDecompress } from './zstd.js';

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

export interface LayerStreamOptions {
  /** Told the size of every compressed chunk read (progress). */
  onCompressedBytes?: (n: number) => void;
  /**
   * Told how many bytes followed the end of the compressed stream (ignored: the blob digest
   * covers them, the diffID the tar); called once the blob has been read to its end.
   */
  onTrailing?: (bytes: number, compression: Compression) => void;
  /**
   * Refuse a layer that inflates more than this many times its compressed size (0: no limit),
   * checked once RATIO_AFTER_BYTES have come out: a bomb is stopped long before it fills the
   * disk, while ordinary layers (2-10:1) and even a big file of zeros in gzip (at most ~1030:1
   * for the whole layer) are far from it.
   */
  maxRatio?: number;
}

export const DEFAULT_MAX_RATIO = 1000;

/** Uncompressed bytes before the ratio guard looks: small layers may be all zeros. */
export const RATIO_AFTER_BYTES = 64 * 1024 * 1024;

/** A decompression stage; both wait for their reader, and both report bytes after their stream. */
export function decompressStage(c: Compression, onTrailing: (bytes: number) => void): ((s: AsyncIterable<Buffer>) => AsyncGenerator<Buffer>) | undefined {
  if (c === 'gzip') return gunzip(onTrailing);
  if (c === 'zstd') return zstdDecompress(onTrailing);
  return undefined;
}

/** Passes the uncompressed bytes on, refusing them once they outgrow `maxRatio` times the compressed ones. */
function ratioGuard(label: string, file: string, maxRatio: number, compressedBytes: () => number) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    let out = 0;
    for await (const chunk of source) {
      out += chunk.length;
      if (out > RATIO_AFTER_BYTES && out > maxRatio * compressedBytes()) {
        throw new InputError(
          `${label}: inflates to more than ${maxRatio} times its compressed size (${out} bytes from ${compressedBytes()}): refused as a decompression bomb (unpackLimits.maxRatio)`,
          { file },
        );
      }
      yield chunk;
    }
  };
}

export async function openLayerStream(source: ImageSource, layer: ResolvedLayer, opts: LayerStreamOptions = {}): Promise<LayerStream> {
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
    ...(opts.onCompressedBytes ? { onBytes: opts.onCompressedBytes } : {}),
  });
  const diffCheck = new VerifyingStream({
    digest: layer.diffId,
    label: `${layer.label} uncompressed content (diffID ${layer.diffId.text})`,
    file,
    onBytes: scavengeEvery(4 << 20),
  });
  const inflate = decompressStage(compression, (n) => opts.onTrailing?.(n, compression));
  const maxRatio = opts.maxRatio ?? 0;
  const stages: unknown[] = [raw, blobCheck];
  if (inflate) {
    stages.push(inflate);
    if (maxRatio > 0) stages.push(ratioGuard(layer.label, file, maxRatio, () => blobCheck.bytes));
  }
  stages.push(diffCheck);

  const verified = (pipeline as (...s: unknown[]) => Promise<void>)(...stages).then(
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
  if (e instanceof CorruptStreamError || err.code?.startsWith('Z_'))
    return new InputError(`${layer.label}: corrupt ${compression} stream: ${err.message}`, { file });
  return err;
}
