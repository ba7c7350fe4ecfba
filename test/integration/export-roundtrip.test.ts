/**
 * Issue 10 item 5, "exports that go back", on the real libvirtd: an image entry (with an image
 * VOLUME) and its settings file (env, memory, two named volumes, one read-only; start false) make a
 * domain through a sync pass; `ocivirt export --rootfs` (the CLI) exports it; the entry is taken out
 * of the spool and its domain undefined; the export, copied as it is (cp -a) into a fresh empty
 * spool with the same state directory, makes a domain again. That domain is the same container
 * (containerDifferences: only provenance differs), on a rootfs tree equal to the original one
 * (paths, types, modes, owners, sizes, link targets, contents), and the exported config.json asks
 * the trust check for nothing it refuses: a relative root.path and no bind of the state
 * directory (the pass that takes it back has no bindAllowList). Domains are named
 * ocivirt-test-rt-<pid>-… and removed afterwards, whatever happens.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { silentLogger } from '../../src/log.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { syncOnce } from '../../src/reconcile/sync.js';
import { anonymousVolumeName, volumesDir } from '../../src/volumes/index.js';
import { containerDifferences, domainDifferences } from '../../src/xml/compare.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import type { Domain } from '../../src/xml/domain.js';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { dir, file } from '../helpers/tar.js';
import { daemonDirs, writeConfig } from '../daemon/harness.js';
import { repoRoot } from '../helpers/schema.js';
import { domainSandbox, isDefined, TEST_PREFIX, TEST_URI, virsh } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}rt-${process.pid}-`;
const tmp = domainSandbox(PREFIX, 'export-roundtrip');
const DOMAIN = `${PREFIX}web`;
const SHARED = `rt-${process.pid}-shared`;
const CONFIGS = `rt-${process.pid}-configs`;

/** busybox, /data/seed.txt (an image VOLUME), a file with an odd mode and owner, a symlink. */
function image(into: string): void {
  const b = new ImageBuilder();
  const m = b.image({
    layers: [
      {
        entries: [
          ...busyboxLayerEntries(),
          dir('data/'),
          file('data/seed.txt', 'from the image\n'),
          dir('srv/', { mode: 0o750, uid: 33, gid: 33 }),
          file('srv/secret', 'owned by www-data\n', { mode: 0o640, uid: 33, gid: 33 }),
        ],
      },
    ],
    config: { Entrypoint: ['/bin/sleep'], Cmd: ['1000'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'], Volumes: { '/data': {} } },
  });
  writeFiles(into, b.layoutFiles([m]));
}

/** Every path of a tree: type, mode, owner, size, link target or a hash of the contents. */
function treeListing(root: string): string[] {
  return execFileSync('find', ['.', '-printf', '%P\t%y\t%m\t%U:%G\t%s\t%l\n'], { cwd: root, encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('\t'))
    .map((l) => {
      const path = l.split('\t')[0]!;
      const st = statSync(join(root, path), { throwIfNoEntry: false });
      const isFile = l.split('\t')[1] === 'f';
      return isFile && st ? `${l}\t${createHash('sha256').update(readFileSync(join(root, path))).digest('hex')}` : l;
    })
    .sort();
}

const inactive = (name: string): Domain => parseDomainXml(virsh('dumpxml', '--inactive', name), name);
const rootOf = (d: Domain): string => d.devices.filesystems.find((fs) => fs.target === '/')!.source.dir!;

test('a domain exported with --rootfs and copied into an empty spool gives back the same container', async () => {
  const dirs = daemonDirs(tmp());
  const spoolB = join(tmp(), 'spool-b');
  const out = join(tmp(), 'out');
  mkdirSync(spoolB, { mode: 0o700 });
  mkdirSync(out, { mode: 0o700 });
  image(join(dirs.staging, 'web'));
  renameSync(join(dirs.staging, 'web'), join(dirs.spool, 'web'));
  const settings = { env: { GREETING: 'hello', FROM_IMAGE: null }, memory: '96M', volumes: [`${SHARED}:/shared`, `${CONFIGS}:/etc/configs:ro`], start: false };
  writeFileSync(join(dirs.spool, 'web.ocivirt.json'), JSON.stringify(settings));
  const configFile = join(tmp(), 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, uri: TEST_URI });
  const pass = (port: LibvirtPort, spoolDir: string) => syncOnce(port, { spoolDir, stateDir: dirs.state, prefix: PREFIX, log: silentLogger(), startPolicy: 'annotation' });

  const port = await connectLibvirt(TEST_URI);
  try {
    let r = await pass(port, dirs.spool);
    assert.equal(r.failed.map((f) => f.error), []);
    assert.ok(isDefined(DOMAIN));
    const original = inactive(DOMAIN);
    const originalRoot = rootOf(original);
    assert.ok(originalRoot.startsWith(realpathSync(dirs.state) + '/'), `the rootfs is ocivirt's own: ${originalRoot}`);
    const originalTree = treeListing(originalRoot);
    assert.ok(originalTree.some((l) => l.startsWith('srv/secret\tf\t640\t33:33\t')), originalTree.join('\n'));

    // the export, through the CLI
    const exported = join(out, 'web');
    const cli = spawnSync(join(repoRoot(), 'bin', 'ocivirt'), ['export', '--rootfs', '--config', configFile, DOMAIN, exported], { encoding: 'utf8' });
    assert.is(cli.status, 0, cli.stderr);
    assert.is(cli.stderr, '', 'no warnings: nothing left that the trust check would refuse');
    assert.equal(cli.stdout.trim().split('\n'), [join(exported, 'config.json'), join(exported, 'rootfs'), `${exported}.ocivirt.json`]);

    // what the trust check is asked: a relative root.path, no bind of the state directory
    const config = JSON.parse(readFileSync(join(exported, 'config.json'), 'utf8')) as RuntimeConfig;
    assert.is(config.root?.path, 'rootfs');
    const state = realpathSync(dirs.state);
    for (const m of config.mounts ?? [])
      assert.not.ok(typeof m.source === 'string' && isAbsolute(m.source) && (m.source.startsWith(state + '/') || m.source.startsWith(dirs.state + '/')), `mount ${m.destination} binds ${m.source}`);
    assert.ok(config.process?.env?.includes('GREETING=hello'), JSON.stringify(config.process?.env));
    const anon = anonymousVolumeName(DOMAIN, '/data');
    assert.equal(JSON.parse(readFileSync(`${exported}.ocivirt.json`, 'utf8')), { volumes: [`${SHARED}:/shared`, `${CONFIGS}:/etc/configs:ro`, `${anon}:/data`] });
    assert.is(statSync(`${exported}.ocivirt.json`).mode & 0o777, 0o600);
    assert.equal(readdirSync(exported).sort(), ['config.json', 'rootfs']);
    assert.equal(treeListing(join(exported, 'rootfs')), originalTree);

    // the entry leaves its spool: its domain goes, its volumes stay
    renameSync(join(dirs.spool, 'web'), join(dirs.staging, 'web'));
    renameSync(join(dirs.spool, 'web.ocivirt.json'), join(dirs.staging, 'web.ocivirt.json'));
    r = await pass(port, dirs.spool);
    assert.equal(r.failed.map((f) => f.error), []);
    assert.not.ok(isDefined(DOMAIN), 'the domain of the removed entry is still defined');
    assert.is(readFileSync(join(volumesDir(dirs.state), anon, 'seed.txt'), 'utf8'), 'from the image\n');

    // the export, copied as it is into an empty spool with the same state directory (no bindAllowList)
    execFileSync('cp', ['-a', '--', exported, `${exported}.ocivirt.json`, spoolB]);
    r = await pass(port, spoolB);
    assert.equal(r.failed.map((f) => f.error), []);
    assert.ok(isDefined(DOMAIN), 'no domain made from the export');
    const back = inactive(DOMAIN);

    // only provenance differs, and it does differ (so the comparison set something aside)
    assert.equal(containerDifferences(original, back), []);
    const provenance = domainDifferences(original, back).map((d) => d.split(' ')[0]!);
    assert.ok(provenance.includes('metadata.ocivirt.bundle') && provenance.some((k) => /^devices\.filesystem\[\d+\]\.source$/.test(k)), provenance.join(', '));
    // the bundle runs from its copy in the state directory, not from the spool
    assert.ok(rootOf(back).startsWith(join(state, 'bundles', DOMAIN) + '/') && rootOf(back) !== rootOf(original), rootOf(back));
    assert.equal(treeListing(rootOf(back)), originalTree);
    const sources = back.devices.filesystems.map((fs) => fs.source.dir);
    for (const v of [SHARED, CONFIGS, anon]) assert.ok(sources.includes(join(state, 'volumes', v)), `${v} not mounted: ${sources.join(', ')}`);
  } finally {
    await port.close();
  }
});

test.run();
