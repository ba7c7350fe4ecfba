/**
 * The libvirt port on the real libvirtd: the whole domain lifecycle, and a libvirtd restart in
 * the middle after which the port reconnects by itself (and the running container survives).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import { captureLog } from '../helpers/log.js';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { DomainNotFoundError, LibvirtUnavailableError, type LibvirtPort, type PortEvent } from '../../src/libvirt/port.js';
import {
  TEST_PREFIX,
  TEST_URI,
  buildBusyboxRootfs,
  cleanupDomains,
  domainState,
  isAlive,
  makeTempDir,
  pid1Inside,
  removeTempDir,
  virsh,
  waitForExit,
  waitForInit,
} from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}port-`;
const repoRoot = new URL('../../..', import.meta.url).pathname;
let rootfs = '';
let tmp = '';

function domainXml(name: string, uuid?: string, memoryMiB = 64): string {
  return `<domain type='lxc'>
  <name>${name}</name>${uuid ? `\n  <uuid>${uuid}</uuid>` : ''}
  <memory unit='MiB'>${memoryMiB}</memory>
  <os><type>exe</type><init>/bin/sleep</init><initarg>300</initarg></os>
  <devices>
    <filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem>
    <console type='pty'/>
  </devices>
</domain>`;
}


test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('port');
  rootfs = buildBusyboxRootfs(join(tmp, 'rootfs'));
});

test.after(() => {
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

test('define, lookup, inactive XML, list, start, init runs, stop, undefine', async () => {
  const name = `${PREFIX}life-${process.pid}`;
  const port = await connectLibvirt(TEST_URI);
  try {
    assert.is(await port.lookup(name), undefined);
    const ref = await port.define(domainXml(name));
    assert.is(ref.name, name);
    assert.match(ref.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(await port.lookup(name), ref);
    assert.ok((await port.listDomains()).some((d) => d.name === name && d.uuid === ref.uuid));
    const xml = await port.inactiveXml(name);
    assert.match(xml, `<name>${name}</name>`);
    assert.match(xml, '<init>/bin/sleep</init>');
    assert.match(xml, `<source dir='${rootfs}'/>`);
    assert.is(await port.state(name), 'shutoff');

    // redefining with the same uuid changes the definition in place
    const again = await port.define(domainXml(name, ref.uuid, 96));
    assert.equal(again, ref);
    assert.match(await port.inactiveXml(name), "<memory unit='KiB'>98304</memory>");

    await port.start(name);
    assert.is(await port.state(name), 'running');
    assert.is(domainState(name), 'running');
    const init = await waitForInit(name, ['/bin/sleep', '300']);
    assert.equal(pid1Inside(name), ['/bin/sleep', '300']);

    // sleep as pid 1 ignores SIGTERM, so stop must fall back to destroy after the timeout
    await port.stop(name, 1_000);
    assert.is(await port.state(name), 'shutoff');
    assert.ok(await waitForExit(init.initPid), `init ${init.initPid} still alive after stop`);
    // stopping a stopped domain is a no-op
    await port.stop(name, 1_000);

    await port.undefine(name);
    assert.is(await port.lookup(name), undefined);
    assert.not.ok((await port.listDomains()).some((d) => d.name === name));
  } finally {
    await port.close();
  }
});

/** Lifecycle events the port delivers, for waiting on one. */
function eventRecorder(port: LibvirtPort, name: string) {
  const seen: PortEvent[] = [];
  let waiters: Array<() => boolean> = [];
  const stop = port.watch((e) => {
    if (e.type === 'lifecycle' && e.name !== name) return;
    seen.push(e);
    waiters = waiters.filter((w) => !w());
  });
  const next = (pred: (e: PortEvent) => boolean, ms = 15_000) => {
    const p = new Promise<PortEvent>((resolve, reject) => {
      const from = seen.length;
      const timer = setTimeout(() => reject(new Error(`no matching event within ${ms} ms; saw ${JSON.stringify(seen)}`)), ms);
      const check = () => {
        const hit = seen.slice(from).find(pred);
        if (!hit) return false;
        clearTimeout(timer);
        resolve(hit);
        return true;
      };
      if (!check()) waiters.push(check);
    });
    p.catch(() => undefined); // a test that failed earlier leaves no unhandled rejection
    return p;
  };
  return { seen, next, stop };
}

const lifecycle = (kind: string) => (e: PortEvent) => e.type === 'lifecycle' && e.kind === kind;

test('lifecycle events for define, redefine, start, stop and undefine, with their detail', async () => {
  const name = `${PREFIX}events-${process.pid}`;
  const { log, events } = captureLog('info');
  const port = await connectLibvirt(TEST_URI, { logger: log });
  const rec = eventRecorder(port, name);
  try {
    // the subscription is made in the background
    for (let i = 0; i < 100 && !events.some((e) => e.event === 'libvirt.events.subscribed'); i++) await new Promise((r) => setTimeout(r, 50));
    let defined = rec.next(lifecycle('defined'));
    const ref = await port.define(domainXml(name));
    assert.equal(await defined, { type: 'lifecycle', name, uuid: ref.uuid, kind: 'defined', detail: 'added' });
    defined = rec.next(lifecycle('defined'));
    await port.define(domainXml(name, ref.uuid, 96));
    assert.is((await defined as { detail: string }).detail, 'updated');
    const started = rec.next(lifecycle('started'));
    await port.start(name);
    assert.is((await started as { detail: string }).detail, 'booted');
    const stopped = rec.next(lifecycle('stopped'));
    await port.destroy(name);
    assert.is((await stopped as { detail: string }).detail, 'destroyed');
    const undefined_ = rec.next(lifecycle('undefined'));
    await port.undefine(name);
    assert.is((await undefined_ as { detail: string }).detail, 'removed');
  } finally {
    rec.stop();
    await port.close();
  }
});

test('console output, a process signal to init, live and config tuning, and an isolated network through the port', async () => {
  const name = `${PREFIX}more-${process.pid}`;
  const net = `${PREFIX}net-${process.pid}`;
  const port = await connectLibvirt(TEST_URI);
  const script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done";
  const xml = `<domain type='lxc'><name>${name}</name><memory unit='MiB'>64</memory>
  <os><type>exe</type><init>/bin/sh</init><initarg>-c</initarg><initarg>${script}</initarg></os>
  <devices><filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem><console type='pty'/></devices></domain>`;
  let console_: Awaited<ReturnType<LibvirtPort['openConsole']>> | undefined;
  try {
    await port.define(xml);
    await port.setTuning(name, 'memory', { hard_limit: 100 * 1024 }, 'config');
    assert.is((await port.tuning(name, 'memory', 'config')).hard_limit, 100 * 1024);
    await port.start(name);
    assert.is((await port.tuning(name, 'memory', 'live')).hard_limit, 100 * 1024);
    await port.setTuning(name, 'memory', { hard_limit: 150 * 1024 }, 'both');
    assert.is((await port.tuning(name, 'memory', 'live')).hard_limit, 150 * 1024);
    assert.is((await port.tuning(name, 'memory', 'config')).hard_limit, 150 * 1024);
    await port.setTuning(name, 'scheduler', { cpu_shares: 256 }, 'live');
    assert.is((await port.tuning(name, 'scheduler', 'live')).cpu_shares, 256);

    const c = (console_ = await port.openConsole(name));
    let text = '';
    const shows = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`console never showed ${re}: ${JSON.stringify(text)}`)), 15_000);
        const check = () => re.test(text) && (clearTimeout(timer), c.off('data', onData), resolve(), true);
        const onData = (d: Buffer) => ((text += d.toString()), check());
        c.on('data', onData);
        check();
      });
    await shows(/ready/);
    await port.sendSignal(name, 'SIGUSR1');
    await shows(/got-usr1/);

    assert.is(await port.lookupNetwork(net), undefined);
    const ref = await port.defineNetwork(`<network><name>${net}</name><bridge name='vbp${process.pid % 100000}'/></network>`);
    assert.equal({ name: ref.name, active: ref.active }, { name: net, active: false });
    await port.startNetwork(net);
    assert.is((await port.lookupNetwork(net))?.active, true);
    assert.match(await port.networkXml(net), `<name>${net}</name>`);
    await port.destroyNetwork(net);
    await port.undefineNetwork(net);
    assert.is(await port.lookupNetwork(net), undefined);
  } finally {
    console_?.destroy();
    await port.destroyNetwork(net).catch(() => undefined);
    await port.undefineNetwork(net).catch(() => undefined);
    await port.close();
    cleanupDomains(`${PREFIX}more-`);
  }
});

test('errors name the domain and the reason', async () => {
  const name = `${PREFIX}absent-${process.pid}`;
  const port = await connectLibvirt(TEST_URI);
  try {
    for (const call of [() => port.inactiveXml(name), () => port.start(name), () => port.state(name), () => port.undefine(name)]) {
      try {
        await call();
        assert.unreachable('should have thrown');
      } catch (e) {
        assert.instance(e, Error);
        assert.not.instance(e, LibvirtUnavailableError);
        assert.match((e as Error).message, name);
        // decided by libvirt's error code (VIR_ERR_NO_DOMAIN), not by the message
        assert.instance(e, DomainNotFoundError);
        assert.is((e as DomainNotFoundError).code, 42);
      }
    }
    try {
      await port.define(`<domain type='lxc'><name>${PREFIX}bad/${process.pid}</name></domain>`);
      assert.unreachable('should have thrown');
    } catch (e) {
      assert.match((e as Error).message, /^define: /);
    }
    // stop of an absent domain is a no-op: it is not running
    await port.stop(name, 100);
  } finally {
    await port.close();
  }
});

test('a closed port refuses calls', async () => {
  const port = await connectLibvirt(TEST_URI);
  await port.close();
  try {
    await port.listDomains();
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.match((e as Error).message, /closed/);
  }
});

test('connecting to a libvirt that is not there fails with a clear error', async () => {
  const sock = join(tmp, 'no-such.sock');
  try {
    await connectLibvirt(`lxc+unix:///?socket=${sock}`);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, LibvirtUnavailableError);
    assert.match((e as Error).message, /cannot connect to libvirt/);
  }
});

test('a libvirt that accepts but never answers: the command reports it and ends instead of hanging', async () => {
  // a socket that takes the connection and never says a word, like a hung libvirtd
  const sock = join(tmp, 'hung.sock');
  const held: Socket[] = [];
  const server = createServer((c) => held.push(c)).listen(sock);
  const spool = join(tmp, 'empty-spool');
  mkdirSync(spool, { mode: 0o700 });
  try {
    const child = spawn(join(repoRoot, 'bin/ocivirt'), ['sync', '--once', '--spool', spool, '--state', join(tmp, 'state'), '--uri', `lxc+unix:///?socket=${sock}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, sg) => resolve([c, sg])));
    clearTimeout(guard);
    assert.match(stderr, /cannot connect to libvirt at lxc\+unix:.*no answer from libvirt within \d+ ms/);
    assert.match(stderr, /stopped answering; a thread is stuck inside it/);
    assert.equal([code, signal], [null, 'SIGKILL']);
  } finally {
    for (const c of held) c.destroy();
    server.close();
  }
});

test('libvirtd restarted in the middle: calls fail fast meanwhile, then the port works again', async () => {
  const name = `${PREFIX}restart-${process.pid}`;
  const log = captureLog('info');
  const port: LibvirtPort = await connectLibvirt(TEST_URI, {
    logger: log.log,
    backoffInitialMs: 100,
    backoffMaxMs: 500,
  });
  try {
    const rec = eventRecorder(port, name);
    const started = rec.next(lifecycle('started'));
    await port.define(domainXml(name));
    await port.start(name);
    await started;
    const init = await waitForInit(name, ['/bin/sleep', '300']);

    const resubscribed = rec.next((e) => e.type === 'resubscribed', 60_000);
    const restart = spawn(join(repoRoot, 'scripts/setup-libvirt.sh'), ['--restart'], { stdio: 'ignore' });
    const restarted = new Promise<number | null>((resolve) => restart.on('close', resolve));
    let done = false;
    void restarted.then(() => (done = true));
    const unexpected: string[] = [];
    while (!done) {
      try {
        await port.lookup(name);
      } catch (e) {
        if (!(e instanceof LibvirtUnavailableError)) unexpected.push((e as Error).message);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.is(await restarted, 0, 'setup-libvirt.sh --restart failed');
    assert.equal(unexpected, [], 'errors during the restart other than "unavailable"');

    // the backoff may hold the next attempt back a little: retry for a while, as a pass would
    let ref;
    for (let i = 0; i < 100 && ref === undefined; i++) {
      try {
        ref = await port.lookup(name);
      } catch (e) {
        if (!(e instanceof LibvirtUnavailableError)) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.is(ref?.name, name);
    assert.ok((await port.listDomains()).some((d) => d.name === name));
    assert.match(await port.inactiveXml(name), `<name>${name}</name>`);
    // the running container belongs to libvirt and survived the restart
    assert.is(await port.state(name), 'running');
    assert.ok(isAlive(init.initPid), 'init died during the libvirtd restart');

    const events = log.events.map((l) => l.event);
    assert.ok(events.includes('libvirt.disconnected'), `events: ${events.join(', ')}`);
    assert.ok(events.includes('libvirt.reconnected'), `events: ${events.join(', ')}`);
    assert.ok(events.lastIndexOf('libvirt.reconnected') > events.indexOf('libvirt.disconnected'));

    // events flow again on the new connection, without any call having to notice the restart
    await resubscribed;
    const stopped = rec.next(lifecycle('stopped'));
    const undefined_ = rec.next(lifecycle('undefined'));
    await port.stop(name, 500);
    assert.is((await stopped as { detail: string }).detail, 'destroyed');
    await port.undefine(name);
    await undefined_;
    assert.is(await port.lookup(name), undefined);
    rec.stop();
  } finally {
    await port.close();
    // whatever happened, libvirtd must answer again for the other tests
    try {
      virsh('version');
    } catch {
      execFileSync(join(repoRoot, 'scripts/setup-libvirt.sh'), { stdio: 'ignore' });
    }
  }
});

test.run();
