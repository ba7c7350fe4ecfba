/**
 * The daemon: wiring only. Spool watcher -> queue of passes (per-entry, plus a full resync at
 * start and every resyncIntervalSec) -> reconciler; the exporter runs beside it. One pass runs
 * at a time; entries reported while it runs wait for the next, so a burst becomes a few passes.
 * Nothing here ever stops a container: they belong to libvirtd, and so they keep running
 * whatever happens to this process.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, type LoadOptions } from '../config/load.js';
import type { Config } from '../config/settings.js';
import { errorMessage, InputError } from '../errors.js';
import { Exporter } from '../export/exporter.js';
import { connectLibvirt } from '../libvirt/adapter.js';
import type { LibvirtPort, PortEvent } from '../libvirt/port.js';
import { createLogger, silentLogger, type EventLogger } from '../log.js';
import { DomainLocks, type ItemResult } from '../reconcile/apply.js';
import { ensureInstanceId } from '../reconcile/instance.js';
import { heardLifecycle, operatorStopsOf } from '../reconcile/operator.js';
import { pendingChangesOf, syncOptionsFromConfig, syncPass, writeStatus, type PassScope } from '../reconcile/sync.js';
import { PortTable, type NftRunner } from '../network/ports.js';
import { checkDirectoryTrust } from '../spool/trust.js';
import { SpoolWatcher } from '../watch/spool-watcher.js';
import { PassQueue } from './queue.js';
import { JournalForwarder } from '../logs/journal.js';
import { logReadLimit } from '../logs/read.js';
import { RestartSupervisor } from './restarts.js';
import { systemClock } from '../clock.js';
import { parseRestartPolicy } from '../reconcile/restarts.js';

export interface DaemonOptions {
  load: LoadOptions;
  /** Where the JSON log goes (stdout by default). */
  logDestination?: NodeJS.WritableStream;
  /** Opens a libvirt port (the adapter by default; an in-memory one in tests). */
  connect?: (uri: string, log: EventLogger) => Promise<LibvirtPort>;
  /** SIGTERM while starting: a connect that hangs (a wedged libvirtd) is given up at once. */
  signal?: AbortSignal;
  /** Runs the published ports' nft script (`nft -f -` by default; a recorder in tests). */
  nft?: NftRunner;
}

/** The daemon was stopped before it had started; `stuck`: a libvirt connect was still hanging. */
export class StartAbortedError extends Error {
  constructor(readonly stuck: boolean) {
    super(stuck ? 'stopped while connecting to libvirt (the connect still hangs)' : 'stopped while starting');
  }
}

/**
 * How long a pass waits for one entry's step before it goes on without it (the step keeps its
 * own deadline, stepTimeoutSec): a big unpack or a slow libvirt call never holds up the others.
 */
export const STEP_PATIENCE_MS = 3_000;
/** After the shutdown timeout: how long aborted work has to end before the process ends itself. */
const ABORT_GRACE_MS = 1_000;

/** Settings a reload cannot change: they name what is watched, written or connected to. */
const FIXED: (keyof Config)[] = ['spoolDir', 'stateDir', 'exportDir', 'uri', 'definitionsDir'];
export class Daemon {
  private readonly ready = new Set<string>();
  private readonly status = new Map<string, ItemResult>();
  private readonly locks = new DomainLocks();
  private readonly known = new Map<string, string>();
  /** Settings entry -> the image entry it names (sync.ts PassSpec.uses). */
  private readonly uses = new Map<string, string>();
  private readonly queue: PassQueue;
  /** Entries whose step goes on after its pass stopped waiting: left alone until it has ended. */
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** Aborts every step (SIGTERM, once the shutdown timeout is over). */
  private readonly abort = new AbortController();
  private stopping = false;
  private watcher: SpoolWatcher | undefined;
  /** This instance's id (reconcile/instance.ts), read or made once at start. */
  private instance = '';
  /** The published ports' nftables table (network/ports.ts), rebuilt at start and after passes that changed something. */
  private ports: PortTable | undefined;
  /** Entries whose published ports failed at the last rebuild, with the error. */
  private portFailures = new Map<string, string>();
  /** Ends the subscription to libvirt's lifecycle events. */
  private unwatch: () => void = () => undefined;
  /** logsToJournal: containers' output to journald (logs/journal.ts). */
  private journal: JournalForwarder | undefined;
  /** Restarts containers whose process ended by itself, by their restart policy. */
  private readonly restarts: RestartSupervisor;

  private constructor(
    private config: Config,
    private readonly configFile: string | undefined,
    private readonly opts: DaemonOptions,
    readonly log: EventLogger,
    private readonly port: LibvirtPort,
    private readonly exportPort: LibvirtPort,
    private readonly exporter: Exporter,
  ) {
    this.restarts = new RestartSupervisor({
      port,
      stateDir: config.stateDir,
      log,
      clock: systemClock,
      locks: this.locks,
      defaults: () => ({
        policy: parseRestartPolicy(this.config.restartPolicy) ?? { mode: 'no' },
        backoff: { baseMs: this.config.restartDelayMs, maxMs: this.config.restartMaxDelaySec * 1000, crashLoopAfter: this.config.crashLoopRestarts },
      }),
      entryOf: (domain) => this.entryOf(domain),
      changed: () => void this.writeStatus().catch((e) => log.warn('entry.failed', { err: errorMessage(e) }, 'status file not written')),
    });
    this.queue = new PassQueue({
      run: (scope) => this.pass(scope),
      onFailure: (scope, e, retryMs) =>
        this.log.error('sync.completed', { scope: scope === 'all' ? 'all' : [...scope], err: errorMessage(e) }, `pass failed; retrying in ${retryMs} ms`),
    });
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const t0 = Date.now();
    const { config, file } = await loadConfig(opts.load);
    const log = createLogger({ level: config.logLevel, ...(opts.logDestination ? { destination: opts.logDestination } : {}) });
    for (const key of ['spoolDir', 'stateDir', 'exportDir'] as const) {
      await mkdir(config[key], { recursive: true, mode: 0o700 });
      let warnings: string[];
      try {
        ({ warnings } = await checkDirectoryTrust(config[key], { allowInsecure: config.allowInsecureDirs }));
      } catch (e) {
        if (e instanceof InputError) throw new InputError(`${e.reason} (${key}; set allowInsecureDirs to override)`, { file: config[key] });
        throw e;
      }
      for (const w of warnings) log.warn('daemon.insecure', { path: config[key], setting: key, err: w }, w);
    }
    const instance = await ensureInstanceId(config.stateDir);
    const open = opts.connect ?? ((uri, logger) => connectLibvirt(uri, { logger }));
    const connect = (logger: EventLogger) => unlessStopped(open(config.uri, logger), opts.signal, log, t0);
    const port = await connect(log);
    // The exporter has its own connection: a burst of exports never queues behind the
    // reconciler's defines on one connection (libvirtd serves each client's calls in turn).
    const exportPort = await connect(silentLogger()).catch(async (e) => {
      await within(port.close(), ABORT_GRACE_MS);
      throw e;
    });
    const exporter = new Exporter({
      port: exportPort,
      exportDir: config.exportDir,
      definitionsDir: config.uri === 'lxc:///' ? config.definitionsDir : undefined,
      exportAllDomains: config.exportAllDomains,
      prefix: config.namePrefix,
      checkIntervalMs: config.exportCheckIntervalSec * 1000,
      log,
    });
    const daemon = new Daemon(config, file, opts, log, port, exportPort, exporter);
    daemon.instance = instance;
    daemon.ports = new PortTable(port, { instance, spoolDir: config.spoolDir, ...(opts.nft !== undefined ? { nft: opts.nft } : {}) });
    // after a reboot or a restart the first (full) pass makes the table again from the domains running then
    daemon.watcher = await SpoolWatcher.start(config.spoolDir, {
      quietMs: config.quietMs,
      includeExisting: true,
      onEntry: (name) => void daemon.entryReported(name),
      onError: (e) => log.warn('entry.failed', { err: errorMessage(e) }, 'spool watcher error'),
    });
    daemon.unwatch = port.watch((e) => void daemon.lifecycle(e).catch((err) => log.warn('entry.failed', { err: errorMessage(err) }, 'lifecycle event not handled')));
    daemon.queue.addFull();
    daemon.queue.resyncEvery(config.resyncIntervalSec * 1000);
    void exporter.start().catch((e) => log.error('export.failed', { err: errorMessage(e) }, 'exporter did not start'));
    await daemon.journalFollows(config);
    log.info('daemon.started', {
      file: file ?? null,
      spool: config.spoolDir,
      state: config.stateDir,
      instance,
      export: config.exportDir,
      uri: config.uri,
      durationMs: Date.now() - t0,
    });
    return daemon;
  }

  /** SIGHUP: the file again; an invalid one is logged and the running configuration kept. */
  async reload(): Promise<void> {
    let next: Config;
    try {
      next = (await loadConfig(this.opts.load)).config;
    } catch (e) {
      this.log.error('config.invalid', { err: errorMessage(e) }, `reload refused, configuration unchanged: ${errorMessage(e)}`);
      return;
    }
    for (const key of FIXED) {
      if (JSON.stringify(next[key]) === JSON.stringify(this.config[key])) continue;
      this.log.warn('config.invalid', { field: key, err: `changing ${key} needs a restart; keeping ${JSON.stringify(this.config[key])}` });
      (next as unknown as Record<string, unknown>)[key] = this.config[key];
    }
    this.config = next;
    this.log.pino.level = next.logLevel;
    this.watcher?.setQuietMs(next.quietMs);
    this.exporter.update({ exportAllDomains: next.exportAllDomains, checkIntervalMs: next.exportCheckIntervalSec * 1000 });
    this.queue.resyncEvery(next.resyncIntervalSec * 1000);
    this.queue.addFull(); // policies may have changed: look at everything again
    await this.journalFollows(next);
    this.log.info('daemon.reloaded', { file: this.configFile ?? null });
  }

  /** Starts or stops forwarding containers' output to the journal, as `logsToJournal` says. */
  private async journalFollows(config: Config): Promise<void> {
    if (config.logsToJournal && !this.journal) {
      this.journal = new JournalForwarder({ stateDir: config.stateDir, limit: logReadLimit(config.logFileBytes), log: this.log });
      await this.journal.start();
    } else if (!config.logsToJournal && this.journal) {
      await this.journal.stop();
      this.journal = undefined;
    }
  }

  /**
   * SIGTERM: no new work; what is in flight may finish within shutdownTimeoutSec, else it is
   * aborted (every step is safe to cut: the next start converges). Containers are not touched.
   * `stuck`: something did not end even when aborted (a call inside libvirt or the kernel), so
   * the process cannot exit normally (see cmd-daemon.ts).
   */
  async stop(): Promise<{ abandoned: boolean; stuck: boolean }> {
    if (this.stopping) return { abandoned: false, stuck: false };
    this.stopping = true;
    const t0 = Date.now();
    this.log.info('daemon.stopping', { inFlight: this.queue.inFlight !== undefined || this.inFlight.size > 0, timeoutMs: this.config.shutdownTimeoutSec * 1000 });
    this.queue.stop();
    this.unwatch();
    this.restarts.stop();
    const everything = () => Promise.all([this.queue.inFlight, this.exporter.stop(), ...this.inFlight.values()]).then(() => true);
    await within(this.watcher?.close() ?? Promise.resolve(), 1_000);
    await within(this.journal?.stop() ?? Promise.resolve(), 1_000);
    const abandoned = !(await within(everything(), this.config.shutdownTimeoutSec * 1000));
    let stuck = false;
    if (abandoned) {
      this.abort.abort(); // unpack workers terminated, retries and waits cut
      stuck = !(await within(everything(), ABORT_GRACE_MS));
      this.log.warn('daemon.stopping', { abandoned: true, stuck }, 'in-flight work aborted after the shutdown timeout; the next start converges');
    }
    if (!(await within(Promise.all([this.port.close(), this.exportPort.close()]), ABORT_GRACE_MS))) stuck = true;
    this.log.info('daemon.stopped', { durationMs: Date.now() - t0, abandoned });
    return { abandoned, stuck };
  }

  private async entryReported(name: string): Promise<void> {
    const present = await lstat(join(this.config.spoolDir, name)).then(
      () => true,
      () => false,
    );
    if (present) {
      this.ready.add(name);
      this.log.info('entry.detected', { entry: name });
    } else {
      this.ready.delete(name);
      this.log.info('entry.removed', { entry: name });
    }
    this.queue.addEntry(name);
  }

  private async pass(scope: PassScope): Promise<void> {
    const t0 = Date.now();
    const unsettled = this.watcher?.unsettled() ?? new Set<string>();
    const steps = {
      deadlineMs: this.config.stepTimeoutSec * 1000,
      patienceMs: STEP_PATIENCE_MS,
      signal: this.abort.signal,
      onDetach: (entry: string, ended: Promise<unknown>) => this.detached(entry, ended),
    };
    const { results, settling, scope: looked } = await syncPass(
      this.port,
      { ...syncOptionsFromConfig(this.config, this.log), instance: this.instance, locks: this.locks, steps },
      { scope, settled: (entry) => this.ready.has(entry) && !unsettled.has(entry) && !this.inFlight.has(entry), known: this.known, unpackEvents: true, uses: this.uses },
    );
    if (looked === 'all') this.status.clear();
    else for (const entry of looked) this.status.delete(entry);
    for (const r of results) {
      if (r.ok && (r.item.action === 'create' || r.item.action === 'update') && r.item.warnings?.length)
        this.log.warn('convert.warning', { entry: r.item.entry, domain: r.item.domain, digest: r.item.digest, warnings: r.item.warnings });
      if (r.item.action === 'delete' && r.ok) continue;
      // the status keeps what it shows, not the domain XML the plan carried
      const reason = r.busy ? BUSY_REASON : r.item.reason;
      this.status.set(r.item.entry, { ...r, item: { domain: r.item.domain, entry: r.item.entry, action: r.item.action, reason } });
      if (r.ok && !r.busy && (r.item.action === 'create' || r.item.action === 'update')) this.exporter.hint(r.item.domain);
    }
    for (const s of settling) {
      const busy = s.busy === true || this.inFlight.has(s.entry);
      // skipped while a burst of events was being checked: hear about it again once it is complete
      if (!busy && this.ready.has(s.entry)) this.watcher?.recheck(s.entry);
      const reason = busy ? BUSY_REASON : 'still being copied in: taken once complete (quietMs without changes)';
      this.status.set(s.entry, { item: { entry: s.entry, domain: s.domain, action: 'nothing', reason }, ok: true, attempts: 0, pending: true });
    }
    if (looked === 'all' || results.some((r) => r.ok && r.item.action !== 'nothing' && r.item.action !== 'fail')) await this.rebuildPorts();
    // exits nobody heard (the daemon was not running, or the pass had not finished), restarts planned before a daemon restart
    const domains = results.filter((r) => r.ok && r.item.domain !== '' && !(r.item.action === 'delete')).map((r) => r.item.domain);
    await this.restarts.reconcile(new Set(domains), looked === 'all');
    await this.writeStatus();
    const failed = results.filter((r) => !r.ok).length;
    const mem = process.memoryUsage();
    this.log.info('sync.completed', {
      rssMiB: Math.round(mem.rss / 2 ** 20),
      heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20),
      heapTotalMiB: Math.round(mem.heapTotal / 2 ** 20),
      externalMiB: Math.round(mem.external / 2 ** 20),
      scope: scope === 'all' ? 'all' : [...scope],
      durationMs: Date.now() - t0,
      changed: results.filter((r) => r.ok && r.item.action !== 'nothing' && r.item.action !== 'fail').length,
      failed,
      settling: settling.length,
    });
  }

  /**
   * A domain's lifecycle event: a start (by anyone) puts its whole definition in force; a destroy
   * ocivirt did not make is an operator's stop; a stop goes to the restart supervisor.
   */
  private async lifecycle(e: PortEvent): Promise<void> {
    // events were lost while the connection was down: a full pass finds the exits among them
    if (!this.stopping && e.type === 'resubscribed') this.queue.addFull();
    if (this.stopping || e.type !== 'lifecycle' || this.entryOf(e.name) === undefined) return;
    const held = await heardLifecycle(this.port, operatorStopsOf(this.config.stateDir), e, (d) => this.locks.busy(d));
    if (held === 'held') this.log.info('domain.held', { domain: e.name, reason: 'destroyed by an operator: left stopped until started (ocivirt start, virsh start)' });
    if (held === 'released') this.log.info('domain.released', { domain: e.name, reason: 'started by an operator' });
    if (e.kind === 'stopped') await this.restarts.exited(e.name, e.detail);
    if (e.kind !== 'started') return;
    await this.restarts.started(e.name);
    const pending = pendingChangesOf(this.config.stateDir)!;
    if ((await pending.get(e.name)).length > 0) await pending.remove(e.name);
    await this.writeStatus();
  }

  /** The entry of a domain of this instance (as the last pass saw them). */
  private entryOf(domain: string): string | undefined {
    for (const r of this.status.values()) if (r.item.domain === domain) return r.item.entry;
    // a domain the running pass is making (its first start can end before the pass does)
    for (const [entry, name] of this.known) if (name === domain) return entry;
    return undefined;
  }

  /** A step its pass stopped waiting for: the entry is left alone until it ends, then taken again. */
  private detached(entry: string, ended: Promise<unknown>): void {
    const done = ended.then((err) => {
      this.inFlight.delete(entry);
      if (this.stopping) return;
      if (err === undefined) {
        this.queue.addEntry(entry); // the pass that reads its outcome
        return;
      }
      // failed or aborted at its deadline: reported now, tried again when the entry changes or at the next resync
      const msg = errorMessage(err);
      this.log.error('entry.failed', { entry, err: msg }, msg);
      const was = this.status.get(entry)?.item;
      this.status.set(entry, { item: { entry, domain: was?.domain ?? '', action: was?.action ?? 'nothing', reason: msg }, ok: false, error: msg, attempts: 1 });
      void this.writeStatus().catch((e) => this.log.warn('entry.failed', { err: errorMessage(e) }, 'status file not written'));
    });
    this.inFlight.set(entry, done);
  }

  /** The published ports' table from the domains running now; a failure is logged, never fails the pass. */
  private async rebuildPorts(): Promise<void> {
    if (this.ports === undefined) return;
    try {
      const t0 = Date.now();
      const { rules, failures, applied } = await this.ports.rebuild();
      const before = this.portFailures;
      this.portFailures = new Map(failures.map((f) => [f.entry, f.error.message]));
      for (const f of failures) if (before.get(f.entry) !== f.error.message) this.log.error('ports.refused', { entry: f.entry, domain: f.domain, err: f.error.message }, f.error.message);
      if (applied) this.log.info('ports.applied', { table: this.ports.table, rules: rules.length, refused: failures.length, durationMs: Date.now() - t0 });
    } catch (e) {
      this.log.error('ports.failed', { table: this.ports.table, err: errorMessage(e) }, errorMessage(e));
    }
  }

  private writeStatus(): Promise<void> {
    const shown = [...this.status.values()].map((r) => {
      const err = this.portFailures.get(r.item.entry);
      return err === undefined || !r.ok ? r : { ...r, ok: false, pending: false, error: err };
    });
    return writeStatus(this.config.stateDir, shown.sort((a, b) => (a.item.entry < b.item.entry ? -1 : 1)), this.port);
  }
}

const BUSY_REASON = 'a step on it is still running (an unpack, or a slow libvirt call): taken again once it ends';

/**
 * `connecting`, unless the daemon is stopped first: then StartAbortedError (stuck when the connect
 * has not ended; a port it opens later is closed).
 */
async function unlessStopped(connecting: Promise<LibvirtPort>, signal: AbortSignal | undefined, log: EventLogger, t0: number): Promise<LibvirtPort> {
  if (signal === undefined) return connecting;
  let settled = false;
  const done = connecting.finally(() => (settled = true));
  const stopped = new Promise<never>((_, reject) => {
    const abort = () => {
      void connecting.then((p) => p.close()).catch(() => undefined);
      log.warn('daemon.stopped', { durationMs: Date.now() - t0, abandoned: true, stuck: !settled }, 'stopped while connecting to libvirt');
      reject(new StartAbortedError(!settled));
    };
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
  return Promise.race([done, stopped]);
}

/** Waits for `p` at most `ms`: true when it settled in time. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const settled = p.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
