/**
 * A layer whose stream stops delivering (a blob read that blocks, a stalled source): without a
 * signal the applier waits for ever; aborted, it rejects at once with the signal's reason and its
 * worker is gone. A worker blocked in a call it makes (mknod(1) for a device node) is ended
 * within a bounded time too.
 */
import { PassThrough } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyLayer } from '../../src/layer/index.js';
import { abortWhileHanging } from '../helpers/hanging-tool.js';
import { chardev, file, tar } from '../helpers/tar.js';
import { sandbox } from './util.js';

test('a stalled layer stream: abort rejects with the reason and ends the worker', async () => {
  const sb = sandbox();
  try {
    const bytes = tar([file('a', 'x'.repeat(100_000))]);
    const stream = new PassThrough();
    stream.write(bytes.subarray(0, 50_000)); // half of it, and then nothing more, ever
    const ctl = new AbortController();
    let read = 0;
    const applied = applyLayer(sb.root, stream, {
      layer: 'sha256:stalled',
      signal: ctl.signal,
      onProgress: (n) => {
        read = n;
        if (n >= 50_000) ctl.abort(new Error('deadline of entry x'));
      },
    });
    let guard: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      applied.then(
        () => 'finished',
        (e: unknown) => String(e),
      ),
      new Promise<string>((r) => (guard = setTimeout(() => r('still waiting after 20 s'), 20_000))),
    ]);
    clearTimeout(guard);
    assert.is(read, 50_000);
    assert.is(outcome, 'Error: deadline of entry x');
  } finally {
    sb.cleanup();
  }
});

test('already aborted: nothing is applied', async () => {
  const sb = sandbox();
  try {
    const ctl = new AbortController();
    ctl.abort(new Error('daemon stopping'));
    const stream = new PassThrough();
    stream.end(tar([file('a', 'x')]));
    const err = await applyLayer(sb.root, stream, { layer: 'sha256:x', signal: ctl.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.match(String(err), /daemon stopping/);
  } finally {
    sb.cleanup();
  }
});

test('a mknod(1) that never returns: abort ends the layer within seconds, not when mknod does', async () => {
  const sb = sandbox();
  try {
    const layer = tar([chardev('dev/x', 1, 3)]);
    const { outcome, afterMs } = await abortWhileHanging(
      'mknod',
      (signal) => applyLayer(sb.root, new PassThrough().end(layer), { layer: 'sha256:device', allowDevices: true, signal }),
      new Error('deadline of entry x'),
    );
    assert.is(outcome, 'Error: deadline of entry x');
    assert.ok(afterMs < 15_000, `ended ${afterMs} ms after the abort`);
  } finally {
    sb.cleanup();
  }
});

test.run();
