/** The smallest runtime bundle a pass defines: config.json and a rootfs holding an executable /bin/sh. */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes (or rewrites) `<dir>` as a bundle whose init runs `/bin/sh arg`. */
export function writeMinimalBundle(dir: string, arg = 'v1', annotations: Record<string, string> = {}): void {
  writeShellBundle(dir, { process: { args: ['/bin/sh', arg], cwd: '/', user: { uid: 0, gid: 0 } }, annotations });
}

/** A bundle running `/bin/sh` in its own network namespace (what network attachments need); `extra` is laid over its config. */
export function writeNetworkedBundle(dir: string, extra: Record<string, unknown> = {}): void {
  writeShellBundle(dir, { linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }] }, ...extra });
}

function writeShellBundle(dir: string, extra: Record<string, unknown>): void {
  mkdirSync(join(dir, 'rootfs', 'bin'), { recursive: true });
  writeFileSync(join(dir, 'rootfs', 'bin', 'sh'), '#!\n');
  chmodSync(join(dir, 'rootfs', 'bin', 'sh'), 0o755);
  const config = {
    ociVersion: '1.0.2',
    process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
    ...extra,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}
