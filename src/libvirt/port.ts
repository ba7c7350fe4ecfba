/**
 * The libvirt port: the only view of libvirt the rest of ocivirt has. The adapter over
 * `@unraid/libvirt` (adapter.ts) is the only module that imports the binding.
 */

export type DomainState = 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended' | 'nostate';

export interface DomainRef {
  name: string;
  uuid: string;
}

export interface LibvirtPort {
  readonly uri: string;
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
  close(): Promise<void>;
}

/** libvirtd does not answer (gone, restarting, hung): retry later; the port reconnects by itself. */
export class LibvirtUnavailableError extends Error {
  override name = 'LibvirtUnavailableError';
}
