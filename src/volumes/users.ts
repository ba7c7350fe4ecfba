/**
 * What volumes there are and who uses them: a libvirt domain whose definition mounts the volume's
 * directory (running or not), and a spool entry whose settings name it (or, for an anonymous
 * volume, the entry it was made for) and would mount it again at the next pass. `ocivirt volume
 * remove` refuses a volume with any user.
 */
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LibvirtPort } from '../libvirt/port.js';
import { readEntrySettings } from '../settings/parse.js';
import { scanSpool } from '../spool/scan.js';
import { parseDomainXml } from '../xml/parse.js';
import { anonymousOwner, isVolumeName, volumesDir } from './names.js';

export interface VolumeInfo {
  name: string;
  path: string;
  /** Disk usage in bytes (du). */
  bytes: number;
  /** `domain NAME (PATH)` or `entry NAME (PATH)`, sorted. */
  users: string[];
}

/** Every volume in the state directory (staging and foreign names left out), by name. */
export async function listVolumes(stateDir: string): Promise<string[]> {
  const names = await readdir(volumesDir(stateDir)).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  return names.filter(isVolumeName).sort();
}

/** Users of each volume, from libvirt's definitions and the spool's entries. */
export async function volumeUsers(stateDir: string, where: { port?: LibvirtPort; spoolDir?: string; prefix?: string }): Promise<Map<string, string[]>> {
  const users = new Map<string, Set<string>>();
  const add = (name: string, who: string) => users.set(name, (users.get(name) ?? new Set()).add(who));
  const root = `${volumesDir(stateDir)}/`;
  if (where.port) {
    for (const d of await where.port.listDomains()) {
      const xml = await where.port.inactiveXml(d.name).catch(() => undefined); // gone meanwhile
      if (xml === undefined) continue;
      for (const fs of parseDomainXml(xml).devices.filesystems) {
        const dir = fs.source.dir;
        if (dir?.startsWith(root)) add(dir.slice(root.length).split('/')[0]!, `domain ${d.name} (${fs.target ?? '?'})`);
      }
    }
  }
  if (where.spoolDir !== undefined) {
    const { entries } = await scanSpool(where.spoolDir, { prefix: where.prefix ?? '' });
    const anonymous = (await listVolumes(stateDir)).filter((n) => anonymousOwner(n) !== undefined);
    for (const e of entries) {
      for (const n of anonymous) if (anonymousOwner(n) === e.domainName) add(n, `entry ${e.name} (an image VOLUME)`);
      const file = e.kind === 'settings' ? e.path : e.settings?.path;
      if (file === undefined) continue;
      const read = await readEntrySettings(file).catch(() => undefined); // a broken file mounts nothing
      for (const v of read?.settings.volumes ?? []) if (v.kind === 'named') add(v.name, `entry ${e.name} (${v.destination})`);
    }
  }
  return new Map([...users].map(([k, v]) => [k, [...v].sort()]));
}

/** The volumes with their size and users. */
export async function describeVolumes(stateDir: string, where: { port?: LibvirtPort; spoolDir?: string; prefix?: string }): Promise<VolumeInfo[]> {
  const users = await volumeUsers(stateDir, where);
  const out: VolumeInfo[] = [];
  for (const name of await listVolumes(stateDir)) {
    const path = join(volumesDir(stateDir), name);
    out.push({ name, path, bytes: await diskUsage(path), users: users.get(name) ?? [] });
  }
  return out;
}

/** du -sB1 (what the volume holds on disk; never follows a symlink). */
function diskUsage(path: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('du', ['-s', '-B1', '-P', '--', path], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', () => resolve(NaN));
    child.on('close', () => resolve(Number(/^(\d+)/.exec(out)?.[1] ?? NaN)));
  });
}
