/**
 * Keeping peak RSS flat while hundreds of MB stream through: every chunk the decompressor emits
 * is a fresh external buffer, and V8 only collects those once ~64 MB of them have piled up. A
 * young-generation collection (a scavenge, ~0.1 ms on our small heap) every few MB frees them as
 * we go: measured on a 315 MB layer, peak RSS of the streaming side drops from 86 to 58 MiB at no
 * measurable cost. `gc` is reached through V8's --expose-gc flag, set at run time.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (opts?: { type?: 'minor' | 'major' }) => void;

let gc: GcFunction | undefined | null = null;

function gcFunction(): GcFunction | undefined {
  if (gc === null) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as GcFunction;
    } catch {
      gc = undefined; // a runtime without the flag: only memory is lost, never correctness
    }
  }
  return gc;
}

/** Returns a byte counter that runs a scavenge each time `every` bytes have passed. */
export function scavengeEvery(every: number): (bytes: number) => void {
  const collect = gcFunction();
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since >= every && collect) {
      since = 0;
      collect({ type: 'minor' });
    }
  };
}
