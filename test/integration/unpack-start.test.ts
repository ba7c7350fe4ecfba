/**
 * A bundle made by `ocivirt unpack` starts on libvirt-lxc: an image with a static busybox and a
 * non-root User is unpacked, its config.json goes through from-native, the domain is defined and
 * started with virsh, and its init proves it ran as the image's user in the unpacked rootfs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromNative } from '../../src/convert/from-native.js';
import { unpackImage } from '../../src/image/unpack.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { dir, file, symlink } from '../helpers/tar.js';
import { ImageBuilder, tmp, writeFiles } from '../image/fixtures.js';

const work = tmp('ocivirt-unpack-start-');
const domain = `ocivirt-test-unpack-${process.pid}`;
const virsh = (...args: string[]) => spawnSync('virsh', ['-c', 'lxc:///', ...args], { encoding: 'utf8', timeout: 60_000 });

test.after(() => {
  virsh('destroy', domain);
  virsh('undefine', domain);
  rmSync(work, { recursive: true, force: true });
});

async function waitFor(p: string, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 200) {
    if (existsSync(p)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

test('an unpacked image with a non-root user starts as a libvirt-lxc domain', async () => {
  const b = new ImageBuilder();
  const m = b.image({
    layers: [
      {
        entries: [
          dir('bin/'),
          file('bin/busybox', readFileSync('/bin/busybox'), { mode: 0o755 }),
          symlink('bin/sh', 'busybox'),
          symlink('bin/sleep', 'busybox'),
          symlink('bin/id', 'busybox'),
          dir('etc/'),
          file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n'),
          file('etc/group', 'root:x:0:\napp:x:1000:\n'),
          dir('home/'),
          dir('home/app/', { uid: 1000, gid: 1000 }),
          dir('tmp/', { mode: 0o1777 }),
        ],
      },
      { entries: [file('etc/motd', 'layer 2\n')], compression: 'zstd' },
    ],
    config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['id > /tmp/ran-as; echo "$HOME $PATH" >> /tmp/ran-as; exec sleep 600'], User: 'app', WorkingDir: '/home/app' },
  });
  const layout = writeFiles(join(work, 'layout'), b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]));
  const bundle = join(work, 'bundle');
  await unpackImage(layout, bundle);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as RuntimeConfig;
  const { xml, warnings } = fromNative(config, { bundleDir: bundle, name: domain });
  assert.equal(warnings.filter((w) => !/additionalGids/.test(w)), []);
  writeFileSync(join(work, 'domain.xml'), xml);
  const defined = virsh('define', join(work, 'domain.xml'));
  assert.is(defined.status, 0, defined.stderr);
  const started = virsh('start', domain);
  assert.is(started.status, 0, started.stderr);
  const marker = join(bundle, 'rootfs/tmp/ran-as');
  assert.ok(await waitFor(marker, 30_000), 'the init wrote its marker');
  await new Promise((r) => setTimeout(r, 300));
  const text = readFileSync(marker, 'utf8');
  assert.match(text, /uid=1000\(app\) gid=1000\(app\)/);
  assert.match(text, /\/home\/app \/usr\/local\/sbin:/);
  assert.is(statSync(marker).uid, 1000);
  assert.match(virsh('domstate', domain).stdout, /running/);
});

test.run();
