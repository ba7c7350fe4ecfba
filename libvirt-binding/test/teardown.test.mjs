// Callbacks whose JavaScript environment has ended (a worker that finished, a process that is
// exiting) while libvirt still holds their registration. Node frees a threadsafe function when its
// environment ends; libvirt's event-loop thread must not call into it afterwards (it used to:
// SIGABRT in uv_mutex_lock under napi_call_threadsafe_function, or a segfault).
// Each case runs in a child process, so a crash fails the test instead of the runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as lv from '../generated/index.js';

const URI = process.env.LIBVIRT_BINDING_TEST_URI ?? 'lxc:///';
const binding = new URL('../generated/index.js', import.meta.url).href;

// A worker opens a connection, registers lifecycle and close callbacks and ends without
// deregistering. The main thread then defines and undefines a domain: libvirt sends the worker's
// registration both events after the worker's environment is gone.
const child = `
import { Worker } from 'node:worker_threads';
import * as lv from ${JSON.stringify(binding)};
const URI = ${JSON.stringify(URI)};
const name = 'ocivirt-test-binding-' + process.pid + '-teardown';
const worker = \`
import * as lv from ${JSON.stringify(binding)};
const conn = await lv.virConnectOpen(${JSON.stringify(URI)});
globalThis.conn = conn;
await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, () => {});
await lv.virConnectRegisterCloseCallback(conn, () => {});
\`;
const w = new Worker(new URL('data:text/javascript,' + encodeURIComponent(worker)));
const code = await new Promise((resolve) => w.once('exit', resolve));
if (code !== 0) throw new Error('worker exited with ' + code);

const conn = await lv.virConnectOpen(URI);
const seen = [];
let wake;
await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
  if (e.name === name) { seen.push(e.event); wake?.(); }
});
const timer = setTimeout(() => { console.error('no events, saw', seen); process.exit(2); }, 10000);
const dom = await lv.virDomainDefineXML(conn, "<domain type='lxc'><name>" + name + "</name><memory unit='MiB'>64</memory><os><type>exe</type><init>/bin/sh</init></os></domain>");
await lv.virDomainUndefine(dom);
while (!seen.includes(lv.VIR_DOMAIN_EVENT_UNDEFINED)) await new Promise((resolve) => (wake = resolve));
// the worker's connection got the same two events; give the event-loop thread time to dispatch them
await new Promise((resolve) => setTimeout(resolve, 300));
clearTimeout(timer);
console.log('ok');
`;

/** Undefines what a child that crashed left behind. */
async function undefineLeftover(pid) {
  const conn = await lv.virConnectOpen(URI);
  try {
    await lv.virDomainUndefine(await lv.virDomainLookupByName(conn, `ocivirt-test-binding-${pid}-teardown`));
  } catch (e) {
    if (!lv.isLibvirtError(e) || e.code !== lv.VIR_ERR_NO_DOMAIN) throw e;
  } finally {
    await lv.virConnectClose(conn);
  }
}

test('a callback registered by a worker that has ended is not called', async () => {
  // a use-after-free does not crash every time: three rounds
  for (let i = 0; i < 3; i++) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8', timeout: 30_000 });
    await undefineLeftover(r.pid);
    assert.equal(r.signal, null, `round ${i + 1}: child killed by ${r.signal}; stderr: ${r.stderr}`);
    assert.equal(r.status, 0, `round ${i + 1}: child exited with ${r.status}; stderr: ${r.stderr}`);
    assert.equal(r.stdout.trim(), 'ok');
  }
});
