/** `ocivirt from-native`: an OCI runtime bundle -> libvirt-lxc domain XML on stdout. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fromNative } from '../convert/from-native.js';
import { detectCgroupVersion, rootfsExecutableResolver, statHostDevice } from '../convert/host.js';
import { readOwnership } from '../convert/ownership.js';
import { withLibvirt } from '../libvirt/adapter.js';
import { readBundleConfig } from '../oci/bundle.js';
import type { Domain } from '../xml/domain.js';
import { canonicalUuid } from '../xml/compare.js';
import { parseDomainXml } from '../xml/parse.js';
import { startProblems } from '../spool/preflight.js';
import { prepareContainer } from '../shim/containers.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt from-native [options] <bundle-dir | config.json>

Prints the libvirt-lxc domain XML for an OCI runtime bundle, the OCI counterpart of
'virsh domxml-from-native'. The XML is in the canonical form libvirt dumps, so it can be given
to 'virsh define' as it is.

  process     -> <init>, <initarg>, <initenv>, <initdir>, <inituser>/<initgroup>; a bare argv0
                 is looked up through the PATH of process.env inside the rootfs
  root        -> a filesystem mounted at '/' (the path made absolute against the bundle)
  mounts      -> bind and tmpfs filesystems (/proc, /sys, /dev … are provided by libvirt)
  namespaces  -> <privnet/>, <lxc:namespace> shares, <idmap> for uid/gid mappings
  resources   -> memory/memtune, vcpu cpuset, numatune, cputune, blkiotune
  capabilities, devices, netDevices, personality, security labels

What libvirt checks only at start is checked against the rootfs and warned about: <init> must
be an executable file in it, and with root.readonly it must already have /proc, /sys, /dev and
every mount destination (libvirt cannot create them in a read-only root).

Fields libvirt-lxc cannot express (rlimits, seccomp, sysctl, hooks …) are kept in the domain's
<metadata> (namespace urn:ocivirt:metadata:1), so 'ocivirt to-native' gives the config back,
and each one is reported as a warning on stderr (one line each). What cannot run safely is
refused: the host UTS, PID or mount namespace, time namespaces, non-Linux configs, empty
arguments, text XML cannot carry (CR, control characters). The org.ocivirt.domain-xml annotation
(XML to-native found no OCI field for) is laid onto the domain with a warning, but never host
access: host filesystems, hostdevs, host namespace shares and security labels in it are refused.

The domain name is --name, else the config's hostname when it is a valid name, else the bundle
directory's name made valid ([a-z0-9-], at most 63 characters). The UUID and MACs are derived
from the name, so converting the same bundle again redefines the same domain.

Options:
  --name NAME   the domain name (1 to 63 of [a-z0-9-], not starting with '-')
  --state DIR   run the process through ocivirt's init shim (as the daemon does): the XML
                mounts DIR/containers/NAME/ (the shim and its spec, read-only at /.ocivirt;
                run/ writable at /.ocivirt/run, with the exit status), and from-native makes
                that directory, so 'virsh define' of the output runs. The shim enforces
                seccomp, rlimits, no_new_privs, oomScoreAdj, umask, additionalGids, sysctls,
                the five capability sets and any env value: those are no longer warnings.
                Without --state the process is libvirt's init itself
  --strict      refuse every field that would only be kept in metadata (not enforced), seccomp
                included when there is no --state
  --uri URI     also look the domain name up in libvirt at URI (read only; without --uri
                from-native does not connect) and warn when a domain of that name exists
                that ocivirt did not make (defining this XML would replace it), that the
                reconciler manages (a define would take it from its spool entry), or that
                has another UUID (libvirt would refuse the define)
  -h, --help    this text

Exit codes: 0 done, 2 bad bundle or usage (one line naming the file and the field), 1 other.
`;

/** What defining `domain` at `uri` would run into: an existing domain of the same name. */
async function collisionWarnings(domain: Domain, uri: string): Promise<string[]> {
  return withLibvirt(uri, {}, async (port) => {
    const existing = await port.lookup(domain.name);
    if (existing === undefined) return [];
    const where = `domain '${domain.name}' already exists on ${uri}`;
    const out: string[] = [];
    let theirs: Domain | undefined;
    try {
      theirs = parseDomainXml(await port.inactiveXml(domain.name), `domain ${domain.name}`);
    } catch {
      theirs = undefined; // gone meanwhile, or XML we cannot read: not ours either way
    }
    const owner = theirs !== undefined ? readOwnership(theirs) : undefined;
    if (theirs?.metadata.ours === undefined)
      out.push(`name: ${where} and was not made by ocivirt (no ocivirt metadata): defining this XML would replace its definition`);
    else if (owner !== undefined)
      out.push(`name: ${where} and is managed by ocivirt's reconciler (spool entry '${owner.entry}'): defining this XML would take it from that entry`);
    if (domain.uuid !== undefined && canonicalUuid(existing.uuid) !== canonicalUuid(domain.uuid))
      out.push(`name: ${where} with UUID ${existing.uuid}, this XML has ${domain.uuid}: libvirt refuses the define; undefine it first or choose another --name`);
    return out;
  });
}

export const fromNativeCommand: Command = {
  name: 'from-native',
  summary: 'print the libvirt-lxc domain XML for an OCI runtime bundle',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(
      'from-native',
      argv,
      { name: { type: 'string' }, uri: { type: 'string' }, strict: { type: 'boolean' }, state: { type: 'string' } },
      { min: 1, max: 1 },
    );
    const { config, bundleDir, configPath } = await readBundleConfig(positionals[0]!);
    const rootfs = resolve(bundleDir, config.root?.path ?? '.');
    const result = fromNative(config, {
      bundleDir,
      file: configPath,
      ...(values.name !== undefined ? { name: values.name } : {}),
      strict: values.strict === true,
      cgroupVersion: detectCgroupVersion(),
      resolveExecutable: rootfsExecutableResolver(rootfs),
      hostDevice: statHostDevice,
      ...(values.state !== undefined ? { shim: { stateDir: resolve(values.state) } } : {}),
    });
    const warnings = [...result.warnings];
    // what libvirt refuses only at start, when there is a rootfs to look at
    if (await stat(rootfs).then((st) => st.isDirectory(), () => false))
      for (const p of await startProblems(result.domain, rootfs))
        if (!result.warnings.some((w) => w.startsWith(`${p.field}: `))) warnings.push(`${p.field}: ${p.reason}`);
    if (values.uri !== undefined) warnings.push(...(await collisionWarnings(result.domain, values.uri)));
    for (const w of warnings) io.stderr.write(`warning: ${w.replace(/\s*\n\s*/g, ' ')}\n`);
    // the same step as the daemon's define: the shim's directory, staged and renamed into place
    await prepareContainer(result.domain);
    io.stdout.write(result.xml);
    return 0;
  },
};
