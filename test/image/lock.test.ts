import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BundleBusyError, bundlePaths, lockBundle } from '../../src/image/bundle-dir.js';

const racerJs = fileURLToPath(new URL('./lock-racer.js', import.meta.url));
let root = '';
test.before(() => {
  root = mkdtempSync(join(tmpdir(), 'ocivirt-lock-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

/** A racer process and a way to send it a line and await its answer. */
function racer() {
  const child: ChildProcess = spawn(process.execPath, [racerJs], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers: string[] = [];
  const waiting: ((s: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else answers.push(l);
  });
  const ask = (line: string): Promise<string> => {
    const p = new Promise<string>((r) => {
      const a = answers.shift();
      if (a !== undefined) r(a);
      else waiting.push(r);
    });
    child.stdin!.write(line + '\n');
    return p;
  };
  return { child, ask };
}

/** A process that held the lock file and is gone: what a crash leaves, with the pid of a dead or a reused process. */
function leftover(dir: string, pid: number): string {
  const p = bundlePaths(join(dir, 'bundle'));
  writeFileSync(p.lock, `${pid}\n`);
  return p.target;
}

/** Two processes race to take over the lock a crash left, `rounds` times: exactly one wins each round. */
async function race(name: string, leftPid: number, rounds: number): Promise<void> {
  const a = racer();
  const b = racer();
  try {
    for (let round = 0; round < rounds; round++) {
      const target = leftover(mkdtempSync(join(root, `${name}-${round}-`)), leftPid);
      const answers = await Promise.all([a.ask(`take ${target}`), b.ask(`take ${target}`)]);
      const won = answers.filter((x) => x === 'won').length;
      assert.is(won, 1, `round ${round}: ${JSON.stringify(answers)}`);
      assert.match(answers.find((x) => x !== 'won')!, /another unpack \(process (\d+|unknown)\) is working on this bundle/);
      await Promise.all([a.ask('release'), b.ask('release')]);
      assert.not.ok(existsSync(bundlePaths(target).lock), 'released and removed');
    }
  } finally {
    a.child.stdin!.end();
    b.child.stdin!.end();
  }
}

test('two processes racing to take over a lock left by a crash (its pid is dead): exactly one wins, every time', () => race('dead', 4194303, 200));

test('two processes racing to take over a lock left by a crash (its pid now names another live process): exactly one wins, every time', () => race('reused', 1, 50));

test('a lock file naming a live process that does not hold it (a reused pid) is taken; a held one is not, in this process either', async () => {
  const dir = mkdtempSync(join(root, 'reuse-'));
  const target = leftover(dir, 1);
  const unlock = await lockBundle(bundlePaths(target));
  try {
    await lockBundle(bundlePaths(target));
    assert.unreachable('held by this process already');
  } catch (e) {
    assert.instance(e, BundleBusyError);
    assert.match((e as Error).message, new RegExp(`another unpack \\(process ${process.pid}\\)`));
  }
  await unlock();
  assert.equal(readdirSync(dir), []);
  const again = await lockBundle(bundlePaths(target));
  await again();
});

test('a lock held by a process that then dies is free at once', async () => {
  const dir = mkdtempSync(join(root, 'dies-'));
  const target = join(dir, 'bundle');
  const r = racer();
  assert.is(await r.ask(`take ${target}`), 'won');
  try {
    await lockBundle(bundlePaths(target));
    assert.unreachable('held by the other process');
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`another unpack \\(process ${r.child.pid}\\)`));
  }
  const exited = new Promise((res) => r.child.once('exit', res));
  r.child.kill('SIGKILL');
  await exited;
  const unlock = await lockBundle(bundlePaths(target));
  await unlock();
});

test.run();
