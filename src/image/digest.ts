/**
 * Content digests (image-spec descriptor.md): parsing that refuses anything we could not verify
 * or that would be unsafe as a path component, and a pass-through stream that checks a blob's
 * digest and size while it flows, so nothing downstream ever waits for a separate hashing pass.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { InputError } from '../errors.js';

/** The algorithms we can verify, with the exact shape of their encoded part (lowercase hex). */
const ALGORITHMS = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
} as const;
export type DigestAlgorithm = keyof typeof ALGORITHMS;

export interface Digest {
  algorithm: DigestAlgorithm;
  /** Lowercase hex, exact length: safe to use as a file name. */
  encoded: string;
  /** `algorithm:encoded`. */
  text: string;
}

/** The general grammar from descriptor.md, used only to word the error precisely. */
const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/**
 * Parses `algorithm:encoded`. Unknown algorithms and encoded parts that are not the algorithm's
 * exact lowercase hex form are refused here, before any path is ever built from them.
 */
export function parseDigest(value: unknown, where: { file?: string; field?: string } = {}): Digest {
  if (typeof value !== 'string') throw new InputError('digest must be a string', where);
  const shown = JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value);
  const colon = value.indexOf(':');
  if (colon <= 0 || !GRAMMAR.test(value)) throw new InputError(`malformed digest ${shown}`, where);
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  if (!Object.hasOwn(ALGORITHMS, algorithm))
    throw new InputError(`digest ${shown} uses an unsupported algorithm '${algorithm}' (supported: sha256, sha512)`, where);
  const alg = algorithm as DigestAlgorithm;
  if (!ALGORITHMS[alg].test(encoded))
    throw new InputError(`digest ${shown} is not a valid ${alg} value (lowercase hex of the exact length)`, where);
  return { algorithm: alg, encoded, text: value };
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function digestOf(data: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): Digest {
  const encoded = createHash(algorithm).update(data).digest('hex');
  return { algorithm, encoded, text: `${algorithm}:${encoded}` };
}

/** A short form for messages: `sha256:0123456789ab`. */
export function shortDigest(d: Digest | string): string {
  const t = typeof d === 'string' ? d : d.text;
  const colon = t.indexOf(':');
  return t.slice(0, colon + 13);
}

export interface VerifyOptions {
  /** The digest the bytes must hash to; omitted when the format has none (legacy docker-save layers). */
  digest?: Digest;
  /** The exact byte count; omitted when unknown. */
  size?: number;
  /** What to call the stream in errors, e.g. `layer 2 (sha256:ab…)`. */
  label: string;
  /** The file the bytes come from, for InputError. */
  file?: string;
  /** Told the size of every chunk that passes (progress). */
  onBytes?: (n: number) => void;
}

/**
 * Passes bytes through unchanged while counting and hashing them. A stream longer than `size`
 * fails at the first extra byte; shorter or with a different digest fails at the end. Either way
 * the error reaches everything downstream through stream destruction.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private readonly opts: VerifyOptions;
  bytes = 0;
  /** The hex digest of what passed, once the stream has ended. */
  computed: string | undefined;

  constructor(opts: VerifyOptions) {
    super();
    this.opts = opts;
    this.hash = createHash(opts.digest?.algorithm ?? 'sha256');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    const { size } = this.opts;
    if (size !== undefined && this.bytes > size) {
      done(this.fail(`is larger than the ${size} bytes its descriptor declares`));
      return;
    }
    this.hash.update(chunk);
    this.opts.onBytes?.(chunk.length);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const { size, digest } = this.opts;
    if (size !== undefined && this.bytes !== size) {
      done(this.fail(`is truncated: ${this.bytes} of the ${size} bytes its descriptor declares`));
      return;
    }
    this.computed = this.hash.digest('hex');
    if (digest !== undefined && this.computed !== digest.encoded) {
      done(this.fail(`does not match its digest: content hashes to ${digest.algorithm}:${this.computed}`));
      return;
    }
    done();
  }

  private fail(reason: string): InputError {
    return new InputError(`${this.opts.label} ${reason}`, { file: this.opts.file });
  }
}
