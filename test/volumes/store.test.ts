/**
 * The volume store: names (hostile ones refused, another entry's anonymous one out of reach of a
 * settings file, its own one allowed: a self-contained export names it),
 * a new volume seeded once with the image's files and owners (an existing one never again),
 * seeding inside the image's root even through a symlink at the VOLUME path, owners moved into a
 * user namespace's mapped range, a volume swapped for a symlink refused, the volumes directory
 * ocivirt's own (0700), and a crash's staging directory removed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { anonymousOwner, anonymousVolumeName, ensureVolume, entryVolumes, isVolumeName, mapIntoRange, volumesDir } from '../../src/volumes/index.js';
import { seedTestHooks } from '../../src/volumes/store.js';
import { entryTestHooks } from '../../src/spool/read.js';
import { renameSync } from 'node:fs';
import { parseEntrySettings } from '../../src/settings/index.js';

let dir = '';
let state = '';
let image = '';
/** Rejects (synchronously or not) with a message matching `re`. */
async function rejects(run: () => Promise<unknown>, re: RegExp): Promise<void> {
  let err: Error | undefined;
  try {
    await run();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, `expected a rejection matching ${re}`);
  assert.match(err!.message, re);
}

test.before.each(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'ocivirt-volumes-')));
  state = join(dir, 'state');
  mkdirSync(state, { mode: 0o700 });
  image = join(dir, 'rootfs');
  mkdirSync(join(image, 'data', 'sub'), { recursive: true });
  writeFileSync(join(image, 'data', 'seed.txt'), 'from the image\n');
  writeFileSync(join(image, 'data', 'sub', 'owned'), 'x');
  chownSync(join(image, 'data', 'sub', 'owned'), 1000, 1001);
  chownSync(join(image, 'data'), 33, 33);
  mkdirSync(join(dir, 'host-secret'));
  writeFileSync(join(dir, 'host-secret', 'key'), 'secret');
});
test.after.each(() => rmSync(dir, { recursive: true, force: true }));

test('a seed path swapped for a link out of the image after it was resolved: refused, nothing of the host copied', async () => {
  // seeding /data/sub: rootfs/data swapped for a link to a host directory holding sub/ between
  // the resolve and the open (a middle component: O_NOFOLLOW alone would not see it)
  mkdirSync(join(dir, 'host-secret', 'sub'));
  writeFileSync(join(dir, 'host-secret', 'sub', 'key'), 'secret');
  seedTestHooks.afterResolve = () => {
    renameSync(join(image, 'data'), join(image, 'data.orig'));
    symlinkSync(join(dir, 'host-secret'), join(image, 'data'));
  };
  try {
    await rejects(() => ensureVolume(state, 'raced', { seed: { root: image, path: '/data/sub' } }), /leads out of its directory/);
  } finally {
    seedTestHooks.afterResolve = undefined;
  }
  assert.not.ok(existsSync(join(volumesDir(state), 'raced')), 'no volume made');
  assert.equal(readdirSync(volumesDir(state)).filter((n) => n.startsWith('.new-')), [], 'no staging directory left');
});

test('a seed directory swapped for a link after it was opened: the copy is of what was opened', async () => {
  let swapped = false;
  entryTestHooks.afterOpen = (path) => {
    if (swapped || !path.endsWith('/data')) return;
    swapped = true;
    renameSync(join(image, 'data'), join(image, 'data.orig'));
    symlinkSync(join(dir, 'host-secret'), join(image, 'data'));
  };
  let volume: string;
  try {
    volume = await ensureVolume(state, 'held', { seed: { root: image, path: '/data' } });
  } finally {
    entryTestHooks.afterOpen = undefined;
  }
  assert.ok(swapped, 'the seed directory was opened (and swapped right after)');
  assert.is(readFileSync(join(volume, 'seed.txt'), 'utf8'), 'from the image\n');
  assert.not.ok(existsSync(join(volume, 'key')), 'the host directory was copied');
});

test('volume names: hostile ones are refused, anonymous ones cannot be named by a settings file', async () => {
  for (const bad of ['', '.', '..', '../x', 'a/b', '/abs', '.hidden', '-x', 'a\0b', 'x'.repeat(200), '_web.0123456789ab/..'])
    await rejects(() => ensureVolume(state, bad), /is not a volume name/);
  for (const bad of ['../etc:/data', '.x:/data', '_web.0123456789ab/x:/data', '_Web.0123456789ab:/data', '_web.0123:/data', 'a b:/data'])
    assert.throws(() => parseEntrySettings({ volumes: [bad] }, '/s.ocivirt.json'), /volumes\[0\]/, bad);
  const anon = anonymousVolumeName('web', '/data');
  assert.match(anon, /^_web\.[0-9a-f]{12}$/);
  assert.is(anonymousOwner(anon), 'web');
  assert.is(anonymousOwner('cache'), undefined);
  assert.ok(isVolumeName(anon) && isVolumeName('cache'));
  assert.is.not(anonymousVolumeName('web', '/data'), anonymousVolumeName('web', '/data2'));
  assert.is.not(anonymousVolumeName('web', '/data'), anonymousVolumeName('api', '/data'));
});

test('a new volume is seeded with the image files and owners; an existing one is never seeded again', async () => {
  const v = await ensureVolume(state, 'cache', { seed: { root: image, path: '/data' } });
  assert.is(v, join(volumesDir(state), 'cache'));
  assert.is(readFileSync(join(v, 'seed.txt'), 'utf8'), 'from the image\n');
  assert.is(statSync(join(v, 'sub', 'owned')).uid, 1000);
  assert.is(statSync(join(v, 'sub', 'owned')).gid, 1001);
  assert.is(statSync(v).uid, 33);
  assert.is(statSync(volumesDir(state)).mode & 0o777, 0o700);
  // data written by the container stays; files the image has later do not come back
  writeFileSync(join(v, 'written'), 'by the container');
  rmSync(join(v, 'seed.txt'));
  writeFileSync(join(image, 'data', 'new-in-image'), 'v2');
  await ensureVolume(state, 'cache', { seed: { root: image, path: '/data' } });
  assert.ok(existsSync(join(v, 'written')));
  assert.not.ok(existsSync(join(v, 'seed.txt')));
  assert.not.ok(existsSync(join(v, 'new-in-image')));
  // no staging directory left behind
  assert.equal(readdirSync(volumesDir(state)), ['cache']);
});

test('a symlink at the VOLUME path is resolved inside the image: the host is never copied', async () => {
  rmSync(join(image, 'data'), { recursive: true });
  symlinkSync(join(dir, 'host-secret'), join(image, 'data')); // absolute: inside the root it is <root><dir>/host-secret
  const v = await ensureVolume(state, 'a', { seed: { root: image, path: '/data' } });
  assert.equal(readdirSync(v), []);
  symlinkSync('../../../../../host-secret', join(image, 'up'));
  const w = await ensureVolume(state, 'b', { seed: { root: image, path: '/up' } });
  assert.equal(readdirSync(w), []);
  // a link that stays inside the image is followed there
  mkdirSync(join(image, 'real'));
  writeFileSync(join(image, 'real', 'f'), 'inside');
  symlinkSync('/real', join(image, 'in'));
  const x = await ensureVolume(state, 'c', { seed: { root: image, path: '/in' } });
  assert.is(readFileSync(join(x, 'f'), 'utf8'), 'inside');
  assert.not.ok(lstatSync(x).isSymbolicLink());
});

test('a symlink inside the seeded tree is copied as a link, not followed', async () => {
  symlinkSync(join(dir, 'host-secret', 'key'), join(image, 'data', 'key'));
  const v = await ensureVolume(state, 'cache', { seed: { root: image, path: '/data' } });
  assert.ok(lstatSync(join(v, 'key')).isSymbolicLink());
});

test('a volume swapped for a symlink (or a file) is refused, not followed', async () => {
  mkdirSync(volumesDir(state), { mode: 0o700 });
  symlinkSync(join(dir, 'host-secret'), join(volumesDir(state), 'cache'));
  await rejects(() => ensureVolume(state, 'cache'), /cache: is a symlink, not a volume ocivirt made: refused/);
  writeFileSync(join(volumesDir(state), 'other'), '');
  await rejects(() => ensureVolume(state, 'other'), /is a non-directory/);
});

test('the volumes directory must be ocivirt\'s own: a symlink or a group-writable one is refused', async () => {
  symlinkSync(join(dir, 'host-secret'), volumesDir(state));
  await rejects(() => ensureVolume(state, 'cache'), /volumes: is not a directory of ocivirt's own/);
  rmSync(volumesDir(state));
  mkdirSync(volumesDir(state));
  chmodSync(volumesDir(state), 0o777);
  await rejects(() => ensureVolume(state, 'cache'), /writable by group or others/);
});

test('user namespace: seeded owners move into the mapped range, an empty volume belongs to the mapped root', async () => {
  const idmap = { uid: [{ containerID: 0, hostID: 100000, size: 65536 }], gid: [{ containerID: 0, hostID: 200000, size: 65536 }] };
  const v = await ensureVolume(state, 'cache', { seed: { root: image, path: '/data' }, idmap });
  assert.is(statSync(join(v, 'sub', 'owned')).uid, 101000);
  assert.is(statSync(join(v, 'sub', 'owned')).gid, 201001);
  assert.is(statSync(v).uid, 100033);
  const e = await ensureVolume(state, 'empty', { seed: { root: image, path: '/nothing-here' }, idmap });
  assert.is(statSync(e).uid, 100000);
  assert.is(statSync(e).gid, 200000);
  // ids already in the host range stay; ids outside every range become the mapped root
  const map = [{ containerID: 0, hostID: 100000, size: 1000 }];
  assert.is(mapIntoRange(100005, map), 100005);
  assert.is(mapIntoRange(5, map), 100005);
  assert.is(mapIntoRange(5000, map), 100000);
});

test('a crash while seeding leaves a staging directory the next ensure removes', async () => {
  mkdirSync(join(volumesDir(state), '.new-cache-999999999-x', 'half'), { recursive: true, mode: 0o700 });
  chmodSync(volumesDir(state), 0o700);
  await ensureVolume(state, 'cache', { seed: { root: image, path: '/data' } });
  assert.equal(readdirSync(volumesDir(state)), ['cache']);
});

test('entryVolumes: named volumes, an anonymous one per image VOLUME nothing else covers; hostile VOLUME paths warned about', async () => {
  const settings = parseEntrySettings({ volumes: ['cache:/var/cache:ro', '/srv:/covered'] }, '/s.ocivirt.json');
  const r = await entryVolumes({
    domainName: 'web',
    settings,
    imageVolumes: { '/data/': {}, '/covered': {}, '/var/cache': {}, 'relative': {}, '/': {}, '/x\n': {} },
    config: { ociVersion: '1.2.0', mounts: [{ destination: '/covered', type: 'bind', source: '/srv', options: ['rbind'] }] },
    seedRoot: image,
    stateDir: state,
  });
  assert.equal(
    r.volumes.map((v) => [v.name, v.destination, v.readOnly, v.anonymous]),
    [
      ['cache', '/var/cache', true, false],
      [anonymousVolumeName('web', '/data'), '/data', false, true],
    ],
  );
  assert.is(r.warnings.length, 3);
  assert.is(readFileSync(join(r.volumes[1]!.source, 'seed.txt'), 'utf8'), 'from the image\n');
  const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`/v${i}`, {}]));
  await rejects(() => entryVolumes({ domainName: 'web', imageVolumes: many, config: { ociVersion: '1.2.0' }, seedRoot: image, stateDir: state }), /config\.Volumes: the image declares 65 VOLUMEs, more than 64/);
  await rejects(() => entryVolumes({ domainName: 'web', settings, settingsFile: '/s.ocivirt.json', config: { ociVersion: '1.2.0' }, seedRoot: image }), /\/s\.ocivirt\.json: volumes: volumes need a state directory/);
});

test("entryVolumes: a settings file may name its own entry's anonymous volume (as an export writes it), never another's", async () => {
  const own = anonymousVolumeName('web', '/data');
  const mine = parseEntrySettings({ volumes: [`${own}:/data:ro`] }, '/s.ocivirt.json');
  const r = await entryVolumes({ domainName: 'web', settings: mine, settingsFile: '/s.ocivirt.json', config: { ociVersion: '1.2.0' }, seedRoot: image, stateDir: state });
  assert.equal(r.volumes.map((v) => [v.name, v.destination, v.readOnly, v.source]), [[own, '/data', true, join(volumesDir(state), own)]]);
  const theirs = parseEntrySettings({ volumes: [`${anonymousVolumeName('api', '/data')}:/data`] }, '/s.ocivirt.json');
  await rejects(
    () => entryVolumes({ domainName: 'web', settings: theirs, settingsFile: '/s.ocivirt.json', config: { ociVersion: '1.2.0' }, seedRoot: image, stateDir: state }),
    /\/s\.ocivirt\.json: volumes\[0\]: _api\.[0-9a-f]{12} is the anonymous volume of domain api: a settings file may name only its own entry's \(domain web\)/,
  );
  assert.not.ok(existsSync(join(volumesDir(state), anonymousVolumeName('api', '/data'))), "another entry's volume is not made");
});

test.run();
