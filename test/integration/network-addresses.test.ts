/**
 * Addresses and published ports over their lifecycle on the real libvirtd. The test makes its own
 * isolated libvirt network (no <forward>: only this host and the test's containers on it; a
 * bridge and a /24 of its own, allocation range .2-.254), removed afterwards whatever happens:
 * - addresses stay the same across a restart of the container, a redefine (a settings change) and
 *   a restart of the daemon (a new pass with nothing in memory);
 * - 200 containers (defined, not started) get 200 distinct addresses; removing one releases its
 *   address, which the next container gets;
 * - a static address that is taken, outside the network, or malformed fails that entry alone,
 *   naming its settings file and networks[0].ip, while the others are defined;
 * - the daemon's nftables table holds exactly the rules of the published ports of the running
 *   domains after adds, a removal, a SIGKILL of the daemon with changes made meanwhile, and a
 *   restart.
 * Domains ocivirt-test-addr-<pid>-…, the network ocivirt-test-addr-<pid>, the instance's table.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { tableName } from '../../src/network/ports.js';
import { readInstanceId } from '../../src/reconcile/instance.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { DaemonProcess, busyboxCopy, daemonDirs, writeConfig, writeSmallBundle, type DaemonDirs } from '../daemon/harness.js';
import { captureLog } from '../helpers/log.js';
import { repoRoot } from '../helpers/schema.js';
import { freeSubnet, removeNetwork, startIsolatedNetwork, webBundle } from '../helpers/network.js';
import { TEST_URI, cleanupDomains, enterNamespace, makeTempDir, removeTempDir, virsh, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `ocivirt-test-addr-${process.pid}-`;
const NETWORK = `ocivirt-test-addr-${process.pid}`;
const BRIDGE = `ocvta${process.pid % 1_000_000}`; // at most 11 chars
const MANY = 200;
let tmp = '';
let spool = '';
let state = '';
let busybox = '';
let port: LibvirtPort | undefined;
let subnet = ''; // "10.215.N"
const tables: string[] = [];

const dom = (entry: string) => `${PREFIX}${entry}`;
const settings = (dir: string, entry: string, value: unknown) => writeFileSync(join(dir, `${entry}.ocivirt.json`), JSON.stringify(value));

function options(extra: Partial<SyncOptions> = {}): SyncOptions {
  return { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, startPolicy: 'always', stopTimeoutMs: 500, retryDelayMs: 50, addressLockDir: join(tmp, 'lock'), ...extra };
}

/** The address of a domain's (only) interface in its persistent, or else running, definition. */
function addressOf(domain: string, live = false): string | undefined {
  const xml = virsh('dumpxml', ...(live ? [] : ['--inactive']), domain);
  return parseDomainXml(xml).devices.interfaces[0]?.ips[0]?.address;
}

/** A bundle that only needs defining: busybox hard-linked, its own network namespace. */
function smallBundle(dir: string): void {
  writeSmallBundle(dir, busybox, {
    ociVersion: '1.0.2',
    process: { args: ['/bin/busybox', 'sleep', '1000'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }] },
  });
}

function listTable(table: string): string | undefined {
  try {
    return execFileSync('nft', ['list', 'table', 'ip', table], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
}

/** The table's rules as "chain hostPort -> ip:port domain", sorted ([] without a table). */
function rulesOf(table: string): string[] {
  const text = listTable(table) ?? '';
  const out: string[] = [];
  let chain = '';
  for (const line of text.split('\n')) {
    const c = /^\s*chain (\S+)/.exec(line);
    if (c) chain = c[1]!;
    const r = /dport (\d+) dnat to ([\d.]+:\d+) comment "([^"]+)"/.exec(line);
    if (r) out.push(`${chain} ${r[1]} -> ${r[2]} ${r[3]}`);
  }
  return out.sort();
}

/** The rules the published ports of `running` (domain -> hostPort) must give: prerouting and output each. */
function expectedRules(running: Record<string, number>): string[] {
  return Object.entries(running)
    .flatMap(([d, hostPort]) => ['prerouting', 'output'].map((chain) => `${chain} ${hostPort} -> ${addressOf(d, true)}:8080 ${d}`))
    .sort();
}

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork(NETWORK);
  tmp = makeTempDir('addresses');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  busybox = busyboxCopy(tmp);
  subnet = freeSubnet(215);
  port = await connectLibvirt(TEST_URI);
  await startIsolatedNetwork(port, NETWORK, BRIDGE, subnet, true, [2, 254]);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork(NETWORK);
    for (const t of tables) if (listTable(t) !== undefined) execFileSync('nft', ['delete', 'table', 'ip', t]);
    removeTempDir(tmp);
  }
});

test('an address stays across a container restart, a redefine and a daemon restart', async () => {
  webBundle(join(spool, 'a'), 'a', ['/bin/sleep', '300']);
  webBundle(join(spool, 'b'), 'b', ['/bin/sleep', '300']);
  settings(spool, 'a', { networks: [{ network: NETWORK, ip: `${subnet}.200/24` }] });
  settings(spool, 'b', { networks: [NETWORK] });
  const r = await syncOnce(port!, options());
  assert.equal(r.failed.map((f) => f.error), []);
  await waitForInit(dom('b'), ['/bin/sleep', '300']);
  const b = addressOf(dom('b'))!;
  assert.is(b, `${subnet}.2`);
  assert.is(addressOf(dom('a')), `${subnet}.200`);

  // the container restarted: the same address, configured inside again
  virsh('destroy', dom('b'));
  virsh('start', dom('b'));
  await waitForInit(dom('b'), ['/bin/sleep', '300']);
  assert.match(enterNamespace(dom('b'), ['/sbin/ip', '-4', 'addr']), `inet ${b}/24`);
  assert.equal((await syncOnce(port!, options())).plan.map((i) => i.action), ['nothing', 'nothing']);

  // a settings change redefines it: the same address
  settings(spool, 'b', { networks: [NETWORK], memory: '64M' });
  const changed = await syncOnce(port!, options());
  assert.equal(changed.plan.map((i) => `${i.action} ${i.domain}`), [`nothing ${dom('a')}`, `update ${dom('b')}`]);
  assert.is(addressOf(dom('b')), b);

  // a daemon restart: a pass that starts from the state directory and libvirt alone
  const again = await syncOnce(port!, options({ log: captureLog().log }));
  assert.equal(again.plan.map((i) => i.action), ['nothing', 'nothing']);
  assert.equal(readdirSync(join(state, 'addresses', NETWORK)).sort(), [b, `${subnet}.200`].sort());
});

test('a static address taken, outside the network or malformed fails that entry alone, naming the file and networks[0].ip', async () => {
  const bad: Record<string, [string, RegExp]> = {
    taken: [`${subnet}.200/24`, new RegExp(`${subnet.replace(/\./g, '\\.')}\\.200 on network '${NETWORK}' is taken \\(used by domain '${dom('a')}'\\)`)],
    outside: ['192.0.2.5/24', /is not a host address of network/],
    malformed: [`${subnet}.300/24`, /must be "A\.B\.C\.D\/P"/],
  };
  for (const [entry, [ip]] of Object.entries(bad)) {
    smallBundle(join(spool, entry));
    settings(spool, entry, { networks: [{ network: NETWORK, ip }] });
  }
  smallBundle(join(spool, 'fine'));
  settings(spool, 'fine', { networks: [NETWORK] });
  const r = await syncOnce(port!, options({ startPolicy: 'never' }));
  for (const [entry, [, reason]] of Object.entries(bad)) {
    const item = r.plan.find((i) => i.domain === dom(entry))!;
    assert.is(item.action, 'fail', entry);
    assert.ok(item.reason.includes(`${join(spool, entry)}.ocivirt.json: networks[0].ip: `), `${entry}: ${item.reason}`);
    assert.match(item.reason, reason, entry);
  }
  assert.is(addressOf(dom('fine')), `${subnet}.3`);
  for (const entry of [...Object.keys(bad), 'fine']) {
    rmSync(join(spool, entry), { recursive: true });
    rmSync(join(spool, `${entry}.ocivirt.json`));
  }
  await syncOnce(port!, options());
});

test(`${MANY} containers get ${MANY} distinct addresses; an undefined one gives its address to the next`, async () => {
  const names = Array.from({ length: MANY }, (_, i) => `m${String(i).padStart(3, '0')}`);
  for (const n of names) {
    smallBundle(join(spool, n));
    settings(spool, n, { networks: [NETWORK] });
  }
  const t0 = performance.now();
  const r = await syncOnce(port!, options({ startPolicy: 'never', concurrency: 8 }));
  const ms = performance.now() - t0;
  console.log(`  ${MANY} containers on one network, defined in one pass: ${Math.round(ms)} ms`);
  assert.equal(r.failed.map((f) => f.error), []);
  const addresses = names.map((n) => addressOf(dom(n)));
  assert.is(new Set(addresses).size, MANY);
  assert.ok(addresses.every((a) => a !== undefined && a.startsWith(`${subnet}.`) && ![`${subnet}.1`, `${subnet}.2`, `${subnet}.200`].includes(a)), addresses.join(' '));
  assert.is(readdirSync(join(state, 'addresses', NETWORK)).length, MANY + 2);

  // undefined: its record goes, and the next container gets its address
  const freed = addressOf(dom('m000'))!;
  rmSync(join(spool, 'm000'), { recursive: true });
  rmSync(join(spool, 'm000.ocivirt.json'));
  await syncOnce(port!, options({ startPolicy: 'never' }));
  assert.not.ok(readdirSync(join(state, 'addresses', NETWORK)).includes(freed));
  smallBundle(join(spool, 'late'));
  settings(spool, 'late', { networks: [NETWORK] });
  const late = await syncOnce(port!, options({ startPolicy: 'never' }));
  assert.equal(late.failed.map((f) => f.error), []);
  assert.is(addressOf(dom('late')), freed);
  for (const n of [...names.slice(1), 'late']) {
    rmSync(join(spool, n), { recursive: true });
    rmSync(join(spool, `${n}.ocivirt.json`));
  }
  cleanupDomains(`${PREFIX}m`);
  cleanupDomains(`${PREFIX}late`);
});

test('the nftables table holds exactly the published ports of running domains: adds, a removal, a SIGKILL with changes meanwhile, a restart', async () => {
  const dirs: DaemonDirs = daemonDirs(join(tmp, 'd'));
  const prefix = `${PREFIX}p-`;
  const configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: prefix, startPolicy: 'always', quietMs: 300, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 1, concurrency: 4 });
  const d = (e: string) => `${prefix}${e}`;
  const drop = (entry: string, hostPort: number) => {
    webBundle(join(dirs.staging, entry), entry, ['/bin/sleep', '300']);
    settings(dirs.staging, entry, { networks: [NETWORK], publish: [`${hostPort}:8080`] });
    renameSync(join(dirs.staging, `${entry}.ocivirt.json`), join(dirs.spool, `${entry}.ocivirt.json`));
    renameSync(join(dirs.staging, entry), join(dirs.spool, entry));
  };
  const remove = (entry: string) => {
    rmSync(join(dirs.spool, `${entry}.ocivirt.json`));
    rmSync(join(dirs.spool, entry), { recursive: true });
  };
  let daemon = await DaemonProcess.start(configFile);
  try {
    const table = tableName((await readInstanceId(dirs.state))!);
    tables.push(table);
    /** Waits for the table to hold what `running` publishes (each rebuild logs ports.applied). */
    const settle = async (running: Record<string, number>, what: string) => {
      for (const e of Object.keys(running)) await waitForInit(e, ['/bin/sleep', '300']);
      const want = expectedRules(running);
      const end = Date.now() + 30_000;
      while (JSON.stringify(rulesOf(table)) !== JSON.stringify(want) && Date.now() < end) {
        const from = daemon.lines.length;
        await daemon.waitFor((e) => e.event === 'ports.applied', 10_000, `ports.applied (${what})`, from).catch(() => undefined);
      }
      assert.equal(rulesOf(table), want, what);
    };
    drop('one', 18301);
    drop('two', 18302);
    await daemon.waitForEntry('domain.started', 'one', 30_000);
    await daemon.waitForEntry('domain.started', 'two', 30_000);
    await settle({ [d('one')]: 18301, [d('two')]: 18302 }, 'two added');

    remove('two');
    await daemon.waitForEntry('domain.undefined', 'two', 30_000);
    drop('three', 18303);
    await daemon.waitForEntry('domain.started', 'three', 30_000);
    await settle({ [d('one')]: 18301, [d('three')]: 18303 }, 'one removed, one added');

    // killed: nothing cleans up; meanwhile an entry goes and one comes, and a container stops
    daemon.signal('SIGKILL');
    await daemon.exited;
    remove('one');
    drop('four', 18304);
    virsh('destroy', d('three'));
    assert.equal(rulesOf(table).length, 4, 'the killed daemon left its table as it was');
    daemon = await DaemonProcess.start(configFile);
    await daemon.waitForEntry('domain.started', 'four', 30_000);
    await settle({ [d('four')]: 18304 }, 'after the restart');

    // ocivirt status shows each domain's interface and ports
    const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    const json = JSON.parse(execFileSync(process.execPath, [main, 'status', '--config', configFile, '--json'], { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: '' } }));
    const four = json.entries.find((e: { entry: string }) => e.entry === 'four');
    const mac = parseDomainXml(virsh('dumpxml', d('four'))).devices.interfaces[0]!.mac!.toLowerCase();
    assert.equal(four.networks, [{ type: 'network', source: NETWORK, ip: `${addressOf(d('four'), true)}/24`, mac }]);
    assert.equal(four.ports, [{ hostPort: 18304, port: 8080, protocol: 'tcp' }]);
    const text = execFileSync(process.execPath, [main, 'status', '--config', configFile], { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: '' } });
    assert.match(text, `network ${NETWORK} ${addressOf(d('four'), true)}/24 ${mac}; publish 18304->8080/tcp`);
  } finally {
    await daemon.stop();
    cleanupDomains(prefix);
  }
});

test.run();
