/**
 * Seeded property test: hundreds of varied valid Linux configs go through
 * fromNative -> buildDomainXml -> parseDomainXml -> toNative and must come back as the original
 * (canonical JSON, root.path absolute); parse(build(x)) must be sameDomain as x; every XML must
 * pass virt-xml-validate and every to-native output the runtime-spec schema.
 * That round trip alone cannot catch a mapping bug: the metadata keeps every value the XML gets
 * wrong, and to-native puts it back. So the XML is also read alone (metadata stripped) and the
 * mapped fields compared with what it must say, computed here independently of the converter.
 * OCIVIRT_SEED=N reruns one seed; the seed of any failure is printed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { toNative } from '../../src/convert/to-native.js';
import { canonicalJson, getAt } from '../../src/convert/json.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { domainDifferences } from '../../src/xml/compare.js';
import { assertRuntimeSchemaValid } from '../helpers/schema.js';
import { canonicalInput } from '../../src/convert/from-native.js';
import { expectedBack, Gen, generateConfig, HOST_DEVICES, prng, testOptions } from './fixtures.js';
import { virtXmlValidateAll } from './validate-xml.js';

const COUNT = 400;
const baseSeed = process.env.OCIVIRT_SEED ? Number(process.env.OCIVIRT_SEED) : 20261123;
const seeds = process.env.OCIVIRT_SEED ? [baseSeed] : Array.from({ length: COUNT }, (_, i) => baseSeed + i);
const produced: { label: string; xml: string }[] = [];

const kib = (bytes: number) => Math.ceil(bytes / 1024) * 1024;
const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, n));

/**
 * What the XML alone must say for the mapped fields of a generated config, by the mapping notes'
 * rules (KiB units, libvirt's ranges, argv0 resolved in the rootfs, env values libvirt cannot
 * write dropped), written without the converter's code. Pointer -> value (undefined: absent).
 */
function carriedByXml(config: RuntimeConfig, bundleDir: string, cgroupVersion: 1 | 2): Map<string, unknown> {
  const c = canonicalInput(config, bundleDir);
  const p = c.process!;
  const out = new Map<string, unknown>([
    ['/root/path', c.root!.path],
    ['/process/cwd', p.cwd],
    ['/process/user/uid', p.user!.uid],
    ['/process/user/gid', p.user!.gid],
    ['/process/args', p.args!.map((a, i) => (i === 0 && !a.includes('/') ? `/bin/${a}` : a))],
  ]);
  const env = (p.env ?? []).filter((e) => {
    const [name, value] = [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)];
    return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && value !== '' && !/[&<]|]]>/.test(value);
  });
  out.set('/process/env', env.length ? env : undefined);
  for (const k of ['uidMappings', 'gidMappings'] as const)
    if (c.linux?.namespaces?.some((n) => n.type === 'user')) out.set(`/linux/${k}`, c.linux[k]);
  const r = c.linux?.resources ?? {};
  const mem = r.memory ?? {};
  if (mem.limit !== undefined) out.set('/linux/resources/memory/limit', mem.limit > 0 ? kib(mem.limit) : undefined);
  if (mem.reservation !== undefined) out.set('/linux/resources/memory/reservation', kib(mem.reservation));
  if (mem.swap !== undefined && cgroupVersion === 1) out.set('/linux/resources/memory/swap', kib(mem.swap));
  const cpu = r.cpu ?? {};
  if (cpu.shares !== undefined && cgroupVersion === 1) out.set('/linux/resources/cpu/shares', clamp(cpu.shares, 2, 262144));
  if (cpu.quota !== undefined) out.set('/linux/resources/cpu/quota', cpu.quota);
  if (cpu.period !== undefined) out.set('/linux/resources/cpu/period', cpu.period);
  if (cpu.cpus !== undefined) out.set('/linux/resources/cpu/cpus', cpu.cpus === '0,1' ? '0-1' : cpu.cpus);
  if (cpu.mems !== undefined) out.set('/linux/resources/cpu/mems', cpu.mems);
  const bio = r.blockIO ?? {};
  if (bio.weight !== undefined && cgroupVersion === 1) out.set('/linux/resources/blockIO/weight', clamp(bio.weight, 100, 1000));
  for (const k of ['throttleReadBpsDevice', 'throttleWriteIOPSDevice'] as const) if (bio[k] !== undefined) out.set(`/linux/resources/blockIO/${k}`, bio[k]);
  return out;
}

test(`${seeds.length} generated configs round-trip through from-native, XML and to-native`, () => {
  let warned = 0;
  for (const seed of seeds) {
    const label = `seed ${seed} (rerun with OCIVIRT_SEED=${seed})`;
    const g = new Gen(prng(seed));
    const config = generateConfig(g, seed % 1000);
    const cgroupVersion = seed % 5 === 0 ? 2 : 1;
    const opts = testOptions({ cgroupVersion, ...(seed % 3 === 0 ? { id: `container-${seed}` } : {}), ...(seed % 4 === 0 ? { secModels: ['selinux', 'apparmor'] } : {}) });
    try {
      assertRuntimeSchemaValid(config);
      const r = fromNative(config, opts);
      if (r.warnings.length) warned++;
      produced.push({ label, xml: r.xml });
      const parsed = parseDomainXml(r.xml);
      assert.equal(domainDifferences(r.domain, parsed), [], 'sameDomain(x, parse(build(x)))');
      assert.is(buildDomainXml(parsed), r.xml, 'build is a fixed point');
      const back = toNative(parsed, { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion: 1, hostArch: 'x86_64' });
      assert.is(canonicalJson(back.config), expectedBack(config, opts.bundleDir));
      assert.equal(back.warnings, []);
      assertRuntimeSchemaValid(back.config);
      // what the XML itself carries, the metadata stripped
      const bare = parseDomainXml(r.xml);
      bare.metadata.ours = undefined;
      const alone = toNative(bare, { hostDevice: (p) => HOST_DEVICES[p], cgroupVersion, hostArch: 'x86_64' }).config;
      for (const [field, want] of carriedByXml(config, opts.bundleDir, cgroupVersion)) assert.equal(getAt(alone, field), want, `${field} as the XML alone says it`);
    } catch (e) {
      console.error(`FAILED ${label}\nconfig: ${JSON.stringify(config)}`);
      throw e;
    }
  }
  assert.ok(warned > seeds.length / 4, 'the generator exercises preserved fields');
});

test('every generated XML passes virt-xml-validate', async () => {
  assert.ok(produced.length > 0);
  const failures = await virtXmlValidateAll(produced);
  assert.equal(failures.slice(0, 3), []);
});

test.run();
