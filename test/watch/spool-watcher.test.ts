import { mkdir, mkdtemp, rename, rm, writeFile, appendFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SpoolWatcher } from '../../src/watch/spool-watcher.js';
import { snapshotEntry } from '../../src/watch/complete.js';

let root = '';
let n = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ocivirt-watch-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A spool, a staging dir beside it (same filesystem, so rename is atomic), a watcher and its reports. */
async function setup(quietMs: number) {
  const base = join(root, `case-${n++}`);
  const spool = join(base, 'spool');
  const staging = join(base, 'staging');
  await mkdir(spool, { recursive: true });
  await mkdir(staging);
  const reports: { name: string; at: number }[] = [];
  const waiters: (() => void)[] = [];
  const watcher = await SpoolWatcher.start(spool, {
    quietMs,
    onEntry: (name) => {
      reports.push({ name, at: Date.now() });
      for (const w of waiters.splice(0)) w();
    },
    onError: (e) => {
      throw e;
    },
  });
  const until = async (pred: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!pred() && Date.now() < end) await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(50)]);
    return pred();
  };
  return { spool, staging, watcher, reports, until };
}

async function bundle(dir: string, files = 3): Promise<void> {
  await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(join(dir, 'rootfs', 'bin', `f${i}`), `file ${i}`);
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' } }));
}

/** Waits until the kernel clock has ticked past every timestamp written so far. */
const nextTick = () => sleep(30);

test('snapshot: a directory renamed in is complete at once; one still being written is not', async () => {
  const dir = join(root, 'snap');
  await mkdir(dir);
  await bundle(join(dir, 'staged'));
  await nextTick();
  await rename(join(dir, 'staged'), join(dir, 'moved'));
  assert.ok((await snapshotEntry(join(dir, 'moved'))).renamedInWhole);

  await mkdir(join(dir, 'copying'));
  await writeFile(join(dir, 'copying', 'config.json'), '{}');
  await nextTick();
  await mkdir(join(dir, 'copying', 'rootfs'));
  await nextTick();
  await writeFile(join(dir, 'copying', 'rootfs', 'late'), 'x');
  assert.not.ok((await snapshotEntry(join(dir, 'copying'))).renamedInWhole, 'a file written after the entry last changed');

  await writeFile(join(dir, 'a.tar'), 'x');
  await nextTick();
  await appendFile(join(dir, 'a.tar'), 'y');
  assert.not.ok((await snapshotEntry(join(dir, 'a.tar'))).renamedInWhole, 'an archive being written');
  await nextTick();
  await rename(join(dir, 'a.tar'), join(dir, 'b.tar'));
  assert.ok((await snapshotEntry(join(dir, 'b.tar'))).renamedInWhole, 'an archive renamed in');
  assert.not.ok((await snapshotEntry(join(dir, 'gone'))).exists);
});

test('an entry renamed in is reported at once, well before the quiet time', async () => {
  const { spool, staging, watcher, reports, until } = await setup(60_000);
  try {
    await bundle(join(staging, 'web-1'));
    await nextTick();
    await rename(join(staging, 'web-1'), join(spool, 'web-1'));
    assert.ok(await until(() => reports.length > 0, 10_000), 'reported');
    assert.equal(reports.map((r) => r.name), ['web-1']);
  } finally {
    await watcher.close();
  }
});

test('a bundle copied in slowly is reported only after it has been quiet, never half-copied', async () => {
  const quietMs = 400;
  const { spool, watcher, reports, until } = await setup(quietMs);
  try {
    const dir = join(spool, 'slow');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' } }));
    await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
    // Deep files keep arriving with pauses shorter than the quiet time (no event reaches depth 1).
    for (let i = 0; i < 8; i++) {
      await sleep(quietMs / 3);
      await writeFile(join(dir, 'rootfs', 'bin', `part${i}`), Buffer.alloc(1000, i));
      assert.is(reports.length, 0, `reported while file ${i} was still being copied`);
    }
    const lastWrite = Date.now();
    assert.ok(await until(() => reports.length > 0, 10_000), 'reported once quiet');
    assert.equal(reports.map((r) => r.name), ['slow']);
    assert.ok(reports[0]!.at - lastWrite >= quietMs - 50, 'not before the quiet time after the last write');
  } finally {
    await watcher.close();
  }
});

test('a burst of 200 entries: each reported exactly once', async () => {
  const { spool, staging, watcher, reports, until } = await setup(60_000);
  try {
    const names = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    for (const name of names) await bundle(join(staging, name), 1);
    await nextTick();
    await Promise.all(names.map((name) => rename(join(staging, name), join(spool, name))));
    assert.ok(await until(() => new Set(reports.map((r) => r.name)).size === 200, 30_000), `saw ${reports.length}`);
    await sleep(300);
    assert.is(reports.length, 200, 'no entry reported twice');
    assert.equal([...new Set(reports.map((r) => r.name))].sort(), [...names].sort());
  } finally {
    await watcher.close();
  }
});

test('removal is reported; a change after the first report is reported again', async () => {
  const { spool, staging, watcher, reports, until } = await setup(200);
  try {
    await bundle(join(staging, 'x'));
    await nextTick();
    await rename(join(staging, 'x'), join(spool, 'x'));
    assert.ok(await until(() => reports.length === 1, 10_000));
    // edited in place: reported after the quiet time
    await writeFile(join(spool, 'x', 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, hostname: 'y' }));
    assert.ok(await until(() => reports.length === 2, 10_000), 'edit reported');
    await rm(join(spool, 'x'), { recursive: true });
    assert.ok(await until(() => reports.length === 3, 10_000), 'removal reported');
    assert.equal(reports.map((r) => r.name), ['x', 'x', 'x']);
  } finally {
    await watcher.close();
  }
});

test('an unchanged entry says nothing on spurious events, but is reported again when a recheck is asked for', async () => {
  const { spool, staging, watcher, reports, until } = await setup(60_000);
  try {
    await bundle(join(staging, 'r'));
    await nextTick();
    await rename(join(staging, 'r'), join(spool, 'r'));
    assert.ok(await until(() => reports.length === 1, 10_000));
    watcher.touch('r');
    await sleep(300);
    assert.is(reports.length, 1, 'nothing changed: nothing reported');
    watcher.recheck('r');
    assert.ok(await until(() => reports.length === 2, 10_000), 'reported on request');
    assert.equal(watcher.unsettled(), new Set());
  } finally {
    await watcher.close();
  }
});

test('names starting with a dot are ignored, at the top and when renamed away', async () => {
  const { spool, staging, watcher, reports, until } = await setup(100);
  try {
    await bundle(join(spool, '.partial'));
    await writeFile(join(spool, '.tmp.tar'), 'x');
    await sleep(400);
    assert.is(reports.length, 0, 'dot-names say nothing');
    await bundle(join(staging, 'real'));
    await nextTick();
    await rename(join(staging, 'real'), join(spool, 'real'));
    assert.ok(await until(() => reports.length === 1, 10_000));
    assert.equal(reports.map((r) => r.name), ['real']);
    // the rsync way: staged under a dot-name inside the spool, then renamed to its real name
    await utimes(join(spool, '.partial'), new Date(), new Date());
    await nextTick();
    await rename(join(spool, '.partial'), join(spool, 'synced'));
    assert.ok(await until(() => reports.length === 2, 10_000));
    assert.is(reports[1]!.name, 'synced');
  } finally {
    await watcher.close();
  }
});

test.run();
