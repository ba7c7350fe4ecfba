/**
 * An unpack whose step is aborted (its deadline, the daemon stopping) ends within seconds in every
 * phase, and commits nothing: aborted in a layer (the worker is terminated: layer/abort.test.ts)
 * or while the finished tree is flushed to disk (sync(1), a spawned process, is killed), the
 * staging directory is removed and the target never appears.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { unpackImage } from '../../src/image/unpack.js';
import { abortWhileHanging } from '../helpers/hanging-tool.js';
import { baseLayerEntries, ImageBuilder, scratchDirs, writeFiles } from './fixtures.js';

const scratch = scratchDirs();

function image(): string {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }] });
  return writeFiles(scratch(), b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]));
}

test('aborted while the unpacked tree is flushed (a sync(1) that never returns): ends at once, nothing committed', async () => {
  const source = image();
  const parent = scratch();
  const target = join(parent, 'bundle');
  const { outcome, afterMs } = await abortWhileHanging('sync', (signal) => unpackImage(source, target, { signal }), new Error('deadline of entry x'));
  assert.is(outcome, 'Error: deadline of entry x');
  assert.ok(afterMs < 5_000, `ended ${afterMs} ms after the abort`);
  assert.not.ok(existsSync(target), 'the target was committed');
  assert.equal(readdirSync(parent), [], 'staging and lock are gone');
});

test('aborted after the layers, before the commit: nothing committed', async () => {
  const source = image();
  const parent = scratch();
  const target = join(parent, 'bundle');
  const ctl = new AbortController();
  const err = await unpackImage(source, target, {
    signal: ctl.signal,
    // the last layer's progress report: the layers are done, the config and commit are next
    onProgress: (p) => p.done && p.layer === p.layers - 1 && ctl.abort(new Error('daemon stopping')),
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.match(String(err), /daemon stopping/);
  assert.not.ok(existsSync(target), 'the target was committed');
  assert.equal(readdirSync(parent), []);
});

test.run();
