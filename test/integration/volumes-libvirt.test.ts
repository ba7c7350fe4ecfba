/**
 * Volumes on the real libvirtd (issue 10): an image made with umoci with `VOLUME /data` holding a
 * file, run as a spool entry that also names a volume `shared`. Each container start appends a
 * line to both volumes. The anonymous volume is seeded with the image's file; the data survives a
 * new image version of the entry (restart policy: the container runs again on the new tree), a
 * new pass on a new connection as after a daemon restart, and removing and re-adding the entry;
 * `ocivirt volume remove` refuses a volume in use (exit 2 naming the domain) and removes it once
 * unused. Domains are named ocivirt-test-vol-<pid>-… and removed afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce } from '../../src/reconcile/sync.js';
import { anonymousVolumeName, volumesDir } from '../../src/volumes/index.js';
import { buildBusyboxRootfs, domainSandbox, isDefined, TEST_PREFIX, TEST_URI, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}vol-${process.pid}-`;
const tmp = domainSandbox(PREFIX, 'volumes');
const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
const SCRIPT = 'echo start >> /data/log; echo start >> /shared/log; exec sleep 1000';
const BIN = new URL('../../../bin/ocivirt', import.meta.url).pathname;

/** The image: busybox, /data/seed.txt, VOLUME /data, its command appending to both volumes. */
function makeImage(layout: string, work: string): void {
  run('umoci', 'init', '--layout', layout);
  run('umoci', 'new', '--image', `${layout}:v`);
  run('umoci', 'unpack', '--rootless', '--image', `${layout}:v`, join(work, 'bundle'));
  buildBusyboxRootfs(join(work, 'bundle', 'rootfs'));
  mkdirSync(join(work, 'bundle', 'rootfs', 'data'));
  mkdirSync(join(work, 'bundle', 'rootfs', 'shared'));
  writeFileSync(join(work, 'bundle', 'rootfs', 'data', 'seed.txt'), 'from the image\n');
  run('umoci', 'repack', '--image', `${layout}:v`, join(work, 'bundle'));
  run('umoci', 'config', '--image', `${layout}:v`, '--config.volume', '/data', '--config.entrypoint', '/bin/sh', '--config.cmd=-c', `--config.cmd=${SCRIPT}`);
}

async function waitForLines(file: string, n: number): Promise<string[]> {
  const deadline = Date.now() + 15_000;
  let lines: string[] = [];
  while (Date.now() < deadline) {
    lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
    if (lines.length >= n) return lines;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.unreachable(`${file}: ${lines.length} lines, expected ${n}`);
  return lines;
}

test('volume data survives a new image version, a restart and removing and re-adding the entry; a volume in use cannot be removed', async () => {
  const spool = join(tmp(), 'spool');
  const state = join(tmp(), 'state');
  const work = join(tmp(), 'work');
  mkdirSync(spool, { mode: 0o700 });
  mkdirSync(work);
  makeImage(join(spool, 'web'), work);
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ volumes: ['shared:/shared'] }));
  const domain = `${PREFIX}web`;
  const anon = join(volumesDir(state), anonymousVolumeName(domain, '/data'));
  const shared = join(volumesDir(state), 'shared');
  const pass = (port: LibvirtPort) =>
    syncOnce(port, { spoolDir: spool, stateDir: state, prefix: PREFIX, log: silentLogger(), startPolicy: 'always', updatePolicy: 'restart', stopTimeoutMs: 500 });
  const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, 'volume', ...args, '--spool', spool, '--state', state, '--uri', TEST_URI], { encoding: 'utf8' });

  let port = await connectLibvirt(TEST_URI);
  try {
    let r = await pass(port);
    assert.equal(r.failed.map((f) => f.error), []);
    await waitForInit(domain, ['sleep', '1000']); // the script execs sleep
    // seeded with the image's file, and written by the container
    assert.is(readFileSync(join(anon, 'seed.txt'), 'utf8'), 'from the image\n');
    await waitForLines(join(anon, 'log'), 1);
    await waitForLines(join(shared, 'log'), 1);

    // in use: refused, naming the domain
    const refused = cli('remove', 'shared');
    assert.is(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`in use by domain ${domain} \\(/shared\\)`));
    const listed = cli('list');
    assert.is(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^shared +\\d+ +domain ${domain} \\(/shared\\), entry web \\(/shared\\)$`, 'm'));

    // a new image version: the container runs again on the new tree, with the same volumes
    run('umoci', 'config', '--image', `${join(spool, 'web')}:v`, '--config.env', 'VERSION=2');
    r = await pass(port);
    assert.equal(r.failed.map((f) => f.error), []);
    assert.equal(r.plan.map((i) => i.action), ['update']);
    await waitForLines(join(anon, 'log'), 2);
    await waitForLines(join(shared, 'log'), 2);

    // a restart: a new connection and pass with the same state directory change nothing
    await port.close();
    port = await connectLibvirt(TEST_URI);
    r = await pass(port);
    assert.equal(r.plan.map((i) => i.action), ['nothing']);
    assert.is((await waitForLines(join(shared, 'log'), 2)).length, 2);

    // the entry removed: the domain goes, the volumes stay
    renameSync(join(spool, 'web'), join(work, 'web'));
    renameSync(join(spool, 'web.ocivirt.json'), join(work, 'web.ocivirt.json'));
    r = await pass(port);
    assert.not.ok(isDefined(domain));
    assert.ok(existsSync(join(anon, 'log')) && existsSync(join(shared, 'log')));

    // re-added: the same volumes, not seeded again (the seed removed by the container stays gone)
    execFileSync('rm', [join(anon, 'seed.txt')]);
    renameSync(join(work, 'web'), join(spool, 'web'));
    renameSync(join(work, 'web.ocivirt.json'), join(spool, 'web.ocivirt.json'));
    r = await pass(port);
    assert.equal(r.failed.map((f) => f.error), []);
    await waitForLines(join(anon, 'log'), 3);
    await waitForLines(join(shared, 'log'), 3);
    assert.not.ok(existsSync(join(anon, 'seed.txt')));

    // unused once the entry and its domain are gone: removed
    renameSync(join(spool, 'web.ocivirt.json'), join(work, 'web.ocivirt.json'));
    r = await pass(port); // the domain is redefined without `shared`
    const removed = cli('remove', 'shared');
    assert.is(removed.status, 0, removed.stderr);
    assert.not.ok(existsSync(shared));
  } finally {
    await port.close();
  }
});

test.run();
