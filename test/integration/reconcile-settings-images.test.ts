/**
 * Image inputs made by the real tools, on the real libvirtd: a multi-tag OCI layout made with umoci
 * and archived as podman's `save -m --format oci-archive` would (`all.oci.tar`, two refs) used
 * through settings entries naming a ref each; a `docker save | gzip` archive made with skopeo named
 * `.tar.gz`; an oci-archive made with skopeo named `.oci`. Every container runs its image's own
 * command. Domains are named ocivirt-test-settings-img-<pid>-… and removed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce } from '../../src/reconcile/sync.js';
import { buildBusyboxRootfs, domainSandbox, TEST_PREFIX, TEST_URI, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}settings-img-${process.pid}-`;
const tmp = domainSandbox(PREFIX, 'settings-images');
const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });

/** A layout with tags `a` (sleep 1001) and `b` (sleep 1002), made with umoci. */
function twoTagLayout(at: string, work: string): void {
  run('umoci', 'init', '--layout', at);
  run('umoci', 'new', '--image', `${at}:a`);
  run('umoci', 'unpack', '--rootless', '--image', `${at}:a`, join(work, 'bundle'));
  buildBusyboxRootfs(join(work, 'bundle', 'rootfs'));
  run('umoci', 'repack', '--image', `${at}:a`, join(work, 'bundle'));
  run('umoci', 'config', '--image', `${at}:a`, '--config.entrypoint', '/bin/sleep', '--config.cmd', '1001');
  run('umoci', 'config', '--image', `${at}:a`, '--tag', 'b', '--config.cmd', '1002');
}

test('a two-ref oci-archive through ref, a gzip docker-archive (.tar.gz) and an oci-archive (.oci) from skopeo', async () => {
  const spool = join(tmp(), 'spool');
  const work = join(tmp(), 'work');
  mkdirSync(spool, { mode: 0o700 });
  mkdirSync(work);
  const layout = join(work, 'layout');
  twoTagLayout(layout, work);
  run('tar', '-C', layout, '-cf', join(spool, 'all.oci.tar'), '.');
  run('skopeo', '--insecure-policy', 'copy', '-q', `oci:${layout}:a`, `docker-archive:${join(work, 'docker.tar')}:example.com/a:1`);
  execFileSync('sh', ['-c', `gzip -c "${join(work, 'docker.tar')}" > "${join(spool, 'zipped.tar.gz')}"`]);
  run('skopeo', '--insecure-policy', 'copy', '-q', `oci:${layout}:b`, `oci-archive:${join(spool, 'plain.oci')}:b`);
  writeFileSync(join(spool, 'all.ocivirt.json'), JSON.stringify({ imageOnly: true }));
  writeFileSync(join(spool, 'first.ocivirt.json'), JSON.stringify({ image: 'all.oci.tar', ref: 'a' }));
  writeFileSync(join(spool, 'second.ocivirt.json'), JSON.stringify({ image: 'all.oci.tar', ref: 'b', command: ['1003'] }));

  const port = await connectLibvirt(TEST_URI);
  try {
    const r = await syncOnce(port, { spoolDir: spool, stateDir: join(tmp(), 'state'), prefix: PREFIX, log: silentLogger(), startPolicy: 'always', stopTimeoutMs: 500 });
    assert.equal(r.failed.map((f) => f.error), []);
    assert.equal(r.plan.map((i) => `${i.action} ${i.domain.slice(PREFIX.length) || '-'}`), ['nothing -', 'create first', 'create plain', 'create second', 'create zipped']);
    await waitForInit(`${PREFIX}first`, ['/bin/sleep', '1001']);
    await waitForInit(`${PREFIX}second`, ['/bin/sleep', '1003']);
    await waitForInit(`${PREFIX}zipped`, ['/bin/sleep', '1001']);
    await waitForInit(`${PREFIX}plain`, ['/bin/sleep', '1002']);
    const again = await syncOnce(port, { spoolDir: spool, stateDir: join(tmp(), 'state'), prefix: PREFIX, log: silentLogger(), startPolicy: 'always', stopTimeoutMs: 500 });
    assert.equal(again.plan.map((i) => i.action), ['nothing', 'nothing', 'nothing', 'nothing', 'nothing']);
  } finally {
    await port.close();
  }
});

test.run();
