/**
 * applyLayer: one uncompressed layer tar onto a rootfs, in a worker thread (see worker.ts and
 * writer.ts for the rules). The caller decompresses, verifies digests, and owns the staging
 * directory; this function only reads the stream, with bounded memory in flight.
 */
import { lstat, statfs } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.js';
import { scavengeEvery } from '../image/memory.js';
import type { TarLimits } from './tar-reader.js';
import type { FromWorker, ToWorker, WorkerInput } from './worker.js';
import type { LayerStats } from './writer.js';

export type { LayerStats } from './writer.js';
export type { TarLimits } from './tar-reader.js';

/**
 * Default limits: far above any real layer (the largest Debian/Ubuntu layers are a few GiB and
 * a few 100k entries) and low enough that a bomb stops early with a clear message.
 */
export const DEFAULT_LIMITS: LayerLimits = {
  maxBytes: 32 * 1024 ** 3,
  maxEntries: 1_000_000,
  maxNameLength: 4096,
  maxSparseRealSize: 64 * 1024 ** 3,
  minFreeBytes: 1024 ** 3,
};

export interface LayerLimits extends TarLimits {
  /**
   * Free space the filesystem of the rootfs keeps: a layer that would take it below this is
   * refused while it is written (a layer must never fill the disk the state lives on).
   */
  minFreeBytes: number;
}

export interface ApplyLayerOptions {
  /** The layer's digest or name, for error messages. */
  layer: string;
  limits?: Partial<LayerLimits>;
  /** Create device nodes (default false: skipped with a warning). */
  allowDevices?: boolean;
  onWarning?: (msg: string) => void;
  /** Total uncompressed bytes read so far. */
  onProgress?: (bytesRead: number) => void;
  /** Stops the layer: the worker is terminated and the promise rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/** Bytes sent to the worker and not yet applied: bounds memory whatever the layer size. */
const MAX_IN_FLIGHT = 8 * 1024 * 1024;
const BATCH_BYTES = 256 * 1024;

/** Bytes an unprivileged user may still write (what root may use beyond that is the system's reserve). */
export async function freeBytes(path: string): Promise<number> {
  const st = await statfs(path);
  return st.bavail * st.bsize;
}

export async function applyLayer(rootfs: string, tar: NodeJS.ReadableStream, opts: ApplyLayerOptions): Promise<LayerStats> {
  const st = await lstat(rootfs).catch(() => undefined);
  if (st === undefined || !st.isDirectory()) {
    throw new InputError('rootfs is not a directory', { file: opts.layer, field: rootfs });
  }
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const free = await freeBytes(rootfs);
  if (free < limits.minFreeBytes) {
    // the host is short of space before this layer wrote anything: not the layer's fault
    throw new Error(`${opts.layer}: only ${free} bytes free on the filesystem of ${rootfs}, less than the reserve of ${limits.minFreeBytes} (unpackLimits.minFreeBytes)`);
  }
  const input: WorkerInput = {
    rootfs,
    limits,
    allowDevices: opts.allowDevices ?? false,
    umask: process.umask(),
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: input });

  let inFlight = 0;
  let wakeSender: (() => void) | undefined;
  let settled = false;
  const result = new Promise<LayerStats>((resolve, reject) => {
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      wakeSender?.();
      f();
    };
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ack':
          inFlight -= m.bytes;
          if (inFlight < MAX_IN_FLIGHT / 2) wakeSender?.();
          break;
        case 'warning':
          opts.onWarning?.(`${opts.layer}: ${m.msg}`);
          break;
        case 'done':
          settle(() => resolve(m.stats));
          break;
        case 'inputError':
          settle(() => reject(new InputError(m.reason, { file: opts.layer, field: m.field })));
          break;
        case 'error': {
          const err: NodeJS.ErrnoException = new Error(`${opts.layer}: ${m.message}`);
          err.code = m.code;
          if (m.stack) err.stack = m.stack;
          settle(() => reject(err));
        }
      }
    });
    worker.on('error', (err) => settle(() => reject(err)));
    const onAbort = () => settle(() => reject(opts.signal!.reason as Error));
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('exit', () => opts.signal?.removeEventListener('abort', onAbort));
    worker.on('exit', (code) => settle(() => reject(new Error(`${opts.layer}: layer worker exited (${code}) before finishing`))));
  });
  result.catch(() => {}); // observed below; avoid an unhandled rejection while the sender runs

  const send = async () => {
    let total = 0;
    // The stream's chunks become garbage right after the copy below; collect them as we go.
    const scavenge = scavengeEvery(4 << 20);
    // Chunks are copied into batches with their own ArrayBuffer, moved (not cloned) to the
    // worker: one message per batch instead of one per 16-64 KiB stream chunk.
    let batch = new Uint8Array(BATCH_BYTES);
    let filled = 0;
    const flush = () => {
      if (filled === 0) return;
      const data = filled === batch.length ? batch : batch.slice(0, filled);
      worker.postMessage({ type: 'chunk', data } satisfies ToWorker, [data.buffer]);
      inFlight += filled;
      batch = new Uint8Array(BATCH_BYTES);
      filled = 0;
    };
    for await (const chunk of tar as AsyncIterable<Buffer | string>) {
      if (settled) return;
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      for (let off = 0; off < buf.length; ) {
        const n = Math.min(buf.length - off, BATCH_BYTES - filled);
        batch.set(buf.subarray(off, off + n), filled);
        filled += n;
        off += n;
        if (filled === BATCH_BYTES) flush();
      }
      total += buf.length;
      scavenge(buf.length);
      opts.onProgress?.(total);
      while (inFlight >= MAX_IN_FLIGHT && !settled) await new Promise<void>((r) => (wakeSender = r));
      wakeSender = undefined;
    }
    if (settled) return;
    flush();
    if (!settled) worker.postMessage({ type: 'end' } satisfies ToWorker);
  };

  try {
    const sending = send();
    sending.catch(() => {}); // its failure reaches us through the race
    await Promise.race([sending.then(() => result), result]);
    return await result;
  } finally {
    await worker.terminate();
  }
}
