/**
 * How a layer's tar stream may end. Accepted: end-of-archive blocks, or a clean end after the last
 * entry (its data complete, padding optional, end-of-archive blocks missing), the shape Debian's
 * umoci 0.4.7 `umoci insert` writes and Go's archive/tar and GNU tar read. Refused: an end inside
 * a header, inside an entry's data, or between extended headers and their entry; more than
 * MAX_TRAILING_BYTES after an end-of-archive block (fewer non-zero ones are a warning). Each shape is fed in many chunk sizes, since the
 * reader keeps state across chunks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import { BLOCK, MAX_TRAILING_BYTES, TarReader, type TarEntry } from '../../src/layer/tar-reader.js';
import { dir, entryBlocks, file, symlink, tar, type Entry } from '../helpers/tar.js';
import { apply, applyFails, sandbox, type Sandbox } from './util.js';

const LIMITS = { maxBytes: 1 << 30, maxEntries: 1000, maxNameLength: 4096, maxSparseRealSize: 1 << 30 };
const CHUNKS = [1, 7, 511, 512, 513, 4096, 1 << 20];

/** Reads `bytes` in chunks of `chunk`; returns each entry's name and data. */
function read(bytes: Buffer, chunk: number): string[] {
  return readWarning(bytes, chunk, []);
}

function readWarning(bytes: Buffer, chunk: number, warnings: string[]): string[] {
  const out: string[] = [];
  let cur: { e: TarEntry; data: Buffer[] } | undefined;
  const reader = new TarReader(
    {
      entry: (e) => {
        cur = { e, data: [] };
      },
      data: (d) => cur!.data.push(Buffer.from(d)),
      entryEnd: () => out.push(`${cur!.e.name}=${Buffer.concat(cur!.data).toString('latin1')}`),
    },
    LIMITS,
    (w) => warnings.push(w),
  );
  for (let i = 0; i < bytes.length; i += chunk) reader.write(bytes.subarray(i, i + chunk));
  reader.end();
  return out;
}

function refused(bytes: Buffer, chunk: number): string {
  try {
    read(bytes, chunk);
  } catch (e) {
    assert.instance(e, InputError);
    return (e as Error).message;
  }
  assert.unreachable(`accepted with chunks of ${chunk}`);
  return '';
}

/** The entries' blocks with no end-of-archive blocks, and the last entry's padding cut to `keep` bytes. */
function umociInsertShape(entries: Entry[], lastDataBytes: number, keepPadding = 0): Buffer {
  const whole = tar(entries, { endBlocks: 0 });
  const pad = (BLOCK - (lastDataBytes % BLOCK)) % BLOCK;
  return whole.subarray(0, whole.length - pad + keepPadding);
}

const entries = (): Entry[] => [dir('etc/'), file('etc/a', 'alpha'), symlink('etc/l', 'a'), file('etc/last', 'the last entry')];
const EXPECTED = ['etc/=', 'etc/a=alpha', 'etc/l=', 'etc/last=the last entry'];

test('accepted: the last entry without its padding and without end-of-archive blocks', () => {
  const bytes = umociInsertShape(entries(), 'the last entry'.length);
  assert.is(bytes.length % BLOCK, 'the last entry'.length % BLOCK, 'the fixture is not cut where it should be');
  for (const c of CHUNKS) assert.equal(read(bytes, c), EXPECTED, `chunks of ${c}`);
});

test('accepted: part of the padding, or all of it, then nothing', () => {
  for (const keep of [1, 100, BLOCK - 'the last entry'.length]) {
    const bytes = umociInsertShape(entries(), 'the last entry'.length, keep);
    for (const c of CHUNKS) assert.equal(read(bytes, c), EXPECTED, `padding ${keep}, chunks of ${c}`);
  }
});

test('accepted: the last entry has no data (a directory, an empty file, a symlink)', () => {
  for (const last of [dir('srv/'), file('empty', ''), symlink('s', 'etc/a')]) {
    const bytes = tar([file('etc/a', 'alpha'), last], { endBlocks: 0 });
    for (const c of CHUNKS) assert.equal(read(bytes, c).length, 2, `${last.name}, chunks of ${c}`);
  }
});

test('accepted: data ending exactly on a block boundary, no end-of-archive blocks', () => {
  const bytes = tar([file('exact', Buffer.alloc(BLOCK * 2, 0x61))], { endBlocks: 0 });
  for (const c of CHUNKS) assert.equal(read(bytes, c), [`exact=${'a'.repeat(BLOCK * 2)}`]);
});

test('accepted: one end-of-archive block instead of two; an empty stream', () => {
  for (const c of CHUNKS) assert.equal(read(tar(entries(), { endBlocks: 1 }), c), EXPECTED);
  assert.equal(read(Buffer.alloc(0), 1), []);
});

test('refused: the stream ends inside the last entry\'s data', () => {
  const whole = tar([file('a', 'x'), file('big', Buffer.alloc(3000, 1))], { endBlocks: 0 });
  for (const cut of [BLOCK * 3, BLOCK * 3 + 1, whole.length - 800]) {
    for (const c of CHUNKS) assert.match(refused(whole.subarray(0, cut), c), /truncated: the stream ends inside an entry/);
  }
});

test('refused: the stream ends inside a header', () => {
  const whole = tar([file('a', 'x'), file('b', 'y')], { endBlocks: 0 });
  for (const cut of [BLOCK * 2 + 1, BLOCK * 2 + 100, BLOCK * 3 - 1]) {
    for (const c of CHUNKS) assert.match(refused(whole.subarray(0, cut), c), /truncated: the stream ends inside an entry/);
  }
});

test('refused: the stream ends after a PAX header or a GNU long name, before its entry', () => {
  const pax = entryBlocks({ ...file('a', 'x'), pax: { path: 'b' } });
  const long = entryBlocks({ ...file('f', 'x'), longName: `${'d/'.repeat(200)}f` });
  for (const cut of [pax.subarray(0, BLOCK * 2), long.subarray(0, BLOCK * 2)]) {
    assert.ok(cut.length === BLOCK * 2);
    for (const c of CHUNKS) assert.match(refused(cut, c), /truncated/);
  }
  // a PAX body cut short of its padding, too
  for (const c of CHUNKS) assert.match(refused(pax.subarray(0, BLOCK + 20), c), /truncated/);
});

test('accepted with a warning: non-zero bytes after an end-of-archive block (as umoci); garbage where a header should be is refused', () => {
  const trailing = tar(entries(), { endBlocks: 1, trailing: Buffer.from('MZ garbage') });
  for (const c of CHUNKS) {
    const warnings: string[] = [];
    assert.equal(readWarning(trailing, c, warnings), EXPECTED);
    assert.equal(warnings, ['10 bytes after the end-of-archive block ignored (not all zero)'], `chunks of ${c}`);
  }
  const zeros: string[] = [];
  readWarning(tar(entries(), { endBlocks: 2, trailing: Buffer.alloc(10240) }), 4096, zeros);
  assert.equal(zeros, [], 'zero padding is not worth a warning');
  const garbage = Buffer.concat([tar(entries(), { endBlocks: 0 }), Buffer.alloc(BLOCK, 0x41)]);
  for (const c of CHUNKS) assert.match(refused(garbage, c), /bad checksum/);
});

test('refused: more than MAX_TRAILING_BYTES after the end-of-archive block, zeros or not, before reading them all', () => {
  for (const fill of [0, 0x41]) {
    const bytes = tar(entries(), { endBlocks: 2, trailing: Buffer.alloc(MAX_TRAILING_BYTES + 1, fill) });
    for (const c of [4096, 1 << 20]) assert.match(refused(bytes, c), new RegExp(`more than ${MAX_TRAILING_BYTES} bytes after the end-of-archive block`));
  }
  // exactly the limit (after the two end blocks) is still padding
  const ok = tar(entries(), { endBlocks: 2, trailing: Buffer.alloc(MAX_TRAILING_BYTES - BLOCK * 2) });
  assert.equal(read(ok, 1 << 20), EXPECTED);
});

let sb: Sandbox;
test.before.each(() => {
  sb = sandbox();
});
test.after.each(() => sb.cleanup());

test('the applier: an umoci-insert-shaped layer gives the same tree as the same layer with its end blocks', async () => {
  await apply(sb, umociInsertShape(entries(), 'the last entry'.length));
  assert.is(readFileSync(join(sb.root, 'etc/last'), 'utf8'), 'the last entry');
  assert.is(readFileSync(join(sb.root, 'etc/a'), 'utf8'), 'alpha');
  assert.equal(sb.warnings, []);
});

test('the applier: a layer cut inside its last entry still fails, naming the entry', async () => {
  const whole = tar([file('etc/big', Buffer.alloc(3000, 1))], { endBlocks: 0 });
  const e = await applyFails(sb, whole.subarray(0, BLOCK + 1000));
  assert.match(e.message, /truncated/);
  assert.is(e.field, 'etc/big');
});

test.run();
