/**
 * Container output on the real libvirtd, through the real daemon (one for the file, default
 * logFileBytes: 8 MiB a file): bundle entries renamed into its spool, their output read back with
 * the CLI (`ocivirt logs`), as an operator would.
 *
 * - 100,000 lines printed (`seq`) are all in `ocivirt logs`, in order, byte for byte;
 * - a flood of ~50 MB/s (50 MB printed at each second's start) for FLOOD_SECONDS: the log directory
 *   never holds more than 2 × logFileBytes (sampled every 100 ms), the last line is kept, and the
 *   daemon meanwhile defines and starts another entry. The 60 s run is bench/logs --domain
 *   (BENCHMARKS.md): here a shorter one (the integration lock is shared), which already spans
 *   ~90 rotations;
 * - `ocivirt logs -f` follows a running container's new lines, and goes on following them while
 *   the daemon is stopped: the shim writes the files itself, nothing is lost while no daemon runs.
 *
 * Domains are named ocivirt-test-logs<pid>-… and removed afterwards, whatever happens.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DaemonProcess, daemonDirs, stopAndClean, writeConfig, type DaemonDirs } from '../daemon/harness.js';
import { repoRoot } from '../helpers/schema.js';
import { TEST_PREFIX, cleanupDomains, makeTempDir, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}logs${process.pid}-`;
const CAP = 8 * 1024 * 1024;
const FLOOD_SECONDS = 15;
const MAIN = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
let tmp = '';
let dirs: DaemonDirs;
let configFile = '';
let daemon: DaemonProcess | undefined;
const dom = (entry: string) => `${PREFIX}${entry}`;
const runDir = (entry: string) => join(dirs.state, 'containers', dom(entry), 'run');

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('logs');
  dirs = daemonDirs(join(tmp, 'd'));
  configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 500, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 2, logFileBytes: CAP });
  daemon = await DaemonProcess.start(configFile);
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

/** A busybox bundle running `sh -c script`, started, renamed into the spool. */
function drop(entry: string, script: string): void {
  writeBusyboxBundle(join(dirs.staging, entry), { args: ['/bin/sh', '-c', script], annotations: { 'org.ocivirt.start': 'true' } });
  renameSync(join(dirs.staging, entry), join(dirs.spool, entry));
}

async function started(entry: string): Promise<void> {
  await daemon!.waitFor((e) => (e.event === 'domain.started' && e.domain === dom(entry)) || (e.event === 'entry.failed' && e.entry === entry), 120_000, `${entry} started`);
  const failed = daemon!.events((e) => e.event === 'entry.failed' && e.entry === entry)[0];
  if (failed) throw new Error(`${entry} failed: ${String(failed.err)}`);
}

function status(entry: string): string {
  try {
    return readFileSync(join(runDir(entry), 'status'), 'utf8');
  } catch {
    return '';
  }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** `ocivirt logs --config FILE ...args` to its end. */
function logs(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, 'logs', '--config', configFile, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, OCIVIRT_CONFIG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The bytes in a log directory now (what is there: the shim's two files and anything else). */
function dirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    try {
      n += statSync(join(dir, f)).size;
    } catch {
      // rotated away between the two calls
    }
  }
  return n;
}

test('100,000 lines printed: all of them in `ocivirt logs`, in order, byte for byte', async () => {
  drop('lines', 'seq 1 100000');
  await started('lines');
  await until(() => status('lines').startsWith('exited'), 120_000, 'seq to end');
  assert.is(status('lines').trim(), 'exited 0');
  const r = logs('lines');
  assert.is(r.code, 0, r.stderr);
  const got = r.stdout.split('\n');
  assert.is(got.pop(), '', 'the output ends with a newline');
  assert.is(got.length, 100_000, `lines: ${got.length}; stderr: ${r.stderr}`);
  const wrong = got.findIndex((l, i) => l !== String(i + 1));
  assert.is(wrong, -1, `line ${wrong + 1} is ${JSON.stringify(got[wrong])}`);
  assert.is(r.stderr, '', 'nothing dropped or lost');
});

test(`~50 MB/s for ${FLOOD_SECONDS} s: the log stays within 2 x logFileBytes, its end is kept, and the daemon keeps serving`, async () => {
  const line = 'x'.repeat(99);
  drop('flood', `yes ${line} | head -c 50000000 > /tmp/c; end=$(( $(date +%s) + ${FLOOD_SECONDS} )); n=0; ` +
    'while [ $(date +%s) -lt $end ]; do t=$(date +%s); cat /tmp/c; n=$((n+1)); while [ $(date +%s) -eq $t ]; do usleep 20000; done; done; echo "flood done $n"');
  await started('flood');
  const logDir = join(runDir('flood'), 'log');
  let most = 0;
  let samples = 0;
  const sampler = setInterval(() => {
    try {
      most = Math.max(most, dirBytes(logDir));
      samples++;
    } catch {
      // not made yet
    }
  }, 100);
  try {
    // meanwhile another entry is defined and started
    drop('probe', 'sleep 300');
    await started('probe');
    await until(() => status('flood').startsWith('exited'), (FLOOD_SECONDS + 120) * 1000, 'the flood to end');
  } finally {
    clearInterval(sampler);
  }
  assert.is(status('flood').trim(), 'exited 0');
  assert.ok(samples > FLOOD_SECONDS * 5, `only ${samples} samples`);
  assert.ok(most > CAP, `the log never went past one file (${most} bytes): no rotation was seen`);
  assert.ok(most <= 2 * CAP, `the log directory held ${most} bytes, over 2 x ${CAP}`);
  for (const f of ['current', 'previous']) assert.ok(statSync(join(logDir, f)).size <= CAP, f);
  const last = logs('--tail', '1', 'flood');
  assert.is(last.code, 0, last.stderr);
  const m = /^flood done (\d+)\n$/.exec(last.stdout);
  assert.ok(m, JSON.stringify(last.stdout.slice(0, 200)));
  const printed = Number(m![1]) * 50;
  console.log(`    flood: ${printed} MB printed in ${FLOOD_SECONDS} s (${(printed / FLOOD_SECONDS).toFixed(1)} MB/s), log directory at most ${(most / 1048576).toFixed(2)} MiB (cap 2 x ${CAP / 1048576} MiB)`);
  assert.ok(printed >= 50, 'the flood printed nothing');
});

test('`ocivirt logs -f` follows a running container, and goes on while the daemon is stopped (nothing lost)', async () => {
  drop('tick', 'i=0; while :; do echo tick $i; i=$((i+1)); usleep 100000; done');
  await started('tick');
  const ticks = (text: string) => [...text.matchAll(/^tick (\d+)$/gm)].map((x) => Number(x[1]));
  await until(() => ticks(logs('tick').stdout).length >= 3, 60_000, 'the first ticks');
  const before = Math.max(...ticks(logs('tick').stdout));
  const follower = spawn(process.execPath, [MAIN, 'logs', '-f', '--config', configFile, 'tick'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OCIVIRT_CONFIG: '' } });
  let out = '';
  let err = '';
  follower.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  follower.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => follower.on('exit', (code) => r(code)));
  try {
    const seen = () => ticks(out);
    // new lines appear as the container prints them
    await until(() => seen().some((n) => n >= before + 5), 60_000, `-f printing tick ${before + 5}`);
    // the daemon goes away; the container prints on, the shim keeps it, -f follows
    assert.is((await daemon!.stop()).code, 0);
    daemon = undefined;
    const atStop = Math.max(...seen());
    await until(() => seen().some((n) => n >= atStop + 20), 60_000, `-f printing tick ${atStop + 20} with no daemon`);
    const got = seen();
    assert.equal(got, Array.from({ length: got.length }, (_, i) => i), 'every tick once, in order, from the first (what was there when -f started)');
    // and a plain `ocivirt logs` (no daemon either) has them too
    assert.ok(ticks(logs('tick').stdout).includes(atStop + 20));
  } finally {
    follower.kill('SIGTERM');
  }
  await exited;
  assert.is(err, '');
});

test.run();
