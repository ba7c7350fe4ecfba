/**
 * Soak (issue 8 item 3's proof): two daemons with different spools and state directories on the
 * one libvirtd, plus `sync --once` on an empty spool (a third instance) every few seconds, while
 * entries are dropped into and removed from both spools at random, often under the same names.
 * Counted from libvirt through virsh (independent of the code under test): no instance ever
 * deletes or replaces a domain of another, and in the end each spool's entries have their
 * domains. All three share the name prefix `ocivirt-test-soak-`, so every instance sees every
 * domain: only ownership keeps them apart.
 *
 * 60 s by default; `OCIVIRT_SOAK_SEC=600` for the long run. The seed is printed;
 * `OCIVIRT_SEED=<n>` repeats a run's sequence of drops and removals.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DaemonProcess, bundleConfig, busyboxCopy, daemonDirs, writeConfig, writeSmallBundle, type DaemonDirs } from '../daemon/harness.js';
import { TEST_URI, cleanupDomains, listDomainNames, makeTempDir, removeTempDir, virsh } from '../helpers/libvirt.js';
import { rng } from '../helpers/prng.js';
import { repoRoot } from '../helpers/schema.js';

const PREFIX = 'ocivirt-test-soak-';
const SOAK_MS = Number(process.env.OCIVIRT_SOAK_SEC ?? '60') * 1000;
const SEED = process.env.OCIVIRT_SEED !== undefined ? Number(process.env.OCIVIRT_SEED) : Math.floor(Math.random() * 2 ** 31);
const NAMES = Array.from({ length: 10 }, (_, i) => `e${i}`);
type Who = 'A' | 'B';

let tmp = '';
let busybox = '';
const daemons = new Map<Who, DaemonProcess>();
const dirs = new Map<Who, DaemonDirs>();
const ids = new Map<string, Who>(); // instance id -> daemon

test.before(async () => {
  console.log(`soak: seed ${SEED} (OCIVIRT_SEED=${SEED} repeats it), ${SOAK_MS / 1000} s`);
  cleanupDomains(PREFIX);
  tmp = makeTempDir('soak');
  busybox = busyboxCopy(tmp);
  for (const who of ['A', 'B'] as const) {
    const d = daemonDirs(join(tmp, who));
    dirs.set(who, d);
    const file = join(tmp, `${who}.json`);
    writeConfig(file, d, { namePrefix: PREFIX, quietMs: 300, resyncIntervalSec: 10, exportCheckIntervalSec: 3600, stopTimeoutSec: 1, shutdownTimeoutSec: 15, concurrency: 4 });
    const daemon = await DaemonProcess.start(file);
    daemons.set(who, daemon);
    ids.set(readFileSync(join(d.state, 'instance-id'), 'utf8').trim(), who);
  }
});

test.after(async () => {
  try {
    for (const d of daemons.values()) await d.stop();
  } finally {
    cleanupDomains(PREFIX);
    removeTempDir(tmp);
  }
});

/** Who owns each test domain now, as libvirt says (instance attribute of our metadata). */
function snapshot(): Map<string, string> {
  const owners = new Map<string, string>();
  for (const name of listDomainNames().filter((n) => n.startsWith(PREFIX))) {
    let xml: string;
    try {
      xml = virsh('dumpxml', '--inactive', name);
    } catch {
      continue; // undefined meanwhile
    }
    const id = /<(?:ocivirt:)?container [^>]*\binstance=['"]([^'"]+)['"]/.exec(xml)?.[1] ?? '(none)';
    owners.set(name.slice(PREFIX.length), ids.get(id) ?? `unknown instance ${id}`);
  }
  return owners;
}

test('two daemons and a sync --once on an empty spool, random drops and removals: nobody touches another instance\'s domains', async () => {
  const { next, pick } = rng(SEED);
  const present = { A: new Set<string>(), B: new Set<string>() };
  const generation = { A: new Map<string, number>(), B: new Map<string, number>() }; // bumped at each removal
  const seen = new Map<string, { owner: string; gen: number }>(); // domain -> owner when last seen
  const violations: string[] = [];
  const counts = { drops: 0, removals: 0, samples: 0, syncOnce: 0, ownedA: new Set<string>(), ownedB: new Set<string>() };

  const check = (owners: Map<string, string>) => {
    counts.samples++;
    for (const [name, owner] of owners) {
      if (owner !== 'A' && owner !== 'B') violations.push(`${name}: owned by ${owner}`);
      else (owner === 'A' ? counts.ownedA : counts.ownedB).add(name);
    }
    for (const [name, last] of seen) {
      const now = owners.get(name);
      if (now === last.owner) continue;
      const x = last.owner as Who;
      // gone or taken over while its owner's entry stayed in place the whole time: someone else did it
      if (present[x].has(name) && (generation[x].get(name) ?? 0) === last.gen)
        violations.push(`${name}: ${x}'s domain ${now === undefined ? 'deleted' : `replaced by ${now}'s`} while ${x}'s entry stayed`);
    }
    // a domain keeps the entry generation it was first seen under: one seen again after its entry was
    // removed and dropped anew is still the old entry's domain, which its owner may rightly delete
    // late (a pass that read the removal) and define again; one first seen while its owner's entry
    // is absent belongs to no generation the test can vouch for
    const before = new Map(seen);
    seen.clear();
    for (const [name, owner] of owners) {
      if (owner !== 'A' && owner !== 'B') continue;
      const was = before.get(name);
      const gen = was?.owner === owner ? was.gen : present[owner].has(name) ? (generation[owner].get(name) ?? 0) : -1;
      seen.set(name, { owner, gen });
    }
  };

  // a third instance: sync --once on an empty spool, with its own state directory
  const third = daemonDirs(join(tmp, 'C'));
  const syncOnceEmpty = () => {
    const r = spawnSync(process.execPath, [join(repoRoot(), 'dist/src/cli/main.js'), 'sync', '--once', '--spool', third.spool, '--state', third.state, '--uri', TEST_URI], {
      env: { ...process.env, OCIVIRT_CONFIG: '', OCIVIRT_NAME_PREFIX: PREFIX },
      encoding: 'utf8',
    });
    counts.syncOnce++;
    if (r.status !== 0) violations.push(`sync --once on the empty spool exited ${r.status}: ${r.stderr.trim().split('\n').pop()}`);
    if (/"event":"domain\.(undefined|stopped|defined|redefined)"/.test(r.stdout)) violations.push(`sync --once on the empty spool changed a domain: ${r.stdout.trim()}`);
  };

  const end = Date.now() + SOAK_MS;
  let nextSync = Date.now() + 2000;
  while (Date.now() < end) {
    const who: Who = next() < 0.5 ? 'A' : 'B';
    const name = pick(NAMES);
    const d = dirs.get(who)!;
    if (present[who].has(name)) {
      generation[who].set(name, (generation[who].get(name) ?? 0) + 1);
      present[who].delete(name);
      const gone = join(d.staging, `.gone-${name}-${counts.removals}`);
      renameSync(join(d.spool, name), gone);
      rmSync(gone, { recursive: true, force: true });
      counts.removals++;
    } else {
      const run = next() < 0.25;
      const config = bundleConfig(['/bin/busybox', 'sleep', '1000'], run ? { annotations: { 'org.ocivirt.start': 'true' } } : {});
      writeSmallBundle(join(d.staging, name), busybox, config);
      renameSync(join(d.staging, name), join(d.spool, name));
      present[who].add(name);
      counts.drops++;
    }
    check(snapshot());
    if (Date.now() >= nextSync) {
      syncOnceEmpty();
      check(snapshot());
      nextSync = Date.now() + 4000;
    }
    await sleep(100 + Math.floor(next() * 300));
  }
  syncOnceEmpty();

  // settle: every entry alone in its spool has its owner's domain; one in both spools has one of
  // theirs; no other domain is left
  const wanted = () => {
    const owners = snapshot();
    check(owners);
    const wrong: string[] = [];
    for (const name of NAMES) {
      const inA = present.A.has(name);
      const inB = present.B.has(name);
      const owner = owners.get(name);
      const ok = inA && inB ? owner === 'A' || owner === 'B' : inA ? owner === 'A' : inB ? owner === 'B' : owner === undefined;
      if (!ok) wrong.push(`${name}: in A ${inA}, in B ${inB}, domain ${owner ?? 'none'}`);
    }
    return wrong;
  };
  let wrong = wanted();
  for (let i = 0; i < 60 && wrong.length; i++) {
    await sleep(1000);
    wrong = wanted();
  }
  const foreign = [...daemons.values()].reduce((n, d) => n + d.lines.filter((e) => e.event === 'domain.foreign').length, 0);
  console.log(
    `soak: seed ${SEED}: ${counts.drops} drops, ${counts.removals} removals, ${counts.samples} libvirt samples, ` +
      `${counts.syncOnce} sync --once runs on the empty spool, domains seen owned by A ${counts.ownedA.size} / B ${counts.ownedB.size} names, ` +
      `${foreign} domain.foreign reports, ${violations.length} violations`,
  );
  assert.equal(violations, [], `seed ${SEED}`);
  assert.equal(wrong, [], `seed ${SEED}: not converged`);
  for (const [who, d] of daemons) assert.is(d.child.exitCode, null, `daemon ${who} still running`);
  assert.ok(existsSync(join(third.state, 'instance-id')), 'sync --once made its own instance id');
});

test.run();
