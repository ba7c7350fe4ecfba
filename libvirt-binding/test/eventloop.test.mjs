// The binding's libvirt event loop (src/eventloop.c): calls do not wake it, calls in flight do not
// make it spin, and its timers work (keepalive closes a connection whose libvirtd went silent).
// Domains it defines are named ocivirt-test-binding-<pid>-* and undefined by the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createConnection, createServer } from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as lv from '../generated/index.js';

const URI = process.env.LIBVIRT_BINDING_TEST_URI ?? 'lxc:///';
const native = createRequire(import.meta.url)('../build/Release/binding.node');

test('calls do not wake the event loop, one at a time or 8 at once (keepalive on)', async () => {
  const conn = await lv.virConnectOpen(URI);
  try {
    await lv.virConnectSetKeepAlive(conn, 5, 3);
    let before = native._eventLoopIterations();
    for (let i = 0; i < 300; i++) await lv.virConnectGetLibVersion(conn);
    const serial = native._eventLoopIterations() - before;
    // libvirt's RPC client turns the socket's watch off and on around each call and the keepalive
    // resets its timer on each reply: none of that may wake the loop (a keepalive ping may)
    assert.ok(serial <= 10, `300 calls one at a time woke the event loop ${serial} times`);

    before = native._eventLoopIterations();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 100; i++) await lv.virConnectGetLibVersion(conn);
    }));
    const concurrent = native._eventLoopIterations() - before;
    // with calls in flight, a reply can wait on the socket while another thread is about to read
    // it; the loop must not go round and round meanwhile (it did, 40-65 times per call)
    assert.ok(concurrent <= 800, `800 calls 8 at a time woke the event loop ${concurrent} times`);
  } finally {
    await lv.virConnectClose(conn);
  }
});

test('lifecycle events arrive while calls run on the connection, and after they stop', async () => {
  const name = `ocivirt-test-binding-${process.pid}-busy`;
  const conn = await lv.virConnectOpen(URI);
  const other = await lv.virConnectOpen(URI);
  const seen = [];
  let wake;
  const id = await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
    if (e.name === name) {
      seen.push(e);
      wake?.();
    }
  });
  /** Resolves when `n` events were seen; fails after 5 s (the timer also keeps Node alive). */
  const events = (n) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${seen.length} events within 5 s, wanted ${n}`)), 5000);
      wake = () => seen.length >= n && (clearTimeout(timer), resolve());
      wake();
    });
  try {
    // 8 calls at a time on the connection that gets the events: its socket's watch is held off the
    // loop while they run, and the calls' threads read the event messages
    let busy = true;
    const calls = Array.from({ length: 8 }, async () => {
      while (busy) await lv.virConnectGetLibVersion(conn);
    });
    const dom = await lv.virDomainDefineXML(other, `<domain type='lxc'><name>${name}</name><memory unit='MiB'>64</memory><os><type>exe</type><init>/bin/sh</init></os></domain>`);
    await events(1);
    busy = false;
    await Promise.all(calls);
    // nothing in flight: the loop watches the socket again
    await lv.virDomainUndefine(dom);
    await events(2);
    assert.deepEqual(seen.map((e) => e.event), [lv.VIR_DOMAIN_EVENT_DEFINED, lv.VIR_DOMAIN_EVENT_UNDEFINED]);
  } finally {
    await lv.virConnectDomainEventDeregisterAny(conn, id);
    try {
      await lv.virDomainUndefine(await lv.virDomainLookupByName(other, name));
    } catch (e) {
      if (!lv.isLibvirtError(e) || e.code !== lv.VIR_ERR_NO_DOMAIN) throw e;
    }
    await lv.virConnectClose(other);
    await lv.virConnectClose(conn);
  }
});

/** A unix socket that forwards to libvirtd's until frozen, then passes nothing on, like a hung libvirtd. */
function proxy(dir, target) {
  const path = join(dir, 'proxy.sock');
  const p = { path, frozen: false, sockets: [] };
  p.server = createServer((client) => {
    const upstream = createConnection(target);
    p.sockets.push(client, upstream);
    client.on('data', (b) => p.frozen || upstream.write(b));
    upstream.on('data', (b) => p.frozen || client.write(b));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }).listen(path);
  p.close = () => {
    for (const s of p.sockets) s.destroy();
    p.server.close();
  };
  return p;
}

test('keepalive closes a connection whose libvirtd stops answering (timers, close callback)', async (t) => {
  const socket = ['/run/libvirt/libvirt-sock', '/var/run/libvirt/libvirt-sock'].find((f) => {
    try {
      return statSync(f).isSocket();
    } catch {
      return false;
    }
  });
  if (!socket || URI !== 'lxc:///') return t.skip('needs the local libvirtd socket');
  const dir = mkdtempSync(join(tmpdir(), 'lvb-keepalive-'));
  const p = proxy(dir, socket);
  try {
    const conn = await lv.virConnectOpen(`lxc+unix:///?socket=${p.path}`);
    const closed = new Promise((resolve) => lv.virConnectRegisterCloseCallback(conn, resolve));
    // a ping after 1 s of silence, the connection closed when 1 ping went unanswered 1 s later
    assert.equal(await lv.virConnectSetKeepAlive(conn, 1, 1), 0);
    assert.ok((await lv.virConnectGetLibVersion(conn)) > 0);
    const t0 = Date.now();
    p.frozen = true;
    // the timer also keeps Node alive while the callback is awaited
    let timer;
    const reason = await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(() => resolve('none within 15 s'), 15_000)))]);
    clearTimeout(timer);
    assert.equal(reason, lv.VIR_CONNECT_CLOSE_REASON_KEEPALIVE);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 6000, `closed after ${took} ms`);
    await lv.virConnectClose(conn).catch(() => undefined);
  } finally {
    p.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
