/** Log records (src/logs/records.ts): parsing, lines joined across records and chunk boundaries, --since. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LineAssembler, MAX_OPEN_LINE, parseRecord, parseSince, stampNs, type LogLine } from '../../src/logs/records.js';
import { prng, runSeed } from '../helpers/prng.js';

const TS = '2026-11-30T00:50:23.123456789Z';

test('a record: time in nanoseconds, stream, F/P, the bytes after one space (spaces and any byte but newline kept)', () => {
  const r = parseRecord(Buffer.from(`${TS} stderr P  two  spaces\xff`, 'latin1'))!;
  assert.is(r.stream, 'stderr');
  assert.is(r.full, false);
  assert.is(r.content.toString('latin1'), ' two  spaces\xff');
  assert.is(r.ns, BigInt(Date.parse('2026-11-30T00:50:23Z')) * 1_000_000n + 123_456_789n);
  for (const bad of [`${TS} stdin F x`, `${TS} stdout X x`, `${TS} stdout Fx`, `${TS.replace('Z', '')} stdout F x`,
    '2026-13-30T00:50:23.123456789Z stdout F x', `${TS.replace('.123456789', '.1234')} stdout F x`, '', 'x']) {
    assert.is(parseRecord(Buffer.from(bad)), undefined, bad);
  }
  assert.is(stampNs('2026-02-30T00:00:00.000000000Z'), BigInt(Date.parse('2026-03-02T00:00:00Z')) * 1_000_000n); // Date's own reading
});

test('lines: P records joined to the F of the same stream, streams apart, whatever the chunking (seeded)', () => {
  const text = `${TS} stdout P ab\n${TS} stderr F err\n${TS} stdout P cd\n${TS} stdout F ef\ngarbage\n${TS} ocivirt F note\n${TS} stdout P open`;
  const expected = [['stderr', 'err', true], ['stdout', 'abcdef', true], ['ocivirt', 'note', true], ['stdout', 'open', false]];
  const seed = runSeed('log chunking');
  const rnd = prng(seed);
  for (let round = 0; round < 50; round++) {
    const got: LogLine[] = [];
    const asm = new LineAssembler((l) => got.push(l));
    const bytes = Buffer.from(text + '\n');
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(rnd() * 40);
      asm.push(bytes.subarray(i, i + n));
      i += n;
    }
    asm.end();
    assert.equal(got.map((l) => [l.stream, l.data.toString(), l.complete]), expected, `seed ${seed}`);
    assert.is(asm.bad, 1);
  }
  // without the final newline the last record is still being written: held, then out as an open line at the end
  const got: LogLine[] = [];
  const asm = new LineAssembler((l) => got.push(l));
  asm.push(Buffer.from(`${TS} stdout P open\n${TS} stdout F mo`));
  assert.is(asm.pending, `${TS} stdout F mo`.length);
  asm.end();
  assert.equal(got.map((l) => [l.data.toString(), l.complete]), [['open', false]]);
});

test('hostile files: a line that never ends and P records that never reach their F hold at most MAX_OPEN_LINE', () => {
  const got: LogLine[] = [];
  const asm = new LineAssembler((l) => got.push(l));
  const piece = 'y'.repeat(64 * 1024);
  for (let i = 0; i < 40; i++) asm.push(Buffer.from(`${TS} stdout P ${piece}\n`)); // 2.5 MiB, no F
  assert.ok(got.length >= 2, `${got.length} pieces out`);
  assert.ok(got.every((l) => !l.complete && l.data.length <= MAX_OPEN_LINE + piece.length));
  const endless = Buffer.alloc(256 * 1024, 0x7a);
  for (let i = 0; i < 8; i++) asm.push(endless); // 2 MiB without a newline
  assert.ok(asm.pending <= MAX_OPEN_LINE, `${asm.pending} bytes held`);
  assert.ok(asm.bad >= 1);
});

test('--since: RFC 3339 with nanoseconds and offsets, dates, durations back from now; anything else refused', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');
  assert.is(parseSince('2026-11-30T00:50:23.123456789Z'), stampNs(TS));
  assert.is(parseSince('2026-11-30T01:50:23.5+01:00'), BigInt(Date.parse('2026-11-30T00:50:23Z')) * 1_000_000n + 500_000_000n);
  assert.is(parseSince('2026-11-30'), BigInt(Date.parse('2026-11-30T00:00:00Z')) * 1_000_000n);
  assert.is(parseSince('90s', now), BigInt(now - 90_000) * 1_000_000n);
  assert.is(parseSince('1.5h', now), BigInt(now - 5_400_000) * 1_000_000n);
  assert.is(parseSince('2d', now), BigInt(now - 172_800_000) * 1_000_000n);
  for (const bad of ['', 'yesterday', '10', '10x', '-5m', '2026-11-30.5', '2026-11-30T00:50:23.1234567890Z', '2026-99-99']) {
    assert.is(parseSince(bad, now), undefined, bad);
  }
});

test.run();
