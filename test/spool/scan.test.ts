/**
 * scanSpool: what counts as an entry, what is ignored or refused and why, domain names and
 * collisions, fingerprints that move exactly when an entry changes, and a spool left untouched.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { InputError } from '../../src/errors.js';
import { inspectEntry, refuseCollisions, scanSpool } from '../../src/spool/scan.js';

let spool = '';
test.before.each(() => {
  spool = mkdtempSync(join(tmpdir(), 'ocivirt-spool-'));
});
test.after.each(() => {
  rmSync(spool, { recursive: true, force: true });
});

const CONFIG = JSON.stringify({ ociVersion: '1.2.0', root: { path: 'rootfs' }, process: { cwd: '/', args: ['sh'], user: { uid: 0, gid: 0 } } });

function bundle(name: string, config = CONFIG): string {
  const dir = join(spool, name);
  mkdirSync(join(dir, 'rootfs'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), config);
  return dir;
}
function layout(name: string, index = '{"schemaVersion":2,"manifests":[]}'): string {
  const dir = join(spool, name);
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), index);
  return dir;
}
function archive(name: string, content = 'not really a tar, the image module checks'): string {
  const p = join(spool, name);
  writeFileSync(p, content);
  return p;
}

const byName = <T extends { name: string }>(xs: T[], name: string) => xs.find((x) => x.name === name);

test('bundles, layouts and .tar archives are entries, with their kind and domain name', async () => {
  bundle('web-1');
  layout('alpine');
  archive('db.tar');
  const { entries, refused } = await scanSpool(spool);
  assert.equal(refused, []);
  assert.equal(
    entries.map((e) => [e.name, e.kind, e.domainName, e.path]),
    [
      ['alpine', 'layout', 'alpine', join(spool, 'alpine')],
      ['db.tar', 'archive', 'db', join(spool, 'db.tar')],
      ['web-1', 'bundle', 'web-1', join(spool, 'web-1')],
    ],
  );
  for (const e of entries) assert.match(e.fingerprint, new RegExp(`^${e.kind}:`));
});

test('names starting with "." are ignored, not refused', async () => {
  bundle('.staging');
  archive('.web.tar.partial');
  writeFileSync(join(spool, '.DS_Store'), '');
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries, []);
  assert.equal(refused, []);
});

test('a symlink entry is refused, even to a valid bundle', async () => {
  const elsewhere = mkdtempSync(join(tmpdir(), 'ocivirt-elsewhere-'));
  try {
    mkdirSync(join(elsewhere, 'rootfs'));
    writeFileSync(join(elsewhere, 'config.json'), CONFIG);
    symlinkSync(elsewhere, join(spool, 'linked'));
    symlinkSync('/etc/passwd', join(spool, 'passwd.tar'));
    const { entries, refused } = await scanSpool(spool);
    assert.equal(entries, []);
    assert.equal(refused.map((r) => r.name), ['linked', 'passwd.tar']);
    for (const r of refused) assert.match(r.reason, /symlink/);
  } finally {
    rmSync(elsewhere, { recursive: true, force: true });
  }
});

test('everything else is refused with a reason', async () => {
  mkdirSync(join(spool, 'empty-dir'));
  archive('notes.txt');
  layout('both');
  writeFileSync(join(spool, 'both', 'config.json'), CONFIG);
  execFileSync('mkfifo', [join(spool, 'fifo')]);
  const half = layout('half-layout');
  rmSync(join(half, 'index.json'));
  const linkedConfig = join(spool, 'linked-config');
  mkdirSync(linkedConfig);
  symlinkSync('/etc/hostname', join(linkedConfig, 'config.json'));
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries, []);
  const reason = (n: string) => byName(refused, n)?.reason ?? '(not refused)';
  assert.match(reason('empty-dir'), /neither config\.json .* nor oci-layout/);
  assert.match(reason('notes.txt'), /neither an image archive \(\.oci\.tar, \.tar\.gz, \.tgz, \.tar, \.oci\) nor a settings file/);
  assert.match(reason('both'), /both config\.json .* and oci-layout/);
  assert.match(reason('fifo'), /neither a directory nor a regular file/);
  assert.match(reason('half-layout'), /index\.json is missing/);
  assert.match(reason('linked-config'), /config\.json is a symlink/);
  assert.is(refused.length, 6);
});

test('names are made valid for libvirt: lower case, [a-z0-9-], no leading "-", at most 63', async () => {
  bundle('Web_Server.v2');
  archive('--lead.tar');
  const long = 'x'.repeat(80);
  bundle(long);
  bundle(`${long}y`);
  archive('___.tar');
  const { entries, refused } = await scanSpool(spool);
  const name = (n: string) => byName(entries, n)?.domainName;
  assert.is(name('Web_Server.v2'), 'web-server-v2');
  assert.is(name('--lead.tar'), 'lead');
  const a = name(long)!;
  const b = name(`${long}y`)!;
  assert.is(a.length, 63);
  assert.is(b.length, 63);
  assert.is.not(a, b, 'long names sharing a beginning stay apart');
  for (const e of entries) assert.match(e.domainName, /^[a-z0-9][a-z0-9-]{0,62}$/);
  assert.match(byName(refused, '___.tar')?.reason ?? '', /no letter or digit/);
});

test('a prefix is prepended; an invalid prefix is a configuration error', async () => {
  bundle('web');
  const { entries } = await scanSpool(spool, { prefix: 'oci-' });
  assert.is(entries[0]?.domainName, 'oci-web');
  for (const prefix of ['-x', 'Has_Caps', 'a/b', 'p'.repeat(40)]) {
    try {
      await scanSpool(spool, { prefix });
      assert.unreachable(`prefix ${prefix} accepted`);
    } catch (e) {
      assert.instance(e, InputError);
      assert.is((e as InputError).field, 'prefix');
    }
  }
});

test('two entries for one domain name are both refused, naming each other; others go on', async () => {
  bundle('web-1');
  archive('web-1.tar');
  bundle('Web.1');
  bundle('db');
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries.map((e) => e.name), ['db']);
  assert.equal(refused.map((r) => r.name), ['Web.1', 'web-1', 'web-1.tar']);
  const newline = bundle('web\n1');
  const again = await scanSpool(spool);
  assert.match(byName(again.refused, 'web\n1')!.reason, /^name collision: "web\\n1" and /);
  assert.not.match(byName(again.refused, 'web-1')!.reason, /\n/, 'one line even for a name with a newline');
  rmSync(newline, { recursive: true });
  for (const r of refused) {
    assert.is(r.domainName, 'web-1');
    assert.match(r.reason, /name collision/);
  }
  assert.match(byName(refused, 'web-1')!.reason, /"web-1" and "Web\.1", "web-1\.tar" would all be domain 'web-1'/);
});

test('fingerprints: stable when nothing changes, changed by each kind of change', async () => {
  const b = bundle('b');
  const l = layout('l');
  const a = archive('a.tar');
  const fp = async () => Object.fromEntries((await scanSpool(spool)).entries.map((e) => [e.name, e.fingerprint]));
  const first = await fp();
  assert.equal(await fp(), first, 'unchanged spool, same fingerprints');

  writeFileSync(join(b, 'config.json'), CONFIG.replace('"sh"', '"ash"'));
  const afterConfig = await fp();
  assert.is.not(afterConfig.b, first.b, 'config.json edited');
  assert.is(afterConfig.l, first.l);
  assert.is(afterConfig['a.tar'], first['a.tar']);

  // A rootfs replaced by another directory (same config.json).
  renameSync(join(b, 'rootfs'), join(b, 'old-rootfs'));
  mkdirSync(join(b, 'rootfs'));
  const afterRootfs = await fp();
  assert.is.not(afterRootfs.b, afterConfig.b, 'rootfs replaced');

  writeFileSync(join(l, 'index.json'), '{"schemaVersion":2,"manifests":[{}]}');
  const afterIndex = await fp();
  assert.is.not(afterIndex.l, afterRootfs.l, 'index.json changed');

  // Same size, content rewritten in place with the old mtime put back: the ctime still moves.
  const before = statSync(a);
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(a, 'X'.repeat(before.size));
  utimesSync(a, before.atime, before.mtime);
  const afterArchive = await fp();
  assert.is.not(afterArchive['a.tar'], afterIndex['a.tar'], 'archive rewritten');

  // An archive replaced by rename (new inode).
  writeFileSync(join(spool, '.a.tar.new'), 'X'.repeat(before.size));
  renameSync(join(spool, '.a.tar.new'), a);
  assert.is.not((await fp())['a.tar'], afterArchive['a.tar'], 'archive renamed over');
});

test('a bundle whose config.json is not JSON is still an entry (the bundle module refuses it later)', async () => {
  bundle('broken', '{ not json');
  const { entries } = await scanSpool(spool);
  assert.is(entries[0]?.kind, 'bundle');
});

test('the spool is never written to (tree and times unchanged by a scan)', async () => {
  bundle('b');
  layout('l');
  archive('a.tar');
  mkdirSync(join(spool, 'junk'));
  const snapshot = () => {
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => {
        const p = join(d, e.name);
        const s = statSync(p);
        const line = `${p} ${s.mode} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`;
        return e.isDirectory() ? [line, ...walk(p)] : [line];
      });
    const s = statSync(spool);
    return [`${spool} ${s.mode} ${s.mtimeMs} ${s.ctimeMs}`, ...walk(spool)];
  };
  const before = snapshot();
  await scanSpool(spool);
  await scanSpool(spool, { prefix: 'p-' });
  assert.equal(snapshot(), before);
});

test('inspectEntry gives what scanSpool gives for one name; refuseCollisions finds the clashes', async () => {
  bundle('web-1');
  archive('web-1.tar');
  layout('db');
  symlinkSync('/', join(spool, 'root'));
  const scan = await scanSpool(spool, { prefix: 'x-' });
  const one = await Promise.all(['db', 'root', 'web-1', 'web-1.tar'].map((n) => inspectEntry(spool, n, { prefix: 'x-' })));
  assert.equal(one[0], byName(scan.entries, 'db'));
  assert.equal(one[1], byName(scan.refused, 'root'));
  assert.is(await inspectEntry(spool, '.hidden'), null);
  const clash = refuseCollisions(one.filter((x) => x !== null && !('reason' in x)) as Parameters<typeof refuseCollisions>[0]);
  assert.equal(clash.entries.map((e) => e.name), ['db']);
  assert.equal(clash.refused.map((r) => r.name), ['web-1', 'web-1.tar']);
  assert.equal(clash.refused, scan.refused.filter((r) => r.name.startsWith('web-1')));
});

test('a missing spool directory is an InputError naming it', async () => {
  try {
    await scanSpool(join(spool, 'nope'));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /nope: cannot read the spool directory \(ENOENT\)/);
  }
});

test.run();
