/** `ocivirt validate`: spool entries checked with the daemon's own rules; no libvirt, no writes. */
import { loadConfig } from '../config/index.js';
import { UsageError } from '../errors.js';
import { validatePaths } from '../reconcile/validate.js';
import { entrySettingsSchemaText } from '../settings/index.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';
import { printable } from './printable.js';

const usage = `Usage: ocivirt validate [--config FILE] [--json] PATH...
       ocivirt validate --schema

Checks spool entries with exactly the rules the daemon applies (the same code): settings files
(NAME.ocivirt.json), config.json schema, trust (root.path, bind sources and bind volumes under
bindAllowList, host devices), conversion to a domain, and the pre-flight checks. Each PATH is a
whole spool directory or one item of a spool: a bundle directory, an image (layout or archive)
or a settings file (checked with the entry it belongs to, and with the image it names).

Nothing is written to the spool or the state directory and libvirt is not used: images are
unpacked into a temporary directory that is removed afterwards. Policies, bindAllowList,
hostDeviceAllowList, namePrefix and unpack limits come from the configuration, as for the daemon.

Options:
  --config FILE   configuration file (default /etc/ocivirt/ocivirt.json when it exists)
  --json          the result as JSON: { ok, checked, problems: [{ entry, file, field, reason }] }
  --schema        print the JSON Schema of settings files (docs/entry-settings.schema.json)
  -h, --help      this text

Exit codes: 0 every entry valid, 2 some problem (one line each on stderr: file, field, reason)
or bad usage, 1 another failure.
`;

export const validateCommand: Command = {
  name: 'validate',
  summary: "check spool entries with the daemon's rules, without libvirt or writes",
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('validate', argv, { config: { type: 'string' }, json: { type: 'boolean' }, schema: { type: 'boolean' } }, { min: 0, max: Infinity });
    if (values.schema) {
      if (positionals.length) throw new UsageError("validate: --schema takes no PATH (see 'ocivirt validate --help')");
      io.stdout.write(entrySettingsSchemaText());
      return 0;
    }
    if (positionals.length === 0) throw new UsageError("validate: missing PATH (see 'ocivirt validate --help')");
    const { config } = await loadConfig(values.config !== undefined ? { file: values.config } : {});
    const r = await validatePaths(positionals, {
      prefix: config.namePrefix,
      startPolicy: config.startPolicy,
      strict: config.strictConversion,
      bindAllowList: config.bindAllowList,
      hostDeviceAllowList: config.hostDeviceAllowList,
      ...(config.defaultNetwork !== '' ? { defaultNetwork: config.defaultNetwork } : {}),
      bridgeAllowList: config.bridgeAllowList,
      allowDevices: config.allowDevices,
      unpackLimits: config.unpackLimits,
      allowInsecureDirs: config.allowInsecureDirs,
    });
    if (values.json) {
      const problems = r.problems.map(({ message: _m, ...p }) => p);
      io.stdout.write(JSON.stringify({ ok: problems.length === 0, checked: r.checked, problems }, null, 2) + '\n');
    } else {
      for (const p of r.problems) io.stderr.write(`${printable(p.message)}\n`);
      io.stdout.write(`validate: ${r.checked.length} entries checked, ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}\n`);
    }
    return r.problems.length ? 2 : 0;
  },
};
