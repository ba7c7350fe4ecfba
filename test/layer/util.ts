import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { applyLayer, type ApplyLayerOptions, type LayerStats } from '../../src/layer/index.js';
import { InputError } from '../../src/errors.js';
import { tar, tarStream, type Entry } from '../helpers/tar.js';

export interface Sandbox {
  base: string;
  root: string;
  warnings: string[];
  cleanup(): void;
}

/** A temp dir holding `rootfs/`; tests may put sentinels beside it. */
export function sandbox(): Sandbox {
  const base = mkdtempSync(join(tmpdir(), 'ocivirt-layer-'));
  const root = join(base, 'rootfs');
  mkdirSync(root);
  return { base, root, warnings: [], cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

export type Layer = (Entry | Buffer)[] | Buffer;

export function layerBytes(layer: Layer): Buffer {
  return Buffer.isBuffer(layer) ? layer : tar(layer);
}

export async function apply(sb: Sandbox, layer: Layer, opts: Partial<ApplyLayerOptions> = {}): Promise<LayerStats> {
  return applyLayer(sb.root, tarStream(layerBytes(layer)), {
    layer: 'sha256:test',
    onWarning: (m) => sb.warnings.push(m),
    ...opts,
  });
}

/** Applies and returns the InputError it must fail with. */
export async function applyFails(sb: Sandbox, layer: Layer, opts: Partial<ApplyLayerOptions> = {}): Promise<InputError> {
  try {
    await apply(sb, layer, opts);
  } catch (e) {
    if (e instanceof InputError) {
      assert.is(e.file, opts.layer ?? 'sha256:test', 'the error names the layer');
      return e;
    }
    throw e;
  }
  assert.unreachable('the layer was applied but should have been refused');
  throw new Error('unreachable');
}
