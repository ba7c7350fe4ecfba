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
import { PassThrough } from 'node:stream';
import {
  DomainNotFoundError,
  LibvirtCallError,
  LibvirtUnavailableError,
  NetworkNotFoundError,
  type DomainRef,
  type DomainState,
  type LibvirtPort,
  type LifecycleKind,
  type NetworkRef,
  type NetworkUpdate,
  type PortEvent,
  type TuningFamily,
  type TuningParams,
} from '../../src/libvirt/port.js';

export type Fault = 'unavailable' | 'hang' | 'notfound' | 'refused';
export type PortMethod = Exclude<keyof LibvirtPort, 'uri' | 'watch'>;

export interface FakeDomain {
  name: string;
  uuid: string;
  /** The persistent definition (undefined: transient, gone once it stops). */
  xml: string | undefined;
  /** The definition it runs with (set at start). */
  liveXml: string | undefined;
  state: DomainState;
  /** A graceful shutdown is ignored: stop waits its whole timeout, then destroys; so is every signal but SIGKILL. */
  ignoresShutdown?: boolean;
  /** The signals its init stops on (shut off as the signal arrives); undefined: every signal. SIGKILL always stops it. */
  stopsOn?: NodeJS.Signals[];
  /** Not even SIGKILL stops it (an init stuck in the kernel): only destroy does. */
  survivesKill?: boolean;
  /** Signals sent to its init, in order. */
  signals?: NodeJS.Signals[];
  /** Tuning by family, one set for the running domain and one for its definition. */
  tuning?: { live: Partial<Record<TuningFamily, TuningParams>>; config: Partial<Record<TuningFamily, TuningParams>> };
  /** What its console shows when opened. */
  console?: string;
}

export interface FakeNetwork {
  name: string;
  uuid: string;
  xml: string;
  active: boolean;
  updates: NetworkUpdate[];
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
  readonly networks = new Map<string, FakeNetwork>();
  private readonly watchers = new Set<(e: PortEvent) => void>();
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
      const updated = old?.xml !== undefined;
      d.xml = xml;
      this.domains.set(name, d);
      this.lifecycle(d, 'defined', updated ? 'updated' : 'added');
      return refOf(d);
    });
  }

  undefine(name: string): Promise<void> {
    return this.call('undefine', name, async () => {
      const d = this.get('undefine', name);
      if (d.state === 'shutoff') this.domains.delete(name);
      else d.xml = undefined; // transient until it stops
      this.lifecycle(d, 'undefined', 'removed');
    });
  }

  start(name: string): Promise<void> {
    return this.call('start', name, async () => {
      const d = this.get('start', name);
      if (d.state === 'running') throw new Error(`start ${name}: Requested operation is not valid: domain is already running`);
      d.state = 'running';
      d.liveXml = d.xml;
      this.lifecycle(d, 'started', 'booted');
    });
  }

  stop(name: string, timeoutMs: number): Promise<void> {
    return this.call('stop', name, async () => {
      const d = this.domains.get(name);
      if (d === undefined || d.state === 'shutoff') return;
      if (d.ignoresShutdown) await sleep(this.clock, timeoutMs);
      this.halt(d, d.ignoresShutdown ? 'destroyed' : 'shutdown');
    });
  }

  destroy(name: string): Promise<void> {
    return this.call('destroy', name, async () => {
      const d = this.get('destroy', name);
      if (d.state !== 'running') throw new Error(`destroy ${name}: Requested operation is not valid: domain is not running`);
      this.halt(d, 'destroyed');
    });
  }

  state(name: string): Promise<DomainState> {
    return this.call('state', name, async () => this.get('state of', name).state);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private halt(d: FakeDomain, detail: string): void {
    d.state = 'shutoff';
    d.liveXml = undefined;
    if (d.xml === undefined) this.domains.delete(d.name);
    this.lifecycle(d, 'stopped', detail);
  }

  watch(listener: (e: PortEvent) => void): () => void {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  /** Delivers `e` to every watcher, as libvirt's event loop would (e.g. a change made by someone else). */
  emit(e: PortEvent): void {
    for (const w of [...this.watchers]) w(e);
  }

  private lifecycle(d: FakeDomain, kind: LifecycleKind, detail: string): void {
    this.emit({ type: 'lifecycle', name: d.name, uuid: d.uuid, kind, detail });
  }

  sendSignal(name: string, signal: NodeJS.Signals): Promise<void> {
    return this.call('sendSignal', name, async () => {
      const d = this.get(`signal ${signal} to`, name);
      if (d.state !== 'running') throw new Error(`signal ${signal} to ${name}: Requested operation is not valid: domain is not running`);
      (d.signals ??= []).push(signal);
      const stops = (signal === 'SIGKILL' && d.survivesKill !== true) || (!d.ignoresShutdown && (d.stopsOn === undefined || d.stopsOn.includes(signal)));
      if (stops) this.halt(d, 'shutdown');
    });
  }

  tuning(name: string, family: TuningFamily, scope: 'live' | 'config'): Promise<TuningParams> {
    return this.call('tuning', name, async () => {
      const d = this.get(`${family} tuning of`, name);
      return { ...(d.tuning?.[scope][family] ?? {}) };
    });
  }

  setTuning(name: string, family: TuningFamily, params: TuningParams, scope: 'live' | 'config' | 'both'): Promise<void> {
    return this.call('setTuning', name, async () => {
      const d = this.get(`set ${family} tuning of`, name);
      d.tuning ??= { live: {}, config: {} };
      for (const s of scope === 'both' ? (['live', 'config'] as const) : [scope]) d.tuning[s][family] = { ...d.tuning[s][family], ...params };
    });
  }

  openConsole(name: string): Promise<PassThrough> {
    return this.call('openConsole', name, async () => {
      const d = this.get('console of', name);
      const out = new PassThrough();
      if (d.console) out.write(d.console);
      return out;
    });
  }

  lookupNetwork(name: string): Promise<NetworkRef | undefined> {
    return this.call('lookupNetwork', name, async () => {
      const n = this.networks.get(name);
      return n && { name: n.name, uuid: n.uuid, active: n.active };
    });
  }

  networkXml(name: string): Promise<string> {
    return this.call('networkXml', name, async () => this.net('XML of network', name).xml);
  }

  defineNetwork(xml: string): Promise<NetworkRef> {
    const name = /<name>([^<]*)<\/name>/.exec(xml)?.[1];
    return this.call('defineNetwork', name, async () => {
      if (name === undefined) throw new Error('define network: XML error: missing network name');
      const n = this.networks.get(name) ?? { name, uuid: randomUUID(), xml, active: false, updates: [] };
      n.xml = xml;
      this.networks.set(name, n);
      return { name, uuid: n.uuid, active: n.active };
    });
  }

  startNetwork(name: string): Promise<void> {
    return this.call('startNetwork', name, async () => void (this.net('start network', name).active = true));
  }

  destroyNetwork(name: string): Promise<void> {
    return this.call('destroyNetwork', name, async () => void (this.net('destroy network', name).active = false));
  }

  undefineNetwork(name: string): Promise<void> {
    return this.call('undefineNetwork', name, async () => {
      this.net('undefine network', name);
      this.networks.delete(name);
    });
  }

  updateNetwork(name: string, update: NetworkUpdate): Promise<void> {
    return this.call('updateNetwork', name, async () => {
      const n = this.net('update network', name);
      if (update.section === 'dns-host') n.xml = updateDnsHost(n.xml, update, name);
      n.updates.push(update);
    });
  }

  private net(what: string, name: string): FakeNetwork {
    const n = this.networks.get(name);
    if (n === undefined) throw new NetworkNotFoundError(`${what} ${name}: Network not found: no network with matching name '${name}'`, 43, 19);
    return n;
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

/** As the adapter reports libvirt's VIR_ERR_NO_DOMAIN (code 42, from VIR_FROM_DOM = 6). */
function notFound(what: string, name: string): Error {
  return new DomainNotFoundError(`${what}: Domain not found: no domain with matching name '${name}'`, 42, 6);
}

/**
 * A `dns-host` update as libvirt 9 applies it (virNetworkDefUpdateDNSHost): an add is refused when
 * any entry has the same address or one of the names; a delete removes the one entry matching by
 * address or by a name (none or several: refused); modify is refused.
 */
function updateDnsHost(xml: string, update: NetworkUpdate, network: string): string {
  const parse = (h: string) => ({ ip: /ip='([^']*)'|ip="([^"]*)"/.exec(h)?.slice(1).find((x) => x !== undefined), names: [...h.matchAll(/<hostname>([^<]*)<\/hostname>/g)].map((m) => m[1]!) });
  const hosts = [...xml.matchAll(/<host\b[^>]*?(?:\/>|>[\s\S]*?<\/host>)/g)].map((m) => m[0]);
  const given = parse(update.xml);
  const matches = hosts.filter((h) => {
    const x = parse(h);
    return (given.ip !== undefined && x.ip === given.ip) || given.names.some((n) => x.names.includes(n));
  });
  const fail = (msg: string) => new LibvirtCallError(`update network ${network}: ${msg}`, 55, 19);
  if (update.command === 'modify') throw fail('DNS HOST records cannot be modified, only added or deleted');
  if (update.command === 'delete') {
    if (matches.length === 0) throw fail(`couldn't locate a matching DNS HOST record in network ${network}`);
    if (matches.length > 1) throw fail(`multiple matching DNS HOST records were found in network ${network}`);
    return xml.replace(matches[0]!, '');
  }
  if (given.ip === undefined || !given.names.length) throw fail('Missing IP address or hostname in network DNS HOST record');
  if (matches.length) throw fail(`there is already at least one DNS HOST record with a matching field in network ${network}`);
  if (!/<dns\b/.test(xml)) xml = xml.replace('</network>', '<dns></dns></network>');
  xml = xml.replace(/<dns([^>]*)\/>/, '<dns$1></dns>');
  return update.command === 'add-first' ? xml.replace(/<dns([^>]*)>/, `<dns$1>${update.xml}`) : xml.replace('</dns>', `${update.xml}</dns>`);
}
