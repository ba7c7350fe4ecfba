/**
 * A clock for unit tests: time moves only when the test says so, and timers fire in order of
 * their due time, with pending promise callbacks run between them.
 */
import type { Clock, Timer } from '../../src/clock.js';

interface FakeTimer extends Timer {
  id: number;
  at: number;
  fn: () => void;
}

/** Lets every callback already queued (and what they queue in turn, a few rounds deep) run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

export class FakeClock implements Clock {
  private t = 1_000_000;
  private seq = 0;
  private readonly timers = new Map<number, FakeTimer>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: FakeTimer = { id: ++this.seq, at: this.t + Math.max(0, ms), fn, unref: () => timer };
    this.timers.set(timer.id, timer);
    return timer;
  }

  clearTimeout(timer: Timer | undefined): void {
    if (timer !== undefined) this.timers.delete((timer as FakeTimer).id);
  }

  /** Timers armed and not yet fired. */
  get pending(): number {
    return this.timers.size;
  }

  /** How long until the next timer is due (undefined: none armed). */
  nextIn(): number | undefined {
    const next = this.earliest();
    return next === undefined ? undefined : next.at - this.t;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = this.earliest();
      if (next === undefined || next.at > end) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await settle();
  }

  /**
   * Moves time forward in `stepMs` steps until `p` settles (work between timers may wait on
   * real I/O); fails once `maxMs` of fake time has gone by without it.
   */
  async runUntil<T>(p: Promise<T>, stepMs = 10, maxMs = 600_000): Promise<T> {
    let over = false;
    const watched = p.finally(() => (over = true));
    for (let spent = 0; !over; spent += stepMs) {
      if (spent > maxMs) throw new Error(`runUntil: not settled after ${maxMs} ms of fake time`);
      await this.advance(stepMs);
    }
    return watched;
  }

  /** Moves time forward by `ms` and fires what falls due right now, synchronously (from inside a callback). */
  tick(ms: number): void {
    this.t += ms;
    for (let next = this.earliest(); next !== undefined && next.at <= this.t; next = this.earliest()) {
      this.timers.delete(next.id);
      next.fn();
    }
  }

  private earliest(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.timers.values()) if (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t;
    return best;
  }
}
