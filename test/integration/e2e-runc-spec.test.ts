/**
 * Issue 2, end to end on the real libvirtd: the config Debian's `runc spec` writes (args ["sh"],
 * a bare argv0, and terminal: true), with a busybox rootfs, goes through `bin/ocivirt
 * from-native`, is defined, started, its init is seen running inside the container on our
 * rootfs, then it is destroyed and undefined.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildBusyboxRootfs, cleanupDomains, domainSandbox, domainState, isDefined, pid1Inside, TEST_PREFIX, virsh, waitForExit, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}e2e-runc-`;
const NAME = `${PREFIX}${process.pid}`;
const repoRoot = new URL('../../..', import.meta.url).pathname;

const tmp = domainSandbox(PREFIX, 'e2e-runc');

test('runc spec bundle: from-native, define, start, init runs inside, destroy, undefine', async () => {
  const bundle = join(tmp(), 'bundle');
  execFileSync('mkdir', ['-p', bundle]);
  execFileSync('runc', ['spec'], { cwd: bundle });
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { args: string[]; terminal: boolean; env: string[] };
    root: { path: string };
  };
  // the fixture is what the issue means: a bare argv0 that must resolve through PATH, a terminal
  assert.equal(config.process.args, ['sh']);
  assert.is(config.process.terminal, true);
  assert.is(config.root.path, 'rootfs');
  const rootfs = buildBusyboxRootfs(join(bundle, 'rootfs'));

  const conv = spawnSync(join(repoRoot, 'bin/ocivirt'), ['from-native', '--name', NAME, bundle], { encoding: 'utf8' });
  assert.is(conv.status, 0, `from-native failed: ${conv.stderr}`);
  assert.not.match(conv.stderr, /^\s+at /m, 'no stack trace on stderr');
  const xml = conv.stdout;
  assert.match(xml, `<name>${NAME}</name>`);
  const xmlFile = join(tmp(), 'domain.xml');
  writeFileSync(xmlFile, xml);

  try {
    virsh('define', xmlFile);
    assert.ok(isDefined(NAME));
    virsh('start', NAME);
    assert.is(domainState(NAME), 'running');

    // `sh` was found through the config's PATH inside the rootfs: the init is /bin/sh
    const init = await waitForInit(NAME, ['/bin/sh']);
    assert.equal(pid1Inside(NAME), ['/bin/sh'], 'pid 1 inside the container');
    // it runs on our busybox rootfs, not the host's root
    const inContainer = statSync(`/proc/${init.initPid}/root/bin/busybox`);
    const ours = statSync(join(rootfs, 'bin/busybox'));
    assert.equal([inContainer.dev, inContainer.ino], [ours.dev, ours.ino]);
    // with the config's environment
    const environ = readFileSync(`/proc/${init.initPid}/environ`, 'utf8').split('\0');
    for (const kv of config.process.env) assert.ok(environ.includes(kv), `init lacks ${kv}`);

    virsh('destroy', NAME);
    assert.is(domainState(NAME), 'shut off');
    assert.ok(await waitForExit(init.initPid), `init ${init.initPid} still alive after destroy`);
    virsh('undefine', NAME);
    assert.not.ok(isDefined(NAME));
  } finally {
    cleanupDomains(PREFIX);
  }
});

test.run();
