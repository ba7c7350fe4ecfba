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
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { PortTable, tableName } from '../../src/network/ports.js';
import { readInstanceId } from '../../src/reconcile/instance.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { captureLog } from '../helpers/log.js';
import { fetchText, freeSubnet, removeNetwork, startIsolatedNetwork, webBundle } from '../helpers/network.js';
import { TEST_URI, cleanupDomains, makeTempDir, removeTempDir, waitForInit } from '../helpers/libvirt.js';

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

test.before(async () => {
  cleanupDomains(PREFIX);
  removeNetwork(NETWORK);
  tmp = makeTempDir('ports');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  mkdirSync(spool, { recursive: true });
  subnet = freeSubnet(214);
  port = await connectLibvirt(TEST_URI);
  await startIsolatedNetwork(port, NETWORK, BRIDGE, subnet);
});

test.after(async () => {
  try {
    await port?.close();
  } finally {
    cleanupDomains(PREFIX);
    removeNetwork(NETWORK);
    try {
      removeTable();
    } finally {
      removeTempDir(tmp);
    }
  }
});

test('publish 18080:8080/tcp: the host reaches the container through the bridge address; removed entry, table gone', async () => {
  webBundle(join(spool, 'web'), 'web', ['/usr/sbin/httpd', '-f', '-p', '8080', '-h', '/www']);
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
