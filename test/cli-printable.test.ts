/**
 * Entry and domain names come from the spool: a name holding a newline (or any control
 * character) must not print a line of its own in the text output of plan, sync and status.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatPlan } from '../src/cli/cmd-plan.js';
import { printable } from '../src/cli/printable.js';

const bin = fileURLToPath(new URL('../../bin/ocivirt', import.meta.url));
const HOSTILE = ['a\nfail    evil  forged line', 'b\r\u001b[2Kc', 'd\u2028e', 'f\u202eg', 'h\u0085i', 'tab\there', 'back\\nslash'];

test('printable escapes every control and line-breaking character, and the backslash', () => {
  assert.is(printable('a\nb'), 'a\\nb');
  assert.is(printable('b\r\u001b[2Kc'), 'b\\r\\u001b[2Kc');
  assert.is(printable('d\u2028e'), 'd\\u2028e');
  assert.is(printable('f\u202eg'), 'f\\u202eg');
  assert.is(printable('h\u0085i'), 'h\\u0085i');
  assert.is(printable('back\\nslash'), 'back\\\\nslash', 'a literal backslash-n is not shown as an escaped newline');
  assert.is(printable('web-1 ü 日本'), 'web-1 ü 日本', 'ordinary text, non-ASCII included, is left alone');
  for (const h of HOSTILE) assert.not.match(printable(h), /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
});

test('plan and sync text: one line per item, whatever the names hold', () => {
  const items = HOSTILE.map((name) => ({ domain: `ct-${name}`, entry: name, action: 'create' as const, reason: `new entry ${name}` }));
  const text = formatPlan(items);
  assert.is(text.split('\n').length, items.length);
  assert.match(text, 'ct-a\\nfail    evil  forged line');
});

test('status text: one line per entry, whatever the names and errors hold', () => {
  const state = mkdtempSync(join(tmpdir(), 'ocivirt-printable-'));
  try {
    const entries = HOSTILE.map((name) => ({ entry: name, domain: name, action: 'fail', result: 'failed', reason: name, error: `bad ${name}`, at: '' }));
    writeFileSync(join(state, 'status.json'), JSON.stringify({ updated: new Date().toISOString(), entries }));
    const r = spawnSync(bin, ['status', '--state', state], { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: '' } });
    assert.is(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.is(lines.length, entries.length + 2, r.stdout); // header, entries, summary
    assert.ok(lines.some((l) => l.startsWith('b\\r\\u001b[2Kc ')), r.stdout);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

test.run();
