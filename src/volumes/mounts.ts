/**
 * Which volumes an entry mounts: the named volumes its settings give, and an anonymous volume for
 * each of its image's VOLUMEs that nothing else (a settings volume, a config.json mount) is
 * mounted over, as Docker does. Each is made if new (store.ts) and becomes a bind mount of the
 * volume directory, added to the config after the trust check: its source is ocivirt's own, never
 * a path a spool entry wrote, so the bundle and bindAllowList rules are neither needed nor widened.
 */
import { isAbsolute, posix } from 'node:path';
import { InputError } from '../errors.js';
import type { Mount, RuntimeConfig } from '../oci/runtime-spec.js';
import type { EntrySettings } from '../settings/keys.js';
import { anonymousOwner, anonymousVolumeName } from './names.js';
import { ensureVolume, type IdMap } from './store.js';

export interface VolumeMount {
  name: string;
  destination: string;
  readOnly: boolean;
  /** The volume directory (made, checked). */
  source: string;
  /** For an image VOLUME. */
  anonymous: boolean;
}

export interface EntryVolumesInput {
  domainName: string;
  settings?: EntrySettings;
  /** The settings file: errors name it. */
  settingsFile?: string;
  /** The image config's `Volumes` (keys are container paths); the image is hostile input. */
  imageVolumes?: Record<string, unknown>;
  /** The config after the settings, before the volumes: its mounts and user namespace. */
  config: RuntimeConfig;
  /** The tree new volumes are seeded from: the pristine image when there is one, else the rootfs. */
  seedRoot: string;
  stateDir?: string;
  /** Ends a seed copy (the entry's deadline, the daemon stopping). */
  signal?: AbortSignal;
}

/** More image VOLUMEs than any real image has: a hostile image must not make a directory per key. */
export const MAX_IMAGE_VOLUMES = 64;

/** The entry's volumes, made when new; `warnings` for image VOLUMEs that cannot be one. */
export async function entryVolumes(input: EntryVolumesInput): Promise<{ volumes: VolumeMount[]; warnings: string[] }> {
  const warnings: string[] = [];
  const wanted: Omit<VolumeMount, 'source'>[] = [];
  for (const [i, v] of (input.settings?.volumes ?? []).entries()) {
    if (v.kind !== 'named') continue;
    // an anonymous volume is its domain's own: a settings file may name its entry's (an export does), never another's
    const owner = anonymousOwner(v.name);
    if (v.name.startsWith('_') && owner !== input.domainName)
      throw new InputError(`${v.name} is ${owner === undefined ? 'no volume name' : `the anonymous volume of domain ${owner}`}: a settings file may name only its own entry's (domain ${input.domainName})`, {
        ...(input.settingsFile !== undefined ? { file: input.settingsFile } : {}),
        field: `volumes[${i}]`,
      });
    wanted.push({ name: v.name, destination: v.destination, readOnly: v.readOnly, anonymous: false });
  }
  const taken = new Set([...(input.config.mounts ?? []).map((m) => m.destination), ...wanted.map((w) => w.destination)]);
  const declared = Object.keys(input.imageVolumes ?? {});
  if (declared.length > MAX_IMAGE_VOLUMES)
    throw new InputError(`the image declares ${declared.length} VOLUMEs, more than ${MAX_IMAGE_VOLUMES}: refused (a volume directory is made for each)`, { field: 'config.Volumes' });
  for (const raw of declared.sort()) {
    const destination = isAbsolute(raw) ? posix.normalize(raw).replace(/(.)\/$/, '$1') : undefined;
    if (destination === undefined || destination === '/' || /[\0-\x1f\x7f]/.test(raw)) {
      warnings.push(`image VOLUME ${JSON.stringify(raw).slice(0, 100)} is not an absolute path other than /: no volume made for it`);
      continue;
    }
    if (taken.has(destination)) continue;
    taken.add(destination);
    wanted.push({ name: anonymousVolumeName(input.domainName, destination), destination, readOnly: false, anonymous: true });
  }
  if (wanted.length === 0) return { volumes: [], warnings };
  if (input.stateDir === undefined)
    throw new InputError('volumes need a state directory (--state) to be kept in', { ...(input.settingsFile !== undefined ? { file: input.settingsFile, field: 'volumes' } : {}) });
  const idmap = userNamespaceOf(input.config);
  const volumes: VolumeMount[] = [];
  for (const w of wanted) {
    const source = await ensureVolume(input.stateDir, w.name, {
      seed: { root: input.seedRoot, path: w.destination },
      ...(idmap ? { idmap } : {}),
      ...(input.signal ? { signal: input.signal } : {}),
    });
    volumes.push({ ...w, source });
  }
  return { volumes, warnings };
}

/** The volumes as runtime-config bind mounts (the converter makes each a `<filesystem type='mount'>`). */
export function volumeMounts(volumes: readonly VolumeMount[]): Mount[] {
  return volumes.map((v) => ({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', v.readOnly ? 'ro' : 'rw'] }));
}

function userNamespaceOf(config: RuntimeConfig): IdMap | undefined {
  const linux = config.linux;
  if (!linux?.namespaces?.some((n) => n.type === 'user') || !linux.uidMappings?.length || !linux.gidMappings?.length) return undefined;
  return { uid: linux.uidMappings, gid: linux.gidMappings };
}
