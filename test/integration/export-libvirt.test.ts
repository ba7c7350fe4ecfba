/**
 * Export on the real libvirtd: a managed domain changed with `virsh memtune --config` (no
 * lifecycle event) and with `virsh define` by hand gets `<export>/<domain>/config.json` through
 * the definitions-directory hint alone (the safety-net pass is set to an hour), the file is valid
 * per the runtime-spec schema, owner-only, and from-native of it gives back the domain libvirt
 * holds. Unchanged domains are not rewritten; unmanaged ones only with exportAllDomains.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import { captureLog } from '../helpers/log.js';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { Exporter } from '../../src/export/exporter.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import type { Domain } from '../../src/xml/domain.js';
import { domainDifferences } from '../../src/xml/compare.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { TEST_PREFIX, TEST_URI, buildBusyboxRootfs, cleanupDomains, makeTempDir, removeTempDir, virsh } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}export-`;
const DEFINITIONS = '/etc/libvirt/lxc';
let tmp = '';
let bundle = '';

function bundleConfig(): RuntimeConfig {
  return {
    ociVersion: '1.0.2',
    process: { args: ['/bin/sleep', '300'], cwd: '/', env: ['PATH=/bin:/usr/bin'], user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    hostname: 'exported',
    annotations: { 'org.example.kept': 'yes' },
    linux: { resources: { memory: { limit: 128 * 1024 * 1024 } }, namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  } as RuntimeConfig;
}


async function until<T>(f: () => T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function defineManaged(name: string): void {
  const { xml } = fromNative(bundleConfig(), { bundleDir: bundle, name, owner: { entry: name } });
  const file = join(tmp, `${name}.xml`);
  writeFileSync(file, xml);
  virsh('define', file);
}

/** The domain without what changes legitimately when the desired config does (its digest). */
function meaning(d: Domain): Domain {
  const copy = structuredClone(d);
  if (copy.metadata.ours) delete copy.metadata.ours.desiredDigest;
  return copy;
}

/**
 * The export is valid per the runtime-spec schema and from-native of it is the very domain libvirt
 * holds, <memory> included (after `memtune --hard-limit` it differs from the hard limit, and the
 * export carries it in the XML-only annotation).
 */
function assertRoundTrip(name: string, exported: RuntimeConfig): void {
  assertRuntimeSchemaValid(exported);
  const back = fromNative(exported, { bundleDir: bundle, name, owner: { entry: name } });
  const actual = parseDomainXml(virsh('dumpxml', '--inactive', name));
  assert.equal(domainDifferences(meaning(back.domain), meaning(actual)), [], 'from-native of the export is the domain libvirt holds');
}

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('export');
  bundle = join(tmp, 'bundle');
  buildBusyboxRootfs(join(bundle, 'rootfs'));
});

test.after(() => {
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

test('memtune --config and a define by hand are exported through the definitions hint; unchanged is not rewritten', async () => {
  const name = `${PREFIX}managed-${process.pid}`;
  const exportDir = join(tmp, 'export-a');
  const { log, events } = captureLog();
  let port: LibvirtPort | undefined;
  let exporter: Exporter | undefined;
  try {
    defineManaged(name);
    port = await connectLibvirt(TEST_URI);
    exporter = new Exporter({ port, exportDir, definitionsDir: DEFINITIONS, exportAllDomains: false, checkIntervalMs: 3_600_000, log });
    await exporter.start();
    const file = join(exportDir, name, 'config.json');
    const first = JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig;
    assert.is(first.root?.path, join(bundle, 'rootfs'), 'root.path is the rootfs the domain mounts');
    assert.is(first.annotations?.['org.example.kept'], 'yes');
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.is(statSync(join(exportDir, name)).mode & 0o777, 0o700);
    assertRoundTrip(name, first);
    const written = () => events.filter((e) => e.event === 'export.written' && e.domain === name).length;
    assert.is(written(), 1);

    // memtune --config: no lifecycle event, only the rewritten definition file
    virsh('memtune', name, '--hard-limit', '300000', '--config');
    await until(() => (written() >= 2 ? true : undefined), 10_000, 'export after memtune');
    const afterMemtune = JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig;
    assert.not.equal(afterMemtune, first, 'the export changed');
    assert.ok(JSON.stringify(afterMemtune).includes(String(300000 * 1024)), 'the new hard limit is in the export');
    assertRoundTrip(name, afterMemtune);

    // a define by hand (what `virsh edit` does): the init's argument
    const edited = virsh('dumpxml', '--inactive', name).replace('<initarg>300</initarg>', '<initarg>400</initarg>');
    assert.match(edited, '<initarg>400</initarg>');
    writeFileSync(join(tmp, 'edited.xml'), edited);
    virsh('define', join(tmp, 'edited.xml'));
    await until(() => (written() >= 3 ? true : undefined), 10_000, 'export after define');
    const afterDefine = JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig;
    assert.equal(afterDefine.process?.args, ['/bin/sleep', '400']);
    assertRoundTrip(name, afterDefine);

    // nothing changed: a full pass and a spurious hint write nothing
    const mtime = statSync(file).mtimeMs;
    const before = written();
    await exporter.fullPass();
    exporter.hint(name);
    await new Promise((r) => setTimeout(r, 500));
    assert.is(written(), before, 'no rewrite when nothing changed');
    assert.is(statSync(file).mtimeMs, mtime);
    assert.is(events.filter((e) => e.event === 'export.failed').length, 0, JSON.stringify(events.filter((e) => e.event === 'export.failed')));
  } finally {
    await exporter?.stop();
    await port?.close();
    cleanupDomains(`${PREFIX}managed-`);
  }
});

test('without the definitions hint, lifecycle events alone export a define and a redefine by hand', async () => {
  const name = `${PREFIX}events-${process.pid}`;
  const exportDir = join(tmp, 'export-events');
  const { log, events } = captureLog();
  let port: LibvirtPort | undefined;
  let exporter: Exporter | undefined;
  try {
    port = await connectLibvirt(TEST_URI, { logger: log });
    // no definitions directory and an hour between full passes: only an event can bring the export
    exporter = new Exporter({ port, exportDir, definitionsDir: undefined, exportAllDomains: false, checkIntervalMs: 3_600_000, log });
    await exporter.start();
    await until(() => (events.some((e) => e.event === 'libvirt.events.subscribed') ? true : undefined), 10_000, 'event subscription');
    const file = join(exportDir, name, 'config.json');
    defineManaged(name);
    await until(() => (events.some((e) => e.event === 'export.written' && e.domain === name) ? true : undefined), 10_000, 'export after define');
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig).process?.args, ['/bin/sleep', '300']);

    // what `virsh edit` does: a define of the changed XML
    const edited = virsh('dumpxml', '--inactive', name).replace('<initarg>300</initarg>', '<initarg>400</initarg>');
    writeFileSync(join(tmp, 'events-edited.xml'), edited);
    virsh('define', join(tmp, 'events-edited.xml'));
    await until(() => (events.filter((e) => e.event === 'export.written' && e.domain === name).length >= 2 ? true : undefined), 10_000, 'export after redefine');
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig).process?.args, ['/bin/sleep', '400']);
  } finally {
    await exporter?.stop();
    await port?.close();
    cleanupDomains(`${PREFIX}events-`);
  }
});

test('unmanaged domains are exported only with exportAllDomains', async () => {
  const name = `${PREFIX}foreign-${process.pid}`;
  const exportDir = join(tmp, 'export-b');
  const { log } = captureLog();
  let port: LibvirtPort | undefined;
  let exporter: Exporter | undefined;
  try {
    const xml = `<domain type='lxc'><name>${name}</name><memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sh</init></os>
  <devices><filesystem type='mount'><source dir='${join(bundle, 'rootfs')}'/><target dir='/'/></filesystem><console type='pty'/></devices></domain>`;
    writeFileSync(join(tmp, 'foreign.xml'), xml);
    virsh('define', join(tmp, 'foreign.xml'));
    port = await connectLibvirt(TEST_URI);
    exporter = new Exporter({ port, exportDir, definitionsDir: DEFINITIONS, exportAllDomains: false, checkIntervalMs: 3_600_000, log });
    await exporter.start();
    const file = join(exportDir, name, 'config.json');
    assert.throws(() => statSync(file), /ENOENT/, 'not exported while only managed domains are');
    exporter.update({ exportAllDomains: true, checkIntervalMs: 3_600_000 });
    await exporter.fullPass();
    const config = JSON.parse(readFileSync(file, 'utf8')) as RuntimeConfig;
    assert.equal(config.process?.args, ['/bin/sh']);
    assertRuntimeSchemaValid(config);
  } finally {
    await exporter?.stop();
    await port?.close();
    cleanupDomains(`${PREFIX}foreign-`);
  }
});

test('ocivirt export <domain> <dir> writes it once', async () => {
  const name = `${PREFIX}cli-${process.pid}`;
  const out = join(tmp, 'cli-out');
  try {
    defineManaged(name);
    const bin = new URL('../../../bin/ocivirt', import.meta.url).pathname;
    const env = { ...process.env, OCIVIRT_CONFIG: '', OCIVIRT_SPOOL: join(tmp, 'spool') };
    const stdout = execFileSync(bin, ['export', '--uri', TEST_URI, name, out], { encoding: 'utf8', env });
    assert.is(stdout.trim(), join(out, 'config.json'));
    assertRoundTrip(name, JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as RuntimeConfig);
    assert.match(execFileSync(bin, ['export', '--uri', TEST_URI, name, out], { encoding: 'utf8', env }), /^unchanged/);
    let status = 0;
    let stderr = '';
    try {
      execFileSync(bin, ['export', '--uri', TEST_URI, name, join(tmp, 'spool', 'x')], { encoding: 'utf8', env, stdio: 'pipe' });
    } catch (e) {
      status = (e as { status: number }).status;
      stderr = String((e as { stderr: string }).stderr);
    }
    assert.is(status, 2);
    assert.match(stderr, /inside the spool/);
  } finally {
    cleanupDomains(`${PREFIX}cli-`);
  }
});

test.run();
