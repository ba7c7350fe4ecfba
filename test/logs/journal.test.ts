/**
 * logsToJournal (src/logs/journal.ts) against a fake journald: a unix stream socket here that
 * records what each connection sends (the stdout stream protocol's header, then lines).
 * Container log directories are fabricated in the shim's format.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JournalForwarder, journalLines } from '../../src/logs/journal.js';
import { captureLog } from '../helpers/log.js';

const scratch = mkdtempSync(join(tmpdir(), 'ocivirt-journal-'));
const T0 = Date.parse('2026-11-30T00:00:00Z');
const rec = (i: number, stream: string, tag: string, text: string) => `${new Date(T0 + i).toISOString().replace('Z', '000000Z')} ${stream} ${tag} ${text}\n`;

/** A fake journald: every connection's bytes, in arrival order. */
async function fakeJournald(path: string): Promise<{ server: Server; streams: string[] }> {
  const streams: string[] = [];
  const server = createServer((c) => {
    const i = streams.push('') - 1;
    c.on('data', (d: Buffer) => (streams[i] += d.toString('latin1')));
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { server, streams };
}
const waitFor = async (what: string, ok: () => boolean) => {
  const until = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const HEADER = (domain: string) => `${domain}\n\n6\n1\n0\n0\n0\n`;

test('every container: a stream named after its domain, priorities by stream, P joined; follows; a restart resumes, nothing twice, across a rotation', async () => {
  const state = join(scratch, 'state');
  const logA = join(state, 'containers', 'web', 'run', 'log');
  const logB = join(state, 'containers', 'db', 'run', 'log');
  mkdirSync(logA, { recursive: true });
  mkdirSync(logB, { recursive: true });
  writeFileSync(join(logA, 'previous'), rec(0, 'stdout', 'F', 'a0'));
  writeFileSync(join(logA, 'current'), rec(1, 'stdout', 'P', 'a') + rec(2, 'stderr', 'F', '<1>not a priority') + rec(3, 'stdout', 'F', '1'));
  writeFileSync(join(logB, 'current'), rec(0, 'ocivirt', 'F', 'ocivirt-init: 5 bytes (1 records) of output dropped'));
  const sock = join(scratch, 'journal.sock');
  const { server, streams } = await fakeJournald(sock);
  const { log, events } = captureLog();
  const stream = (domain: string) => streams.filter((s) => s.startsWith(HEADER(domain))).map((s) => s.slice(HEADER(domain).length)).join('');

  let fwd = new JournalForwarder({ stateDir: state, limit: 1 << 20, log, socketPath: sock });
  await fwd.start();
  await waitFor('both containers', () => stream('web').endsWith('<6>a1\n') && stream('db') !== '');
  assert.is(stream('web'), '<6>a0\n<3><1>not a priority\n<6>a1\n');
  assert.is(stream('db'), '<4>ocivirt-init: 5 bytes (1 records) of output dropped\n');
  appendFileSync(join(logA, 'current'), rec(4, 'stdout', 'F', 'a2'));
  await waitFor('a line appended', () => stream('web').endsWith('<6>a2\n'));
  await fwd.stop();

  // while the daemon is away: more output, and a rotation
  appendFileSync(join(logA, 'current'), rec(5, 'stdout', 'F', 'a3'));
  renameSync(join(logA, 'current'), join(logA, 'previous'));
  writeFileSync(join(logA, 'current'), rec(6, 'stdout', 'F', 'a4'));
  fwd = new JournalForwarder({ stateDir: state, limit: 1 << 20, log, socketPath: sock });
  await fwd.start();
  await waitFor('the output of the time away', () => stream('web').endsWith('<6>a4\n'));
  assert.is(stream('web'), '<6>a0\n<3><1>not a priority\n<6>a1\n<6>a2\n<6>a3\n<6>a4\n');
  assert.is(stream('db'), '<4>ocivirt-init: 5 bytes (1 records) of output dropped\n');

  // a container that appears later is picked up at the next scan
  const logC = join(state, 'containers', 'cache', 'run', 'log');
  mkdirSync(logC, { recursive: true });
  writeFileSync(join(logC, 'current'), rec(0, 'stdout', 'F', 'c0'));
  await fwd.scan();
  await waitFor('the new container', () => stream('cache') === '<6>c0\n');
  await fwd.stop();
  assert.equal(events.filter((e) => e.event === 'logs.journal.failed'), []);
  assert.is(events.filter((e) => e.event === 'logs.journal.following').length, 5);
  server.close();
});

test('journald not there: a warning per container, the daemon goes on', async () => {
  const state = join(scratch, 'state2');
  const logA = join(state, 'containers', 'web', 'run', 'log');
  mkdirSync(logA, { recursive: true });
  writeFileSync(join(logA, 'current'), rec(0, 'stdout', 'F', 'x'));
  const { log, events, count } = captureLog();
  const fwd = new JournalForwarder({ stateDir: state, limit: 1 << 20, log, socketPath: join(scratch, 'absent.sock') });
  await fwd.start();
  await count((e) => e.event === 'logs.journal.failed');
  assert.match(String(events.find((e) => e.event === 'logs.journal.failed')!.err), /journald: .*ENOENT/);
  await fwd.stop();
});

test.after(() => rmSync(scratch, { recursive: true, force: true }));
test('hostile lines: a NUL or a line past journald\'s LineMax never lets the container choose a priority', () => {
  const lines = (data: string | Buffer) => journalLines('<6>', Buffer.from(data)).toString('latin1').split('\n').slice(0, -1);
  assert.equal(lines('x\0<0>emerg'), ['<6>x\\x00<0>emerg']);
  const long = lines('a'.repeat(48 * 1024) + '<0>emerg' + 'b'.repeat(60 * 1024));
  assert.ok(long.length >= 4, `${long.length} pieces`);
  assert.ok(long.every((l) => l.startsWith('<6>') && l.length <= 32 * 1024 + 3), 'each piece carries our prefix, below LineMax');
  assert.is(long.map((l) => l.slice(3)).join(''), 'a'.repeat(48 * 1024) + '<0>emerg' + 'b'.repeat(60 * 1024));
  assert.equal(lines(''), ['<6>']);
});

test.run();
