import { Writable } from 'node:stream';
import { createLogger, type EventLogger } from '../../src/log.js';

type Event = Record<string, unknown>;

/**
 * A logger whose JSON lines are collected, parsed, in `events` (a live array), for assertions;
 * `count(pred, n)` resolves once `n` logged events match.
 */
export function captureLog(level = 'debug'): { log: EventLogger; events: Event[]; count: (pred: (e: Event) => boolean, n?: number) => Promise<void> } {
  const events: Event[] = [];
  const waiters = new Set<() => void>();
  const stream = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split('\n')) if (l) events.push(JSON.parse(l) as Event);
      for (const w of [...waiters]) w();
      cb();
    },
  });
  const count = (pred: (e: Event) => boolean, n = 1) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (events.filter(pred).length < n) return;
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  return { log: createLogger({ destination: stream, level }), events, count };
}
