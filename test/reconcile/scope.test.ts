/**
 * The per-entry pass (scope.ts): only an entry that is really gone (ENOENT, ENOTDIR) loses its
 * domain. Any other error examining it (EACCES, EIO, ELOOP …) fails the entry and leaves its
 * domain as it is, as a full scan does (issue 8 item 4).
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { syncOnce, syncPass, type PassSpec, type SyncOptions } from '../../src/reconcile/sync.js';
import { captureLog } from '../helpers/log.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-scope-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function setup(label: string) {
  const spool = join(tmp, label, 'spool');
  mkdirSync(spool, { recursive: true });
  const opts: SyncOptions = { spoolDir: spool, stateDir: join(tmp, label, 'state'), log: captureLog().log, retryDelayMs: 1, stopTimeoutMs: 10 };
  const spec = (names: string[]): PassSpec => ({ scope: new Set(names), settled: () => true, known: new Map(), unpackEvents: false });
  return { spool, opts, spec };
}

test('an entry that cannot be examined (here ELOOP: the spool path loops) fails; its domain is not deleted', async () => {
  const port = new FakeLibvirt();
  const { spool, opts, spec } = setup('eloop');
  writeMinimalBundle(join(spool, 'web'));
  await syncOnce(port, opts);
  assert.ok(port.domains.has('web'));

  // the spool's path stops resolving for a moment (a loop: lstat of spool/web gives ELOOP)
  renameSync(spool, `${spool}.real`);
  symlinkSync(spool, spool);
  const { results } = await syncPass(port, opts, spec(['web']));
  assert.equal(
    results.map((r) => `${r.item.action} ${r.item.domain}`),
    ['fail web'],
  );
  assert.match(results[0]!.error ?? '', /cannot be examined \(ELOOP\)/);
  assert.ok(port.domains.has('web'), 'the domain is still there');
  assert.is(port.count('undefine') + port.count('stop') + port.count('sendSignal') + port.count('destroy'), 0);
});

test('an entry really gone (ENOENT) loses its domain, and only that one', async () => {
  const port = new FakeLibvirt();
  const { spool, opts, spec } = setup('gone');
  writeMinimalBundle(join(spool, 'web'));
  writeMinimalBundle(join(spool, 'db'));
  await syncOnce(port, opts);
  rmSync(join(spool, 'web'), { recursive: true });
  const { results } = await syncPass(port, opts, spec(['web']));
  assert.equal(
    results.map((r) => `${r.item.action} ${r.item.domain}`),
    ['delete web'],
  );
  assert.not.ok(port.domains.has('web'));
  assert.ok(port.domains.has('db'));
});

test.run();
