/**
 * Keeps `<export>/<domain>/config.json` in step with libvirt's persistent definitions.
 *
 * Changes are learnt from libvirt's domain lifecycle events (the port's `watch`): `virsh define`,
 * `virsh edit` and undefine raise `defined` / `undefined`, and each names the domain to export.
 * `memtune --config` (and other `--config` changes) raise no event on libvirt 9, so the
 * definitions directory stays a second hint: the local driver rewrites `<definitionsDir>/<name>.xml`
 * on every change, and one fs.watch on it costs nothing while idle. A hint only names a domain;
 * its XML is always read through the libvirt port (the files are libvirt's private state, not an
 * interface). A slow full pass over every domain is the safety net for hints that never come
 * (events missed while libvirtd restarted: the port says so and a pass follows; remote URIs
 * without the directory). libvirt creates the directory with its first definition, so on a fresh
 * machine it is not there yet: a watch that cannot start (or fails later) is tried again with
 * backoff, and a full pass follows once it works. Nothing is rewritten when the config it would
 * write means the same as the one there.
 */
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { errorMessage } from '../errors.js';
import type { LibvirtPort, PortEvent } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import { exportableName, exportDomain } from './export-domain.js';
import { ensureOwnDirectory, exportedNames, moveExportAside } from './write.js';

export interface ExporterOptions {
  port: LibvirtPort;
  exportDir: string;
  /** libvirt's persistent definitions directory (lxc:///: /etc/libvirt/lxc); undefined: full passes only. */
  definitionsDir: string | undefined;
  exportAllDomains: boolean;
  /** ocivirt's domain name prefix: managed domains without it belong to another instance. */
  prefix?: string;
  checkIntervalMs: number;
  log: EventLogger;
  /** libvirt writes `<name>.xml.new` then renames it: one change is several events. */
  debounceMs?: number;
  /** Debounce and pass timers run on it (a fake one in tests). */
  clock?: Clock;
  /** First and longest wait before watching the definitions directory again after a failure. */
  watchRetryMs?: { first: number; max: number };
}

const DEFAULT_DEBOUNCE_MS = 100;
const DEFAULT_WATCH_RETRY_MS = { first: 1000, max: 30_000 };
/** Domains exported at once in a full pass: libvirt answers one connection's calls in order anyway. */
const PASS_CONCURRENCY = 8;

export class Exporter {
  /** Canonical config last written or found, per domain, so unchanged domains cost no disk I/O. */
  private readonly last = new Map<string, string>();
  private readonly timers = new Map<string, Timer>();
  /** Per-domain queue: one export of a domain at a time, and one more queued at most. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private fsWatcher: FSWatcher | undefined;
  private unwatchEvents: (() => void) | undefined;
  private watchRetryTimer: Timer | undefined;
  /** Wait before the next watch attempt; undefined while the watch works (or was never tried). */
  private watchRetryMs: number | undefined;
  private passTimer: Timer | undefined;
  private passRunning: Promise<void> | undefined;
  private stopped = false;
  private readonly clock: Clock;

  constructor(private opts: ExporterOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  async start(): Promise<void> {
    await ensureOwnDirectory(this.opts.exportDir);
    this.unwatchEvents = this.opts.port.watch((e) => this.onEvent(e));
    this.watchDefinitions();
    await this.fullPass();
    this.schedulePass();
  }

  /** New settings (SIGHUP): export-all and the interval apply from the next pass. */
  update(changes: Pick<ExporterOptions, 'exportAllDomains' | 'checkIntervalMs'>): void {
    const widened = changes.exportAllDomains && !this.opts.exportAllDomains;
    this.opts = { ...this.opts, ...changes };
    this.schedulePass();
    if (widened) void this.fullPass();
  }

  /** Look at one domain again soon (a hint: the reconciler just defined it, or its file changed). */
  hint(name: string): void {
    if (this.stopped || !this.concerns(name)) return;
    this.clock.clearTimeout(this.timers.get(name));
    this.timers.set(
      name,
      this.clock.setTimeout(() => {
        this.timers.delete(name);
        void this.exportNow(name);
      }, this.opts.debounceMs ?? DEFAULT_DEBOUNCE_MS),
    );
  }

  /** Every domain, compared with its export as it is on disk (someone may have removed it). */
  fullPass(): Promise<void> {
    if (this.passRunning) return this.passRunning;
    this.passRunning = (async () => {
      try {
        this.last.clear();
        const listed = (await this.opts.port.listDomains()).map((d) => d.name);
        // exports of domains undefined while no event came (daemon down): looked at, so moved aside
        const known = new Set(listed);
        const names = [...listed, ...(await exportedNames(this.opts.exportDir)).filter((n) => !known.has(n))];
        let next = 0;
        await Promise.all(
          Array.from({ length: Math.min(PASS_CONCURRENCY, names.length) }, async () => {
            while (next < names.length && !this.stopped) await this.exportNow(names[next++]!);
          }),
        );
      } catch (e) {
        this.opts.log.warn('export.failed', { err: errorMessage(e) }, 'full export pass failed; the next one retries');
      } finally {
        this.passRunning = undefined;
      }
    })();
    return this.passRunning;
  }

  /** Waits for exports in flight; nothing new starts. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unwatchEvents?.();
    this.fsWatcher?.close();
    this.clock.clearTimeout(this.watchRetryTimer);
    this.clock.clearTimeout(this.passTimer);
    for (const t of this.timers.values()) this.clock.clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.running.values(), this.passRunning]);
  }

  /** Exports `name` now, or once more right after the export of it already running. */
  exportNow(name: string): Promise<void> {
    if (!this.concerns(name)) return Promise.resolve();
    const current = this.running.get(name);
    if (current) {
      this.again.add(name);
      return current;
    }
    // this run reads the newest definition: a hint still waiting for its debounce is answered by it
    this.clock.clearTimeout(this.timers.get(name));
    this.timers.delete(name);
    const run = this.exportOnce(name).finally(() => {
      this.running.delete(name);
      if (this.again.delete(name) && !this.stopped) void this.exportNow(name);
    });
    this.running.set(name, run);
    return run;
  }

  /** Every domain with export-all; else only those whose name carries this instance's prefix. */
  private concerns(name: string): boolean {
    return exportableName(name) && (this.opts.exportAllDomains || name.startsWith(this.opts.prefix ?? ''));
  }

  private async exportOnce(name: string): Promise<void> {
    const t0 = performance.now();
    const bundleDir = join(this.opts.exportDir, name);
    try {
      const out = await exportDomain(this.opts.port, name, bundleDir, {
        includeUnmanaged: this.opts.exportAllDomains,
        ...(this.last.has(name) ? { lastCanonical: this.last.get(name)! } : {}),
      });
      if (out.canonical !== undefined) this.last.set(name, out.canonical);
      if (out.status === 'gone' || out.status === 'skipped') this.last.delete(name);
      if (out.status === 'gone') {
        const to = await moveExportAside(this.opts.exportDir, name);
        if (to !== undefined) this.opts.log.info('export.removed', { domain: name, path: to, reason: 'the domain was undefined: its export is moved aside' });
      }
      if (out.status === 'written') {
        this.opts.log.info('export.written', {
          domain: name,
          path: out.path,
          managed: out.managed,
          durationMs: Math.round(performance.now() - t0),
          ...(out.warnings.length ? { warnings: out.warnings } : {}),
        });
      }
    } catch (e) {
      this.last.delete(name);
      this.opts.log.error('export.failed', { domain: name, err: errorMessage(e), durationMs: Math.round(performance.now() - t0) });
    }
  }

  /** A definition changed or went (export or remove it); events were missed (compare everything). */
  private onEvent(e: PortEvent): void {
    if (this.stopped) return;
    if (e.type === 'resubscribed') void this.fullPass();
    // one event per change, unlike the file hints: no debounce needed
    else if (e.kind === 'defined' || e.kind === 'undefined') void this.exportNow(e.name);
  }

  private watchDefinitions(): void {
    const dir = this.opts.definitionsDir;
    if (dir === undefined || this.stopped) return;
    try {
      const watcher = watch(dir, { persistent: true }, (_event, file) => {
        const name = definitionName(file?.toString());
        if (name !== undefined) this.hint(name);
      });
      watcher.on('error', (e) => {
        watcher.close();
        if (this.fsWatcher === watcher) this.fsWatcher = undefined;
        this.watchFailed(dir, e);
      });
      this.fsWatcher = watcher;
    } catch (e) {
      this.watchFailed(dir, e);
      return;
    }
    if (this.watchRetryMs !== undefined) {
      // Changes made while nothing watched raised no hint: look at every domain once.
      this.watchRetryMs = undefined;
      this.opts.log.info('export.watching', { path: dir }, 'watching the definitions directory');
      void this.fullPass();
    }
  }

  /** Logged once per outage; the watch is tried again with a doubling wait. */
  private watchFailed(dir: string, e: unknown): void {
    if (this.stopped) return;
    const retry = this.opts.watchRetryMs ?? DEFAULT_WATCH_RETRY_MS;
    if (this.watchRetryMs === undefined) {
      this.opts.log.warn('export.failed', { err: errorMessage(e), path: dir }, 'cannot watch the definitions directory; retrying, only full passes find changes meanwhile');
    }
    const wait = this.watchRetryMs ?? retry.first;
    this.watchRetryMs = Math.min(wait * 2, retry.max);
    this.clock.clearTimeout(this.watchRetryTimer);
    this.watchRetryTimer = this.clock.setTimeout(() => this.watchDefinitions(), wait);
    this.watchRetryTimer.unref?.();
  }

  private schedulePass(): void {
    this.clock.clearTimeout(this.passTimer);
    if (this.stopped) return;
    this.passTimer = this.clock.setTimeout(() => {
      void this.fullPass().then(() => this.schedulePass());
    }, this.opts.checkIntervalMs);
    this.passTimer.unref?.();
  }
}

/** `web-1.xml` or libvirt's `web-1.xml.new` staging file -> `web-1`; anything else -> undefined. */
export function definitionName(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  const m = /^(.+)\.xml(\.new)?$/.exec(file);
  return m?.[1];
}
