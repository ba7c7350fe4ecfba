/**
 * What a domain is doing, for `status`: libvirt's state, the init shim's status file (how the
 * process ended), the restart record and the operator's stop, in one word:
 *
 *   running         the domain runs
 *   pending-change  it runs, and part of its new definition waits for its next start
 *   restarting      the process ended by itself; the restart policy starts it again at `nextRestart`
 *   crash-looping   it keeps ending soon after each start: restarted at the backoff's cap
 *   exited          the process ended by itself and stays down (policy `no`, `on-failure` after 0)
 *   gave-up         `on-failure:N` after N restarts in a row: stays down
 *   setup-failed    the init shim refused to run the process (a step failed; `stateReason` says which)
 *   stopped         shut off otherwise: never started, or stopped by an operator (or by ocivirt)
 *   absent          no domain (the entry failed, or is an image only)
 *   unknown         libvirt could not be asked
 */
import { DomainNotFoundError, LibvirtUnavailableError, type LibvirtPort } from '../libvirt/port.js';
import { readProcessStatus } from './exit-status.js';
import { operatorStopsOf } from './operator.js';
import { restartRecordsOf } from './restarts.js';

export type RuntimeState = 'running' | 'pending-change' | 'restarting' | 'crash-looping' | 'exited' | 'gave-up' | 'setup-failed' | 'stopped' | 'absent' | 'unknown';

export interface RuntimeStatus {
  state: RuntimeState;
  /** The process's last exit code (null: it has not exited, was killed by a signal, or never ran). */
  exitCode: number | null;
  /** The signal that killed the process at its last exit, else null. */
  signal: number | null;
  /** Restarts made by the restart policy since the domain was last started by anyone else. */
  restarts: number;
  /** When the state began (ISO), when known. */
  since: string | null;
  /** restarting, crash-looping: when the next start is due. */
  nextRestart?: string;
  /** Why it is in that state, when there is more to say (a setup failure, an operator's stop). */
  stateReason?: string;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The runtime status of `domain` (`pendingChange`: something of its definition waits for the next start). */
export async function runtimeOf(port: LibvirtPort, stateDir: string, domain: string, pendingChange: boolean): Promise<RuntimeStatus> {
  let state: string;
  try {
    state = await port.state(domain);
  } catch (e) {
    if (e instanceof DomainNotFoundError) return { state: 'absent', exitCode: null, signal: null, restarts: 0, since: null };
    throw e;
  }
  const [ps, rec, held] = await Promise.all([readProcessStatus(stateDir, domain), restartRecordsOf(stateDir).get(domain), operatorStopsOf(stateDir).has(domain)]);
  const last = ps?.state.kind === 'exited' ? { exitCode: ps.state.code, signal: null } : ps?.state.kind === 'signaled' ? { exitCode: null, signal: ps.state.signal } : rec?.exit;
  const base = { exitCode: last?.exitCode ?? null, signal: last?.signal ?? null, restarts: rec?.restarts ?? 0 };
  if (state === 'running' || state === 'paused' || state === 'blocked') {
    const since = iso(ps?.state.kind === 'running' ? ps.at : rec?.startedAt);
    return { ...base, state: pendingChange ? 'pending-change' : 'running', since };
  }
  if (held) return { ...base, state: 'stopped', since: iso(rec?.outcome === 'held' ? rec.since : ps?.at), stateReason: 'stopped by an operator: not restarted until started (ocivirt start NAME, virsh start)' };
  const setupFailed = ps?.state.kind === 'setup-failed' ? (ps.state.reason ?? 'a step of the init shim failed') : rec?.exit?.setupFailed;
  const reason = setupFailed !== undefined ? { stateReason: setupFailed } : {};
  if (rec?.outcome === 'restarting' || rec?.outcome === 'crash-looping')
    return { ...base, ...reason, state: rec.outcome, since: iso(rec.since), ...(rec.nextAt !== undefined ? { nextRestart: iso(rec.nextAt)! } : {}) };
  if (rec?.outcome === 'gave-up' || rec?.outcome === 'exited') return { ...base, ...reason, state: ps?.state.kind === 'setup-failed' ? 'setup-failed' : rec.outcome, since: iso(rec.since) };
  if (ps?.state.kind === 'setup-failed') return { ...base, ...reason, state: 'setup-failed', since: iso(ps.at) };
  if ((ps?.state.kind === 'exited' || ps?.state.kind === 'signaled') && ps.outsideSignal === undefined) return { ...base, state: 'exited', since: iso(ps.at) };
  return { ...base, state: 'stopped', since: iso(ps?.at) };
}

/** The runtime status of each domain; none when libvirt cannot be reached (the rest is still written). */
export async function runtimesOf(port: LibvirtPort, stateDir: string, domains: Iterable<string>, pending: ReadonlySet<string>): Promise<Map<string, RuntimeStatus>> {
  const out = new Map<string, RuntimeStatus>();
  for (const d of new Set(domains)) {
    if (d === '') continue;
    try {
      out.set(d, await runtimeOf(port, stateDir, d, pending.has(d)));
    } catch (e) {
      if (e instanceof LibvirtUnavailableError) return new Map();
      // one domain's status not readable: the others are shown
    }
  }
  return out;
}
