/**
 * The worker thread that applies one layer: tar chunks arrive by message, are parsed and written
 * with synchronous fs calls (the fastest way to make many small files from Node), and each chunk
 * is acknowledged so the sender can bound what is in flight. The daemon's event loop never runs
 * any of this.
 */
import { statfsSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../errors.js';
import { TarReader } from './tar-reader.js';
import type { LayerLimits } from './apply.js';
import { LayerWriter } from './writer.js';
import { scavengeEvery } from '../image/memory.js';

export interface WorkerInput {
  rootfs: string;
  limits: LayerLimits;
  allowDevices: boolean;
  umask: number;
}

export type ToWorker = { type: 'chunk'; data: Uint8Array } | { type: 'end' };

export type FromWorker =
  | { type: 'ack'; bytes: number }
  | { type: 'warning'; msg: string }
  | { type: 'done'; stats: import('./writer.js').LayerStats }
  | { type: 'inputError'; reason: string; field: string | undefined }
  | { type: 'error'; message: string; code: string | undefined; stack: string | undefined };

const port = parentPort!;
const input = workerData as WorkerInput;
const post = (m: FromWorker) => port.postMessage(m);

const writer = new LayerWriter(input.rootfs, {
  allowDevices: input.allowDevices,
  umask: input.umask,
  onWarning: (msg) => post({ type: 'warning', msg }),
});
const reader = new TarReader(writer, input.limits, (msg) => post({ type: 'warning', msg }));
let failed = false;
// chunks are external buffers V8 frees late; a scavenge every 4 MiB keeps peak RSS flat (image/memory.ts)
const scavenge = scavengeEvery(4 << 20);

/** How much of the stream is written between two looks at the free space. */
const FREE_CHECK_BYTES = 16 << 20;
let sinceFreeCheck = 0;

/** The layer may not take the rootfs's filesystem below its reserve (see apply.ts). */
function checkFreeSpace(bytes: number): void {
  sinceFreeCheck += bytes;
  if (sinceFreeCheck < FREE_CHECK_BYTES) return;
  sinceFreeCheck = 0;
  const st = statfsSync(input.rootfs);
  const free = st.bavail * st.bsize;
  if (free < input.limits.minFreeBytes) {
    throw new InputError(
      `layer would fill the disk: free space on the filesystem of the rootfs fell to ${free} bytes, below the reserve of ${input.limits.minFreeBytes} (unpackLimits.minFreeBytes)`,
      { field: reader.current },
    );
  }
}

function fail(err: unknown): void {
  failed = true;
  try {
    writer.abort();
  } catch {
    // the first error is the one to report
  }
  if (err instanceof InputError) post({ type: 'inputError', reason: err.reason, field: err.field ?? reader.current });
  else {
    const e = err as NodeJS.ErrnoException;
    post({ type: 'error', message: e?.message ?? String(err), code: e?.code, stack: e?.stack });
  }
  port.close();
}

port.on('message', (m: ToWorker) => {
  if (failed) return;
  try {
    if (m.type === 'chunk') {
      reader.write(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
      checkFreeSpace(m.data.byteLength);
      post({ type: 'ack', bytes: m.data.byteLength });
      scavenge(m.data.byteLength);
    } else {
      reader.end();
      writer.finish();
      writer.stats.bytes = reader.bytesRead;
      post({ type: 'done', stats: writer.stats });
      port.close();
    }
  } catch (err) {
    fail(err);
  }
});
