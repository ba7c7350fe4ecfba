/**
 * Runs the real `ocivirt daemon` (compiled CLI) as a child process for end-to-end tests: its
 * JSON log parsed into events, waits on them, signals, and its exit. Also builds spool entries.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import { cleanupDomains, makeTempDir, removeTempDir } from '../helpers/libvirt.js';
import { repoRoot } from '../helpers/schema.js';

export type LogEvent = Record<string, unknown> & { event: string };

export class DaemonProcess {
  readonly lines: LogEvent[] = [];
  /** performance.now() when each line arrived (same index as `lines`). */
  readonly arrivals: number[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private buffer = '';
  private waiters: (() => void)[] = [];

  private constructor(readonly child: ChildProcess) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      this.buffer += d;
      let nl;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (line.trim() === '') continue;
        try {
          this.lines.push(JSON.parse(line) as LogEvent);
          this.arrivals.push(performance.now());
        } catch {
          this.stderr += `unparsable stdout line: ${line}\n`;
        }
      }
      this.wake();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => (this.wake(), resolve({ code, signal }))));
  }

  /** Starts `ocivirt daemon --config FILE`; resolves at `daemon.started`, rejects if it exits first. */
  static async start(configFile: string, env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): Promise<DaemonProcess> {
    const d = DaemonProcess.spawn(configFile, env, nodeArgs);
    await d.waitFor((e) => e.event === 'daemon.started', 30_000, 'daemon.started');
    return d;
  }

  /** Starts `ocivirt daemon --config FILE` without waiting for anything. */
  static spawn(configFile: string, env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): DaemonProcess {
    const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    const child = spawn(process.execPath, [...nodeArgs, main, 'daemon', '--config', configFile], {
      env: { ...process.env, OCIVIRT_CONFIG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new DaemonProcess(child);
  }

  /** Starts it expecting it to fail: resolves with the exit code and stderr. */
  static async startFailing(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
    const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    const child = spawn(process.execPath, [main, 'daemon', '--config', configFile], {
      env: { ...process.env, OCIVIRT_CONFIG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const d = new DaemonProcess(child);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const { code } = await d.exited;
    clearTimeout(timer);
    return { code, stderr: d.stderr };
  }

  /** The events so far matching `pred`, from line `from` on. */
  events(pred: (e: LogEvent) => boolean = () => true, from = 0): LogEvent[] {
    return this.lines.slice(from).filter(pred);
  }

  /** The first event (from index `from` on) matching `pred`; throws after `ms`, or if the daemon exits. */
  async waitFor(pred: (e: LogEvent) => boolean, ms: number, what: string, from = 0): Promise<LogEvent> {
    const end = Date.now() + ms;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (exited) throw new Error(`daemon exited while waiting for ${what}; stderr: ${this.stderr}`);
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  /** Waits for `event` about `entry`; an entry.failed for it first is an error with its reason. */
  async waitForEntry(event: string, entry: string, ms: number, from = 0): Promise<LogEvent> {
    const hit = await this.waitFor((e) => e.entry === entry && (e.event === event || e.event === 'entry.failed'), ms, `${event} ${entry}`, from);
    if (hit.event === 'entry.failed' && event !== 'entry.failed') throw new Error(`${entry} failed instead of ${event}: ${String(hit.err)}`);
    return hit;
  }

  /** Waits until `count` events match. */
  async waitForCount(pred: (e: LogEvent) => boolean, count: number, ms: number, what: string): Promise<LogEvent[]> {
    const end = Date.now() + ms;
    for (;;) {
      const hits = this.lines.filter(pred);
      if (hits.length >= count) return hits;
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${count} ${what} (saw ${hits.length})`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** SIGTERM and wait; SIGKILL after `ms` as a last resort (the test then fails on the code). */
  async stop(ms = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

export interface DaemonDirs {
  base: string;
  spool: string;
  staging: string;
  state: string;
  export: string;
}

/** spool/state/export beside a staging dir on the same file system (so renames are atomic). */
export function daemonDirs(base: string): DaemonDirs {
  const dirs = { base, spool: join(base, 'spool'), staging: join(base, 'staging'), state: join(base, 'state'), export: join(base, 'export') };
  for (const d of [dirs.spool, dirs.staging]) mkdirSync(d, { recursive: true, mode: 0o700 });
  return dirs;
}

export interface DaemonSandbox {
  tmp: string;
  dirs: DaemonDirs;
  /** The test's daemon, stopped after the file's tests. */
  daemon: DaemonProcess | undefined;
}

/**
 * A daemon test file's sandbox: domains named `prefix*` removed before its tests and after them
 * (even when they fail, once its daemon is stopped), a temp dir with the daemon's directories.
 */
export function daemonSandbox(prefix: string, label: string): DaemonSandbox {
  const sb: DaemonSandbox = { tmp: '', dirs: { base: '', spool: '', staging: '', state: '', export: '' }, daemon: undefined };
  test.before(() => {
    cleanupDomains(prefix);
    sb.tmp = makeTempDir(label);
    sb.dirs = daemonDirs(sb.tmp);
  });
  test.after(() => stopAndClean(sb.daemon, prefix, sb.tmp));
  return sb;
}

/** A spool file written beside the spool, then renamed in: the watcher sees it whole. */
export function putSpoolJson(dirs: DaemonDirs, name: string, value: unknown): void {
  const staged = join(dirs.staging, name);
  writeFileSync(staged, JSON.stringify(value));
  renameSync(staged, join(dirs.spool, name));
}

export function writeConfig(file: string, dirs: DaemonDirs, extra: Record<string, unknown>): void {
  // the tests start what they annotate (org.ocivirt.start), not every domain as the default does
  writeFileSync(file, JSON.stringify({ spoolDir: dirs.spool, stateDir: dirs.state, exportDir: dirs.export, startPolicy: 'annotation', ...extra }, null, 2));
}

/** A runtime config for the bundle tests: busybox as init. */
export function bundleConfig(args: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: { args, cwd: '/', env: ['PATH=/bin:/usr/bin'], user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
    ...extra,
  };
}

/**
 * A bundle with a one-file rootfs (busybox, hard-linked from `busybox` so hundreds cost no
 * space): enough to define a domain. Use buildBusyboxRootfs for one that starts.
 */
export function writeSmallBundle(dir: string, busybox: string, config: Record<string, unknown>): void {
  mkdirSync(join(dir, 'rootfs', 'bin'), { recursive: true });
  linkSync(busybox, join(dir, 'rootfs', 'bin', 'busybox'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

/** A private copy of busybox in `dir` to hard-link from. */
export function busyboxCopy(dir: string): string {
  const p = join(dir, 'busybox');
  copyFileSync('/bin/busybox', p);
  return p;
}

/** The end of a test file that ran a daemon on libvirtd: the daemon stopped, then its domains and temp dir removed, whatever happened. */
export async function stopAndClean(daemon: DaemonProcess | undefined, prefix: string, tmp: string): Promise<void> {
  try {
    await daemon?.stop();
  } finally {
    cleanupDomains(prefix);
    removeTempDir(tmp);
  }
}
