/**
 * Removals run concurrently (issue 12, "stop as the image asks"), on the real libvirtd through the
 * real daemon: 20 running busybox bundles whose process ignores SIGTERM (`trap '' TERM`, kept
 * through the exec of sleep) are moved out of the spool at once, with a stop timeout of 3 s. Each
 * gets its SIGTERM, outlives its timeout and is killed (domain.stopped forced: true); all 20 are
 * undefined within 3 timeouts of the removal, where one after another would take 20.
 * Domains are named ocivirt-test-stop20-<pid>-… and removed afterwards, whatever happens.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DaemonProcess, bundleConfig, daemonSandbox, writeConfig, type LogEvent } from '../daemon/harness.js';
import { TEST_PREFIX, buildBusyboxRootfs, listDomainNames, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}stop20-${process.pid}-`;
const COUNT = 20;
const STOP_TIMEOUT_MS = 3_000;
const sb = daemonSandbox(PREFIX, 'stop20');
const entries = Array.from({ length: COUNT }, (_, i) => `s${String(i).padStart(2, '0')}`);
const domains = new Set(entries.map((e) => `${PREFIX}${e}`));

/** SIGTERM (15) is in the process's ignored set (/proc/PID/status SigIgn, a hex mask of bit N-1). */
const ignoresTerm = (pid: number) => (BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0'}`) & (1n << 14n)) !== 0n;

test(`${COUNT} containers that ignore their stop signal, removed at once, are all killed in about one stop timeout`, async () => {
  const { dirs } = sb;
  for (const entry of entries) {
    const dir = join(dirs.staging, entry);
    buildBusyboxRootfs(join(dir, 'rootfs'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(bundleConfig(['/bin/sh', '-c', "trap '' TERM; exec sleep 1000"], { annotations: { 'org.ocivirt.start': 'true' } })));
    renameSync(dir, join(dirs.spool, entry));
  }
  const configFile = join(sb.tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 300, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: STOP_TIMEOUT_MS / 1000 });
  const daemon = (sb.daemon = await DaemonProcess.start(configFile));
  const isOurs = (event: string) => (e: LogEvent) => e.event === event && domains.has(e.domain as string);
  await daemon.waitForCount(isOurs('domain.started'), COUNT, 240_000, 'domain.started');
  // each process has set its trap and exec'd sleep: a SIGTERM now is ignored, not fatal
  for (const d of domains) assert.ok(ignoresTerm((await waitForInit(d, ['sleep', '1000'], 30_000)).initPid), `${d} does not ignore SIGTERM`);

  const t0 = performance.now();
  for (const entry of entries) renameSync(join(dirs.spool, entry), join(dirs.staging, entry));
  // (none of these was stopped or undefined before)
  const gone = await daemon.waitForCount(isOurs('domain.undefined'), COUNT, COUNT * STOP_TIMEOUT_MS + 60_000, 'domain.undefined');
  const totalMs = Math.max(...gone.map((e) => daemon.arrivals[daemon.lines.indexOf(e)]!)) - t0;

  const stopped = daemon.lines.filter(isOurs('domain.stopped'));
  assert.is(new Set(stopped.map((e) => e.domain)).size, COUNT, 'one domain.stopped each');
  for (const e of stopped) {
    assert.equal([e.signal, e.forced], ['SIGTERM', true], JSON.stringify(e));
    assert.ok((e.ms as number) >= STOP_TIMEOUT_MS, `${String(e.domain)} was killed before its timeout: ${String(e.ms)} ms`);
  }
  // when each was stopped and undefined, in ms after the removal: where the time went, if too long
  const at = (ev: string) => daemon.lines.flatMap((e, i) => (isOurs(ev)(e) ? [Math.round(daemon.arrivals[i]! - t0)] : [])).join(' ');
  console.log(`stop-concurrent: ${COUNT} stubborn removals took ${Math.round(totalMs)} ms (stop timeout ${STOP_TIMEOUT_MS} ms)`);
  assert.ok(totalMs < 3 * STOP_TIMEOUT_MS, `${COUNT} removals took ${Math.round(totalMs)} ms: not within 3 stop timeouts (${3 * STOP_TIMEOUT_MS} ms); stopped at ${at('domain.stopped')}; undefined at ${at('domain.undefined')}`);
  const left = listDomainNames().filter((n) => domains.has(n));
  assert.equal(left, [], 'still defined');
});

test.run();
