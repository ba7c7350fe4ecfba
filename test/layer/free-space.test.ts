/**
 * The free-space reserve: a layer may not take the filesystem of the rootfs below
 * `minFreeBytes`. Short of space before anything is written is the host's problem (a plain
 * error); running short while a layer is written is the layer's (an InputError naming it).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { statfsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { InputError } from '../../src/errors.js';
import { applyLayer } from '../../src/layer/index.js';
import { BLOCK } from '../../src/layer/tar-reader.js';
import { header } from '../helpers/tar.js';
import { sandbox, type Sandbox } from './util.js';

const MiB = 1024 * 1024;

const free = (path: string) => {
  const st = statfsSync(path);
  return st.bavail * st.bsize;
};

/** One file of `size` bytes of 0x61 (not zeros: nothing may make it sparse), streamed. */
function bigFileTar(size: number): Readable {
  async function* gen() {
    yield header({ name: 'big', size });
    const chunk = Buffer.alloc(MiB, 0x61);
    for (let left = size; left > 0; left -= MiB) yield chunk.subarray(0, Math.min(left, MiB));
    yield Buffer.alloc(2 * BLOCK);
  }
  return Readable.from(gen());
}

let sb: Sandbox;
test.before.each(() => {
  sb = sandbox();
});
test.after.each(() => sb.cleanup());

test('a layer that would take the filesystem below the reserve is refused while it is written', async () => {
  // the reserve sits 48 MiB under what is free now; the layer writes 160 MiB
  const reserve = free(sb.root) - 48 * MiB;
  try {
    await applyLayer(sb.root, bigFileTar(160 * MiB), { layer: 'sha256:big', limits: { minFreeBytes: reserve } });
    assert.unreachable('the layer filled the disk past the reserve');
  } catch (e) {
    assert.instance(e, InputError, String(e));
    assert.match((e as InputError).message, /^sha256:big: big: layer would fill the disk: free space .* below the reserve of \d+ \(unpackLimits.minFreeBytes\)/);
  }
});

test('already below the reserve before the layer: a host error, not the layer\'s', async () => {
  const reserve = free(sb.root) + 1024 * MiB;
  try {
    await applyLayer(sb.root, bigFileTar(1), { layer: 'sha256:small', limits: { minFreeBytes: reserve } });
    assert.unreachable('applied');
  } catch (e) {
    assert.not.instance(e, InputError);
    assert.match((e as Error).message, /sha256:small: only \d+ bytes free on the filesystem of .* less than the reserve of \d+ \(unpackLimits.minFreeBytes\)/);
  }
});

test.run();
