/**
 * The daemon's restart supervisor: hears each managed domain's stop (libvirt's lifecycle event,
 * and at every full pass for exits nobody heard: the daemon was not running), reads how the
 * process ended from the init shim's status file (reconcile/exit-status.ts), and restarts it by
 * its restart policy with backoff (reconcile/restarts.ts), through the one start every start is
 * (startChecked).
 *
 * Only an exit of the process by itself is restarted. A stop from outside is an operator's and is
 * respected: `ocivirt stop` (its mark in `<state>/operator-stopped/`), a `virsh destroy` (libvirt
 * says "destroyed"; reconcile/operator.ts marks it), a `virsh shutdown` or any signal libvirt sent
 * to the container's init (the shim records `outside-signal`; marked here the same way), unless
 * ocivirt itself was stopping the domain then (its lock is held). A start by anyone but the policy
 * begins the count again.
 */
import type { Clock, Timer } from '../clock.js';
import { errorMessage } from '../errors.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import type { DomainLocks } from '../reconcile/apply.js';
import { readProcessStatus } from '../reconcile/exit-status.js';
import { operatorStopsOf } from '../reconcile/operator.js';
import { afterExit, exitOf, restartPolicyOf, restartPolicyText, restartRecordsOf, type Backoff, type RestartPolicy, type RestartRecord } from '../reconcile/restarts.js';
import { startChecked } from '../reconcile/start-check.js';

export interface SupervisorOptions {
  port: LibvirtPort;
  stateDir: string;
  log: EventLogger;
  clock: Clock;
  /** The daemon's: ocivirt's own stops and starts run under them (`busy`). */
  locks: DomainLocks;
  /** The daemon's `restartPolicy` and backoff (read at each use: a reload changes them). */
  defaults: () => { policy: RestartPolicy; backoff: Backoff };
  /** The entry of a domain of this instance (as the last pass saw them); undefined: not ours. */
  entryOf: (domain: string) => string | undefined;
  /** Something shown by `status` changed. */
  changed: () => void;
}

export class RestartSupervisor {
  private readonly timers = new Map<string, Timer>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly records;
  private readonly held;
  private stopped = false;

  constructor(private readonly o: SupervisorOptions) {
    this.records = restartRecordsOf(o.stateDir);
    this.held = operatorStopsOf(o.stateDir);
  }

  /** Work on one domain runs in order (events, timers and passes may come at once). */
  private serial<T>(domain: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(domain) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(domain, tail);
    void tail.then(() => this.chains.get(domain) === tail && this.chains.delete(domain));
    return next;
  }

  /** No restart is armed any more (the daemon stops); planned ones stay recorded for the next. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) this.o.clock.clearTimeout(t);
    this.timers.clear();
  }

  /** Every domain's work so far has ended (tests). */
  async idle(): Promise<void> {
    while (this.chains.size) await Promise.all([...this.chains.values()]);
  }

  /** A domain of this instance stopped (`detail`: libvirt's, e.g. shutdown, destroyed). */
  exited(domain: string, detail: string): Promise<void> {
    return this.serial(domain, () => this.dealWithExit(domain, detail));
  }

  /** A domain of this instance started: by the policy, or by anyone else (the count begins again). */
  started(domain: string): Promise<void> {
    return this.serial(domain, async () => {
      const now = this.o.clock.now();
      const rec = await this.records.get(domain);
      this.disarm(domain);
      if (rec?.policyStart) {
        const { policyStart: _, ...rest } = rec;
        await this.records.put(domain, { ...rest, startedAt: rec.startedAt ?? now });
        return;
      }
      await this.records.put(domain, { restarts: 0, quick: 0, since: now, startedAt: now, ...(rec?.exit !== undefined ? { exit: rec.exit } : {}) });
      this.o.changed();
    });
  }

  /**
   * After a pass over `domains` (this instance's): restarts planned before a daemon restart are
   * armed again, exits nobody heard are dealt with; after a full one (`all`: every domain of this
   * instance), records of domains gone are dropped.
   */
  async reconcile(domains: ReadonlySet<string>, all = true): Promise<void> {
    if (all) for (const name of await this.records.list()) if (!domains.has(name)) await this.serial(name, () => this.records.remove(name));
    for (const domain of domains) {
      if (this.stopped) return;
      if (this.timers.has(domain)) continue;
      await this.serial(domain, async () => {
        const state = await this.stateOf(domain);
        if (state !== 'shutoff') return;
        const rec = await this.records.get(domain);
        if (rec?.nextAt !== undefined) return this.arm(domain, rec.nextAt);
        await this.dealWithExit(domain, 'unheard');
      });
    }
  }

  private async stateOf(domain: string): Promise<string> {
    try {
      return await this.o.port.state(domain);
    } catch (e) {
      if (e instanceof DomainNotFoundError) return 'gone';
      throw e;
    }
  }

  private async dealWithExit(domain: string, detail: string): Promise<void> {
    const entry = this.o.entryOf(domain);
    if (entry === undefined || this.stopped) return;
    if ((await this.stateOf(domain)) !== 'shutoff') return; // running again (a late event), or gone
    const now = this.o.clock.now();
    const ps = await readProcessStatus(this.o.stateDir, domain);
    const rec = (await this.records.get(domain)) ?? { restarts: 0, quick: 0, since: now };
    if (ps === undefined || (rec.handled !== undefined && ps.at <= rec.handled)) return; // never ran, or dealt with
    const base = { entry, domain };
    const done = (r: RestartRecord) => this.records.put(domain, { ...r, handled: ps.at });
    const exit = exitOf(ps.state);
    const exitFields = exit === undefined ? {} : exit.setupFailed !== undefined ? { setupFailed: exit.setupFailed } : exit.exitCode !== null ? { exitCode: exit.exitCode } : { signal: exit.signal };
    // every stop is a signal through libvirt (the shim records it) or a destroy; an end without
    // either is the process's own, whatever ocivirt was doing with the domain meanwhile
    const fromOutside = ps.outsideSignal !== undefined || detail === 'destroyed' || exit === undefined;
    if (fromOutside && this.o.locks.busy(domain)) {
      // ocivirt's own stop (an update, a removal): it says what it did (domain.stopped)
      await done({ ...rec, ...(exit !== undefined ? { exit } : {}) });
      return;
    }
    if (fromOutside || (await this.held.has(domain))) {
      // an operator's stop, or an end nobody recorded (a destroy, the host going down): left stopped
      if (!(await this.held.has(domain)) && ps.outsideSignal !== undefined) {
        await this.held.add(domain);
        const reason = `shut down from outside ocivirt (signal ${ps.outsideSignal} through libvirt: virsh shutdown): left stopped until started (ocivirt start, virsh start)`;
        this.o.log.info('domain.held', { domain, reason });
      }
      this.o.log.info('domain.exited', { ...base, ...exitFields, by: 'operator', ...(detail === 'destroyed' ? { forced: true } : {}), restart: 'no: stopped from outside ocivirt' });
      await done({ restarts: rec.restarts, quick: 0, outcome: 'held', since: now, ...(exit !== undefined ? { exit } : {}), ...(rec.startedAt !== undefined ? { startedAt: rec.startedAt } : {}) });
      this.o.changed();
      return;
    }
    const { policy, backoff } = await this.policyOf(domain);
    const ranMs = rec.startedAt !== undefined ? now - rec.startedAt : Infinity;
    const { decision, record } = afterExit(policy, ps.state, rec, now, ranMs, backoff);
    await done(record);
    if (decision.action === 'stay') {
      this.o.log.info('domain.exited', { ...base, ...exitFields, by: 'process', restart: `no: ${decision.why}` });
      if (decision.outcome === 'gave-up') this.o.log.warn('domain.gaveup', { ...base, ...exitFields, restarts: rec.restarts, policy: restartPolicyText(policy) }, `${domain}: ${decision.why}`);
    } else {
      this.o.log.info('domain.exited', { ...base, ...exitFields, by: 'process', restart: `in ${decision.delayMs} ms (restart policy ${restartPolicyText(policy)})`, restartInMs: decision.delayMs });
      if (decision.crashLooping && rec.outcome !== 'crash-looping')
        this.o.log.warn('domain.crashlooping', { ...base, ...exitFields, restarts: rec.restarts, quick: record.quick - 1, delayMs: decision.delayMs }, `${domain} keeps exiting soon after it starts: restarted every ${decision.delayMs} ms`);
      this.arm(domain, record.nextAt!);
    }
    this.o.changed();
  }

  private async policyOf(domain: string): Promise<{ policy: RestartPolicy; backoff: Backoff }> {
    const d = this.o.defaults();
    const xml = await this.o.port.inactiveXml(domain).catch(() => undefined);
    return { policy: restartPolicyOf(xml, d.policy), backoff: d.backoff };
  }

  private arm(domain: string, at: number): void {
    if (this.stopped) return;
    this.disarm(domain);
    const timer = this.o.clock.setTimeout(() => {
      this.timers.delete(domain);
      void this.serial(domain, () => this.restart(domain)).catch((e) => this.o.log.warn('entry.failed', { domain, err: errorMessage(e) }, `restart of ${domain} not done: ${errorMessage(e)}`));
    }, Math.max(0, at - this.o.clock.now()));
    timer.unref?.();
    this.timers.set(domain, timer);
  }

  private disarm(domain: string): void {
    const t = this.timers.get(domain);
    if (t === undefined) return;
    this.o.clock.clearTimeout(t);
    this.timers.delete(domain);
  }

  /** The planned restart is due: made unless something changed meanwhile. */
  private async restart(domain: string): Promise<void> {
    const rec = await this.records.get(domain);
    if (this.stopped || rec?.nextAt === undefined) return;
    const entry = this.o.entryOf(domain);
    const { nextAt: _, ...rest } = rec;
    if (entry === undefined || (await this.held.has(domain)) || (await this.stateOf(domain)) !== 'shutoff') {
      await this.records.put(domain, rest); // its entry is gone, an operator stopped it, or it runs again
      return;
    }
    const { policy } = await this.policyOf(domain);
    if (policy.mode === 'no') {
      await this.records.put(domain, { ...rest, outcome: 'exited', since: this.o.clock.now() });
      this.o.changed();
      return;
    }
    const restarts = rec.restarts + 1;
    await this.records.put(domain, { ...rest, restarts, policyStart: true });
    try {
      await this.o.locks.run(domain, () => startChecked(this.o.port, domain));
    } catch (e) {
      // not started: as an exit that failed at once (the backoff grows)
      const now = this.o.clock.now();
      const { policy: p, backoff } = await this.policyOf(domain);
      const { record } = afterExit(p, { kind: 'setup-failed', reason: errorMessage(e) }, { ...rest, restarts }, now, 0, backoff);
      await this.records.put(domain, { ...record, ...(rec.handled !== undefined ? { handled: rec.handled } : {}) });
      this.o.log.error('entry.failed', { entry, domain, err: errorMessage(e), restarts }, `restart of ${domain} failed: ${errorMessage(e)}`);
      if (record.nextAt !== undefined) this.arm(domain, record.nextAt);
      this.o.changed();
      return;
    }
    const now = this.o.clock.now();
    const after = (await this.records.get(domain)) ?? { ...rest, restarts };
    await this.records.put(domain, { ...after, startedAt: now, since: now });
    this.o.log.info('domain.started', { entry, domain, reason: `restart policy ${restartPolicyText(policy)}`, restarts, afterMs: now - rec.since });
    this.o.changed();
  }
}
