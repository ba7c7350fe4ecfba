/**
 * The exporter's hint source, libvirt's definitions directory, does not exist on a fresh machine
 * until libvirt defines its first domain: the watch must start once the directory appears.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Exporter } from '../../src/export/exporter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { captureLog } from '../helpers/log.js';

/** A port with no domains that records which names the exporter asked for. */
function recordingPort(asked: (name: string) => void): LibvirtPort {
  const none = () => Promise.reject(new Error('not used'));
  return {
    listDomains: () => Promise.resolve([]),
    lookup: () => Promise.resolve(undefined),
    inactiveXml: (name: string) => {
      asked(name);
      return Promise.reject(new Error(`no domain ${name}`));
    },
    liveXml: none,
    define: none,
    undefine: none,
    start: none,
    stop: none,
    destroy: none,
    state: none,
    watch: () => () => {}, // no lifecycle events: only the directory watch can name the domain
    close: () => Promise.resolve(),
  } as unknown as LibvirtPort;
}

/** Resolves when `check` holds, polled on each log event or port call; rejects after `ms`. */
function until(check: () => boolean, what: string, ms = 5000): { poke: () => void; done: Promise<void> } {
  let poke = () => {};
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    poke = () => {
      if (check()) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  return { poke, done };
}

test('a definitions directory that appears after start is watched, and its changes export', async () => {
  const top = mkdtempSync(join(tmpdir(), 'ocivirt-exporter-watch-'));
  const defs = join(top, 'lxc');
  const { log, events } = captureLog();
  const asked: string[] = [];
  const watching = until(() => events.some((e) => e.event === 'export.watching'), 'export.watching');
  const exported = until(() => asked.includes('demo-web'), 'an export of demo-web');
  const exporter = new Exporter({
    port: recordingPort((n) => {
      asked.push(n);
      exported.poke();
    }),
    exportDir: join(top, 'export'),
    definitionsDir: defs,
    exportAllDomains: true,
    checkIntervalMs: 3_600_000, // no full pass can find it: only the watch
    log,
    debounceMs: 1,
    watchRetryMs: { first: 5, max: 20 },
  });
  try {
    await exporter.start();
    const failed = events.filter((e) => e.event === 'export.failed');
    assert.is(failed.length, 1, 'the missing directory is reported once');
    assert.match(String(failed[0]!.path), /lxc$/);
    mkdirSync(defs);
    const poll = setInterval(watching.poke, 5); // log events arrive on a stream: look after each tick
    await watching.done.finally(() => clearInterval(poll));
    assert.is(events.filter((e) => e.event === 'export.failed').length, 1, 'retries are not logged again');
    writeFileSync(join(defs, 'demo-web.xml.new'), '<domain/>');
    await exported.done;
  } finally {
    await exporter.stop();
    rmSync(top, { recursive: true, force: true });
  }
});

test.run();
