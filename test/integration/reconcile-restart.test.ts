/**
 * libvirtd restarted in the middle of a pass: that pass may fail (entries or as a whole), the
 * port reconnects by itself, and the next pass converges to exactly the spool, with no
 * duplicate and nothing disturbed.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { LibvirtUnavailableError, type LibvirtPort } from '../../src/libvirt/port.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { countingPort, domainSandbox, listDomainNames, TEST_PREFIX, TEST_URI, virsh, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}rst-${process.pid}-`;
const ENTRIES = 24;
const repoRoot = new URL('../../..', import.meta.url).pathname;

const tmp = domainSandbox(PREFIX, 'reconcile-restart');

test('libvirtd restarted during a pass: the next pass converges', async () => {
  const spool = join(tmp(), 'spool');
  for (let i = 0; i < ENTRIES; i++) writeBusyboxBundle(join(spool, `e${i}`));
  const port = await connectLibvirt(TEST_URI, { backoffInitialMs: 100, backoffMaxMs: 400 });
  const opts: SyncOptions = {
    spoolDir: spool,
    stateDir: join(tmp(), 'state'),
    prefix: PREFIX,
    log: silentLogger(),
    concurrency: 2,
    attempts: 1, // let the pass see the outage instead of riding it out
  };
  try {
    // the restart happens inside the pass, deterministically: before its 7th define
    let defines = 0;
    let restartedAt = -1;
    const define = async (xml: string) => {
      defines += 1;
      if (defines === 7) {
        restartedAt = defines;
        const restart = spawn(join(repoRoot, 'scripts/setup-libvirt.sh'), ['--restart'], { stdio: 'ignore' });
        const code = await new Promise<number | null>((resolve) => restart.on('close', resolve));
        assert.is(code, 0, 'setup-libvirt.sh --restart failed');
      }
      return port.define(xml);
    };
    const restarting = new Proxy(port, {
      get: (target, prop) => (prop === 'define' ? define : (Reflect.get(target, prop) as unknown)),
    }) as LibvirtPort;
    const first = await syncOnce(restarting, opts);
    assert.is(restartedAt, 7, 'the restart did not happen inside the pass');
    const created = first.results.filter((r) => r.ok && r.item.action === 'create').length;
    assert.ok(created >= 6, `only ${created} created before the restart`);
    // whatever failed, failed for the outage, not for anything else
    for (const f of first.failed) assert.match(f.error ?? '', /libvirt|connection/i);
    virsh('version'); // libvirtd answers again

    // the backoff may refuse the first call for a moment; a daemon simply runs the next pass
    let converged;
    for (let i = 0; i < 20 && converged === undefined; i++) {
      try {
        converged = await syncOnce(port, { ...opts, attempts: 3, retryDelayMs: 100 });
      } catch (e) {
        if (!(e instanceof LibvirtUnavailableError)) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.ok(converged, 'no pass completed after the restart');
    assert.equal(converged.failed.map((f) => f.error), []);
    const ours = listDomainNames().filter((n) => n.startsWith(PREFIX)).sort();
    const want = Array.from({ length: ENTRIES }, (_, i) => `${PREFIX}e${i}`).sort();
    assert.equal(ours, want);

    const counted = countingPort(port);
    const steady = await syncOnce(counted.port, opts);
    assert.ok(steady.plan.every((p) => p.action === 'nothing'));
    assert.is(counted.writes(), 0);
  } finally {
    await port.close();
  }
});

test.run();
