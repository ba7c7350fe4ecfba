/**
 * `ocivirt export`: one libvirt-lxc domain -> `<dir>/config.json`, what the daemon does on every
 * change; with --rootfs a self-contained bundle a spool takes back (export/bundle.ts).
 */
import { resolve } from 'node:path';
import { isInsideOrSame, loadConfig } from '../config/load.js';
import { InputError } from '../errors.js';
import { exportSelfContained } from '../export/bundle.js';
import { exportDomain } from '../export/export-domain.js';
import { connectLibvirt } from '../libvirt/adapter.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt export [options] <domain> <dir>

Writes <dir>/config.json, the OCI runtime config of the libvirt-lxc domain's persistent
definition (what 'virsh dumpxml --inactive' shows), through to-native: root.path is the
absolute directory the domain mounts at '/', fields libvirt cannot carry come back from
ocivirt's <metadata> when the domain has it. The file is written atomically and owner-only
(<dir> is created 0700); a config.json already there that means the same is left as it is.
Any lxc domain can be exported, managed by ocivirt or not. <dir> may not be inside the spool.

With --rootfs the bundle is self-contained, one that gives back the same domain when it is
copied as it is into a spool (cp -a <dir> <dir>.ocivirt.json SPOOL/):
  - the tree the domain mounts at '/' is copied (cp -a: owners, modes, xattrs) to <dir>/rootfs
    and root.path is "rootfs". The copy is made under a staging name in <dir> and renamed into
    place; an existing <dir>/rootfs is replaced (moved away, then removed), and staging copies a
    crash left are removed. Stop the domain first for a consistent copy of a running one.
  - mounts of ocivirt volumes (<stateDir>/volumes/NAME of the configuration's state directory)
    leave config.json: they are written as settings "volumes" entries ("NAME:/path[:ro]") into
    <dir>.ocivirt.json beside <dir>, written only when there are any (else one left by an
    earlier export is removed). Any other host path stays a bind in config.json, and is warned
    about when it is outside bindAllowList: the spool's trust check would refuse it. An image
    VOLUME's anonymous volume is written as "_DOMAIN.HASH:/path", which a settings file may name
    for its own entry's domain only: take the bundle back under the same entry name (and name
    prefix) and state directory to get the same domain, volumes and data.
config.json and the settings file are written atomically, 0600. <dir> may not be inside the tree
it copies.

Options:
  --rootfs        a self-contained bundle (see above)
  --uri URI       libvirt connection URI (default: the configuration's, lxc:///)
  --config FILE   configuration file (for the spool and state directories and URI; default
                  /etc/ocivirt/ocivirt.json when it exists)
  -h, --help      this text

Exit codes: 0 written or unchanged, 2 usage, unknown domain or a <dir> inside the spool, 1 other.
`;

export const exportCommand: Command = {
  name: 'export',
  summary: "write a libvirt-lxc domain's OCI runtime config (to-native) into a bundle directory",
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('export', argv, { uri: { type: 'string' }, config: { type: 'string' }, rootfs: { type: 'boolean' } }, { min: 2, max: 2 });
    const [name, dirArg] = positionals as [string, string];
    const { config } = await loadConfig({
      ...(values.config !== undefined ? { file: values.config } : {}),
      ...(values.uri !== undefined ? { flags: { uri: values.uri } } : {}),
      flagNames: { uri: '--uri' },
    });
    const dir = resolve(dirArg);
    if (isInsideOrSame(dir, config.spoolDir))
      throw new InputError(`is inside the spool ${config.spoolDir}: an export there would be taken as a new entry`, { file: dir });
    const port = await connectLibvirt(config.uri);
    try {
      if (values.rootfs === true) {
        const out = await exportSelfContained(port, name, dir, {
          stateDir: config.stateDir,
          bindAllowList: config.bindAllowList,
          minFreeBytes: config.unpackLimits.minFreeBytes,
        });
        for (const w of out.warnings) io.stderr.write(`warning: ${w.replace(/\s*\n\s*/g, ' ')}\n`);
        io.stdout.write(`${out.configPath}\n${out.rootfs}\n${out.settingsPath !== undefined ? `${out.settingsPath}\n` : ''}`);
        return 0;
      }
      const out = await exportDomain(port, name, dir, { includeUnmanaged: true });
      if (out.status === 'gone') throw new InputError(`no such domain on ${config.uri}`, { file: name });
      if (out.status === 'written') {
        for (const w of out.warnings) io.stderr.write(`warning: ${w.replace(/\s*\n\s*/g, ' ')}\n`);
        io.stdout.write(`${out.path}\n`);
      } else io.stdout.write(`unchanged: ${dir}/config.json\n`);
      return 0;
    } finally {
      await port.close();
    }
  },
};
