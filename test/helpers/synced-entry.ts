/** A spool holding one minimal bundle `web`, synced once on an in-memory libvirt: the start of the lifecycle tests. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { writeMinimalBundle } from './bundle.js';
import { FakeLibvirt } from './fake-libvirt.js';
import { captureLog } from './log.js';

/** `web` (and `web.ocivirt.json` when `settings` are given) under `base`, defined and started. */
export async function syncedWeb(base: string, settings?: Record<string, unknown>) {
  const spool = join(base, 'spool');
  mkdirSync(spool, { recursive: true });
  const { log, events } = captureLog();
  const stateDir = join(base, 'state');
  const opts: SyncOptions = { spoolDir: spool, stateDir, log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10 };
  const port = new FakeLibvirt();
  writeMinimalBundle(join(spool, 'web'));
  if (settings !== undefined) writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify(settings));
  await syncOnce(port, opts);
  return { spool, stateDir, opts, port, log, events };
}
