/**
 * A settings file is hostile input: read through the spool's one-fd reader, so a symlink (even
 * to a valid file), a FIFO (which would block a plain read), a directory, a huge file or broken
 * JSON fails with one line naming the file, and nothing outside the spool is read.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_SETTINGS_BYTES, readEntrySettings } from '../../src/settings/index.js';

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocivirt-settings-hostile-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

const refusal = (path: string) =>
  readEntrySettings(path).then(
    () => 'accepted',
    (e: Error) => e.message,
  );

test('a good file is read, with the digest of its bytes', async () => {
  const p = join(dir, 'web.ocivirt.json');
  writeFileSync(p, '{"env":{"A":"1"}}');
  const r = await readEntrySettings(p);
  assert.equal(r.settings, { env: { A: '1' } });
  assert.is(r.digest, 'sha256:' + execFileSync('sha256sum', [p], { encoding: 'utf8' }).split(' ')[0]);
});

test('a symlinked settings file is refused, even to a valid file', async () => {
  const real = join(dir, 'real.json');
  writeFileSync(real, '{}');
  const p = join(dir, 'web.ocivirt.json');
  symlinkSync(real, p);
  assert.is(await refusal(p), `${p}: is a symlink: a settings file must be a regular file in the spool`);
});

test('a FIFO, a directory and a device are refused without blocking', async () => {
  const fifo = join(dir, 'fifo.ocivirt.json');
  execFileSync('mkfifo', [fifo]);
  assert.is(await refusal(fifo), `${fifo}: is not a regular file`);
  const d = join(dir, 'dir.ocivirt.json');
  mkdirSync(d);
  assert.is(await refusal(d), `${d}: is not a regular file`);
  const dev = join(dir, 'null.ocivirt.json');
  symlinkSync('/dev/null', dev);
  assert.match(await refusal(dev), /is a symlink/);
  const node = join(dir, 'char.ocivirt.json');
  execFileSync('mknod', [node, 'c', '1', '3']); // a real character device (/dev/null's numbers)
  assert.is(await refusal(node), `${node}: is not a regular file`);
});

test('settings that would fill the disk or the log: too many volumes, one path twice, a huge key', async () => {
  const p = join(dir, 'fill.ocivirt.json');
  const cases: [unknown, RegExp][] = [
    // each named volume is a seeded copy of the image's files
    [{ volumes: Array.from({ length: 65 }, (_, i) => `v${i}:/data${i}`) }, /: volumes: may list at most 64 mounts/],
    [{ volumes: ['a:/data', 'b:/data/'] }, /: volumes\[1\]: mounts \/data a second time/],
  ];
  for (const [value, expected] of cases) {
    writeFileSync(p, JSON.stringify(value));
    assert.match(await refusal(p), expected);
  }
  writeFileSync(p, JSON.stringify({ env: { [`${'K'.repeat(500_000)}-`]: '1' } }));
  const msg = await refusal(p);
  assert.match(msg, /: env\["K+\.\.\."\]: /);
  assert.ok(msg.length < 300, `a ${msg.length}-character line`);
});

test('a huge file is refused before it is read', async () => {
  const p = join(dir, 'big.ocivirt.json');
  writeFileSync(p, '');
  truncateSync(p, 8 * 1024 ** 3); // sparse: 8 GiB that would take memory and time to read
  const t0 = Date.now();
  assert.is(await refusal(p), `${p}: is larger than ${MAX_SETTINGS_BYTES} bytes`);
  assert.ok(Date.now() - t0 < 2000);
});

test('broken JSON says where', async () => {
  const p = join(dir, 'bad.ocivirt.json');
  writeFileSync(p, '{\n  "env": {"A": "1",}\n}');
  assert.match(await refusal(p), new RegExp(`^${p}: not valid JSON at line 2 column \\d+`));
});

test('keys that try to reach the host are refused, one line naming the key', async () => {
  const p = join(dir, 'evil.ocivirt.json');
  const cases: [unknown, RegExp][] = [
    [{ rootfs: '/' }, /: rootfs: unknown key/],
    [{ mounts: [{ source: '/', destination: '/host', type: 'bind' }] }, /: mounts: unknown key/],
    [{ privileged: true }, /: privileged: unknown key/],
    [{ volumes: ['/:/host:rw:x'] }, /: volumes\[0\]: must be/],
    [{ volumes: ['../../etc:/etc'] }, /: volumes\[0\]: its source must be an absolute host path or a volume name/],
    [{ image: '../../etc/passwd' }, /: image: must be the name of an image entry in the spool/],
    [{ image: '/var/lib/images/x.tar' }, /: image: must be the name of an image entry in the spool/],
    [{ annotations: { 'org.ocivirt.settings.volumes': '["x"]' } }, /: annotations\.org\.ocivirt\.settings\.volumes: keys under/],
  ];
  for (const [value, expected] of cases) {
    writeFileSync(p, JSON.stringify(value));
    const msg = await refusal(p);
    assert.match(msg, expected, msg);
    assert.ok(msg.startsWith(`${p}: `) && !msg.includes('\n'), msg);
  }
});

test.run();
