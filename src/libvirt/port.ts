/**
 * The libvirt port: the only view of libvirt the rest of ocivirt has. The adapter over
 * `libvirt-binding` (adapter.ts) is the only module that imports the binding.
 */

export type DomainState = 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended' | 'nostate';

export interface DomainRef {
  name: string;
  uuid: string;
}

/** libvirt's domain lifecycle event types (virDomainEventType), by name. */
export type LifecycleKind =
  | 'defined'
  | 'undefined'
  | 'started'
  | 'suspended'
  | 'resumed'
  | 'stopped'
  | 'shutdown'
  | 'pmsuspended'
  | 'crashed';

export type PortEvent =
  /**
   * A domain's lifecycle changed. `detail` is libvirt's detail for that kind, in lower case:
   * defined: added/updated/renamed/from_snapshot; undefined: removed/renamed; stopped:
   * shutdown/destroyed/crashed/migrated/saved/failed/from_snapshot; started: booted/...
   */
  | { type: 'lifecycle'; name: string; uuid: string; kind: LifecycleKind; detail: string }
  /** Events flow again after the connection was lost: whatever happened meanwhile was not seen. */
  | { type: 'resubscribed' };

/** Resource tuning families libvirt sets per domain (libvirt's typed parameters). */
export type TuningFamily = 'memory' | 'blkio' | 'scheduler';
/** Typed parameters by libvirt's names (memory: hard_limit, soft_limit, swap_hard_limit in KiB; scheduler: cpu_shares, vcpu_period, vcpu_quota; blkio: weight). */
export type TuningParams = Record<string, number | boolean | string>;

export interface NetworkRef {
  name: string;
  uuid: string;
  active: boolean;
}

/** A change to part of a running network's definition (virNetworkUpdate), e.g. a DHCP host entry. */
export interface NetworkUpdate {
  command: 'modify' | 'delete' | 'add-last' | 'add-first';
  /** libvirt's section name in lower case with dashes: 'ip-dhcp-host', 'ip-dhcp-range', 'dns-host', 'portgroup', ... */
  section: string;
  xml: string;
  /** index of the parent element (the n-th <ip>); -1: the first that fits */
  parentIndex?: number;
}

export interface LibvirtPort {
  readonly uri: string;
  /**
   * Calls `listener` for every domain lifecycle event until the returned function is called.
   * The subscription survives reconnects (then a `resubscribed` event says some may be missed).
   */
  watch(listener: (e: PortEvent) => void): () => void;
  /** Every persistent or running domain on the connection. */
  listDomains(): Promise<DomainRef[]>;
  /** The domain, or undefined when there is none of that name. */
  lookup(name: string): Promise<DomainRef | undefined>;
  /** XML of the persistent (inactive) definition: what the reconciler compares. */
  inactiveXml(name: string): Promise<string>;
  /** XML of the running definition (the inactive one when it is not running): what it uses now. */
  liveXml(name: string): Promise<string>;
  /** Defines or redefines; returns the domain as libvirt now knows it. */
  define(xml: string): Promise<DomainRef>;
  undefine(name: string): Promise<void>;
  start(name: string): Promise<void>;
  /** Graceful shutdown; destroy when it has not stopped after `timeoutMs`. */
  stop(name: string, timeoutMs: number): Promise<void>;
  destroy(name: string): Promise<void>;
  state(name: string): Promise<DomainState>;
  /** Sends `signal` to the container's init (its pid 1). */
  sendSignal(name: string, signal: NodeJS.Signals): Promise<void>;
  /** Current tuning: 'live' (running domain) or 'config' (persistent definition). */
  tuning(name: string, family: TuningFamily, scope: 'live' | 'config'): Promise<TuningParams>;
  /** Changes the named parameters only; 'both' changes the running domain and its definition. */
  setTuning(name: string, family: TuningFamily, params: TuningParams, scope: 'live' | 'config' | 'both'): Promise<void>;
  /** The container's console output from now on (and what is still buffered); destroy the stream to detach. */
  openConsole(name: string): Promise<NodeJS.ReadableStream & { destroy(): void }>;
  /** The network, or undefined when there is none of that name. */
  lookupNetwork(name: string): Promise<NetworkRef | undefined>;
  networkXml(name: string): Promise<string>;
  defineNetwork(xml: string): Promise<NetworkRef>;
  startNetwork(name: string): Promise<void>;
  destroyNetwork(name: string): Promise<void>;
  undefineNetwork(name: string): Promise<void>;
  /** Applies `update` to the running network and its definition (if it has one and is running; else to the definition). */
  updateNetwork(name: string, update: NetworkUpdate): Promise<void>;
  close(): Promise<void>;
}

/** libvirtd does not answer (gone, restarting, hung): retry later; the port reconnects by itself. */
export class LibvirtUnavailableError extends Error {
  override name = 'LibvirtUnavailableError';
}

/** A libvirt call failed; `code` and `domain` are libvirt's virErrorNumber and virErrorDomain. */
export class LibvirtCallError extends Error {
  override name = 'LibvirtCallError';
  constructor(
    message: string,
    readonly code: number,
    readonly domain: number,
  ) {
    super(message);
  }
}

/** The domain named does not exist (libvirt's VIR_ERR_NO_DOMAIN), e.g. undefined meanwhile. */
export class DomainNotFoundError extends LibvirtCallError {
  override name = 'DomainNotFoundError';
}

/** The network named does not exist (libvirt's VIR_ERR_NO_NETWORK). */
export class NetworkNotFoundError extends LibvirtCallError {
  override name = 'NetworkNotFoundError';
}
