import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import { MAX_USERDB_BYTES, readUserDb } from '../../src/fsroot/userdb.js';

let base = '';
let root = '';
test.before.each(() => {
  base = mkdtempSync(join(tmpdir(), 'ocivirt-userdb-'));
  root = join(base, 'rootfs');
  mkdirSync(join(root, 'etc'), { recursive: true });
});
test.after.each(() => rmSync(base, { recursive: true, force: true }));

test('both files read; a missing one is undefined', async () => {
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  assert.equal(await readUserDb(root), { passwd: 'root:x:0:0::/root:/bin/sh\n', group: undefined });
});

test("a link out of the rootfs is read inside it: the host's own database is never what a hostile image gets", async () => {
  writeFileSync(join(base, 'host-passwd'), 'host:x:0:0::/:/bin/sh\n');
  symlinkSync('/../../host-passwd', join(root, 'etc/passwd'));
  symlinkSync('../../host-passwd', join(root, 'etc/group'));
  assert.equal(await readUserDb(root), { passwd: undefined, group: undefined });
});

test('an oversized or non-regular file is refused, naming it', async () => {
  writeFileSync(join(root, 'etc/passwd'), '');
  truncateSync(join(root, 'etc/passwd'), MAX_USERDB_BYTES + 1);
  mkdirSync(join(root, 'etc/group'));
  for (const [remove, pattern] of [[undefined, /^\/etc\/passwd in the rootfs: /], ['etc/passwd', /^\/etc\/group in the rootfs: /]] as const) {
    if (remove) rmSync(join(root, remove));
    try {
      await readUserDb(root);
      assert.unreachable('read');
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, pattern);
    }
  }
});

test.run();
