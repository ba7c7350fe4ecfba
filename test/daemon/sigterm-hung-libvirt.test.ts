/**
 * SIGTERM ends the daemon whatever libvirt does: here libvirtd is a socket that accepts and never
 * answers (a wedged libvirtd), so the daemon's connect hangs. No real libvirtd is touched.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DaemonProcess, daemonDirs, writeConfig } from './harness.js';

test('SIGTERM while the libvirt connect hangs: the daemon ends at once and says why', async () => {
  const base = mkdtempSync(join(tmpdir(), 'ocivirt-hung-libvirt-'));
  const sockets: Socket[] = [];
  let connected!: () => void;
  const connecting = new Promise<void>((r) => (connected = r));
  const server: Server = createServer((c) => {
    sockets.push(c);
    c.resume(); // read the RPC calls, answer none
    connected();
  });
  const sock = join(base, 'libvirt-sock');
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    const dirs = daemonDirs(join(base, 'd'));
    const config = join(dirs.base, 'ocivirt.json');
    writeConfig(config, dirs, { uri: `lxc:///system?socket=${sock}`, shutdownTimeoutSec: 30 });
    const d = DaemonProcess.spawn(config);
    const killer = setTimeout(() => d.child.kill('SIGKILL'), 20_000);
    await connecting;
    await new Promise((r) => setTimeout(r, 300)); // well inside the connect
    assert.is(d.events((e) => e.event === 'daemon.started').length, 0, 'not started: the connect hangs');
    const t0 = performance.now();
    d.signal('SIGTERM');
    const { signal } = await d.exited;
    clearTimeout(killer);
    const took = performance.now() - t0;
    // not the 20 s killer, and not the 30 s shutdown timeout: there is nothing to finish
    assert.ok(took < 10_000, `ended ${Math.round(took)} ms after SIGTERM`);
    const stopped = d.events((e) => e.event === 'daemon.stopped');
    assert.is(stopped.length, 1, d.stderr);
    assert.is(stopped[0]!.stuck, true, 'the connect was still hanging');
    // a thread inside libvirt keeps Node from exiting: the daemon ends itself, and says so
    assert.is(signal, 'SIGKILL');
    assert.match(d.stderr, /ending with SIGKILL/);
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(base, { recursive: true, force: true });
  }
});

test.run();
