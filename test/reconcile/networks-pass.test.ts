/**
 * Settings `networks` through whole passes (in-memory libvirt): the domain gets its interfaces
 * with an allocated and a static address, a second pass changes nothing (no redefine loop), the
 * plan no longer says networks is not in force, a bad static ip fails that entry alone, and
 * removing the entry gives its address back.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { writeNetworkedBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { tmp } from '../image/fixtures.js';

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-networks-pass-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

const bundle = (dir: string) => writeNetworkedBundle(dir);

async function setup() {
  const spool = join(root, 'spool');
  const state = join(root, 'state');
  mkdirSync(spool, { recursive: true });
  const captured = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, log: captured.log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10, addressLockDir: join(root, 'lock') };
  const port = new FakeLibvirt();
  await port.defineNetwork(`<network><name>lan</name><ip address='10.77.0.1' prefix='24'/></network>`);
  return { spool, state, opts, port };
}

const settings = (spool: string, name: string, value: unknown) => writeFileSync(join(spool, name), JSON.stringify(value));

test('settings networks: interfaces with addresses, in force, stable over passes, released on delete', async () => {
  const { spool, state, opts, port } = await setup();
  bundle(join(spool, 'a'));
  bundle(join(spool, 'b'));
  settings(spool, 'a.ocivirt.json', { networks: [{ network: 'lan', ip: '10.77.0.50/24' }] });
  settings(spool, 'b.ocivirt.json', { networks: ['lan'], restart: 'always' });
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(r.plan.map((i) => `${i.action} ${i.domain}`), ['create a', 'create b']);
  assert.not.match(r.plan[0]!.reason, /not yet in force/);
  assert.match(r.plan[1]!.reason, /not yet in force: restart$/);
  const ifs = (name: string) => parseDomainXml(port.domains.get(name)!.xml!).devices.interfaces.map((i) => [i.source?.network, i.ips[0]?.address, i.routes[0]?.gateway]);
  assert.equal(ifs('a'), [['lan', '10.77.0.50', '10.77.0.1']]);
  assert.equal(ifs('b'), [['lan', '10.77.0.2', '10.77.0.1']]);
  assert.is(parseDomainXml(port.domains.get('a')!.xml!).features.privnet, false);
  assert.equal(readdirSync(join(state, 'addresses', 'lan')).sort(), ['10.77.0.2', '10.77.0.50']);

  const again = await syncOnce(port, opts);
  assert.equal(again.plan.map((i) => i.action), ['nothing', 'nothing']);

  // a static ip another domain holds fails that entry alone, naming the file and the key
  bundle(join(spool, 'c'));
  settings(spool, 'c.ocivirt.json', { networks: [{ network: 'lan', ip: '10.77.0.2/24' }] });
  const third = await syncOnce(port, opts);
  const failed = third.plan.filter((i) => i.action === 'fail');
  assert.is(failed.length, 1);
  assert.match(failed[0]!.reason, /c\.ocivirt\.json: networks\[0\]\.ip: 10\.77\.0\.2 on network 'lan' is taken/);
  rmSync(join(spool, 'c'), { recursive: true });
  rmSync(join(spool, 'c.ocivirt.json'));

  rmSync(join(spool, 'b'), { recursive: true });
  rmSync(join(spool, 'b.ocivirt.json'));
  const removed = await syncOnce(port, opts);
  assert.ok(removed.plan.some((i) => i.action === 'delete' && i.domain === 'b'));
  assert.not.ok(port.domains.has('b'));
  assert.not.ok(existsSync(join(state, 'addresses', 'lan', '10.77.0.2')));
  assert.ok(existsSync(join(state, 'addresses', 'lan', '10.77.0.50')));
});

test.run();
