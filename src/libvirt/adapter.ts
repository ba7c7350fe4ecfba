/**
 * The LibvirtPort over `libvirt-binding` (this repository's generated libvirt addon): the only
 * module that imports the binding.
 *
 * Connection handling, as measured on libvirt 9:
 * - Every call runs on a libuv worker thread, so a dead libvirtd never blocks the event loop.
 *   A killed libvirtd makes calls fail at once with an RPC error (VIR_FROM_RPC); the old
 *   connection never recovers, so a new one is opened.
 * - A libvirtd that accepts but never answers (hung, stopped) blocks the worker thread until
 *   the connection's keepalive gives up on it. Every call therefore races a timeout, and while
 *   the connection is down at most one reconnect attempt is in flight: the other calls fail
 *   fast instead of parking more worker threads.
 * - Errors carry libvirt's code and domain: "not found" and "connection lost" are decided by code.
 * - Domain handles are freed as soon as a call is done with them; the binding holds its own
 *   reference while a call runs, so nothing is freed under a worker thread.
 */
import { Readable } from 'node:stream';
import * as lv from 'libvirt-binding';
import { silentLogger, type EventLogger } from '../log.js';
import {
  DomainNotFoundError,
  LibvirtCallError,
  NetworkNotFoundError,
  LibvirtUnavailableError,
  type DomainRef,
  type DomainState,
  type LibvirtPort,
  type LifecycleKind,
  type NetworkRef,
  type NetworkUpdate,
  type PortEvent,
  type TuningFamily,
  type TuningParams,
} from './port.js';

export const DEFAULT_URI = 'lxc:///';

export interface LibvirtOptions {
  logger?: EventLogger;
  /** A call that has not answered after this long counts as a lost connection. */
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Reconnect backoff: first delay, doubled per failed attempt up to the maximum. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

type Conn = lv.VirConnect;
type Dom = lv.VirDomain;

const STATES: Record<number, DomainState> = {
  [lv.VIR_DOMAIN_NOSTATE]: 'nostate',
  [lv.VIR_DOMAIN_RUNNING]: 'running',
  [lv.VIR_DOMAIN_BLOCKED]: 'blocked',
  [lv.VIR_DOMAIN_PAUSED]: 'paused',
  [lv.VIR_DOMAIN_SHUTDOWN]: 'shutdown',
  [lv.VIR_DOMAIN_SHUTOFF]: 'shutoff',
  [lv.VIR_DOMAIN_CRASHED]: 'crashed',
  [lv.VIR_DOMAIN_PMSUSPENDED]: 'pmsuspended',
};

/** virDomainEventType values, in order (VIR_DOMAIN_EVENT_DEFINED = 0 ...). */
const LIFECYCLE_KINDS: LifecycleKind[] = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'];

/** `stopped:2` (VIR_DOMAIN_EVENT_STOPPED_DESTROYED) -> 'destroyed': built once from the binding's constants. */
const DETAILS = new Map<string, string>();
for (const kind of LIFECYCLE_KINDS) {
  const prefix = `VIR_DOMAIN_EVENT_${kind.toUpperCase()}_`;
  for (const [k, v] of Object.entries(lv))
    if (typeof v === 'number' && k.startsWith(prefix) && !k.endsWith('_LAST')) DETAILS.set(`${kind}:${v}`, k.slice(prefix.length).toLowerCase());
}

function detailName(kind: LifecycleKind, detail: number): string {
  return DETAILS.get(`${kind}:${detail}`) ?? String(detail);
}

/** Error codes that mean the connection is gone or was never made (besides any RPC-layer error). */
const CONNECTION_CODES = new Set<number>([lv.VIR_ERR_RPC, lv.VIR_ERR_NO_CONNECT, lv.VIR_ERR_INVALID_CONN]);

function connectionLost(e: unknown): boolean {
  return lv.isLibvirtError(e) && (e.domain === lv.VIR_FROM_RPC || CONNECTION_CODES.has(e.code));
}

/** libvirt's failure as the port's error, keeping its code. */
function portError(what: string, e: unknown): Error {
  if (!lv.isLibvirtError(e)) return new Error(`${what}: ${messageOf(e)}`);
  const Cls = e.code === lv.VIR_ERR_NO_DOMAIN ? DomainNotFoundError : e.code === lv.VIR_ERR_NO_NETWORK ? NetworkNotFoundError : LibvirtCallError;
  return new Cls(`${what}: ${e.message}`, e.code, e.domain);
}

/** libvirt's constant for a name ('SIGTERM' -> VIR_DOMAIN_PROCESS_SIGNAL_TERM), or an error naming it. */
function constant(prefix: string, name: string): number {
  const v = (lv as unknown as Record<string, unknown>)[prefix + name.toUpperCase().replace(/-/g, '_')];
  if (typeof v !== 'number') throw new Error(`libvirt has no ${prefix}${name.toUpperCase().replace(/-/g, '_')}`);
  return v;
}

const TUNING = {
  memory: { get: lv.virDomainGetMemoryParameters, set: lv.virDomainSetMemoryParameters },
  blkio: { get: lv.virDomainGetBlkioParameters, set: lv.virDomainSetBlkioParameters },
  scheduler: { get: lv.virDomainGetSchedulerParametersFlags, set: lv.virDomainSetSchedulerParametersFlags },
} as const;

const SCOPE = {
  live: lv.VIR_DOMAIN_AFFECT_LIVE,
  config: lv.VIR_DOMAIN_AFFECT_CONFIG,
  both: lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_AFFECT_CONFIG,
} as const;

/** Delay before trying again to restore the event subscription when no backoff says otherwise. */
const RESUBSCRIBE_MIN_MS = 100;

/** Keepalive: a libvirtd that stops answering closes the connection after about 5 s x (3 + 1). */
const KEEPALIVE_INTERVAL_S = 5;
const KEEPALIVE_COUNT = 3;

const STOP_POLL_MS = 100;

class TimeoutError extends Error {}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what}: no answer from libvirt within ${ms} ms`)), ms);
    // a hung call must not keep a finished CLI alive
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Closes a connection for good: the close callback and an event registration each hold a
 * reference on it inside libvirt, so they go first, or the connection (and its socket) would leak.
 */
async function release(conn: Conn, eventId: number | undefined): Promise<void> {
  await lv.virConnectUnregisterCloseCallback(conn).catch(() => undefined);
  if (eventId !== undefined) await lv.virConnectDomainEventDeregisterAny(conn, eventId).catch(() => undefined);
  await lv.virConnectClose(conn).catch(() => undefined);
}

/** Runs `fn` on a handle, released as soon as `fn` is done (not at garbage collection). */
async function using<H, T>(handle: Promise<H>, free: (h: H) => void, fn: (h: H) => Promise<T>): Promise<T> {
  const h = await handle;
  try {
    return await fn(h);
  } finally {
    free(h);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class LibvirtAdapter implements LibvirtPort {
  private conn: Conn | undefined;
  private connecting: Promise<Conn> | undefined;
  private failedAttempts = 0;
  private nextAttemptAt = 0;
  private lostReason: string | undefined;
  private closed = false;
  /** Calls given up on after their timeout: each still holds a worker thread inside libvirt. */
  abandoned = 0;
  private readonly listeners = new Set<(e: PortEvent) => void>();
  /** The connection events are registered on, and libvirt's callback id there. */
  private subscription: { conn: Conn; id: number } | undefined;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  private readonly log: EventLogger;
  private readonly callTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;

  constructor(
    readonly uri: string,
    opts: LibvirtOptions,
  ) {
    this.log = opts.logger ?? silentLogger();
    this.callTimeoutMs = opts.callTimeoutMs ?? 30_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.backoffInitialMs = opts.backoffInitialMs ?? 250;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
  }

  /** Opens a connection with keepalive on; throws the binding's error or a TimeoutError. */
  private async openConnection(): Promise<Conn> {
    const conn = await withTimeout(lv.virConnectOpen(this.uri), this.connectTimeoutMs, 'connect');
    // not every driver has keepalive (local test:///): then only the call timeouts apply
    await withTimeout(lv.virConnectSetKeepAlive(conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT), this.connectTimeoutMs, 'keepalive').catch(
      () => undefined,
    );
    // the event loop sees a closed socket (libvirtd restarted, keepalive timeout) before any call
    // does: forget the connection, and restore the event subscription on a new one
    await withTimeout(
      lv.virConnectRegisterCloseCallback(conn, (reason) => {
        this.lose(conn, `connection closed (reason ${reason})`, false);
      }),
      this.connectTimeoutMs,
      'close callback',
    ).catch(() => undefined);
    return conn;
  }

  async open(): Promise<void> {
    try {
      this.conn = await this.openConnection();
    } catch (e) {
      if (e instanceof TimeoutError) this.abandoned += 1;
      throw new LibvirtUnavailableError(
        `cannot connect to libvirt at ${this.uri}: ${messageOf(e)} (is libvirtd running? scripts/setup-libvirt.sh starts it)`,
      );
    }
    this.log.info('libvirt.connected', { uri: this.uri });
  }

  /** The live connection; reconnects when the backoff allows, otherwise fails at once. */
  private connection(): Promise<Conn> {
    if (this.closed) return Promise.reject(new Error(`libvirt connection to ${this.uri} is closed`));
    if (this.conn) return Promise.resolve(this.conn);
    if (this.connecting) return this.connecting;
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0)
      return Promise.reject(
        new LibvirtUnavailableError(
          `libvirt at ${this.uri} is unavailable (${this.lostReason}); next reconnect attempt in ${wait} ms`,
        ),
      );
    this.connecting = this.reconnect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async reconnect(): Promise<Conn> {
    let conn: Conn;
    try {
      conn = await this.openConnection();
    } catch (e) {
      if (e instanceof TimeoutError) this.abandoned += 1;
      this.failedAttempts += 1;
      const delay = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** (this.failedAttempts - 1));
      this.nextAttemptAt = Date.now() + delay;
      throw new LibvirtUnavailableError(
        `libvirt at ${this.uri} is unavailable: reconnect attempt ${this.failedAttempts} failed: ${messageOf(e)}; retrying in ${delay} ms`,
      );
    }
    this.log.info('libvirt.reconnected', { uri: this.uri, attempts: this.failedAttempts + 1 });
    this.failedAttempts = 0;
    this.conn = conn;
    return conn;
  }

  /** Forget a connection that failed; the next call opens a new one. */
  private lose(conn: Conn, reason: string, hung: boolean): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.lostReason = reason;
    this.nextAttemptAt = 0;
    this.log.warn('libvirt.disconnected', { uri: this.uri, err: reason });
    const sub = this.subscription?.conn === conn ? this.subscription : undefined;
    // closing a hung connection would park one more worker thread; a broken one closes at once
    if (!hung) void release(conn, sub?.id);
    if (sub) {
      this.subscription = undefined;
      this.scheduleResubscribe(0);
    }
  }

  watch(listener: (e: PortEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.scheduleResubscribe(0);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) void this.unsubscribe();
    };
  }

  private emit(e: PortEvent): void {
    for (const l of [...this.listeners]) l(e);
  }

  private scheduleResubscribe(delayMs: number): void {
    if (this.closed || this.resubscribeTimer) return;
    this.resubscribeTimer = setTimeout(() => {
      this.resubscribeTimer = undefined;
      void this.subscribe();
    }, delayMs);
    // a daemon is kept alive by its own work, not by waiting for libvirtd to come back
    this.resubscribeTimer.unref();
  }

  /** Registers the lifecycle callback on the current connection (reconnecting when needed). */
  private async subscribe(): Promise<void> {
    if (this.closed || this.listeners.size === 0 || this.subscription) return;
    const resumed = this.subscribedBefore;
    try {
      const conn = await this.connection();
      if (this.subscription || this.conn !== conn) return;
      const id = await this.call('register lifecycle events', (c) =>
        lv.virConnectDomainEventRegisterAny(c, null, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, (ev) => {
          const kind = LIFECYCLE_KINDS[ev.event];
          if (kind === undefined) return;
          this.emit({ type: 'lifecycle', name: ev.name, uuid: ev.uuid, kind, detail: detailName(kind, ev.detail) });
        }),
      );
      if (this.conn !== conn || this.closed) {
        // lost or closed while registering: give the registration back (it holds a reference on
        // that connection), then try again on the next one
        void lv.virConnectDomainEventDeregisterAny(conn, id).catch(() => undefined);
        this.scheduleResubscribe(RESUBSCRIBE_MIN_MS);
        return;
      }
      this.subscription = { conn, id };
      this.subscribedBefore = true;
      this.log.info('libvirt.events.subscribed', { uri: this.uri, resumed });
      if (resumed) this.emit({ type: 'resubscribed' });
    } catch (e) {
      this.scheduleResubscribe(Math.max(RESUBSCRIBE_MIN_MS, this.nextAttemptAt - Date.now()));
      this.log.warn('libvirt.events.failed', { uri: this.uri, err: messageOf(e) }, 'lifecycle events unavailable; retrying');
    }
  }

  private subscribedBefore = false;

  private async unsubscribe(): Promise<void> {
    clearTimeout(this.resubscribeTimer);
    this.resubscribeTimer = undefined;
    const sub = this.subscription;
    this.subscription = undefined;
    if (sub) await withTimeout(lv.virConnectDomainEventDeregisterAny(sub.conn, sub.id), this.callTimeoutMs, 'deregister events').catch(() => undefined);
  }

  /**
   * Runs one binding call. Reads (`retry`) are repeated once on a fresh connection when the
   * first attempt found the connection gone, so a libvirtd restart between passes is invisible.
   */
  private async call<T>(what: string, fn: (conn: Conn) => Promise<T>, retry = false): Promise<T> {
    const conn = await this.connection();
    try {
      return await withTimeout(fn(conn), this.callTimeoutMs, what);
    } catch (e) {
      const hung = e instanceof TimeoutError;
      if (hung) this.abandoned += 1;
      if (!hung && !connectionLost(e)) throw portError(what, e);
      const msg = messageOf(e);
      this.lose(conn, msg, hung);
      if (retry && !hung) return this.call(what, fn, false);
      throw new LibvirtUnavailableError(`${what}: connection to libvirt at ${this.uri} lost: ${msg}`);
    }
  }

  /** Runs `fn` on the named domain; its handle is released as soon as `fn` is done. */
  private withDomain<T>(conn: Conn, name: string, fn: (d: Dom) => Promise<T>): Promise<T> {
    return using(lv.virDomainLookupByName(conn, name), lv.virDomainFree, fn);
  }

  private async refOf(d: Dom): Promise<DomainRef> {
    const [name, uuid] = await Promise.all([lv.virDomainGetName(d), lv.virDomainGetUUIDString(d)]);
    return { name, uuid };
  }

  async listDomains(): Promise<DomainRef[]> {
    return this.call(
      'list domains',
      async (conn) => {
        // no flags: persistent and transient, running or not
        const domains = await lv.virConnectListAllDomains(conn, 0);
        try {
          return await Promise.all(domains.map((d) => this.refOf(d)));
        } finally {
          for (const d of domains) lv.virDomainFree(d);
        }
      },
      true,
    );
  }

  async lookup(name: string): Promise<DomainRef | undefined> {
    try {
      return await this.call(`lookup ${name}`, (conn) => this.withDomain(conn, name, (d) => this.refOf(d)), true);
    } catch (e) {
      if (e instanceof DomainNotFoundError) return undefined;
      throw e;
    }
  }

  inactiveXml(name: string): Promise<string> {
    return this.call(
      `inactive XML of ${name}`,
      (conn) => this.withDomain(conn, name, (d) => lv.virDomainGetXMLDesc(d, lv.VIR_DOMAIN_XML_INACTIVE)),
      true,
    );
  }

  liveXml(name: string): Promise<string> {
    return this.call(`live XML of ${name}`, (conn) => this.withDomain(conn, name, (d) => lv.virDomainGetXMLDesc(d, 0)), true);
  }

  define(xml: string): Promise<DomainRef> {
    return this.call('define', (conn) => using(lv.virDomainDefineXML(conn, xml), lv.virDomainFree, (d) => this.refOf(d)));
  }

  undefine(name: string): Promise<void> {
    return this.call(`undefine ${name}`, (conn) => this.withDomain(conn, name, async (d) => void (await lv.virDomainUndefine(d))));
  }

  start(name: string): Promise<void> {
    return this.call(`start ${name}`, (conn) => this.withDomain(conn, name, async (d) => void (await lv.virDomainCreate(d))));
  }

  destroy(name: string): Promise<void> {
    return this.call(`destroy ${name}`, (conn) => this.withDomain(conn, name, async (d) => void (await lv.virDomainDestroy(d))));
  }

  state(name: string): Promise<DomainState> {
    return this.call(
      `state of ${name}`,
      (conn) => this.withDomain(conn, name, async (d) => STATES[(await lv.virDomainGetState(d, 0)).state] ?? 'nostate'),
      true,
    );
  }

  sendSignal(name: string, signal: NodeJS.Signals): Promise<void> {
    const signum = constant('VIR_DOMAIN_PROCESS_SIGNAL_', signal.replace(/^SIG/, ''));
    return this.call(`signal ${signal} to ${name}`, (conn) =>
      this.withDomain(conn, name, async (d) => void (await lv.virDomainSendProcessSignal(d, 1, signum, 0))),
    );
  }

  tuning(name: string, family: TuningFamily, scope: 'live' | 'config'): Promise<TuningParams> {
    return this.call(`${family} tuning of ${name}`, (conn) => this.withDomain(conn, name, (d) => TUNING[family].get(d, SCOPE[scope])), true);
  }

  setTuning(name: string, family: TuningFamily, params: TuningParams, scope: 'live' | 'config' | 'both'): Promise<void> {
    return this.call(`set ${family} tuning of ${name}`, (conn) => this.withDomain(conn, name, (d) => TUNING[family].set(d, params, SCOPE[scope])));
  }

  openConsole(name: string): Promise<Readable> {
    return this.call(`console of ${name}`, (conn) =>
      this.withDomain(conn, name, async (d) => {
        let st: lv.VirStream | undefined;
        const out = new Readable({
          read() {
            // libvirt pushes: a console has no flow control to apply
          },
          destroy(err, cb) {
            if (!st) return cb(err);
            void lv.virStreamClose(st).finally(() => cb(err));
          },
        });
        // no flags: libvirt-lxc refuses VIR_DOMAIN_CONSOLE_FORCE
        st = await lv.virDomainOpenConsoleStream(d, null, 0, (err, chunk) => {
          if (err) out.destroy(portError(`console of ${name}`, err));
          else out.push(chunk);
        });
        return out;
      }),
    );
  }

  private withNetwork<T>(conn: Conn, name: string, fn: (n: lv.VirNetwork) => Promise<T>): Promise<T> {
    return using(lv.virNetworkLookupByName(conn, name), lv.virNetworkFree, fn);
  }

  private async networkRef(n: lv.VirNetwork): Promise<NetworkRef> {
    const [name, uuid, active] = await Promise.all([lv.virNetworkGetName(n), lv.virNetworkGetUUIDString(n), lv.virNetworkIsActive(n)]);
    return { name, uuid, active: active === 1 };
  }

  async lookupNetwork(name: string): Promise<NetworkRef | undefined> {
    try {
      return await this.call(`lookup network ${name}`, (conn) => this.withNetwork(conn, name, (n) => this.networkRef(n)), true);
    } catch (e) {
      if (e instanceof NetworkNotFoundError) return undefined;
      throw e;
    }
  }

  networkXml(name: string): Promise<string> {
    return this.call(`XML of network ${name}`, (conn) => this.withNetwork(conn, name, (n) => lv.virNetworkGetXMLDesc(n, 0)), true);
  }

  defineNetwork(xml: string): Promise<NetworkRef> {
    return this.call('define network', (conn) => using(lv.virNetworkDefineXML(conn, xml), lv.virNetworkFree, (n) => this.networkRef(n)));
  }

  startNetwork(name: string): Promise<void> {
    return this.call(`start network ${name}`, (conn) => this.withNetwork(conn, name, async (n) => void (await lv.virNetworkCreate(n))));
  }

  destroyNetwork(name: string): Promise<void> {
    return this.call(`destroy network ${name}`, (conn) => this.withNetwork(conn, name, async (n) => void (await lv.virNetworkDestroy(n))));
  }

  undefineNetwork(name: string): Promise<void> {
    return this.call(`undefine network ${name}`, (conn) => this.withNetwork(conn, name, async (n) => void (await lv.virNetworkUndefine(n))));
  }

  updateNetwork(name: string, update: NetworkUpdate): Promise<void> {
    const command = constant('VIR_NETWORK_UPDATE_COMMAND_', update.command);
    const section = constant('VIR_NETWORK_SECTION_', update.section);
    return this.call(`update network ${name}`, (conn) =>
      this.withNetwork(conn, name, async (n) => {
        // CURRENT: the running network when it runs, else its definition; with LIVE|CONFIG a
        // stopped network would be refused
        const flags = (await lv.virNetworkIsActive(n)) === 1 && (await lv.virNetworkIsPersistent(n)) === 1
          ? lv.VIR_NETWORK_UPDATE_AFFECT_LIVE | lv.VIR_NETWORK_UPDATE_AFFECT_CONFIG
          : lv.VIR_NETWORK_UPDATE_AFFECT_CURRENT;
        await lv.virNetworkUpdate(n, command, section, update.parentIndex ?? -1, update.xml, flags);
      }),
    );
  }

  /** A domain undefined while running is transient and vanishes when it stops: that is stopped too. */
  private async stateOrGone(name: string): Promise<DomainState | 'gone'> {
    try {
      return await this.state(name);
    } catch (e) {
      if (e instanceof DomainNotFoundError) return 'gone';
      throw e;
    }
  }

  async stop(name: string, timeoutMs: number): Promise<void> {
    const initial = await this.stateOrGone(name);
    if (initial === 'shutoff' || initial === 'gone') return;
    try {
      await this.call(`shutdown ${name}`, (conn) => this.withDomain(conn, name, async (d) => void (await lv.virDomainShutdown(d))));
    } catch (e) {
      // it may have stopped on its own meanwhile; anything else: destroy decides below
      if (e instanceof LibvirtUnavailableError) throw e;
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const s = await this.stateOrGone(name);
      if (s === 'shutoff' || s === 'gone') return;
      await sleep(STOP_POLL_MS);
    }
    try {
      await this.destroy(name);
    } catch (e) {
      const s = await this.stateOrGone(name);
      if (s !== 'shutoff' && s !== 'gone') throw e;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    clearTimeout(this.resubscribeTimer);
    const conn = this.conn;
    const sub = this.subscription;
    this.conn = undefined;
    this.subscription = undefined;
    if (conn) await withTimeout(release(conn, sub?.conn === conn ? sub.id : undefined), this.connectTimeoutMs, 'close').catch(() => undefined);
  }
}

/** Opens the port; fails with a clear error when libvirt does not answer at `uri`. */
export async function connectLibvirt(uri: string = DEFAULT_URI, opts: LibvirtOptions = {}): Promise<LibvirtPort> {
  const adapter = new LibvirtAdapter(uri, opts);
  await adapter.open();
  return adapter;
}

/**
 * Runs a one-shot command's libvirt work. A call that timed out still holds a worker thread
 * inside libvirt, and Node cannot exit (not even through process.exit) until that thread
 * returns, which for a hung libvirtd is never. So when that happened, the process ends itself
 * with SIGKILL once its result and error messages are written (exit status 137).
 */
export async function withLibvirt<T>(uri: string, opts: LibvirtOptions, fn: (port: LibvirtPort) => Promise<T>): Promise<T> {
  const adapter = new LibvirtAdapter(uri, opts);
  try {
    await adapter.open();
    return await fn(adapter);
  } finally {
    await adapter.close();
    if (adapter.abandoned > 0) {
      const why = `libvirt at ${uri} stopped answering; a thread is stuck inside it, so ocivirt ends itself (exit 137)`;
      setTimeout(() => {
        process.stderr.write(`ocivirt: ${why}\n`);
        process.kill(process.pid, 'SIGKILL');
      }, 200);
    }
  }
}
