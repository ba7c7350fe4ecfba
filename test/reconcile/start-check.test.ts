/**
 * The last look before a start: a rootfs whose container turned a mount point (a mount's
 * destination, or /proc, /sys, /dev) into a symlink into /.oldroot since the define is not
 * started (libvirt would create or mount that path on the host's root); a clean one is.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isInputError } from '../../src/errors.js';
import { startChecked } from '../../src/reconcile/start-check.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-start-check-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
async function defined(plant: (rootfs: string) => void) {
  const rootfs = join(tmp, `r${serial++}`);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'hosts'), '');
  plant(rootfs);
  const port = new FakeLibvirt();
  const name = `d${serial}`;
  await port.define(
    `<domain type='lxc'><name>${name}</name><memory unit='MiB'>64</memory><os><type>exe</type><init>/bin/sh</init></os><devices>` +
      `<filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem>` +
      `<filesystem type='mount'><source dir='/var/lib/x/hosts'/><target dir='/etc/hosts'/><readonly/></filesystem></devices></domain>`,
  );
  return { port, name };
}

const refused = async (port: FakeLibvirt, name: string, what: RegExp) => {
  const err = await startChecked(port, name).then(() => undefined, (e: unknown) => e);
  assert.ok(isInputError(err), String(err));
  assert.match((err as Error).message, what);
  assert.is(port.count('start'), 0);
};

test('a clean rootfs is started', async () => {
  const { port, name } = await defined(() => undefined);
  await startChecked(port, name);
  assert.is(port.count('start'), 1);
});

for (const [label, link] of [
  ['absolute', '/.oldroot/tmp/pwned'],
  ['through ..', '../../../.oldroot/tmp/pwned'],
  ['the old root itself', '/.oldroot'],
] as const)
  test(`a mount's destination turned into a symlink into /.oldroot (${label}) is not started`, async () => {
    const { port, name } = await defined((r) => {
      rmSync(join(r, 'etc', 'hosts'));
      symlinkSync(link, join(r, 'etc', 'hosts'));
    });
    await refused(port, name, /mount point \/etc\/hosts leads to \/\.oldroot/);
  });

test('a parent directory of a destination turned into a symlink is not started', async () => {
  const { port, name } = await defined((r) => {
    rmSync(join(r, 'etc'), { recursive: true });
    symlinkSync('/.oldroot/etc', join(r, 'etc'));
  });
  await refused(port, name, /\/etc\/hosts leads to \/\.oldroot\/etc\/hosts/);
});

for (const dir of ['/proc', '/sys', '/dev'])
  test(`libvirt's own mount point ${dir} as a symlink into /.oldroot is not started`, async () => {
    const { port, name } = await defined((r) => symlinkSync(`/.oldroot${dir}-x`, join(r, dir.slice(1))));
    await refused(port, name, new RegExp(`mount point ${dir} leads`));
  });

test.run();
