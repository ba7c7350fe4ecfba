/**
 * An in-memory LibvirtPort for unit tests of the reconciler, the daemon's pass queue and the
 * exporter: domains kept as their XML, every call recorded, and faults injected per method and
 * domain (libvirtd unavailable, a call that never answers, a domain not found, a define refused).
 * Errors look as the adapter reports them, so the code under test classifies them as it would.
 *
 * Extending it for a new port method: add the method, run its body through `this.call(...)`.
 */
import { randomUUID } from 'node:crypto';
import { sleep, systemClock, type Clock } from '../../src/clock.js';
import { LibvirtUnavailableError, type DomainRef, type DomainState, type LibvirtPort } from '../../src/libvirt/port.js';

export type Fault = 'unavailable' | 'hang' | 'notfound' | 'refused';
export type PortMethod = Exclude<keyof LibvirtPort, 'uri'>;

export interface FakeDomain {
  name: string;
  uuid: string;
  /** The persistent definition (undefined: transient, gone once it stops). */
  xml: string | undefined;
  /** The definition it runs with (set at start). */
  liveXml: string | undefined;
  state: DomainState;
  /** A graceful shutdown is ignored: stop waits its whole timeout, then destroys. */
  ignoresShutdown?: boolean;
}

interface Injected {
  method: PortMethod;
  fault: Fault;
  name: string | undefined;
  times: number;
}

export interface Call {
  method: PortMethod;
  name: string | undefined;
}

/** A call that never answered: it rejects (as the adapter's call timeout would) on release(). */
interface Hung {
  call: Call;
  release: () => void;
}

export class FakeLibvirt implements LibvirtPort {
  readonly uri = 'fake:///';
  readonly domains = new Map<string, FakeDomain>();
  readonly calls: Call[] = [];
  private readonly faults: Injected[] = [];
  private readonly hung = new Set<Hung>();
  private readonly listeners = new Set<() => void>();
  closed = false;

  constructor(private readonly clock: Clock = systemClock) {}

  /** The next `times` calls (default: every one) of `method`, about `name` when given, fail with `fault`. */
  inject(method: PortMethod, fault: Fault, opts: { name?: string; times?: number } = {}): void {
    this.faults.push({ method, fault, name: opts.name, times: opts.times ?? Infinity });
  }

  /** Drops every injected fault (calls already hanging stay so until released). */
  heal(): void {
    this.faults.length = 0;
  }

  /** Calls hanging now. */
  get hanging(): Call[] {
    return [...this.hung].map((h) => h.call);
  }

  /** Every hanging call fails now, as the adapter's call timeout makes it. */
  releaseHung(): void {
    for (const h of [...this.hung]) h.release();
  }

  /** Resolves once `pred` holds (checked as each call starts and as it answers). */
  waitFor(pred: (calls: readonly Call[]) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!pred(this.calls)) return;
        this.listeners.delete(check);
        resolve();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** How many calls of `method` (about `name`, when given) were made. */
  count(method: PortMethod, name?: string): number {
    return this.calls.filter((c) => c.method === method && (name === undefined || c.name === name)).length;
  }

  /** A domain as if defined by someone else (or earlier). */
  add(d: Partial<FakeDomain> & { name: string; xml: string }): FakeDomain {
    const dom: FakeDomain = { uuid: randomUUID(), liveXml: undefined, state: 'shutoff', ...d };
    this.domains.set(d.name, dom);
    return dom;
  }

  listDomains(): Promise<DomainRef[]> {
    return this.call('listDomains', undefined, async () => [...this.domains.values()].map(refOf));
  }

  lookup(name: string): Promise<DomainRef | undefined> {
    return this.call('lookup', name, async () => {
      const d = this.domains.get(name);
      return d && refOf(d);
    });
  }

  inactiveXml(name: string): Promise<string> {
    return this.call('inactiveXml', name, async () => {
      const d = this.get('inactive XML of', name);
      return d.xml ?? d.liveXml!;
    });
  }

  liveXml(name: string): Promise<string> {
    return this.call('liveXml', name, async () => {
      const d = this.get('live XML of', name);
      return d.state === 'running' ? d.liveXml! : d.xml!;
    });
  }

  define(xml: string): Promise<DomainRef> {
    const name = /<name>([^<]*)<\/name>/.exec(xml)?.[1];
    return this.call('define', name, async () => {
      if (name === undefined) throw new Error('define: XML error: missing domain name');
      const uuid = /<uuid>([^<]*)<\/uuid>/.exec(xml)?.[1];
      const old = this.domains.get(name);
      if (old !== undefined && uuid !== undefined && old.uuid !== uuid)
        throw new Error(`define: operation failed: domain '${name}' already exists with uuid ${old.uuid}`);
      const d = old ?? { name, uuid: uuid ?? randomUUID(), xml, liveXml: undefined, state: 'shutoff' as DomainState };
      d.xml = xml;
      this.domains.set(name, d);
      return refOf(d);
    });
  }

  undefine(name: string): Promise<void> {
    return this.call('undefine', name, async () => {
      const d = this.get('undefine', name);
      if (d.state === 'shutoff') this.domains.delete(name);
      else d.xml = undefined; // transient until it stops
    });
  }

  start(name: string): Promise<void> {
    return this.call('start', name, async () => {
      const d = this.get('start', name);
      if (d.state === 'running') throw new Error(`start ${name}: Requested operation is not valid: domain is already running`);
      d.state = 'running';
      d.liveXml = d.xml;
    });
  }

  stop(name: string, timeoutMs: number): Promise<void> {
    return this.call('stop', name, async () => {
      const d = this.domains.get(name);
      if (d === undefined || d.state === 'shutoff') return;
      if (d.ignoresShutdown) await sleep(this.clock, timeoutMs);
      this.halt(d);
    });
  }

  destroy(name: string): Promise<void> {
    return this.call('destroy', name, async () => {
      const d = this.get('destroy', name);
      if (d.state !== 'running') throw new Error(`destroy ${name}: Requested operation is not valid: domain is not running`);
      this.halt(d);
    });
  }

  state(name: string): Promise<DomainState> {
    return this.call('state', name, async () => this.get('state of', name).state);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private halt(d: FakeDomain): void {
    d.state = 'shutoff';
    d.liveXml = undefined;
    if (d.xml === undefined) this.domains.delete(d.name);
  }

  private get(what: string, name: string): FakeDomain {
    const d = this.domains.get(name);
    if (d === undefined) throw notFound(what, name);
    return d;
  }

  /** Records the call, applies the first matching fault, else runs `body`. */
  private async call<T>(method: PortMethod, name: string | undefined, body: () => Promise<T>): Promise<T> {
    const call = { method, name };
    this.calls.push(call);
    this.notify();
    try {
      return await this.answer(call, body);
    } finally {
      this.notify();
    }
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private async answer<T>(call: Call, body: () => Promise<T>): Promise<T> {
    const { method, name } = call;
    const fault = this.faults.find((f) => f.method === method && f.times > 0 && (f.name === undefined || f.name === name));
    if (fault === undefined) return body();
    fault.times -= 1;
    const what = `${method}${name !== undefined ? ` ${name}` : ''}`;
    switch (fault.fault) {
      case 'unavailable':
        throw new LibvirtUnavailableError(`${what}: connection to libvirt at ${this.uri} lost: Cannot write data: Broken pipe (injected)`);
      case 'notfound':
        if (method === 'lookup') return undefined as T; // the port's answer for "no such domain"
        throw notFound(what, name ?? '');
      case 'refused':
        throw new Error(`${what}: operation failed: refused (injected)`);
      case 'hang':
        return new Promise<T>((_, reject) => {
          const h: Hung = {
            call,
            release: () => {
              this.hung.delete(h);
              reject(new LibvirtUnavailableError(`${what}: no answer from libvirt (injected hang)`));
            },
          };
          this.hung.add(h);
        });
    }
  }
}

function refOf(d: FakeDomain): DomainRef {
  return { name: d.name, uuid: d.uuid };
}

function notFound(what: string, name: string): Error {
  return new Error(`${what}: Domain not found: no domain with matching name '${name}'`);
}
