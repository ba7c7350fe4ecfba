/** `ocivirt to-native`: libvirt-lxc domain XML -> an OCI runtime config.json on stdout. */
import { readFile } from 'node:fs/promises';
import { domainToConfig } from '../convert/host.js';
import { InputError, UsageError } from '../errors.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { DomainNotFoundError } from '../libvirt/port.js';
import { parseDomainXml } from '../xml/parse.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt to-native <domain.xml | ->
       ocivirt to-native --domain NAME [--uri URI]

Prints the OCI runtime config.json (2-space JSON) for a libvirt-lxc domain, the OCI counterpart
of 'virsh domxml-to-native'. The XML comes from a file, from stdin ('-'), or with --domain from
the inactive definition of a defined domain.

For a domain made by 'ocivirt from-native', the original config comes back: the fields the XML
carries are read from the XML, the rest from ocivirt's <metadata>. Where the XML was edited
since (virsh edit), the XML wins and a warning says which field. For a hand-written domain
everything libvirt-lxc has is mapped (init, env, user, filesystems, idmap, memory, cpu, blkio,
capabilities, hostdevs, namespaces); XML with no OCI counterpart (interfaces, extra consoles,
lifecycle actions, clock, foreign metadata …) is kept in annotations under 'org.ocivirt.' so
'ocivirt from-native' can restore it (except what reaches the host: from-native refuses that). A user or group given by name in <inituser>/<initgroup>
is looked up in the root filesystem's /etc/passwd and /etc/group (an unknown name is refused,
never guessed). Warnings go to stderr, one line each.

Options:
  --domain NAME  read the inactive XML of this domain from libvirt
  --uri URI      libvirt connection URI for --domain (default lxc:///)
  -h, --help     this text

Exit codes: 0 done, 2 bad XML, unknown domain or usage (one line), 1 other.
`;

async function readStdin(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Through withLibvirt, so a hung libvirtd ends the command (exit 137) instead of hanging it. */
async function readFromLibvirt(name: string, uri: string): Promise<string> {
  return withLibvirt(uri, {}, async (port) => {
    try {
      return await port.inactiveXml(name);
    } catch (e) {
      if (e instanceof DomainNotFoundError) throw new InputError(`no such domain on ${uri}`, { file: `domain ${name}` });
      throw e;
    }
  });
}

export const toNativeCommand: Command = {
  name: 'to-native',
  summary: 'print the OCI runtime config.json for a libvirt-lxc domain',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(
      'to-native',
      argv,
      { domain: { type: 'string' }, uri: { type: 'string' } },
      { min: 0, max: 1 },
    );
    let xml: string;
    let file: string;
    if (values.domain !== undefined) {
      if (positionals.length) throw new UsageError(`to-native: give either --domain or a file, not both (see 'ocivirt to-native --help')`);
      const uri = values.uri ?? 'lxc:///';
      file = `domain ${values.domain}`;
      xml = await readFromLibvirt(values.domain, uri);
    } else {
      if (values.uri !== undefined) throw new UsageError(`to-native: --uri goes with --domain (see 'ocivirt to-native --help')`);
      const arg = positionals[0];
      if (arg === undefined) throw new UsageError(`to-native: missing argument (see 'ocivirt to-native --help')`);
      file = arg === '-' ? '(stdin)' : arg;
      try {
        xml = arg === '-' ? await readStdin(io.stdin) : await readFile(arg, 'utf8');
      } catch (e) {
        throw new InputError(`cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file });
      }
    }
    const domain = parseDomainXml(xml, file);
    if (domain.type !== 'lxc') throw new InputError(`is a '${domain.type}' domain, not an lxc one`, { file, field: 'domain.type' });
    const { config, warnings } = await domainToConfig(domain, file);
    for (const w of warnings) io.stderr.write(`warning: ${w.replace(/\s*\n\s*/g, ' ')}\n`);
    io.stdout.write(JSON.stringify(config, null, 2) + '\n');
    return 0;
  },
};
