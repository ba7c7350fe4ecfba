/**
 * The daemon's queue of passes: entries the watcher reported, and full resyncs (at start, on
 * SIGHUP, every resyncIntervalSec). One pass at a time; what is reported while it runs waits for
 * the next, so a burst becomes a few passes of at most `maxEntriesPerPass` entries. A pass that
 * fails as a whole (libvirtd gone) puts its work back and nothing runs until `retryMs` later: no
 * busy loop while libvirtd is away.
 */
import { systemClock, type Clock, type Timer } from '../clock.js';
import type { PassScope } from '../reconcile/sync.js';

export interface PassQueueOptions {
  run: (scope: PassScope) => Promise<void>;
  /** A pass failed as a whole; it is tried again after `retryMs`. */
  onFailure: (scope: PassScope, err: unknown, retryMs: number) => void;
  clock?: Clock;
  retryMs?: number;
  maxEntriesPerPass?: number;
}

/**
 * Entries per pass: a burst of 1,000 becomes passes of this many, so what a pass holds (configs,
 * domains, XML) stays small and the heap does not grow with the burst; libvirt sees the same calls.
 */
export const MAX_ENTRIES_PER_PASS = 50;
/** After a pass fails as a whole (libvirtd gone), the next try. */
export const PASS_RETRY_MS = 2_000;

export class PassQueue {
  private entries = new Set<string>();
  private full = false;
  private running: Promise<void> | undefined;
  private retryTimer: Timer | undefined;
  private resyncTimer: Timer | undefined;
  private backingOff = false;
  private stopped = false;
  private readonly clock: Clock;

  constructor(private readonly opts: PassQueueOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  /** A pass over everything, soon. */
  addFull(): void {
    this.full = true;
    this.kick();
  }

  /** A pass over this entry, soon. */
  addEntry(name: string): void {
    this.entries.add(name);
    this.kick();
  }

  /** A full pass every `ms` from now on (replaces the previous schedule). */
  resyncEvery(ms: number): void {
    this.clock.clearTimeout(this.resyncTimer);
    if (this.stopped) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      this.resyncEvery(ms);
      this.addFull();
    }, ms);
  }

  /** The pass running now, if any. */
  get inFlight(): Promise<void> | undefined {
    return this.running;
  }

  /** No pass starts from now on; the one in flight (see `inFlight`) is the caller's to wait for. */
  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.retryTimer);
    this.clock.clearTimeout(this.resyncTimer);
  }

  private kick(): void {
    if (this.running || this.stopped || this.backingOff) return;
    if (!this.full && this.entries.size === 0) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    const max = this.opts.maxEntriesPerPass ?? MAX_ENTRIES_PER_PASS;
    while (!this.stopped && (this.full || this.entries.size > 0)) {
      const full = this.full;
      const entries = new Set<string>();
      if (!full)
        for (const name of this.entries) {
          if (entries.size >= max) break;
          entries.add(name);
        }
      this.full = false;
      if (full) this.entries = new Set();
      else for (const name of entries) this.entries.delete(name);
      const scope: PassScope = full ? 'all' : entries;
      try {
        await this.opts.run(scope);
      } catch (e) {
        const retryMs = this.opts.retryMs ?? PASS_RETRY_MS;
        this.opts.onFailure(scope, e, retryMs);
        if (full) this.full = true;
        for (const n of entries) this.entries.add(n);
        this.clock.clearTimeout(this.retryTimer);
        this.backingOff = true;
        this.retryTimer = this.clock.setTimeout(() => {
          this.backingOff = false;
          this.kick();
        }, retryMs);
        return;
      }
    }
  }
}
