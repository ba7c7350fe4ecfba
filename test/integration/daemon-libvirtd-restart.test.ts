/**
 * libvirtd restarted under a running daemon (through the project's own script, the only way it
 * is restarted here): the daemon logs libvirt.disconnected and libvirt.reconnected, an entry
 * dropped while libvirtd is away is defined once it is back, and nothing defined before is lost.
 */
import { execFileSync, spawn } from 'node:child_process';
import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/schema.js';
import { domainSandbox, isDefined, TEST_PREFIX } from '../helpers/libvirt.js';
import { DaemonProcess, bundleConfig, busyboxCopy, daemonDirs, writeConfig, writeSmallBundle } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}r${process.pid}-`;

const tmp = domainSandbox(PREFIX, 'daemon-restart');

test('libvirtd restarted: disconnected, reconnected, the entry dropped meanwhile is defined, the others kept', async () => {
  const dirs = daemonDirs(join(tmp(), 'd'));
  const busybox = busyboxCopy(tmp());
  const config = join(tmp(), 'ocivirt.json');
  writeConfig(config, dirs, { namePrefix: PREFIX, quietMs: 300 });
  const cfg = bundleConfig(['/bin/busybox', 'sleep', '1000']);
  const d = await DaemonProcess.start(config);
  try {
    writeSmallBundle(join(dirs.staging, 'before'), busybox, cfg);
    renameSync(join(dirs.staging, 'before'), join(dirs.spool, 'before'));
    await d.waitForEntry('domain.defined', 'before', 15_000);

    writeSmallBundle(join(dirs.staging, 'during'), busybox, cfg);
    const restart = spawn(join(repoRoot(), 'scripts/setup-libvirt.sh'), ['--restart'], { stdio: 'ignore' });
    let done = false;
    const restarted = new Promise<number | null>((resolve) => restart.on('close', resolve)).finally(() => (done = true));
    // drop the entry while libvirtd is down, so the daemon's calls meet the restart
    let sawDown = false;
    while (!done && !sawDown) {
      try {
        execFileSync('virsh', ['-c', 'lxc:///', 'version'], { stdio: 'ignore', timeout: 5_000 });
      } catch {
        sawDown = true;
      }
    }
    renameSync(join(dirs.staging, 'during'), join(dirs.spool, 'during'));
    assert.is(await restarted, 0, 'setup-libvirt.sh --restart');

    await d.waitForEntry('domain.defined', 'during', 60_000);
    assert.ok(isDefined(`${PREFIX}during`));
    assert.ok(isDefined(`${PREFIX}before`), 'the domain defined before the restart is still there');
    const connection = d.events((e) => e.event.startsWith('libvirt.')).map((e) => e.event);
    if (sawDown) {
      assert.ok(connection.includes('libvirt.disconnected'), connection.join(' '));
      assert.ok(connection.indexOf('libvirt.reconnected') > connection.indexOf('libvirt.disconnected'), connection.join(' '));
      // failed passes are retried after a pause, not in a busy loop
      const failedPasses = d.events((e) => e.event === 'sync.completed' && e.err !== undefined).length;
      assert.ok(failedPasses < 30, `${failedPasses} failed passes`);
    }
    assert.is(d.events((e) => e.event === 'domain.defined' && e.entry === 'before').length, 1, 'not defined again');
  } finally {
    assert.is((await d.stop()).code, 0, d.stderr);
    try {
      execFileSync('virsh', ['-c', 'lxc:///', 'version'], { stdio: 'ignore' });
    } catch {
      execFileSync(join(repoRoot(), 'scripts/setup-libvirt.sh'), { stdio: 'ignore' });
    }
  }
});

test.run();
