import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveInRoot, resolveInRootSync, readFileInRoot } from '../../src/fsroot/index.js';
import { InputError } from '../../src/errors.js';

async function rejects(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await run();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected an InputError matching ${pattern}`);
}

let base = '';
let root = '';
test.before.each(() => {
  base = mkdtempSync(join(tmpdir(), 'ocivirt-fsroot-'));
  root = join(base, 'rootfs');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  writeFileSync(join(base, 'outside'), 'host secret');
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
});
test.after.each(() => rmSync(base, { recursive: true, force: true }));

async function both(p: string, opts?: { followFinal?: boolean }): Promise<string> {
  const a = await resolveInRoot(root, p, opts);
  const b = resolveInRootSync(root, p, opts);
  assert.is(a, b, `sync and async agree on ${p}`);
  return a;
}

test('plain paths, dots and repeated slashes', async () => {
  assert.is(await both('/etc/passwd'), join(root, 'etc/passwd'));
  assert.is(await both('etc//./passwd'), join(root, 'etc/passwd'));
  assert.is(await both(''), root);
  assert.is(await both('/'), root);
});

test('.. is clamped at the root', async () => {
  assert.is(await both('../../../outside'), join(root, 'outside'));
  assert.is(await both('/etc/../../..'), root);
});

test('absolute symlink is resolved as if root were /', async () => {
  symlinkSync('/', join(root, 'etc/up'));
  symlinkSync('/outside', join(root, 'abs'));
  assert.is(await both('etc/up/outside'), join(root, 'outside'));
  assert.is(await both('abs'), join(root, 'outside'));
});

test('relative symlink climbing out is clamped', async () => {
  symlinkSync('../../../../', join(root, 'usr/lib/escape'));
  assert.is(await both('usr/lib/escape/outside'), join(root, 'outside'));
  symlinkSync('../..', join(root, 'etc/rel'));
  assert.is(await both('etc/rel/etc/passwd'), join(root, 'etc/passwd'));
});

test('chains of links, and .. after a link walks up from the target', async () => {
  symlinkSync('usr/lib', join(root, 'lib'));
  symlinkSync('/lib', join(root, 'l2'));
  assert.is(await both('l2/x'), join(root, 'usr/lib/x'));
  assert.is(await both('lib/../etc'), join(root, 'usr/etc'));
});

test('a missing component then .. still resolves the link after it', async () => {
  symlinkSync('/etc', join(root, 'e'));
  assert.is(await both('nope/../e/passwd'), join(root, 'etc/passwd'));
});

test('followFinal false leaves the last link alone but resolves parents', async () => {
  symlinkSync('/', join(root, 'up'));
  symlinkSync('/etc/passwd', join(root, 'etc/pw'));
  assert.is(await both('up/etc/pw', { followFinal: false }), join(root, 'etc/pw'));
  assert.is(await both('up/etc/pw'), join(root, 'etc/passwd'));
});

test('symlink loops are an InputError naming the path', async () => {
  symlinkSync('b', join(root, 'a'));
  symlinkSync('a', join(root, 'b'));
  for (const run of [() => resolveInRoot(root, 'a/x'), async () => resolveInRootSync(root, 'a/x')]) {
    try {
      await run();
      assert.unreachable('loop not detected');
    } catch (e) {
      assert.instance(e, InputError);
      assert.is((e as InputError).field, 'a/x');
      assert.match((e as Error).message, /too many levels of symbolic links/);
    }
  }
});

test('readFileInRoot reads a regular file', async () => {
  const buf = await readFileInRoot(root, '/etc/passwd', 4096);
  assert.is(buf?.toString(), 'root:x:0:0::/root:/bin/sh\n');
});

test('readFileInRoot: absent is undefined', async () => {
  assert.is(await readFileInRoot(root, '/etc/group', 4096), undefined);
  assert.is(await readFileInRoot(root, '/etc/passwd/x', 4096), undefined);
});

test('readFileInRoot never reads a file outside the root through a link', async () => {
  rmSync(join(root, 'etc/passwd'));
  symlinkSync(join(base, 'outside'), join(root, 'etc/passwd'));
  assert.is(await readFileInRoot(root, '/etc/passwd', 4096), undefined);
  symlinkSync('../../outside', join(root, 'etc/group'));
  assert.is(await readFileInRoot(root, '/etc/group', 4096), undefined);
  writeFileSync(join(root, 'outside'), 'in-root file');
  assert.is((await readFileInRoot(root, '/etc/group', 4096))?.toString(), 'in-root file');
});

test('readFileInRoot refuses non-regular files and files over the limit', async () => {
  await rejects(() => readFileInRoot(root, '/etc', 4096), /is not a regular file/);
  execFileSync('mkfifo', [join(root, 'etc/fifo')]);
  await rejects(() => readFileInRoot(root, '/etc/fifo', 4096), /is not a regular file/);
  await rejects(() => readFileInRoot(root, '/etc/passwd', 10), /larger than 10 bytes/);
});

test.run();
