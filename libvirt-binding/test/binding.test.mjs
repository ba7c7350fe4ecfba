// libvirt-binding on a real libvirtd (lxc:/// unless LIBVIRT_BINDING_TEST_URI says otherwise).
// Domains and networks it makes are named ocivirt-test-binding-*; each test removes its own.
// The containers share the host's root filesystem (no <filesystem target='/'>) and run /bin/sh.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as lv from '../generated/index.js';

// the addon itself, for its test-only diagnostics
const native = createRequire(import.meta.url)('../build/Release/binding.node');

const URI = process.env.LIBVIRT_BINDING_TEST_URI ?? 'lxc:///';
const PREFIX = `ocivirt-test-binding-${process.pid}-`;

function domainXml(name, script = 'while :; do sleep 1; done', uuid) {
  return `<domain type='lxc'>
  <name>${name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ''}
  <memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sh</init><initarg>-c</initarg><initarg>${script}</initarg></os>
  <devices><console type='pty'/></devices>
</domain>`;
}

/** Resolves with the first event `pred` accepts; rejects after `ms`. */
function nextEvent(events, pred, ms = 10_000) {
  const p = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no matching event within ${ms} ms; saw ${JSON.stringify(events.seen)}`)), ms);
    events.waiters.push((e) => {
      if (!pred(e)) return false;
      clearTimeout(timer);
      resolve(e);
      return true;
    });
  });
  p.catch(() => undefined); // a test that failed earlier does not leave an unhandled rejection
  return p;
}

function eventLog() {
  const log = { seen: [], waiters: [] };
  log.push = (e) => {
    log.seen.push(e);
    log.waiters = log.waiters.filter((w) => !w(e));
  };
  return log;
}

const conn = await lv.virConnectOpen(URI);

async function cleanup() {
  for (const d of await lv.virConnectListAllDomains(conn, 0)) {
    const name = await lv.virDomainGetName(d);
    if (!name.startsWith(PREFIX)) continue;
    if (await lv.virDomainIsActive(d)) await lv.virDomainDestroy(d).catch(() => undefined);
    await lv.virDomainUndefine(d).catch(() => undefined);
  }
  for (const n of await lv.virConnectListAllNetworks(conn, 0)) {
    const name = await lv.virNetworkGetName(n);
    if (!name.startsWith(PREFIX)) continue;
    if (await lv.virNetworkIsActive(n)) await lv.virNetworkDestroy(n).catch(() => undefined);
    await lv.virNetworkUndefine(n).catch(() => undefined);
  }
}

after(async () => {
  await cleanup();
  await lv.virConnectClose(conn);
});

test('connect: version, URI, hostname, keepalive', async () => {
  assert.ok((await lv.virConnectGetLibVersion(conn)) >= 9_000_000);
  assert.equal(await lv.virConnectGetURI(conn), URI);
  assert.equal(typeof (await lv.virConnectGetHostname(conn)), 'string');
  assert.equal(await lv.virConnectIsAlive(conn), 1);
  assert.equal(await lv.virConnectSetKeepAlive(conn, 5, 3), 0);
  // closing a connection nothing else holds resolves with 0, every time (both references go on one thread)
  for (let i = 0; i < 10; i++) assert.equal(await lv.virConnectClose(await lv.virConnectOpen(URI)), 0);
});

test('errors carry libvirt code and domain; bad arguments are TypeErrors', async () => {
  await assert.rejects(lv.virDomainLookupByName(conn, `${PREFIX}absent`), (e) => {
    assert.ok(lv.isLibvirtError(e));
    assert.equal(e.code, lv.VIR_ERR_NO_DOMAIN);
    assert.equal(e.func, 'virDomainLookupByName');
    assert.equal(typeof e.domain, 'number');
    return true;
  });
  await assert.rejects(lv.virDomainDefineXML(conn, '<domain type="lxc"><name>x'), (e) => e.code === lv.VIR_ERR_XML_DETAIL || e.code === lv.VIR_ERR_XML_ERROR);
  assert.throws(() => lv.virDomainLookupByName({}, 'x'), TypeError);
  assert.throws(() => lv.virDomainGetXMLDesc(conn, 0), TypeError);
  assert.throws(() => lv.virDomainGetXMLDesc(null, 0.5), TypeError);
  // a typed parameter wider than 64 bits is refused, not cut down (the values are read before the domain)
  assert.throws(() => lv.virDomainSetMemoryParameters(null, { hard_limit: 2n ** 70n }, 0), /64-bit integer/);
  assert.throws(() => lv.virDomainSetMemoryParameters(null, { hard_limit: 2n ** 64n - 1n }, 0), /domain/);
});

test('define, list, lookup, XML, info, start, shutdown/destroy, undefine; lifecycle events with detail', async () => {
  const name = `${PREFIX}life`;
  const events = eventLog();
  const id = await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
    if (e.name === name) events.push(e);
  });
  try {
    const defined = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_DEFINED);
    const dom = await lv.virDomainDefineXML(conn, domainXml(name));
    const ev = await defined;
    assert.equal(ev.detail, lv.VIR_DOMAIN_EVENT_DEFINED_ADDED);
    assert.equal(ev.uuid, await lv.virDomainGetUUIDString(dom));

    const listed = await lv.virConnectListAllDomains(conn, lv.VIR_CONNECT_LIST_DOMAINS_INACTIVE);
    assert.ok((await Promise.all(listed.map((d) => lv.virDomainGetName(d)))).includes(name));
    const again = await lv.virDomainLookupByName(conn, name);
    assert.equal(await lv.virDomainGetUUIDString(again), ev.uuid);
    assert.match(await lv.virDomainGetXMLDesc(again, lv.VIR_DOMAIN_XML_INACTIVE), new RegExp(`<name>${name}</name>`));
    assert.deepEqual(await lv.virDomainGetState(dom, 0), { state: lv.VIR_DOMAIN_SHUTOFF, reason: lv.VIR_DOMAIN_SHUTOFF_UNKNOWN });
    const info = await lv.virDomainGetInfo(dom);
    assert.equal(info.state, lv.VIR_DOMAIN_SHUTOFF);
    assert.equal(info.maxMem, 64 * 1024);

    const redefined = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_DEFINED);
    await lv.virDomainDefineXML(conn, domainXml(name, 'while :; do sleep 2; done', ev.uuid));
    assert.equal((await redefined).detail, lv.VIR_DOMAIN_EVENT_DEFINED_UPDATED);

    const started = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_STARTED);
    assert.equal(await lv.virDomainCreate(dom), 0);
    assert.equal((await started).detail, lv.VIR_DOMAIN_EVENT_STARTED_BOOTED);
    assert.equal((await lv.virDomainGetState(dom, 0)).state, lv.VIR_DOMAIN_RUNNING);
    assert.ok((await lv.virDomainGetID(dom)) > 0);

    const destroyed = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_STOPPED);
    assert.equal(await lv.virDomainDestroy(dom), 0);
    assert.equal((await destroyed).detail, lv.VIR_DOMAIN_EVENT_STOPPED_DESTROYED);

    const undefined_ = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_UNDEFINED);
    assert.equal(await lv.virDomainUndefine(dom), 0);
    assert.equal((await undefined_).detail, lv.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED);
    await assert.rejects(lv.virDomainGetXMLDesc(dom, 0), (e) => e.code === lv.VIR_ERR_NO_DOMAIN);
  } finally {
    await lv.virConnectDomainEventDeregisterAny(conn, id);
  }
});

test('a shutdown the container obeys: stopped with detail shutdown', async () => {
  const name = `${PREFIX}shutdown`;
  const events = eventLog();
  const id = await lv.virConnectDomainEventRegisterAny(conn, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (e) => {
    if (e.name === name) events.push(e);
  });
  try {
    // init exits on SIGTERM (libvirt-lxc's shutdown signal to init)
    const dom = await lv.virDomainDefineXML(conn, domainXml(name, "trap 'exit 0' TERM; while :; do sleep 0.2; done"));
    const started = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_STARTED);
    await lv.virDomainCreate(dom);
    await started;
    const stopped = nextEvent(events, (e) => e.event === lv.VIR_DOMAIN_EVENT_STOPPED);
    // an init ignores the signals it has no handler for, and the shell may not have set its trap
    // yet when the started event comes: ask again until it stops
    let down = false;
    void stopped.then(() => (down = true), () => (down = true));
    while (!down) {
      await lv.virDomainShutdownFlags(dom, lv.VIR_DOMAIN_SHUTDOWN_SIGNAL).catch(() => undefined);
      await Promise.race([stopped.catch(() => undefined), new Promise((r) => setTimeout(r, 300))]);
    }
    assert.equal((await stopped).detail, lv.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN);
    await lv.virDomainUndefine(dom);
  } finally {
    await lv.virConnectDomainEventDeregisterAny(conn, id);
  }
});

test('a domain outlives its connection; freed handles refuse calls', async () => {
  const name = `${PREFIX}outlive`;
  const other = await lv.virConnectOpen(URI);
  const dom = await lv.virDomainDefineXML(other, domainXml(name));
  await lv.virConnectClose(other);
  assert.throws(() => lv.virConnectGetURI(other), TypeError);
  // libvirt keeps the connection while the domain references it
  assert.equal(await lv.virDomainGetName(dom), name);
  assert.equal(await lv.virDomainUndefine(dom), 0);
  lv.virDomainFree(dom);
  lv.virDomainFree(dom); // twice is harmless
  assert.throws(() => lv.virDomainGetName(dom), /freed or closed/);
});

test('freed handles are released: by the next call to finish, else by the reaper', async () => {
  const name = `${PREFIX}release`;
  lv.virDomainFree(await lv.virDomainDefineXML(conn, domainXml(name)));
  try {
    const doms = await Promise.all(Array.from({ length: 50 }, () => lv.virDomainLookupByName(conn, name)));
    // each call holds its own reference: the handles can go while the calls run
    const calls = doms.map((d) => lv.virDomainGetName(d));
    for (const d of doms) lv.virDomainFree(d);
    assert.deepEqual(new Set(await Promise.all(calls)), new Set([name]));
    // a call queued after the frees finishes after them: it released them
    await lv.virConnectGetLibVersion(conn);
    assert.equal(native._pendingReleases(), 0);

    // one call at a time: each free rides on the next call; the reaper is not woken for each
    const rounds = native._reaperRounds();
    for (let i = 0; i < 100; i++) lv.virDomainFree(await lv.virDomainLookupByName(conn, name));
    const reaped = native._reaperRounds() - rounds;
    assert.ok(reaped <= 50, `100 frees one call at a time took the reaper ${reaped} rounds`);

    // nothing in flight: the reaper does it
    lv.virDomainFree(await lv.virDomainLookupByName(conn, name));
    for (let i = 0; i < 100 && native._pendingReleases() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(native._pendingReleases(), 0);
  } finally {
    await lv.virDomainUndefine(await lv.virDomainLookupByName(conn, name));
  }
});

test('network define, start, lookup, destroy, undefine (isolated, no forward)', async () => {
  const name = `${PREFIX}net`;
  // no <ip>: a bare isolated bridge needs no dnsmasq
  const xml = `<network><name>${name}</name><bridge name='vbt${process.pid % 100000}'/></network>`;
  const net = await lv.virNetworkDefineXML(conn, xml);
  assert.equal(await lv.virNetworkGetName(net), name);
  assert.equal(await lv.virNetworkIsActive(net), 0);
  assert.equal(await lv.virNetworkCreate(net), 0);
  const found = await lv.virNetworkLookupByName(conn, name);
  assert.equal(await lv.virNetworkIsActive(found), 1);
  assert.match(await lv.virNetworkGetXMLDesc(found, 0), new RegExp(`<name>${name}</name>`));
  assert.doesNotMatch(await lv.virNetworkGetXMLDesc(found, 0), /<forward/);
  assert.equal(await lv.virNetworkDestroy(net), 0);
  assert.equal(await lv.virNetworkUndefine(net), 0);
  await assert.rejects(lv.virNetworkLookupByName(conn, name), (e) => e.code === lv.VIR_ERR_NO_NETWORK);
});

/** Collects a console's output until `pattern` shows up. */
function consoleReader() {
  const r = { text: '', ended: false, error: null, waiters: [] };
  r.onData = (err, chunk) => {
    if (err) r.error = err;
    else if (chunk) r.text += chunk.toString('utf8');
    else r.ended = true;
    r.waiters = r.waiters.filter((w) => !w());
  };
  r.until = (pattern, ms = 10_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`console never showed ${pattern}; got ${JSON.stringify(r.text)}`)), ms);
      const check = () => {
        if (!pattern.test(r.text)) return false;
        clearTimeout(timer);
        resolve(r.text);
        return true;
      };
      if (!check()) r.waiters.push(check);
    });
  return r;
}

test('console stream reads what the container prints; a process signal reaches its init', async () => {
  const name = `${PREFIX}console`;
  const script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done";
  const dom = await lv.virDomainDefineXML(conn, domainXml(name, script));
  await lv.virDomainCreate(dom);
  const out = consoleReader();
  // libvirt-lxc refuses VIR_DOMAIN_CONSOLE_FORCE
  const stream = await lv.virDomainOpenConsoleStream(dom, null, 0, out.onData);
  try {
    // the pty keeps what was printed before the console was opened
    await out.until(/ready/);
    assert.equal(await lv.virDomainSendProcessSignal(dom, 1, lv.VIR_DOMAIN_PROCESS_SIGNAL_USR1, 0), 0);
    await out.until(/got-usr1/);
    assert.equal(out.error, null);
  } finally {
    await lv.virStreamClose(stream);
    await lv.virDomainDestroy(dom);
    await lv.virDomainUndefine(dom);
  }
  await lv.virStreamClose(stream); // closing twice is harmless
  assert.throws(() => lv.virDomainOpenConsoleStream({}, null, 0, () => {}), TypeError);
});

test('typed parameters: memory and scheduler, live and config', async () => {
  const name = `${PREFIX}tune`;
  const dom = await lv.virDomainDefineXML(conn, domainXml(name));
  try {
    // config of a stopped domain
    await lv.virDomainSetMemoryParameters(dom, { hard_limit: 200 * 1024 }, lv.VIR_DOMAIN_AFFECT_CONFIG);
    assert.equal((await lv.virDomainGetMemoryParameters(dom, lv.VIR_DOMAIN_AFFECT_CONFIG)).hard_limit, 200 * 1024);
    assert.match(await lv.virDomainGetXMLDesc(dom, lv.VIR_DOMAIN_XML_INACTIVE), /<hard_limit unit='KiB'>204800<\/hard_limit>/);

    await lv.virDomainCreate(dom);
    const live = await lv.virDomainGetMemoryParameters(dom, lv.VIR_DOMAIN_AFFECT_LIVE);
    assert.equal(live.hard_limit, 200 * 1024);
    await lv.virDomainSetMemoryParameters(dom, { hard_limit: 300 * 1024 }, lv.VIR_DOMAIN_AFFECT_LIVE);
    assert.equal((await lv.virDomainGetMemoryParameters(dom, lv.VIR_DOMAIN_AFFECT_LIVE)).hard_limit, 300 * 1024);
    // live only: the definition keeps its value
    assert.equal((await lv.virDomainGetMemoryParameters(dom, lv.VIR_DOMAIN_AFFECT_CONFIG)).hard_limit, 200 * 1024);

    const sched = await lv.virDomainGetSchedulerParametersFlags(dom, lv.VIR_DOMAIN_AFFECT_LIVE);
    assert.equal(typeof sched.cpu_shares, 'number');
    await lv.virDomainSetSchedulerParametersFlags(dom, { cpu_shares: 512 }, lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG);
    assert.equal((await lv.virDomainGetSchedulerParametersFlags(dom, lv.VIR_DOMAIN_AFFECT_LIVE)).cpu_shares, 512);
    assert.equal((await lv.virDomainGetSchedulerParametersFlags(dom, lv.VIR_DOMAIN_AFFECT_CONFIG)).cpu_shares, 512);

    await assert.rejects(lv.virDomainSetMemoryParameters(dom, { no_such_param: 1 }, 0), (e) => e.code === lv.VIR_ERR_INVALID_ARG);
    await assert.rejects(lv.virDomainSetMemoryParameters(dom, { hard_limit: 'lots' }, 0), (e) => e.code === lv.VIR_ERR_INVALID_ARG);
    assert.equal(typeof (await lv.virDomainGetBlkioParameters(dom, lv.VIR_DOMAIN_AFFECT_CONFIG)), 'object');
  } finally {
    await lv.virDomainDestroy(dom).catch(() => undefined);
    await lv.virDomainUndefine(dom);
  }
});
