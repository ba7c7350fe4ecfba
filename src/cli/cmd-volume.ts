/** `ocivirt volume list | remove NAME`: the volumes in the state directory, their size and users. */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError, UsageError } from '../errors.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { describeVolumes, existingVolume, isVolumeName, volumesDir, volumeUsers, volumesRoot } from '../volumes/index.js';
import { parseCommandArgs } from './args.js';
import { RECONCILE_FLAGS, RECONCILE_FLAGS_USAGE, reconcileSetup } from './cmd-plan.js';
import type { Command, CommandIO } from './command.js';
import { printable } from './printable.js';

const usage = `Usage: ocivirt volume list --spool DIR [--state DIR] [--uri URI] [--config FILE] [--json]
       ocivirt volume remove NAME --spool DIR [--state DIR] [--uri URI] [--config FILE]

Volumes live in <state>/volumes/NAME: named ones (settings "volumes": ["NAME:/path"]) and one
per image VOLUME of an entry (_DOMAIN.HASH). ocivirt never removes one by itself.

  list      every volume, its size on disk and its users: the libvirt domains whose
            definition mounts it and the spool entries that name it (or, for an image
            VOLUME's, the entry it was made for)
  remove    removes the volume and its data; refused (exit 2, naming them) while it has users

Options:
${RECONCILE_FLAGS_USAGE}
  --json          list: the volumes as JSON (name, path, bytes, users)

Exit codes: 0 done, 2 bad usage, an unknown volume or one in use, 1 libvirt unavailable or
another failure.
`;

export const volumeCommand: Command = {
  name: 'volume',
  summary: 'list volumes (size, users) or remove one that nothing uses',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('volume', argv, { ...RECONCILE_FLAGS, json: { type: 'boolean' } }, { min: 1, max: 2 });
    const [action, name] = positionals;
    if (action !== 'list' && action !== 'remove') throw new UsageError(`volume: unknown action '${action}' (list or remove; see 'ocivirt volume --help')`);
    if ((action === 'remove') !== (name !== undefined)) throw new UsageError(`volume ${action}: ${action === 'remove' ? 'which volume? (NAME)' : 'takes no NAME'}`);
    // a hostile name is refused before anything is read or connected
    if (name !== undefined && !isVolumeName(name)) throw new InputError(`${JSON.stringify(name)} is not a volume name`, { field: 'NAME' });
    const { config, opts } = await reconcileSetup('volume', values, io);
    const where = { spoolDir: config.spoolDir, ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}) };
    return withLibvirt(config.uri, { logger: opts.log }, async (port) => {
      if (action === 'list') {
        const volumes = await describeVolumes(config.stateDir, { ...where, port });
        if (values.json) io.stdout.write(JSON.stringify(volumes, null, 2) + '\n');
        else io.stdout.write(formatVolumes(volumes));
        return 0;
      }
      await volumesRoot(config.stateDir);
      const path = join(volumesDir(config.stateDir), name!);
      if (!(await existingVolume(path))) throw new InputError('no such volume', { file: path });
      const users = (await volumeUsers(config.stateDir, { ...where, port })).get(name!) ?? [];
      if (users.length) throw new InputError(`in use by ${users.join(', ')}: remove or change those first`, { file: path });
      await rm(path, { recursive: true });
      io.stdout.write(`removed volume ${printable(name!)}\n`);
      return 0;
    });
  },
};

function formatVolumes(volumes: readonly { name: string; bytes: number; users: string[] }[]): string {
  const rows = volumes.map((v) => [v.name, Number.isNaN(v.bytes) ? '?' : String(v.bytes), v.users.length ? v.users.join(', ') : '-'].map(printable));
  const head = ['NAME', 'BYTES', 'USERS'];
  const widths = [0, 1].map((i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padStart(widths[1]!)}  ${r[2]}\n`;
  return [head, ...rows].map(line).join('') + `${volumes.length} volumes, ${volumes.filter((v) => v.users.length === 0).length} unused\n`;
}
