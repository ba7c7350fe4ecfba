import { execFile } from 'node:child_process';
import { appendFile, chmod, link, mkdir, mkdtemp, open, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SpoolWatcher, type CheckOutcome } from '../../src/watch/spool-watcher.js';
import { snapshotEntry } from '../../src/watch/complete.js';

const run = promisify(execFile);

let root = '';
let n = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'ocivirt-watch-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

type Seen = { kind: 'report' | CheckOutcome; name: string; at: number };

/**
 * A spool, a staging dir beside it (same filesystem, so rename is atomic), a watcher, and what it
 * said: every report and the outcome of every look at an entry, in order. `next` waits for the
 * next matching event (the limit only bounds a failing test; nothing waits for time to pass).
 */
async function setup(quietMs: number) {
  const base = join(root, `case-${n++}`);
  const spool = join(base, 'spool');
  const staging = join(base, 'staging');
  await mkdir(spool, { recursive: true });
  await mkdir(staging);
  const seen: Seen[] = [];
  const waiters = new Set<() => void>();
  const note = (e: Seen) => {
    seen.push(e);
    for (const w of waiters) w();
  };
  const watcher = await SpoolWatcher.start(spool, {
    quietMs,
    onEntry: (name) => note({ kind: 'report', name, at: Date.now() }),
    onCheck: (name, outcome) => note({ kind: outcome, name, at: Date.now() }),
    onError: (e) => {
      throw e;
    },
  });
  const reports = () => seen.filter((e) => e.kind === 'report');
  /** Resolves with the first event at or after index `from` matching `pred`; fails after `limitMs`. */
  const next = async (pred: (e: Seen) => boolean, from = seen.length, limitMs = 20_000): Promise<Seen> => {
    const end = Date.now() + limitMs;
    for (;;) {
      const hit = seen.slice(from).find(pred);
      if (hit) return hit;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no such event within ${limitMs} ms; saw ${JSON.stringify(seen.slice(from).slice(-5))}`);
      let wake!: () => void;
      const woken = new Promise<void>((r) => (wake = r));
      waiters.add(wake);
      const timer = setTimeout(wake, left);
      await woken;
      clearTimeout(timer);
      waiters.delete(wake);
    }
  };
  const reportOf = (name: string, from?: number, limitMs?: number) => next((e) => e.kind === 'report' && e.name === name, from, limitMs);
  /** The next look at `name` that did not end in a report. */
  const lookAt = (name: string, from?: number) => next((e) => e.kind !== 'report' && e.name === name, from);
  return { spool, staging, watcher, seen, reports, next, reportOf, lookAt };
}

async function bundle(dir: string, files = 3): Promise<void> {
  await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(join(dir, 'rootfs', 'bin', `f${i}`), `file ${i}`);
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' } }));
}

/** Waits until the kernel clock has ticked past every timestamp written so far. */
const nextTick = () => sleep(30);

test('snapshot: a directory renamed in is whole at once; one still being written is not', async () => {
  const dir = join(root, 'snap');
  await mkdir(dir);
  await bundle(join(dir, 'staged'));
  await nextTick();
  await rename(join(dir, 'staged'), join(dir, 'moved'));
  assert.ok((await snapshotEntry(join(dir, 'moved'))).whole);

  await mkdir(join(dir, 'copying'));
  await writeFile(join(dir, 'copying', 'config.json'), '{}');
  await nextTick();
  await mkdir(join(dir, 'copying', 'rootfs'));
  await nextTick();
  await writeFile(join(dir, 'copying', 'rootfs', 'late'), 'x');
  assert.not.ok((await snapshotEntry(join(dir, 'copying'))).whole, 'a file written after the entry last changed');

  // attributes set on the top, then a deep file written: not whole
  await chmod(join(dir, 'copying'), 0o755);
  await nextTick();
  await writeFile(join(dir, 'copying', 'rootfs', 'later'), 'x');
  assert.not.ok((await snapshotEntry(join(dir, 'copying'))).whole, 'a deep file written after the top was last changed');

  // a file created at the top and not yet written, long after everything else
  await mkdir(join(dir, 'creating'));
  await mkdir(join(dir, 'creating', 'rootfs'));
  await chmod(join(dir, 'creating'), 0o755);
  await nextTick();
  const fh = await open(join(dir, 'creating', 'config.json'), 'wx');
  assert.not.ok((await snapshotEntry(join(dir, 'creating'))).whole, 'a file just created at the top');
  await fh.close();

  await writeFile(join(dir, 'a.tar'), 'x');
  await nextTick();
  await appendFile(join(dir, 'a.tar'), 'y');
  assert.not.ok((await snapshotEntry(join(dir, 'a.tar'))).whole, 'an archive being written');
  await nextTick();
  await rename(join(dir, 'a.tar'), join(dir, 'b.tar'));
  assert.ok((await snapshotEntry(join(dir, 'b.tar'))).whole, 'an archive renamed in');
  assert.not.ok((await snapshotEntry(join(dir, 'gone'))).exists);
});

test('snapshot: a link to a shared file made elsewhere changes neither the signature nor wholeness; one made inside does', async () => {
  const dir = join(root, 'snap-links');
  await mkdir(join(dir, 'template'), { recursive: true });
  await writeFile(join(dir, 'template', 'shared'), 'x');
  await mkdir(join(dir, 'e', 'rootfs'), { recursive: true });
  await link(join(dir, 'template', 'shared'), join(dir, 'e', 'rootfs', 'shared'));
  await nextTick();
  await rename(join(dir, 'e'), join(dir, 'entry'));
  const before = await snapshotEntry(join(dir, 'entry'));
  assert.ok(before.whole);
  await nextTick();
  await link(join(dir, 'template', 'shared'), join(dir, 'template', 'another-link'));
  const after = await snapshotEntry(join(dir, 'entry'));
  assert.ok(after.whole, 'a link elsewhere: still whole');
  assert.is(after.signature, before.signature, 'a link elsewhere: same signature');
  await link(join(dir, 'template', 'shared'), join(dir, 'entry', 'rootfs', 'second'));
  const inside = await snapshotEntry(join(dir, 'entry'));
  assert.not.ok(inside.whole, 'a link made inside the entry');
  assert.is.not(inside.signature, before.signature);
});

test('an entry renamed in is reported at once, well before the quiet time', async () => {
  const { spool, staging, watcher, reports, reportOf } = await setup(60_000);
  try {
    await bundle(join(staging, 'web-1'));
    await nextTick();
    await rename(join(staging, 'web-1'), join(spool, 'web-1'));
    await reportOf('web-1');
    assert.equal(reports().map((r) => r.name), ['web-1']);
  } finally {
    await watcher.close();
  }
});

test('the documented flow (cp -a into a dot-name, then mv) is reported at once, staged inside the spool or beside it', async () => {
  const { spool, staging, watcher, reports, reportOf } = await setup(60_000);
  try {
    const template = join(staging, 'mybundle');
    await bundle(template, 20);
    await nextTick(); // the user's bundle, made earlier
    for (let i = 0; i < 10; i++) {
      const dot = join(i % 2 ? staging : spool, `.incoming-web-${i}`);
      await run('cp', ['-a', template, dot]);
      await rename(dot, join(spool, `web-${i}`));
      await reportOf(`web-${i}`);
    }
    assert.is(reports().length, 10, 'one report each, none for the dot-names');
  } finally {
    await watcher.close();
  }
});

test('a bundle copied in slowly is never reported half-copied, then once it has been quiet', async () => {
  const quietMs = 300;
  const { spool, watcher, reports, reportOf, lookAt, seen } = await setup(quietMs);
  try {
    const dir = join(spool, 'slow');
    await mkdir(dir);
    // Each step lands right after the watcher's previous look, so every look sees a half-copied
    // entry: top-level files and directories, a file created and not yet written, deep files.
    const steps: (() => Promise<unknown>)[] = [
      () => mkdir(join(dir, 'rootfs')),
      // attributes set mid-copy, then more content
      async () => (await chmod(dir, 0o755), await writeFile(join(dir, 'config.json'), '{"ociVersion": ')),
      () => appendFile(join(dir, 'config.json'), '"1.0.2", "root": {"path": "rootfs"}}'),
      () => mkdir(join(dir, 'rootfs', 'bin')),
      ...Array.from({ length: 4 }, (_, i) => () => writeFile(join(dir, 'rootfs', 'bin', `part${i}`), Buffer.alloc(1000, i))),
    ];
    for (const step of steps) {
      const from = seen.length;
      await step();
      const look = await lookAt('slow', from);
      assert.is(look.kind, 'settling', 'looked at while half-copied: still settling');
    }
    const fh = await open(join(dir, 'late-top-file'), 'wx');
    let from = seen.length;
    watcher.touch('slow');
    assert.is((await lookAt('slow', from)).kind, 'settling', 'a file created at the top and not yet written');
    await fh.writeFile('x');
    await fh.close();
    const lastWrite = Date.now();
    from = seen.length;
    const report = await reportOf('slow', from);
    assert.equal(reports().map((r) => r.name), ['slow'], 'reported once, only at the end');
    assert.ok(report.at - lastWrite >= quietMs - 50, 'not before the quiet time after the last write');
  } finally {
    await watcher.close();
  }
});

test('an archive written slowly in place is reported only once it has been quiet', async () => {
  const quietMs = 300;
  const { spool, watcher, reports, reportOf, lookAt, seen } = await setup(quietMs);
  try {
    const fh = await open(join(spool, 'img.tar'), 'wx');
    for (let i = 0; i < 4; i++) {
      const from = seen.length;
      await fh.write(Buffer.alloc(4096, i));
      assert.is((await lookAt('img.tar', from)).kind, 'settling');
    }
    await fh.close();
    await reportOf('img.tar');
    assert.equal(reports().map((r) => r.name), ['img.tar']);
  } finally {
    await watcher.close();
  }
});

/** `cp -al template` into staging and rename into the spool, over and over, until `stop` is set. */
function linkStream(template: string, staging: string, spool: string) {
  const state = { stop: false, drops: 0 };
  const done = (async () => {
    while (!state.stop) {
      const dot = join(staging, `.bg-${state.drops}`);
      await run('cp', ['-al', template, dot]);
      await rename(dot, join(spool, `bg-${state.drops++}`));
    }
  })();
  return { state, stop: async () => ((state.stop = true), await done) };
}

async function linkTemplate(dir: string): Promise<string> {
  const template = join(dir, 'template');
  await mkdir(join(template, 'rootfs', 'bin'), { recursive: true });
  for (let i = 0; i < 100; i++) await writeFile(join(template, 'rootfs', 'bin', `f${i}`), `file ${i}`);
  await writeFile(join(template, 'config.json'), '{}');
  return template;
}

test('bundles made with cp -al from one template and renamed in are taken while the stream of drops continues', async () => {
  const { spool, staging, watcher, seen, next, reportOf } = await setup(60_000);
  const template = await linkTemplate(staging);
  await nextTick();
  const stream = linkStream(template, staging, spool);
  try {
    let firstReport = -1;
    for (let i = 0; i < 5; i++) {
      const dot = join(staging, `.in-${i}`);
      await run('cp', ['-al', template, dot]);
      await rename(dot, join(spool, `linked-${i}`));
      await reportOf(`linked-${i}`, 0, 10_000);
      if (i === 0) firstReport = seen.length;
    }
    // the stream went on after the first was taken, and its own drops are taken too
    await next((e) => e.kind === 'report' && e.name.startsWith('bg-'), firstReport, 10_000);
  } finally {
    await stream.stop();
    await watcher.close();
  }
});

test('a bundle linked in place from a shared template is taken after the quiet time while others keep linking it', async () => {
  const quietMs = 300;
  const { spool, staging, watcher, reportOf } = await setup(quietMs);
  const template = await linkTemplate(staging);
  await nextTick();
  const stream = linkStream(template, staging, spool);
  try {
    const dir = join(spool, 'in-place');
    await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
    for (const f of await readdir(join(template, 'rootfs', 'bin'))) await link(join(template, 'rootfs', 'bin', f), join(dir, 'rootfs', 'bin', f));
    await link(join(template, 'config.json'), join(dir, 'config.json'));
    const lastLink = Date.now();
    const dropsThen = stream.state.drops;
    const report = await reportOf('in-place', 0, 10_000);
    assert.ok(report.at - lastLink >= quietMs - 50, 'after the quiet time');
    assert.ok(stream.state.drops > dropsThen, 'while the template was being linked again');
  } finally {
    await stream.stop();
    await watcher.close();
  }
});

test('a burst of 200 entries: each reported exactly once', async () => {
  const { spool, staging, watcher, reports, reportOf, next } = await setup(60_000);
  try {
    const names = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    for (const name of names) await bundle(join(staging, name), 1);
    await nextTick();
    await Promise.all(names.map((name) => rename(join(staging, name), join(spool, name))));
    await next(() => new Set(reports().map((r) => r.name)).size === 200, 0, 30_000);
    // every event of the burst was delivered before the sentinel's, and every look it caused
    // ends before the watcher looks at the sentinel
    await bundle(join(staging, 'sentinel'), 1);
    await nextTick();
    await rename(join(staging, 'sentinel'), join(spool, 'sentinel'));
    await reportOf('sentinel');
    assert.is(reports().length, 201, 'no entry reported twice');
    assert.equal([...new Set(reports().map((r) => r.name))].sort(), [...names, 'sentinel'].sort());
  } finally {
    await watcher.close();
  }
});

test('removal is reported; a change after the first report is reported again', async () => {
  const { spool, staging, watcher, reports, reportOf } = await setup(200);
  try {
    await bundle(join(staging, 'x'));
    await nextTick();
    await rename(join(staging, 'x'), join(spool, 'x'));
    await reportOf('x');
    // edited in place: reported after the quiet time
    await writeFile(join(spool, 'x', 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, hostname: 'y' }));
    await reportOf('x');
    await rm(join(spool, 'x'), { recursive: true });
    await reportOf('x');
    assert.equal(reports().map((r) => r.name), ['x', 'x', 'x']);
  } finally {
    await watcher.close();
  }
});

test('an unchanged entry says nothing on spurious events, but is reported again when a recheck is asked for', async () => {
  const { spool, staging, watcher, reports, reportOf, lookAt, seen } = await setup(60_000);
  try {
    await bundle(join(staging, 'r'));
    await nextTick();
    await rename(join(staging, 'r'), join(spool, 'r'));
    await reportOf('r');
    let from = seen.length;
    watcher.touch('r');
    assert.is((await lookAt('r', from)).kind, 'unchanged', 'nothing changed: nothing reported');
    assert.is(reports().length, 1);
    from = seen.length;
    watcher.recheck('r');
    await reportOf('r', from);
    assert.equal(watcher.unsettled(), new Set());
  } finally {
    await watcher.close();
  }
});

test('names starting with a dot are ignored, at the top and when renamed away', async () => {
  const { spool, staging, watcher, seen, reports, reportOf } = await setup(100);
  try {
    await bundle(join(spool, '.partial'));
    await writeFile(join(spool, '.tmp.tar'), 'x');
    await bundle(join(staging, 'real'));
    await nextTick();
    // the dot-names' events came first: by the time 'real' is reported, they would have been
    await rename(join(staging, 'real'), join(spool, 'real'));
    await reportOf('real');
    // the rsync way: staged under a dot-name inside the spool, then renamed to its real name
    await utimes(join(spool, '.partial'), new Date(), new Date());
    await nextTick();
    await rename(join(spool, '.partial'), join(spool, 'synced'));
    await reportOf('synced');
    await writeFile(join(spool, '.tmp.tar'), 'y');
    await bundle(join(staging, 'last'));
    await nextTick();
    await rename(join(staging, 'last'), join(spool, 'last'));
    await reportOf('last');
    assert.equal(reports().map((r) => r.name), ['real', 'synced', 'last']);
    assert.equal(seen.filter((e) => e.name.startsWith('.')), [], 'no dot-name was even looked at');
    assert.ok((await stat(join(spool, '.tmp.tar'))).isFile());
  } finally {
    await watcher.close();
  }
});

test.run();
