/**
 * The LibvirtPort over `@unraid/libvirt`: the only module that imports the binding.
 *
 * Connection handling, as measured on libvirt 9 with this binding:
 * - Every call runs on a libuv worker thread, so a dead libvirtd never blocks the event loop.
 *   A killed libvirtd makes calls fail at once ("Cannot write data: Broken pipe", then "client
 *   socket is closed"); the old connection never recovers, so a new one is opened.
 * - A libvirtd that accepts but never answers (hung, stopped) blocks the worker thread for good
 *   (the binding registers no event loop, so no keepalive). Every call therefore races a timeout,
 *   and while the connection is down at most one reconnect attempt is in flight: the other calls
 *   fail fast instead of parking more worker threads.
 * - The binding rejects with a message only (no error code), so "not found" and "connection
 *   lost" are recognised by libvirt's message text.
 * - A binding Domain frees its virDomainPtr when garbage-collected, while a worker thread may
 *   still be using it (seen as "invalid domain pointer" under load): every Domain is pinned
 *   until the calls that use it have finished.
 */
import { Hypervisor, DomainGetXMLDescFlags, DomainState as BindingState, type Domain } from '@unraid/libvirt';
import { silentLogger, type EventLogger } from '../log.js';
import { LibvirtUnavailableError, type DomainRef, type DomainState, type LibvirtPort } from './port.js';

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

const STATES: Record<number, DomainState> = {
  [BindingState.NOSTATE]: 'nostate',
  [BindingState.RUNNING]: 'running',
  [BindingState.BLOCKED]: 'blocked',
  [BindingState.PAUSED]: 'paused',
  [BindingState.SHUTDOWN]: 'shutdown',
  [BindingState.SHUTOFF]: 'shutoff',
  [BindingState.CRASHED]: 'crashed',
  [BindingState.PMSUSPENDED]: 'pmsuspended',
};

/** libvirt's messages for a connection that is gone or was never made. */
const CONNECTION_LOST =
  /client socket is closed|Cannot (write|recv) data|End of file while reading|Broken pipe|Connection reset|invalid connection pointer|Failed to connect socket|Unable to connect|no connection driver/i;
const NOT_FOUND = /Domain not found|no domain with matching/i;

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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

class LibvirtAdapter implements LibvirtPort {
  private hv: Hypervisor | undefined;
  private connecting: Promise<Hypervisor> | undefined;
  private failedAttempts = 0;
  private nextAttemptAt = 0;
  private lostReason: string | undefined;
  private closed = false;
  /** Calls given up on after their timeout: each still holds a worker thread inside libvirt. */
  abandoned = 0;
  /** Domains in use by calls in flight (see the note on garbage collection above). */
  private readonly pinned = new Set<Domain>();
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

  async open(): Promise<void> {
    const hv = new Hypervisor({ uri: this.uri });
    try {
      await withTimeout(hv.connectOpen(), this.connectTimeoutMs, 'connect');
    } catch (e) {
      if (e instanceof TimeoutError) this.abandoned += 1;
      throw new LibvirtUnavailableError(
        `cannot connect to libvirt at ${this.uri}: ${messageOf(e)} (is libvirtd running? scripts/setup-libvirt.sh starts it)`,
      );
    }
    this.hv = hv;
    this.log.info('libvirt.connected', { uri: this.uri });
  }

  /** The live connection; reconnects when the backoff allows, otherwise fails at once. */
  private connection(): Promise<Hypervisor> {
    if (this.closed) return Promise.reject(new Error(`libvirt connection to ${this.uri} is closed`));
    if (this.hv) return Promise.resolve(this.hv);
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

  private async reconnect(): Promise<Hypervisor> {
    const hv = new Hypervisor({ uri: this.uri });
    try {
      await withTimeout(hv.connectOpen(), this.connectTimeoutMs, 'connect');
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
    this.hv = hv;
    return hv;
  }

  /** Forget a connection that failed; the next call opens a new one. */
  private lose(hv: Hypervisor, reason: string, hung: boolean): void {
    if (this.hv !== hv) return;
    this.hv = undefined;
    this.lostReason = reason;
    this.nextAttemptAt = 0;
    this.log.warn('libvirt.disconnected', { uri: this.uri, err: reason });
    // closing a hung connection would park one more worker thread; a broken one closes at once
    if (!hung) hv.connectClose().catch(() => undefined);
  }

  /**
   * Runs one binding call. Reads (`retry`) are repeated once on a fresh connection when the
   * first attempt found the connection gone, so a libvirtd restart between passes is invisible.
   */
  private async call<T>(what: string, fn: (hv: Hypervisor) => Promise<T>, retry = false): Promise<T> {
    const hv = await this.connection();
    try {
      return await withTimeout(fn(hv), this.callTimeoutMs, what);
    } catch (e) {
      const msg = messageOf(e);
      const hung = e instanceof TimeoutError;
      if (hung) this.abandoned += 1;
      if (!hung && !CONNECTION_LOST.test(msg)) throw new Error(`${what}: ${msg}`);
      this.lose(hv, msg, hung);
      if (retry && !hung) return this.call(what, fn, false);
      throw new LibvirtUnavailableError(`${what}: connection to libvirt at ${this.uri} lost: ${msg}`);
    }
  }

  /** Runs `fn` on a Domain kept reachable until it has finished. */
  private async pin<T>(d: Domain, fn: (d: Domain) => Promise<T>): Promise<T> {
    this.pinned.add(d);
    try {
      return await fn(d);
    } finally {
      this.pinned.delete(d);
    }
  }

  private async withDomain<T>(hv: Hypervisor, name: string, fn: (d: Domain) => Promise<T>): Promise<T> {
    return this.pin(await hv.domainLookupByName(name), fn);
  }

  private refOf(d: Domain): Promise<DomainRef> {
    return this.pin(d, async () => ({ name: await d.getName(), uuid: await d.getUUIDString() }));
  }

  async listDomains(): Promise<DomainRef[]> {
    return this.call(
      'list domains',
      async (hv) => {
        // ACTIVE | INACTIVE: persistent and transient, running or not
        const domains = await hv.connectListAllDomains();
        return Promise.all(domains.map((d) => this.refOf(d)));
      },
      true,
    );
  }

  async lookup(name: string): Promise<DomainRef | undefined> {
    try {
      return await this.call(
        `lookup ${name}`,
        async (hv) => this.refOf(await hv.domainLookupByName(name)),
        true,
      );
    } catch (e) {
      if (NOT_FOUND.test(messageOf(e))) return undefined;
      throw e;
    }
  }

  inactiveXml(name: string): Promise<string> {
    return this.call(
      `inactive XML of ${name}`,
      (hv) => this.withDomain(hv, name, (d) => hv.domainGetXMLDesc(d, DomainGetXMLDescFlags.INACTIVE)),
      true,
    );
  }

  liveXml(name: string): Promise<string> {
    return this.call(
      `live XML of ${name}`,
      (hv) => this.withDomain(hv, name, (d) => hv.domainGetXMLDesc(d)),
      true,
    );
  }

  define(xml: string): Promise<DomainRef> {
    return this.call('define', async (hv) => this.refOf(await hv.domainDefineXML(xml)));
  }

  undefine(name: string): Promise<void> {
    return this.call(`undefine ${name}`, (hv) => this.withDomain(hv, name, (d) => hv.domainUndefine(d)));
  }

  start(name: string): Promise<void> {
    return this.call(`start ${name}`, (hv) => this.withDomain(hv, name, (d) => hv.domainCreate(d)));
  }

  destroy(name: string): Promise<void> {
    return this.call(`destroy ${name}`, (hv) => this.withDomain(hv, name, (d) => hv.domainDestroy(d)));
  }

  state(name: string): Promise<DomainState> {
    return this.call(
      `state of ${name}`,
      (hv) => this.withDomain(hv, name, async (d) => STATES[(await hv.domainGetInfo(d)).state] ?? 'nostate'),
      true,
    );
  }

  /** A domain undefined while running is transient and vanishes when it stops: that is stopped too. */
  private async stateOrGone(name: string): Promise<DomainState | 'gone'> {
    try {
      return await this.state(name);
    } catch (e) {
      if (NOT_FOUND.test(messageOf(e))) return 'gone';
      throw e;
    }
  }

  async stop(name: string, timeoutMs: number): Promise<void> {
    const initial = await this.stateOrGone(name);
    if (initial === 'shutoff' || initial === 'gone') return;
    try {
      await this.call(`shutdown ${name}`, (hv) => this.withDomain(hv, name, (d) => hv.domainShutdown(d)));
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
    const hv = this.hv;
    this.hv = undefined;
    if (hv) await withTimeout(hv.connectClose(), this.connectTimeoutMs, 'close').catch(() => undefined);
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
