/**
 * scripts/setup-libvirt.sh only ever signals the libvirtd it started: the process its pid file
 * names, called libvirtd, running this machine's libvirtd binary, with `--pid-file <that file>` on
 * its command line. Anything else a pid file points at, and any libvirtd found by name, is left
 * alone. These run `--stop` against stand-in processes and a private pid file: the machine's
 * libvirtd is never named, so they need no lock.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/schema.js';

const script = join(repoRoot(), 'scripts', 'setup-libvirt.sh');

function stopWith(pidFile: string, dir: string): { status: number | null; out: string } {
  const r = spawnSync(script, ['--stop'], {
    encoding: 'utf8',
    env: { ...process.env, OCIVIRT_LIBVIRTD_PIDFILE: pidFile, OCIVIRT_SETUP_LOG: join(dir, 'setup.log') },
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
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
    const r = stopWith(pidFile, dir);
    assert.is(r.status, 0, r.out);
    assert.ok(alive(child), `the stand-in was signalled: ${r.out}`);
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
    const r = stopWith(pidFile, dir);
    assert.is(r.status, 0, r.out);
    assert.ok(alive(child), `the process was signalled: ${r.out}`);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
