/**
 * "The same container" (issue 10 item 5): containerDifferences sets aside exactly a domain's
 * provenance (metadata bundle, desiredDigest, imageDigest; the source of the filesystem at '/')
 * and still reports everything a container runs with: env, memory, a mount, a volume, the rootfs's
 * own target or mode, ownership.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { containerDifferences, domainDifferences, sameContainer, sameDomain } from '../../src/xml/compare.js';
import { parseDomainXml } from '../../src/xml/parse.js';

interface Spec {
  bundle?: string;
  desired?: string;
  image?: string | undefined;
  entry?: string;
  rootfs?: string;
  rootTarget?: string;
  rootReadonly?: boolean;
  env?: string;
  memory?: number;
  volume?: string;
  volumeReadonly?: boolean;
  bind?: string;
}

function domain(s: Spec = {}): string {
  const image = 'image' in s ? s.image : 'sha256:aaaa';
  return `<domain type='lxc'><name>web</name><uuid>4fdad2e7-fb53-45fc-a288-2cdb8e3b13cb</uuid>
  <metadata><ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' schema='1' id='web' entry='${s.entry ?? 'web'}'
    bundle='${s.bundle ?? '/state/bundles/web/1'}' desiredDigest='${s.desired ?? 'sha256:1111'}'${image !== undefined ? ` imageDigest='${image}'` : ''}/></metadata>
  <memory unit='KiB'>${s.memory ?? 65536}</memory>
  <os><type>exe</type><init>/bin/sh</init><initenv name='GREETING'>${s.env ?? 'hello'}</initenv></os>
  <devices>
    <filesystem type='mount'><source dir='${s.rootfs ?? '/state/bundles/web/1/rootfs'}'/><target dir='${s.rootTarget ?? '/'}'/>${s.rootReadonly ? '<readonly/>' : ''}</filesystem>
    <filesystem type='mount'><source dir='${s.bind ?? '/srv/shared'}'/><target dir='/shared'/></filesystem>
    <filesystem type='mount'><source dir='/state/volumes/${s.volume ?? 'cache'}'/><target dir='/var/cache'/>${s.volumeReadonly ? '<readonly/>' : ''}</filesystem>
    <console type='pty'/>
  </devices></domain>`;
}
const d = (s: Spec = {}) => parseDomainXml(domain(s));

test('provenance alone: not the same domain, but the same container', () => {
  const original = d();
  const copy = d({ bundle: '/spool/web', desired: 'sha256:2222', image: undefined, rootfs: '/spool/web/rootfs' });
  assert.equal(
    domainDifferences(original, copy).sort(),
    [
      'devices.filesystem[0].source {"dir":"/state/bundles/web/1/rootfs"} -> {"dir":"/spool/web/rootfs"}',
      'metadata.ocivirt.bundle /state/bundles/web/1 -> /spool/web',
      'metadata.ocivirt.desiredDigest sha256:1111 -> sha256:2222',
      'metadata.ocivirt.imageDigest sha256:aaaa -> (none)',
    ],
  );
  assert.not.ok(sameDomain(original, copy));
  assert.equal(containerDifferences(original, copy), []);
  assert.ok(sameContainer(original, copy));
  assert.equal(domainDifferences(original, copy, { provenance: 'ignore' }), []);
  assert.equal(domainDifferences(original, copy, { provenance: 'compare' }).length, 4, 'the default compares provenance');
});

test('everything else still differs: env, memory, a bind, a volume, its mode, the rootfs target and mode, the entry', () => {
  const original = d();
  const cases: [Spec, RegExp][] = [
    [{ env: 'bye' }, /^os\.initenv /],
    [{ memory: 131072 }, /^memory 65536 -> 131072$/],
    [{ bind: '/srv/other' }, /^devices\.filesystem\[1\]\.source /],
    [{ volume: 'other' }, /^devices\.filesystem\[2\]\.source .*cache.*other/],
    [{ volumeReadonly: true }, /^devices\.filesystem\[2\]\.readonly /],
    [{ rootReadonly: true }, /^devices\.filesystem\[0\]\.readonly /],
    [{ rootTarget: '/mnt' }, /^devices\.filesystem\[0\]\.(source|target) /],
    [{ entry: 'api' }, /^metadata\.ocivirt\.entry web -> api$/],
  ];
  for (const [spec, re] of cases) {
    const other = d({ ...spec, bundle: '/spool/web', desired: 'sha256:2222', image: undefined });
    const diffs = containerDifferences(original, other);
    assert.ok(diffs.length > 0 && diffs.every((x) => !/metadata\.ocivirt\.(bundle|desiredDigest|imageDigest)/.test(x)), `${JSON.stringify(spec)}: ${diffs.join('; ')}`);
    assert.ok(diffs.some((x) => re.test(x)), `${JSON.stringify(spec)}: ${diffs.join('; ')}`);
    assert.not.ok(sameContainer(original, other));
  }
});

test("the rootfs's source is set aside only for the filesystem at '/': a moved rootfs target shows its source too", () => {
  const diffs = containerDifferences(d(), d({ rootTarget: '/mnt', rootfs: '/elsewhere' }));
  assert.ok(diffs.some((x) => x.startsWith('devices.filesystem[0].source ')), diffs.join('; '));
  assert.ok(diffs.some((x) => x.startsWith('devices.filesystem[0].target ')), diffs.join('; '));
});

test.run();
