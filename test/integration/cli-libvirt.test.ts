/**
 * The conversion commands that talk to libvirt: `to-native --domain` and `from-native --uri`
 * end (exit 137, with a message) against a libvirt that accepts and never answers, and
 * `from-native --uri` warns about a domain its XML would collide with.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { readBundleConfig } from '../../src/oci/bundle.js';
import { TEST_PREFIX, TEST_URI, cleanupDomains, makeTempDir, removeTempDir, virsh, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}cli-${process.pid}-`;
const bin = join(new URL('../../..', import.meta.url).pathname, 'bin/ocivirt');
let tmp = '';
let bundle = '';

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('cli-libvirt');
  bundle = writeBusyboxBundle(join(tmp, 'bundle'));
});

test.after(() => {
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

const fromNativeCli = (...args: string[]) => spawnSync(bin, ['from-native', ...args, bundle], { encoding: 'utf8', timeout: 60_000 });
const collisions = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning: name: '));

function defineXml(xml: string): void {
  const file = join(tmp, `define-${Math.random().toString(16).slice(2)}.xml`);
  writeFileSync(file, xml);
  virsh('define', file);
}

test('to-native --domain and from-native --uri end with a clear message when libvirt never answers', async () => {
  const sock = join(tmp, 'hung.sock');
  const held: Socket[] = [];
  const server = createServer((c) => held.push(c)).listen(sock);
  try {
    const uri = `lxc+unix:///?socket=${sock}`;
    for (const args of [['to-native', '--domain', `${PREFIX}x`, '--uri', uri], ['from-native', '--uri', uri, bundle]]) {
      const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += String(d)));
      const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, sg) => resolve([c, sg])));
      clearTimeout(guard);
      assert.match(stderr, /cannot connect to libvirt at lxc\+unix:/, `${args[0]}: ${stderr}`);
      assert.match(stderr, /stopped answering; a thread is stuck inside it/, `${args[0]}: ${stderr}`);
      assert.equal([code, signal], [null, 'SIGKILL'], args[0]);
    }
  } finally {
    for (const c of held) c.destroy();
    server.close();
  }
});

test('from-native --uri: no warning for a free name or for the domain this XML defined; warnings for a foreign one', async () => {
  const free = `${PREFIX}free`;
  const out = fromNativeCli('--name', free, '--uri', TEST_URI);
  assert.is(out.status, 0, out.stderr);
  assert.equal(collisions(out.stderr), []);

  const same = `${PREFIX}same`;
  defineXml(fromNativeCli('--name', same).stdout);
  assert.equal(collisions(fromNativeCli('--name', same, '--uri', TEST_URI).stderr), []);

  // a domain someone else defined under the name: no ocivirt metadata, a random UUID
  const foreign = `${PREFIX}foreign`;
  defineXml(`<domain type='lxc'><name>${foreign}</name><memory>65536</memory><os><type>exe</type><init>/bin/sh</init></os><devices><console type='pty'/></devices></domain>`);
  assert.equal(collisions(fromNativeCli('--name', foreign).stderr), [], 'without --uri nothing is looked up');
  const warned = fromNativeCli('--name', foreign, '--uri', TEST_URI);
  assert.is(warned.status, 0, warned.stderr);
  assert.match(warned.stdout, `<name>${foreign}</name>`);
  const lines = collisions(warned.stderr);
  assert.is(lines.length, 2, warned.stderr);
  assert.match(lines[0]!, 'was not made by ocivirt');
  assert.match(lines[1]!, /with UUID [0-9a-f-]{36}, this XML has [0-9a-f-]{36}: libvirt refuses the define/);
});

test('from-native --uri warns when the name belongs to a domain the reconciler manages', async () => {
  const name = `${PREFIX}owned`;
  const { config, bundleDir } = await readBundleConfig(bundle);
  defineXml(fromNative(config, { bundleDir, name, cgroupVersion: 1, owner: { entry: 'owned' } }).xml);
  const lines = collisions(fromNativeCli('--name', name, '--uri', TEST_URI).stderr);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, "managed by ocivirt's reconciler (spool entry 'owned')");
});

test.run();
