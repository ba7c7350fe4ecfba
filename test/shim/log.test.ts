/**
 * The shim's output capture (shim/log.c): the real binary as PID 1 of a new pid namespace (like
 * shim.test.ts), with a `log` record, a busybox process printing, and the log directory read back.
 * Needs root; skipped otherwise. The stuck-disk case needs a loop device (fsfreeze on an ext4 image).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { encodeShimSpec } from '../../src/shim/spec.js';

const root = new URL('../../..', import.meta.url).pathname;
const SHIM = join(root, 'dist/shim/ocivirt-init');
const BUSYBOX = '/bin/busybox';
const isRoot = process.getuid?.() === 0;
const it = isRoot ? test : test.skip;
const MiB = 1024 * 1024;

const scratch = mkdtempSync(join(tmpdir(), 'ocivirt-shimlog-'));
let n = 0;
function caseDir(): string {
  const d = join(scratch, String(n++));
  mkdirSync(join(d, 'run'), { recursive: true });
  return d;
}

function writeSpec(dir: string, script: string, fileBytes = 8 * MiB, logDir = join(dir, 'run/log')): string {
  const config = {
    ociVersion: '1.2.0',
    process: { cwd: '/', env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], user: { uid: 0, gid: 0 }, args: [BUSYBOX, 'sh', '-c', script] },
  } as unknown as RuntimeConfig;
  const spec = join(dir, 'spec');
  writeFileSync(spec, encodeShimSpec(config, { statusPath: join(dir, 'status'), log: { dir: logDir, fileBytes } }));
  return spec;
}
const argv = (spec: string) => ['unshare', '--pid', '--fork', '--mount-proc', SHIM, spec];

function run(dir: string, script: string, fileBytes?: number) {
  const a = argv(writeSpec(dir, script, fileBytes));
  const r = spawnSync(a[0]!, a.slice(1), { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * MiB });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, status: readFileSync(join(dir, 'status'), 'utf8') };
}

const RECORD = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr|ocivirt) ([PF]) (.*)$/s;
interface Rec { ts: string; stream: string; tag: string; content: string }

/** Every record of `previous` then `current`; a line that is not a record fails the test. */
function records(logDir: string): Rec[] {
  const out: Rec[] = [];
  for (const name of ['previous', 'current']) {
    const p = join(logDir, name);
    if (!existsSync(p) || !lstatSync(p).isFile()) continue;
    const text = readFileSync(p, 'latin1');
    assert.ok(text === '' || text.endsWith('\n'), `${name} ends inside a record`);
    for (const line of text.split('\n').slice(0, -1)) {
      const m = RECORD.exec(line);
      assert.ok(m, `${name}: not a record: ${JSON.stringify(line.slice(0, 120))}`);
      out.push({ ts: m[1]!, stream: m[2]!, tag: m[3]!, content: m[4]! });
    }
  }
  return out;
}
/** The lines of one stream, P records joined to the F that ends them. */
function lines(recs: Rec[], stream: string): string[] {
  const out: string[] = [];
  let part = '';
  for (const r of recs.filter((x) => x.stream === stream)) {
    part += r.content;
    if (r.tag === 'F') {
      out.push(part);
      part = '';
    }
  }
  if (part) out.push(part);
  return out;
}

it('100,000 lines printed: every one in the log, in order, as records with a timestamp and stream; stderr apart', () => {
  const dir = caseDir();
  const r = run(dir, 'seq 1 100000; echo oops >&2; seq 1 3 >&2');
  assert.is(r.code, 0, r.stderr);
  assert.is(r.status, 'exited 0\n');
  assert.is(r.stdout, '', 'the output went to the log, not to a console that is not a tty');
  const recs = records(join(dir, 'run/log'));
  const out = lines(recs, 'stdout');
  assert.is(out.length, 100_000);
  assert.ok(out.every((l, i) => l === String(i + 1)), 'lines missing or out of order');
  assert.equal(lines(recs, 'stderr'), ['oops', '1', '2', '3']);
  const stamps = recs.map((x) => x.ts);
  assert.equal(stamps, [...stamps].sort(), 'timestamps go forward');
  assert.ok(Math.abs(Date.parse(stamps[0]!) - Date.now()) < 60_000, `a wall-clock UTC timestamp: ${stamps[0]}`);
});

it('a line longer than a record is split into P records ending with an F; output without a final newline is kept', () => {
  const dir = caseDir();
  const long = 'x'.repeat(20_000);
  const r = run(dir, `printf '%s\\n' ${long}; printf 'no newline'`);
  assert.is(r.code, 0, r.stderr);
  const recs = records(join(dir, 'run/log'));
  assert.ok(recs.filter((x) => x.tag === 'P').length >= 4, 'split');
  assert.equal(lines(recs, 'stdout'), [long, 'no newline']);
  assert.is(recs.at(-1)!.tag, 'P');
});

it('a process writing fast for long: each file stays under its cap, rotation cuts between records, the newest output is kept', () => {
  const dir = caseDir();
  const line = '0123456789'.repeat(10);
  const r = run(dir, `yes ${line} | head -n 600000; echo last`, 1 * MiB); // 60 MB
  assert.is(r.code, 0, r.stderr);
  const logDir = join(dir, 'run/log');
  for (const name of ['current', 'previous']) {
    const size = lstatSync(join(logDir, name)).size;
    assert.ok(size <= 1 * MiB && size > 0, `${name}: ${size} bytes`);
  }
  assert.equal(readdirSync(logDir).sort(), ['current', 'previous']);
  const out = lines(records(logDir), 'stdout'); // every line of both files is a whole record
  assert.is(out.at(-1), 'last');
  assert.ok(out.slice(0, -1).every((l) => l === line));
  // rotation happens when the next record no longer fits: previous was filled to within one record of
  // the cap (current may have just begun, so how many lines are kept in all depends on where it cut)
  const previous = lstatSync(join(logDir, 'previous')).size;
  assert.ok(previous > 1 * MiB - 256, `previous holds ${previous} bytes: rotated before it was full`);
});

it("a start moves the last run's current to previous; the next run writes a fresh current", () => {
  const dir = caseDir();
  run(dir, 'echo first run');
  run(dir, 'echo second run');
  const logDir = join(dir, 'run/log');
  assert.match(readFileSync(join(logDir, 'previous'), 'utf8'), / stdout F first run\n$/);
  assert.match(readFileSync(join(logDir, 'current'), 'utf8'), / stdout F second run\n$/);
});

it('hostile log directory: a symlink, a FIFO, a non-empty directory at current and previous are never followed, opened nor written', () => {
  for (const plant of ['symlink', 'fifo', 'dirs'] as const) {
    const dir = caseDir();
    const logDir = join(dir, 'run/log');
    mkdirSync(logDir);
    const target = join(dir, 'target');
    writeFileSync(target, 'host file\n');
    if (plant === 'symlink') {
      symlinkSync(target, join(logDir, 'current'));
      symlinkSync(target, join(logDir, 'previous'));
    } else if (plant === 'fifo') {
      assert.is(spawnSync('mkfifo', [join(logDir, 'current')]).status, 0);
    } else {
      mkdirSync(join(logDir, 'current'));
      writeFileSync(join(logDir, 'current', 'inside'), '');
      mkdirSync(join(logDir, 'previous'));
      writeFileSync(join(logDir, 'previous', 'inside'), '');
    }
    // the process replants while it runs, then the output rotates over it (small cap)
    const replant = plant === 'symlink' ? `ln -sf ${target} ${logDir}/previous` : `mkdir -p ${logDir}/previous/x`;
    const r = run(dir, `echo start; ${replant}; yes 0123456789012345678901234567890123456789 | head -n 5000; echo end`, 64 * 1024);
    assert.is(r.code, 0, `${plant}: ${r.stderr}`);
    assert.is(readFileSync(target, 'utf8'), 'host file\n', `${plant}: the symlink's target was written`);
    assert.ok(lstatSync(join(logDir, 'current')).isFile(), plant);
    assert.is(lines(records(logDir), 'stdout').at(-1), 'end', plant);
    for (const name of ['current', 'previous']) assert.ok(lstatSync(join(logDir, name)).size <= 64 * 1024, `${plant}: ${name} over the cap`);
  }
});

it('hostile log directory: the log directory itself a symlink (not followed: a fresh directory is made) or a file', () => {
  for (const plant of ['symlink', 'file'] as const) {
    const dir = caseDir();
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    if (plant === 'symlink') symlinkSync(elsewhere, join(dir, 'run/log'));
    else writeFileSync(join(dir, 'run/log'), 'x');
    const r = run(dir, 'echo hi');
    assert.is(r.code, 0, r.stderr);
    assert.equal(readdirSync(elsewhere), [], `${plant}: written through the symlink`);
    assert.ok(lstatSync(join(dir, 'run/log')).isDirectory(), plant);
    assert.equal(lines(records(join(dir, 'run/log')), 'stdout'), ['hi']);
  }
});

it('a symlink on the way to the log directory: capture is refused (the process runs with the console, says why)', () => {
  const dir = caseDir();
  mkdirSync(join(dir, 'real'));
  symlinkSync(join(dir, 'real'), join(dir, 'link'));
  const a = argv(writeSpec(dir, 'echo on the console', 8 * MiB, join(dir, 'link/log')));
  const r = spawnSync(a[0]!, a.slice(1), { encoding: 'utf8', timeout: 20_000 });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, 'on the console\n');
  assert.match(r.stderr, /ocivirt-init: log: .*link\/log: .*output goes to the console only/);
  assert.not.ok(existsSync(join(dir, 'real/log')));
});

it("the shim's own messages (a step that failed) are in the log as stderr", () => {
  const dir = caseDir();
  const config = { ociVersion: '1.2.0', process: { cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 }, args: ['no-such-program'] } } as unknown as RuntimeConfig;
  writeFileSync(join(dir, 'spec'), encodeShimSpec(config, { statusPath: join(dir, 'status'), log: { dir: join(dir, 'run/log'), fileBytes: 1 * MiB } }));
  const a = argv(join(dir, 'spec'));
  const r = spawnSync(a[0]!, a.slice(1), { encoding: 'utf8', timeout: 20_000 });
  assert.is(r.status, 127);
  assert.match(lines(records(join(dir, 'run/log')), 'stderr').join('\n'), /^ocivirt-init: exec no-such-program: not found/);
});

it('the log record is checked: relative directory, a cap below 64 KiB, twice', () => {
  const dir = caseDir();
  const base = encodeShimSpec({ ociVersion: '1.2.0', process: { cwd: '/', env: [], user: { uid: 0, gid: 0 }, args: ['/bin/true'] } } as unknown as RuntimeConfig);
  const withLog = (...tokens: string[]) => Buffer.concat([base.subarray(0, base.length - 4), Buffer.from(tokens.map((t) => `${t}\0`).join('')), Buffer.from('end\0')]);
  for (const [bytes, why] of [
    [withLog('log', 'rel', '65536'), /log: directory is not absolute/],
    [withLog('log', '/l', '65535'), /log: file bytes below 65536/],
    [withLog('log', '/l', '65536', 'log', '/l', '65536'), /log given twice/],
  ] as const) {
    writeFileSync(join(dir, 'spec'), bytes);
    const r = spawnSync(SHIM, [join(dir, 'spec')], { encoding: 'utf8' });
    assert.is(r.status, 125);
    assert.match(r.stderr, why);
  }
  assert.throws(() => encodeShimSpec({ ociVersion: '1.2.0', process: { cwd: '/', user: { uid: 0, gid: 0 }, args: ['/x'] } } as unknown as RuntimeConfig, { log: { dir: '/l', fileBytes: 1000 } }), /log.fileBytes/);
});

/** An ext4 image on a loop device, mounted on `at`; fsfreeze makes every write to it block, like a stuck disk. */
function loopFs(at: string): (() => void) | undefined {
  const img = `${at}.img`;
  if (spawnSync('truncate', ['-s', '96M', img]).status !== 0) return undefined;
  if (spawnSync('mkfs.ext4', ['-q', '-F', img]).status !== 0) return undefined;
  mkdirSync(at, { recursive: true });
  if (spawnSync('mount', ['-o', 'loop', img, at]).status !== 0) return undefined;
  return () => {
    spawnSync('fsfreeze', ['-u', at]);
    spawnSync('umount', [at]);
  };
}

const waitFor = async (what: string, ok: () => boolean, ms = 60_000) => {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

it('a stuck disk (fsfreeze): the process is not held up; what could not be written is dropped, counted exactly and said in the log', async () => {
  const dir = caseDir();
  const fs = join(dir, 'run');
  const unmount = loopFs(fs);
  if (!unmount) {
    console.log('  (skipped: no loop device to freeze)');
    return;
  }
  try {
    const go = join(dir, 'go');
    // 200 lines of 100,000 bytes (20 MB), once the test has frozen the disk
    const script = `echo started; while [ ! -e ${go} ]; do sleep 0.05; done; ` +
      'i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr "\\0" x; echo; i=$((i+1)); done; echo done';
    const spec = writeSpec(dir, script, 64 * MiB);
    const shim = spawn(argv(spec)[0]!, argv(spec).slice(1), { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => shim.on('exit', (code) => res(code)));
    const current = join(fs, 'log/current');
    await waitFor('the first line', () => existsSync(current) && readFileSync(current, 'utf8').includes('started'));
    assert.is(spawnSync('fsfreeze', ['-f', fs]).status, 0);
    writeFileSync(go, '');
    // the process finishes (the status file is outside the frozen filesystem) while the disk is stuck
    await waitFor('the process to end with the disk frozen', () => readFileSync(join(dir, 'status'), 'utf8').startsWith('exited'));
    assert.is(spawnSync('fsfreeze', ['-u', fs]).status, 0);
    assert.is(await exited, 0);
    const recs = records(join(fs, 'log'));
    const notices = recs.filter((x) => x.stream === 'ocivirt');
    assert.ok(notices.length >= 1, 'a record says output was dropped');
    let dropped = 0;
    for (const x of notices) {
      const m = /^ocivirt-init: (\d+) bytes \((\d+) records\) of output dropped/.exec(x.content);
      assert.ok(m, x.content);
      dropped += Number(m[1]);
    }
    // every byte printed is either in the log or counted as dropped
    const kept = recs.filter((x) => x.stream === 'stdout').reduce((sum, x) => sum + x.content.length + (x.tag === 'F' ? 1 : 0), 0);
    assert.is(kept + dropped, 'started\n'.length + 200 * 100_001 + 'done\n'.length);
    assert.ok(dropped > 0);
  } finally {
    unmount();
  }
});

test.after(() => rmSync(scratch, { recursive: true, force: true }));
test.run();
