import { Writable } from 'node:stream';
import { createLogger, type EventLogger } from '../../src/log.js';

/** A logger whose JSON lines are collected, parsed, in `events` (a live array), for assertions. */
export function captureLog(level = 'debug'): { log: EventLogger; events: Array<Record<string, unknown>> } {
  const events: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split('\n')) if (l) events.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger({ destination: stream, level }), events };
}
