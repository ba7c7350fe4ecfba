/**
 * Settings `publish` on the real libvirtd: the test makes its own isolated libvirt network (no
 * <forward>: only this host and the test's container on it; a bridge and a subnet of its own),
 * a busybox httpd container publishes 18080:8080/tcp, the ports table (network/ports.ts) is
 * rebuilt from the running domains, and the host fetches the page through its own address on the
 * test network (the bridge address) port 18080. Then the entry is removed: at the next rebuild the
 * table is gone. Domains ocivirt-test-ports-<pid>-…, the network ocivirt-test-ports-<pid>, the
 * instance's nft table: all removed afterwards, whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { PortTable, tableName } from '../../src/network/ports.js';
import { readInstanceId } from '../../src/reconcile/instance.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { captureLog } from '../helpers/log.js';
import { TEST_URI, cleanupDomains, makeTempDir, removeTempDir, virsh, waitForInit, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `ocivirt-test-ports-${process.pid}-`;
const NETWORK = `ocivirt-test-ports-${process.pid}`;
const BRIDGE = `ocvtp${process.pid % 1_000_000}`; // at most 11 chars
let tmp = '';
let spool = '';
let state = '';
let port: LibvirtPort | undefined;
let subnet = ''; // "10.214.N"
let table = '';

const dom = (entry: string) => `${PREFIX}${entry}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A /24 under 10.214/16 that no route of this host covers yet. */
function freeSubnet(): string {
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  const used = (n: number) => routes.includes(`10.214.${n}.`) || /(^|\s)10\.0\.0\.0\/8|10\.214\.0\.0\/16/.test(routes);
  for (let i = 0; i < 250; i++) {
    const n = (process.pid + i) % 250;
    if (!used(n)) return `10.214.${n}`;
  }
  throw new Error('no free 10.214.N.0/24 on this host');
}

function removeNetwork(): void {
  for (const cmd of ['net-destroy', 'net-undefine']) {
    try {
      virsh(cmd, NETWORK);
    } catch {
      // not there (or not running)
    }
  }
}

/** Our table, or undefined when there is none (only this table is ever named). */
function listTable(): string | undefined {
  try {
    return execFileSync('nft', ['list', 'table', 'ip', table], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return undefined;
  }
}

function removeTable(): void {
  if (table !== '' && listTable() !== undefined) execFileSync('nft', ['delete', 'table', 'ip', table]);
}

function options(): SyncOptions {
  return { spoolDir: spool, stateDir: state, prefix: PREFIX, log: captureLog().log, startPolicy: 'always', stopTimeoutMs: 500, retryDelayMs: 50, addressLockDir: join(tmp, 'lock') };
}

function bundle(entry: string, args: string[]): void {
  const dir = join(spool, entry);
  writeBusyboxBundle(dir, { args });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  config.linux.namespaces.push({ type: 'network' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  mkdirSync(join(dir, 'rootfs', 'www'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'www', 'index.html'), `hello from ${entry}\n`);
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
  });
}

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork();
  tmp = makeTempDir('ports');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  subnet = freeSubnet();
  port = await connectLibvirt(TEST_URI);
  await port.defineNetwork(
    `<network><name>${NETWORK}</name><bridge name='${BRIDGE}' stp='on' delay='0'/>` +
      `<ip address='${subnet}.1' netmask='255.255.255.0'><dhcp><range start='${subnet}.100' end='${subnet}.199'/></dhcp></ip></network>`,
  );
  await port.startNetwork(NETWORK);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork();
    try {
      removeTable();
    } finally {
      removeTempDir(tmp);
    }
  }
});

test('publish 18080:8080/tcp: the host reaches the container through the bridge address; removed entry, table gone', async () => {
  bundle('web', ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ networks: [{ network: NETWORK, ip: `${subnet}.10/24` }], publish: ['18080:8080/tcp'] }));

  const r = await syncOnce(port!, options());
  assert.equal(r.failed.map((f) => f.error), []);
  await waitForInit(dom('web'), ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
  const instance = await readInstanceId(state);
  assert.ok(instance);
  table = tableName(instance!);
  const ports = new PortTable(port!, { instance: instance!, spoolDir: spool });
  const built = await ports.rebuild();
  assert.equal(built.failures, []);
  assert.equal([built.applied, built.rules.length], [true, 1]);
  const listed = listTable();
  assert.ok(listed !== undefined && listed.includes(`dnat to ${subnet}.10:8080`), listed);

  let body = '';
  let last: unknown;
  for (let i = 0; i < 50 && body === ''; i++) {
    try {
      body = await fetchText(`http://${subnet}.1:18080/index.html`);
    } catch (e) {
      last = e;
      await sleep(200);
    }
  }
  assert.is(body, 'hello from web\n', String(last));

  // the entry removed: its domain goes, and with it (at the next rebuild) the table
  rmSync(join(spool, 'web'), { recursive: true, force: true });
  rmSync(join(spool, 'web.ocivirt.json'), { force: true });
  const gone = await syncOnce(port!, options());
  assert.equal(gone.failed.map((f) => f.error), []);
  const after = await ports.rebuild();
  assert.equal([after.applied, after.rules.length], [true, 0]);
  assert.is(listTable(), undefined);
});

test.run();
