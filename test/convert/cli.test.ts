/**
 * `ocivirt from-native` and `ocivirt to-native` through bin/ocivirt on real bundles: XML on
 * stdout, warnings on stderr (one line each), the round trip through files and stdin, argv0
 * looked up in the real rootfs (symlinks scoped to it), --strict, and JSON errors with line and
 * column. (Bad-input refusals in general are covered by test/cli-bad-input.test.ts.)
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canonicalJson } from '../../src/convert/json.js';
import { InputError } from '../../src/errors.js';
import { readBundleConfig } from '../../src/oci/bundle.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { runcSpec } from './fixtures.js';

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
const run = (args: string[], input?: string) => spawnSync(bin, args, { encoding: 'utf8', input, timeout: 60_000 });

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocivirt-convert-cli-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A bundle with a rootfs holding /bin/busybox, /bin/sh -> busybox and /usr/bin/escape -> ../../../../etc/passwd. */
function bundle(config: unknown, text = JSON.stringify(config, null, 2)): string {
  const b = join(dir, 'web');
  mkdirSync(join(b, 'rootfs', 'bin'), { recursive: true });
  mkdirSync(join(b, 'rootfs', 'usr', 'bin'), { recursive: true });
  writeFileSync(join(b, 'rootfs', 'bin', 'busybox'), '#!/bin/true\n');
  chmodSync(join(b, 'rootfs', 'bin', 'busybox'), 0o755);
  symlinkSync('busybox', join(b, 'rootfs', 'bin', 'sh'));
  writeFileSync(join(b, 'rootfs', 'bin', 'data'), 'not executable\n');
  symlinkSync('../../../../../../../bin/true', join(b, 'rootfs', 'usr', 'bin', 'escape'));
  writeFileSync(join(b, 'config.json'), text);
  return b;
}

test('from-native prints the XML on stdout and one warning per line on stderr; to-native gives the config back', () => {
  const config = runcSpec();
  const b = bundle(config);
  const r = run(['from-native', b]);
  assert.is(r.status, 0, r.stderr);
  const d = parseDomainXml(r.stdout);
  assert.is(d.name, 'runc');
  assert.is(d.os.init, '/bin/sh', 'argv0 sh found through PATH in the rootfs (a symlink inside it)');
  const warnings = r.stderr.trim().split('\n');
  assert.ok(warnings.length >= 5);
  for (const w of warnings) assert.match(w, /^warning: [\w.\[\]"]+: /);
  writeFileSync(join(dir, 'd.xml'), r.stdout);
  const fromFile = run(['to-native', join(dir, 'd.xml')]);
  assert.is(fromFile.status, 0, fromFile.stderr);
  assert.is(fromFile.stderr, '');
  const back = JSON.parse(fromFile.stdout);
  assertRuntimeSchemaValid(back);
  const want = { ...config, root: { ...config.root!, path: join(b, 'rootfs') } };
  assert.is(canonicalJson(back), canonicalJson(want));
  assert.match(fromFile.stdout, /^\{\n  "ociVersion": "1\.0\.2-dev",\n  "process": \{/, '2-space JSON');
  const fromStdin = run(['to-native', '-'], r.stdout);
  assert.is(fromStdin.status, 0, fromStdin.stderr);
  assert.is(fromStdin.stdout, fromFile.stdout);
});

test('from-native --name names the domain; --strict refuses preserved fields with exit 2', () => {
  const b = bundle(runcSpec());
  const named = run(['from-native', '--name', 'web-7', join(b, 'config.json')]);
  assert.is(named.status, 0, named.stderr);
  assert.is(parseDomainXml(named.stdout).name, 'web-7');
  const strict = run(['from-native', '--strict', b]);
  assert.is(strict.status, 2);
  assert.match(strict.stderr, /^ocivirt from-native: .*config\.json: process\.capabilities\.ambient: .*\(refused by --strict\)\n$/);
  assert.is(strict.stdout, '');
});

test('argv0 lookup: not executable, or a symlink leaving the rootfs, is not found (exit 2 naming process.args[0])', () => {
  for (const argv0 of ['data', 'escape', 'nothere']) {
    const c = runcSpec();
    c.process!.args = [argv0];
    const r = run(['from-native', bundle(c)]);
    assert.is(r.status, 2, `${argv0}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`config\\.json: process\\.args\\[0\\]: '${argv0}' is not an executable file in the rootfs`));
    rmSync(join(dir, 'web'), { recursive: true });
  }
});

test('readBundleConfig: a bundle dir or config.json; JSON errors with line and column; validation names the field', async () => {
  const b = bundle(runcSpec());
  const viaDir = await readBundleConfig(b);
  const viaFile = await readBundleConfig(join(b, 'config.json'));
  assert.equal(viaDir, viaFile);
  assert.is(viaDir.bundleDir, b);
  assert.is(viaDir.configPath, join(b, 'config.json'));
  rmSync(join(dir, 'web'), { recursive: true });
  const bad = bundle(null, '{\n  "ociVersion": "1.0.0",\n  "process": ,\n}');
  try {
    await readBundleConfig(bad);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /config\.json: not valid JSON at line 3 column 14: expected a value, found ","/);
  }
  for (const [text, where] of [['', 'line 1 column 1: unexpected end'], ['{"a":1}}', 'line 1 column 8: unexpected text'], ['{"a":"\u0001"}', 'line 1 column 7: control character'], ["{'a':1}", 'line 1 column 2: expected a property name'], ['['.repeat(100000), 'line 1 column 1001: nested deeper than 1000 levels']]) {
    rmSync(join(dir, 'web'), { recursive: true });
    await readBundleConfig(bundle(null, text)).then(
      () => assert.unreachable(),
      (e: Error) => assert.ok(e.message.includes(`not valid JSON at ${where}`), e.message),
    );
  }
  rmSync(join(dir, 'web'), { recursive: true });
  const c = runcSpec() as unknown as Record<string, unknown>;
  (c.process as Record<string, unknown>).args = 'sh';
  await readBundleConfig(bundle(c)).then(
    () => assert.unreachable(),
    (e: Error) => assert.match(e.message, /config\.json: process\.args: /),
  );
});

test('an absolute argv0 missing from the rootfs is warned about', () => {
  const c = runcSpec();
  c.process!.args = ['/usr/bin/escape'];
  const r = run(['from-native', bundle(c)]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /^warning: process\.args\[0\]: \/usr\/bin\/escape is not an executable file in the rootfs/m);
});

test('to-native resolves a named inituser against the rootfs /etc/passwd', () => {
  const b = bundle(runcSpec());
  mkdirSync(join(b, 'rootfs', 'etc'));
  writeFileSync(join(b, 'rootfs', 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nweb:x:1234:1234::/srv:/bin/sh\n');
  writeFileSync(join(b, 'rootfs', 'etc', 'group'), 'root:x:0:\nweb:x:4321:\n');
  const xml = `<domain type='lxc'><name>n</name><memory>1024</memory><os><type>exe</type><init>/bin/sh</init><inituser>web</inituser><initgroup>web</initgroup></os>` +
    `<devices><filesystem type='mount'><source dir='${join(b, 'rootfs')}'/><target dir='/'/></filesystem><console type='pty'/></devices></domain>`;
  const r = run(['to-native', '-'], xml);
  assert.is(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).process.user, { uid: 1234, gid: 4321 });
  const unknown = run(['to-native', '-'], xml.replace('<inituser>web</inituser>', '<inituser>nobody</inituser>'));
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /^ocivirt to-native: \(stdin\): os\.inituser: 'nobody' is a user name that is not in the rootfs \/etc\/passwd\n$/);
});

test('--help: full usage for both commands', () => {
  for (const cmd of ['from-native', 'to-native']) {
    const r = run([cmd, '--help']);
    assert.is(r.status, 0);
    assert.match(r.stdout, new RegExp(`^Usage: ocivirt ${cmd}`));
    assert.match(r.stdout, /Exit codes: 0 done, 2 /);
  }
  assert.match(run(['--help']).stdout, /from-native .*\n.*to-native /);
});

test('to-native refuses a non-lxc domain and a file that is not a domain (exit 2, one line)', () => {
  writeFileSync(join(dir, 'kvm.xml'), `<domain type='kvm'><name>vm</name></domain>`);
  const kvm = run(['to-native', join(dir, 'kvm.xml')]);
  assert.is(kvm.status, 2);
  assert.match(kvm.stderr, /kvm\.xml: domain\.type: is a 'kvm' domain, not an lxc one\n$/);
  writeFileSync(join(dir, 'net.xml'), `<network><name>default</name></network>`);
  const net = run(['to-native', join(dir, 'net.xml')]);
  assert.is(net.status, 2);
  assert.match(net.stderr, /net\.xml: domain: the root element is <network>/);
  const both = run(['to-native', '--domain', 'x', join(dir, 'net.xml')]);
  assert.is(both.status, 2);
});

test('from-native --state: the process runs through the init shim, its directory made; to-native gives the config back', () => {
  const config = runcSpec();
  config.root = { path: 'rootfs' };
  config.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] };
  const b = bundle(config);
  const state = join(dir, 'state');
  const r = run(['from-native', '--state', state, b]);
  assert.is(r.status, 0, r.stderr);
  assert.not.match(r.stderr, /seccomp|rlimits|noNewPrivileges|ambient/, 'enforced by the shim, not warnings');
  const d = parseDomainXml(r.stdout);
  assert.is(d.os.init, '/.ocivirt/init');
  const shimDir = d.devices.filesystems.find((f) => f.target === '/.ocivirt')!.source.dir!;
  assert.ok(shimDir.startsWith(join(state, 'containers', 'runc', 'shim-')), shimDir);
  assert.equal(readdirSync(shimDir).sort(), ['init', 'run', 'spec']);
  const back = run(['to-native', '-'], r.stdout);
  assert.is(back.status, 0, back.stderr);
  const want = structuredClone(config);
  want.root!.path = join(b, 'rootfs');
  assert.is(canonicalJson(JSON.parse(back.stdout)), canonicalJson(want));
  // without --state: libvirt's own init, the fields warned about
  const plain = run(['from-native', b]);
  assert.match(plain.stderr, /linux\.seccomp: NOT ENFORCED/);
});

test.run();
