/**
 * The last look before ocivirt starts a domain. A running container writes its own rootfs, so a
 * mount point it turned into a symlink into `/.oldroot` since the pass that defined it would have
 * libvirt create or mount that path on the host's root at this start (spool/preflight.ts). Every
 * start ocivirt makes goes through `startChecked`; the check reads the definition libvirt will use,
 * and the init shim's directories are made ready for that same definition (src/shim/containers.ts:
 * made again when a crash or a cleanup lost them, older versions collected).
 */
import { InputError } from '../errors.js';
import type { LibvirtPort } from '../libvirt/port.js';
import { mountsOntoHost } from '../spool/index.js';
import { parseDomainXml } from '../xml/parse.js';
import { prepareForStart } from '../shim/containers.js';

/** Starts `name` with its shim ready, unless its rootfs now leads a mount point onto the host; then an InputError says which. */
export async function startChecked(port: Pick<LibvirtPort, 'inactiveXml' | 'start'>, name: string): Promise<void> {
  const domain = parseDomainXml(await port.inactiveXml(name));
  const root = domain.devices.filesystems.find((fs) => fs.target === '/' && fs.type === 'mount')?.source.dir;
  if (root !== undefined) {
    const problems = await mountsOntoHost(domain, root);
    if (problems.length) throw new InputError(`not started: ${problems.map((p) => p.reason).join('; ')}`, { file: root, field: problems[0]!.field });
  }
  await prepareForStart(domain);
  await port.start(name);
}
