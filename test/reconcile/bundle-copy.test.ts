/**
 * A spool bundle runs from a copy of its rootfs in the state directory: the domain never names
 * the spool, the container's writes never reach it, an unchanged rootfs is not copied again (the
 * container keeps its data), a rootfs replaced in the spool is a new copy and a redefine, and a
 * rootfs that is a symlink is refused.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copiedRootfs } from '../../src/reconcile/bundle-copy.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-bundle-copy-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
function setup() {
  const base = join(tmp, `t${serial++}`);
  const spool = join(base, 'spool');
  const state = join(base, 'state');
  mkdirSync(spool, { recursive: true });
  const { log } = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, log, retryDelayMs: 1, attempts: 1 };
  return { spool, state, opts, port: new FakeLibvirt() };
}

const rootOf = (port: FakeLibvirt, name: string) => parseDomainXml(port.domains.get(name)!.xml!).devices.filesystems.find((f) => f.target === '/')!.source.dir!;

test("the domain's root is a copy in the state directory; the container's writes stay there, out of the spool", async () => {
  const { spool, state, opts, port } = setup();
  writeMinimalBundle(join(spool, 'web'));
  await syncOnce(port, opts);
  const root = rootOf(port, 'web');
  assert.ok(root.startsWith(join(state, 'bundles', 'web') + '/'), root);
  assert.ok(root.endsWith('/rootfs'));
  assert.is(readFileSync(join(root, 'bin', 'sh'), 'utf8'), '#!\n');
  writeFileSync(join(root, 'written-by-the-container'), 'data');
  assert.not.ok(existsSync(join(spool, 'web', 'rootfs', 'written-by-the-container')));

  // the next pass: same version, same tree, the container's data kept (not copied again)
  await syncOnce(port, opts);
  assert.is(rootOf(port, 'web'), root);
  assert.ok(existsSync(join(root, 'written-by-the-container')));
});

test('a rootfs replaced in the spool is a new copy, and the domain is redefined onto it', async () => {
  const { spool, opts, port } = setup();
  writeMinimalBundle(join(spool, 'web'));
  await syncOnce(port, opts);
  const first = rootOf(port, 'web');
  // a new rootfs renamed in, as a pipeline rolls one out
  mkdirSync(join(tmp, `new${serial}`, 'bin'), { recursive: true });
  writeFileSync(join(tmp, `new${serial}`, 'bin', 'sh'), '#!new\n', { mode: 0o755 });
  rmSync(join(spool, 'web', 'rootfs'), { recursive: true });
  renameSync(join(tmp, `new${serial}`), join(spool, 'web', 'rootfs'));
  await syncOnce(port, opts);
  const second = rootOf(port, 'web');
  assert.is.not(second, first);
  assert.is(readFileSync(join(second, 'bin', 'sh'), 'utf8'), '#!new\n');
});

test('a rootfs that is a symlink (to the host root) is refused, nothing copied', async () => {
  const dir = join(tmp, `hostile${serial++}`);
  mkdirSync(dir);
  symlinkSync('/', join(dir, 'rootfs'));
  const domainDir = join(dir, 'state', 'bundles', 'evil');
  await copiedRootfs(join(dir, 'rootfs'), { domainDir, entry: dir }).then(
    () => assert.unreachable('copied'),
    (e: Error) => assert.match(e.message, /no longer a directory/),
  );
  assert.not.ok(existsSync(domainDir));
});

test.run();
