/**
 * scripts/setup-libvirt.sh only ever signals the libvirtd it started: the process its pid file
 * names, called libvirtd, running this machine's libvirtd binary, with `--pid-file <that file>` on
 * its command line. Anything else a pid file points at, and any libvirtd found by name, is left
 * alone. These run `--stop` against stand-in processes and a private pid file (which also keeps
 * systemd's libvirtd out of it): the machine's libvirtd is never named, so they need no lock.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/schema.js';

const script = join(repoRoot(), 'scripts', 'setup-libvirt.sh');

/** Runs `--stop` without blocking the event loop: a signalled stand-in's exit is then seen. */
async function stopWith(pidFile: string, dir: string): Promise<{ status: number | null; out: string }> {
  const r = spawn(script, ['--stop'], {
    env: { ...process.env, OCIVIRT_LIBVIRTD_PIDFILE: pidFile, OCIVIRT_SETUP_LOG: join(dir, 'setup.log') },
  });
  let out = '';
  r.stdout.on('data', (d) => (out += d));
  r.stderr.on('data', (d) => (out += d));
  const [status] = (await once(r, 'close')) as [number | null];
  return { status, out };
}

/** Still running half a second after the script ended (a SIGTERM it sent would have ended it by then). */
async function alive(child: ChildProcess): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return false;
  const exited = once(child, 'exit').then(() => true);
  return !(await Promise.race([exited, delay(500).then(() => false)]));
}

/** A stand-in: a copy of /bin/sh named `libvirtd` (so its comm is libvirtd), looping in sleeps. */
function standIn(dir: string, pidFile: string): ChildProcess {
  const fake = join(dir, 'libvirtd');
  copyFileSync('/bin/sh', fake);
  // `sh -c SCRIPT $0 $1`: the pid-file argument lands on the command line as libvirtd's would
  return spawn(fake, ['-c', 'while :; do sleep 1; done', '--pid-file', pidFile], { stdio: 'ignore' });
}

test('a process named libvirtd with our --pid-file argument but another binary is not signalled', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-setup-'));
  const pidFile = join(dir, 'libvirtd.pid');
  const child = standIn(dir, pidFile);
  try {
    await new Promise((r) => child.once('spawn', r));
    writeFileSync(pidFile, `${child.pid}\n`);
    assert.is(readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim(), 'libvirtd', 'the stand-in looks like libvirtd by name');
    const r = await stopWith(pidFile, dir);
    assert.is(r.status, 0, r.out);
    assert.ok(await alive(child), `the stand-in was signalled: ${r.out}`);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a pid file naming some other process is not acted on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-setup-'));
  const pidFile = join(dir, 'libvirtd.pid');
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    writeFileSync(pidFile, `${child.pid}\n`);
    const r = await stopWith(pidFile, dir);
    assert.is(r.status, 0, r.out);
    assert.ok(await alive(child), `the process was signalled: ${r.out}`);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
