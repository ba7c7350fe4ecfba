/**
 * from-native output on the real libvirtd: for the mapping notes' examples E1..E7, runc's spec
 * and a hundred or so generated configs, `virsh define` accepts the XML, `dumpxml --inactive`
 * is sameDomain as what we built (nothing libvirt adds or reorders makes a difference), and
 * to-native of the dump gives back the original config. virsh runs through child_process so
 * this does not depend on the libvirt adapter. Every domain is undefined afterwards.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromNative } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import { detectCgroupVersion, statHostDevice } from '../../src/convert/host.js';
import { canonicalJson } from '../../src/convert/json.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { domainDifferences, projectDomain } from '../../src/xml/compare.js';
import { effectiveCaps } from '../../src/convert/passes/capabilities.js';
import { HAND_WRITTEN_PORTABLE } from '../convert/hand-written.js';
import { virtXmlValidateAll } from '../convert/validate-xml.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { EXAMPLES } from '../convert/examples.js';
import { expectedBack, Gen, generateConfig, prng, runcSpec, testOptions } from '../convert/fixtures.js';

const URI = 'lxc:///';
const PREFIX = 'ocivirt-test-conv-';
const GENERATED = 110;
const SEED = process.env.OCIVIRT_SEED ? Number(process.env.OCIVIRT_SEED) : 7100;
const dir = mkdtempSync(join(tmpdir(), 'ocivirt-conv-libvirt-'));

/** virsh, retried while libvirtd is restarting (other tests on this host restart it). */
function virsh(...args: string[]): string {
  for (let attempt = 0; ; attempt++) {
    try {
      return execFileSync('virsh', ['-q', '-c', URI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const stderr = String((e as { stderr?: string }).stderr ?? '');
      if (attempt >= 60 || !/failed to connect to the hypervisor|Cannot recv data|Connection reset|Disconnected from|end of file/.test(stderr)) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
    }
  }
}

function ourDomains(): string[] {
  return virsh('list', '--all', '--name')
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n.startsWith(PREFIX));
}

function undefineAll(): void {
  for (const name of ourDomains()) {
    try {
      virsh('undefine', name);
    } catch {
      // already gone
    }
  }
}

const cases: { label: string; config: RuntimeConfig }[] = [
  ...Object.entries(EXAMPLES).map(([label, config]) => ({ label, config })),
  { label: 'runc spec', config: runcSpec() },
];
const g = new Gen(prng(SEED));
for (let i = 0; i < GENERATED; i++) cases.push({ label: `generated #${i} (OCIVIRT_SEED=${SEED})`, config: generateConfig(g, i, true) });

test.before(() => undefineAll());
test.after(() => {
  undefineAll();
  rmSync(dir, { recursive: true, force: true });
});

test(`${cases.length} configs: define, dumpxml --inactive is sameDomain, to-native of the dump is the original`, async () => {
  const produced: { label: string; xml: string }[] = [];
  const cgroupVersion = detectCgroupVersion();
  const failures: string[] = [];
  cases.forEach(({ label, config }, i) => {
    const name = `${PREFIX}${i}`;
    // a third of the configs converted as for a cgroup v2 host: define must take those values too
    const opts = testOptions({
      name,
      cgroupVersion: i % 3 === 2 ? 2 : cgroupVersion,
      hostDevice: statHostDevice,
      hostArch: undefined,
      // define takes a static label whatever the host's security model (start would not)
      ...(i % 4 === 0 ? { secModels: ['selinux', 'apparmor'] } : {}),
    });
    const file = join(dir, `${name}.xml`);
    try {
      const { domain, xml } = fromNative(config, opts);
      produced.push({ label, xml });
      writeFileSync(file, xml);
      virsh('define', file);
      const dumped = parseDomainXml(virsh('dumpxml', '--inactive', name), `dumpxml ${name}`);
      const diffs = domainDifferences(domain, dumped);
      if (diffs.length) throw new Error(`sameDomain is false:\n  ${diffs.join('\n  ')}`);
      const back = toNative(dumped, { hostDevice: statHostDevice, cgroupVersion: opts.cgroupVersion });
      assertRuntimeSchemaValid(back.config);
      const want = expectedBack(config, opts.bundleDir);
      if (canonicalJson(back.config) !== want) throw new Error(`to-native differs:\n  got  ${canonicalJson(back.config)}\n  want ${want}`);
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      failures.push(`${label} as ${name}: ${(err.stderr ?? err.message).trim()}`);
    } finally {
      try {
        virsh('undefine', name);
      } catch {
        // not defined
      }
    }
  });
  assert.equal(failures, []);
  assert.equal(ourDomains(), [], 'no test domain is left defined');
  assert.equal((await virtXmlValidateAll(produced)).slice(0, 3), [], 'every XML passes virt-xml-validate');
});

test('a redefine of the same config keeps the UUID and is accepted (no "already exists")', () => {
  const name = `${PREFIX}redefine`;
  const file = join(dir, `${name}.xml`);
  try {
    const first = fromNative(EXAMPLES.E3!, testOptions({ name, hostDevice: statHostDevice, hostArch: undefined }));
    writeFileSync(file, first.xml);
    virsh('define', file);
    const second = fromNative(EXAMPLES.E3!, testOptions({ name, hostDevice: statHostDevice, hostArch: undefined }));
    writeFileSync(file, second.xml);
    virsh('define', file);
    assert.is(virsh('domuuid', name).trim(), first.domain.uuid);
  } finally {
    try {
      virsh('undefine', name);
    } catch {
      // not defined
    }
  }
});

test('a hand-written domain survives libvirt -> to-native -> from-native -> libvirt', () => {
  const name = `${PREFIX}hand`;
  const file = join(dir, `${name}.xml`);
  try {
    // without the loop-mounted host file and the label: from-native refuses those from the annotation
    writeFileSync(file, HAND_WRITTEN_PORTABLE.replace('<name>hand</name>', `<name>${name}</name>`));
    virsh('define', file);
    const first = parseDomainXml(virsh('dumpxml', '--inactive', name));
    const { config } = toNative(first, { hostDevice: statHostDevice });
    assertRuntimeSchemaValid(config);
    virsh('undefine', name);
    writeFileSync(file, fromNative(config, testOptions({ name, hostDevice: statHostDevice, hostArch: undefined })).xml);
    virsh('define', file);
    const second = parseDomainXml(virsh('dumpxml', '--inactive', name));
    // what differs by design: our metadata is added, the capability policy becomes an explicit
    // deny list (same effective set), min_guarantee has no OCI field, the memory limit is
    // written to <memory> and hard_limit alike
    const a = projectDomain(first);
    const b = projectDomain(second);
    assert.is(b.get('memtune.hard_limit'), a.get('memory'));
    // and the bind of a container directory becomes that directory seen from the host
    assert.is(b.get('devices.filesystem[3].source'), JSON.stringify({ dir: '/srv/hand/rootfs/var/shared' }));
    const skip = /^(metadata\.ocivirt|features\.capabilities|memtune\.(min_guarantee|hard_limit)|devices\.filesystem\[3\]\.(type|source))/;
    const diffs = [...new Set([...a.keys(), ...b.keys()])].filter((k) => !skip.test(k) && a.get(k) !== b.get(k)).map((k) => `${k}: ${a.get(k)} -> ${b.get(k)}`);
    assert.equal(diffs, []);
    const caps = (d: typeof first) => effectiveCaps(d.features.capabilities?.policy, d.features.capabilities?.caps ?? []);
    assert.equal(caps(second), caps(first));
  } finally {
    try {
      virsh('undefine', name);
    } catch {
      // not defined
    }
  }
});

test('ocivirt to-native --domain reads the inactive XML from libvirt and gives the config back', () => {
  const name = `${PREFIX}cli`;
  const file = join(dir, `${name}.xml`);
  const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
  try {
    const config = EXAMPLES.E6!;
    const opts = testOptions({ name, hostDevice: statHostDevice, hostArch: undefined });
    writeFileSync(file, fromNative(config, opts).xml);
    virsh('define', file);
    const r = spawnSync(bin, ['to-native', '--domain', name, '--uri', URI], { encoding: 'utf8', timeout: 60_000 });
    assert.is(r.status, 0, r.stderr);
    assert.is(canonicalJson(JSON.parse(r.stdout)), expectedBack(config, opts.bundleDir));
    const missing = spawnSync(bin, ['to-native', '--domain', `${PREFIX}does-not-exist`], { encoding: 'utf8', timeout: 60_000 });
    assert.is(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /^ocivirt to-native: domain ocivirt-test-conv-does-not-exist: no such domain on lxc:\/\/\/\n$/);
  } finally {
    try {
      virsh('undefine', name);
    } catch {
      // not defined
    }
  }
});

test.run();
