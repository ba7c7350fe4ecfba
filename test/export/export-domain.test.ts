/**
 * Issue 8 item 13: the exporter and `ocivirt to-native` run one function from domain to config,
 * so a domain whose <inituser>/<initgroup> are names exports like to-native prints it: the names
 * resolved against the rootfs's /etc/passwd and /etc/group.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exportDomain } from '../../src/export/export-domain.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-export-domain-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const rootfs = join(tmp, 'rootfs');
mkdirSync(join(rootfs, 'etc'), { recursive: true });
writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n');
writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');

const XML = `<domain type='lxc'><name>named</name><memory>65536</memory>
  <os><type>exe</type><init>/bin/sh</init><inituser>www-data</inituser><initgroup>staff</initgroup></os>
  <devices><filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem><console type='pty'/></devices>
</domain>`;

/** Just what exportDomain reads: the inactive XML of one domain. */
const port = { uri: 'test:///', inactiveXml: async () => XML, lookup: async () => ({ name: 'named', uuid: '' }) } as unknown as LibvirtPort;

test('a domain whose inituser and initgroup are names exports, as to-native converts it', async () => {
  const out = join(tmp, 'export');
  const r = await exportDomain(port, 'named', out, { includeUnmanaged: true });
  assert.is(r.status, 'written');
  const exported = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(exported.process.user, { uid: 33, gid: 50 });

  const file = join(tmp, 'named.xml');
  writeFileSync(file, XML);
  const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
  const cli = spawnSync(bin, ['to-native', file], { encoding: 'utf8' });
  assert.is(cli.status, 0, cli.stderr);
  assert.equal(exported, JSON.parse(cli.stdout), 'the export and to-native agree');
});

test.run();
