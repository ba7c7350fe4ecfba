/**
 * Watches the spool and says "look at entry X again", once per change, only when X is complete
 * (see complete.ts) or gone. Level-triggered: the message carries no detail; whoever listens
 * recomputes what X means. Per entry, bursts of file events collapse into one check, and checks
 * of one entry never overlap.
 *
 * chokidar watches the spool and one level inside each entry (config.json, rootfs/, index.json),
 * which is where a definition changes; deeper files are reached by the completeness walk only
 * while an entry is still settling, so 1,000 entries cost about 1,000 inotify watches, not one
 * per rootfs directory.
 */
import { watch, type FSWatcher } from 'chokidar';
import { join, relative, sep } from 'node:path';
import { snapshotEntry } from './complete.js';

export interface SpoolWatcherOptions {
  /** How long a copied-in entry must stay unchanged before it is reported. */
  quietMs: number;
  /** Called with the entry's name (top-level item in the spool): look at it again. */
  onEntry: (name: string) => void;
  onError?: (err: unknown) => void;
  /** Called after every look at an entry, with what it concluded (for tests and tracing). */
  onCheck?: (name: string, outcome: CheckOutcome) => void;
  /** Report the entries already in the spool too (default false: the daemon's resync covers them). */
  includeExisting?: boolean;
}

/**
 * What one look at an entry concluded: reported; nothing new to report (unchanged since the last
 * report, or gone and already reported gone); still settling (looked at again after the quiet time).
 */
export type CheckOutcome = 'reported' | 'unchanged' | 'settling';

/** File events within this window are one burst (a rename-in reports the entry and its children). */
const COALESCE_MS = 5;

interface EntryState {
  timer: NodeJS.Timeout | undefined;
  checking: boolean;
  /** An event arrived while a check was running: check again after it. */
  dirty: boolean;
  /** The signature seen first in the current quiet window, and when. */
  quiet: { signature: string; since: number } | undefined;
  /** The signature last reported, so repeated events for an unchanged entry say nothing. */
  reported: string | undefined;
  /** Someone asked to hear about this entry once it is complete, changed or not (recheck). */
  owed: boolean;
}

export class SpoolWatcher {
  private readonly entries = new Map<string, EntryState>();
  private closed = false;
  private quietMs: number;

  private constructor(
    readonly dir: string,
    private readonly watcher: FSWatcher,
    private readonly opts: SpoolWatcherOptions,
  ) {
    this.quietMs = opts.quietMs;
  }

  /** Resolves once chokidar has read the spool (events from then on are seen). */
  static async start(dir: string, opts: SpoolWatcherOptions): Promise<SpoolWatcher> {
    const topName = (p: string): string | undefined => {
      const rel = relative(dir, p);
      if (rel === '' || rel.startsWith('..')) return undefined;
      return rel.split(sep)[0];
    };
    const watcher = watch(dir, {
      depth: 1,
      followSymlinks: false,
      ignoreInitial: !opts.includeExisting,
      // atomic (rename-over detection) would hold every unlink back 100 ms; level-triggered
      // checks do not need it.
      atomic: false,
      ignored: (p: string) => topName(p)?.startsWith('.') === true,
    });
    const self = new SpoolWatcher(dir, watcher, opts);
    watcher.on('all', (_event, path) => {
      const name = topName(path);
      if (name !== undefined) self.touch(name);
    });
    watcher.on('error', (e) => opts.onError?.(e));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    return self;
  }

  setQuietMs(ms: number): void {
    this.quietMs = ms;
  }

  /** Entries seen changing and not yet reported complete: a full resync must leave them alone. */
  unsettled(): Set<string> {
    const out = new Set<string>();
    for (const [name, s] of this.entries) if (s.quiet !== undefined || s.checking || s.timer !== undefined) out.add(name);
    return out;
  }

  /** Asks for a look at `name` as if a file event had come (used for entries found by a resync). */
  touch(name: string): void {
    if (this.closed || name.startsWith('.') || name.includes('/')) return;
    let s = this.entries.get(name);
    if (s === undefined) {
      s = { timer: undefined, checking: false, dirty: false, quiet: undefined, reported: undefined, owed: false };
      this.entries.set(name, s);
    }
    if (s.checking) {
      s.dirty = true;
      return;
    }
    this.schedule(name, s, COALESCE_MS);
  }

  /**
   * Report `name` once it is complete (or gone) even if it ends up as it was: for a listener
   * that skipped the entry because it looked unsettled while a burst of events was checked.
   */
  recheck(name: string): void {
    this.touch(name);
    const s = this.entries.get(name);
    if (s) s.owed = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.entries.values()) clearTimeout(s.timer);
    await this.watcher.close();
  }

  private schedule(name: string, s: EntryState, delayMs: number): void {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      s.timer = undefined;
      void this.check(name, s);
    }, delayMs);
  }

  private async check(name: string, s: EntryState): Promise<void> {
    if (this.closed) return;
    s.checking = true;
    let next: number | undefined;
    let reported = false;
    try {
      const snap = await snapshotEntry(join(this.dir, name));
      if (this.closed) return;
      if (!snap.exists) {
        s.quiet = undefined;
        if (s.reported !== '' || s.owed) reported = this.report(name, s, '');
        if (!s.dirty) this.entries.delete(name);
      } else if (snap.whole) {
        s.quiet = undefined;
        if (snap.signature !== s.reported || s.owed) reported = this.report(name, s, snap.signature);
      } else if (snap.signature === s.reported) {
        s.quiet = undefined;
        if (s.owed) reported = this.report(name, s, snap.signature);
      } else {
        const now = Date.now();
        if (s.quiet === undefined || s.quiet.signature !== snap.signature) s.quiet = { signature: snap.signature, since: now };
        const waited = now - s.quiet.since;
        if (waited >= this.quietMs) {
          s.quiet = undefined;
          reported = this.report(name, s, snap.signature);
        } else next = this.quietMs - waited;
      }
    } catch (e) {
      this.opts.onError?.(e);
      next = this.quietMs;
    } finally {
      s.checking = false;
    }
    if (this.closed) return;
    this.opts.onCheck?.(name, reported ? 'reported' : next === undefined ? 'unchanged' : 'settling');
    if (s.dirty) {
      s.dirty = false;
      this.schedule(name, s, COALESCE_MS);
    } else if (next !== undefined) this.schedule(name, s, next);
  }

  private report(name: string, s: EntryState, signature: string): true {
    s.reported = signature;
    s.owed = false;
    try {
      this.opts.onEntry(name);
    } catch (e) {
      this.opts.onError?.(e);
    }
    return true;
  }
}
