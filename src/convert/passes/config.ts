/**
 * The config-wide fields: hostname, annotations (readable in metadata; `org.ocivirt.*` ones give
 * back the XML-only parts), personality, hooks and the sections libvirt-lxc has nothing for.
 */
import { ANNOTATION_PREFIX } from '../../oci/runtime-spec.js';
import { canonicalUuid } from '../../xml/compare.js';
import { isXmlSafeAttr, isXmlSafeText } from '../../xml/escape.js';
import { ARCH_32BIT_COMPANION, refuse } from '../context.js';
import { hostnameForDomainName, uuidV5 } from '../identity.js';
import { decodeXmlOnly, describeXmlOnly, encodeXmlOnly, overlayXmlOnly, XML_ONLY_ANNOTATION, xmlOnlyHostAccess, xmlOnlyParts } from '../xml-only.js';
import { NETWORKS_ANNOTATION } from './networks.js';
import type { Pass } from './pass.js';

export const UUID_ANNOTATION = `${ANNOTATION_PREFIX}uuid`;
export const TITLE_ANNOTATION = `${ANNOTATION_PREFIX}title`;
export const DESCRIPTION_ANNOTATION = `${ANNOTATION_PREFIX}description`;

const UUID_TEXT = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export const configPass: Pass = {
  name: 'config',
  forward(cfg, d, ctx) {
    const w = ctx.warnings;
    if (cfg.hostname !== undefined && cfg.hostname !== hostnameForDomainName(d.name))
      w.add('hostname', `libvirt sets the hostname to '${hostnameForDomainName(d.name)}' (from the domain name)`);
    if (cfg.domainname !== undefined) w.add('domainname', 'libvirt-lxc cannot set the NIS domain name');

    const annotations = cfg.annotations ?? {};
    d.uuid = uuidV5(ctx.id);
    const readable: { key: string; value: string }[] = [];
    for (const [key, value] of Object.entries(annotations)) {
      const field = `annotations[${JSON.stringify(key)}]`;
      if (key === UUID_ANNOTATION) {
        if (!UUID_TEXT.test(value)) refuse(ctx, field, `'${value}' is not a UUID`);
        d.uuid = canonicalUuid(value);
      } else if (key === TITLE_ANNOTATION && isXmlSafeText(value) && !value.includes('\n')) d.title = value;
      else if (key === DESCRIPTION_ANNOTATION && isXmlSafeText(value)) d.description = value;
      else if (key === XML_ONLY_ANNOTATION) {
        let frag;
        try {
          frag = decodeXmlOnly(value);
        } catch (e) {
          refuse(ctx, field, `is not a base64 domain XML fragment (${(e as Error).message})`);
        }
        const hostAccess = xmlOnlyHostAccess(frag);
        if (hostAccess.length) refuse(ctx, field, `refused: ${hostAccess[0]}`);
        overlayXmlOnly(d, frag, ctx.id);
        // not an OCI field: say what it adds, so --strict refuses it like any field outside the spec
        w.add(field, `lays domain XML no OCI field has onto the domain (${describeXmlOnly(frag)})`);
        // libvirt only finds out at start: interfaces need the container's own network namespace
        if (frag.devices.interfaces.length && !d.features.privnet)
          refuse(ctx, field, 'network interfaces need a new network namespace (a network entry without a path in linux.namespaces)');
      } else if (key === NETWORKS_ANNOTATION) {
        // the networks pass makes interfaces of it, and gives it back from them
      } else if (isXmlSafeAttr(key) && isXmlSafeText(value)) readable.push({ key, value });
    }
    d.metadata.ours = { schema: '1', annotations: readable, exact: [] };

    const pers = cfg.linux?.personality;
    if (pers?.domain === 'LINUX32') {
      const arch = ARCH_32BIT_COMPANION[ctx.hostArch];
      if (!arch) refuse(ctx, 'linux.personality.domain', `the host architecture ${ctx.hostArch} has no 32-bit companion`);
      d.os.arch = arch;
    }
    if (pers?.flags?.length) w.add('linux.personality.flags', 'personality flags cannot be expressed by libvirt-lxc');

    for (const kind of ['createContainer', 'startContainer'] as const)
      if (cfg.hooks?.[kind]?.length) refuse(ctx, `hooks.${kind}`, 'hooks that run inside the container namespaces cannot be run by libvirt-lxc');
    if (cfg.linux?.seccomp && ctx.opts.shim === undefined)
      w.add('linux.seccomp', 'NOT ENFORCED: libvirt-lxc cannot apply a seccomp profile, the container runs without syscall filtering (kept in metadata; --strict refuses)');
  },

  reverse(d, ctx) {
    const out: Record<string, unknown> = { hostname: hostnameForDomainName(d.name) };
    const recorded = ctx.meta?.residual?.hostname;
    if (typeof recorded === 'string' && recorded !== out.hostname)
      ctx.warnings.add('hostname', `'${recorded}' is recorded, but libvirt sets the hostname to '${String(out.hostname)}' (from the domain name)`);
    const annotations: Record<string, string> = {};
    for (const a of ctx.meta?.annotations ?? []) annotations[a.key] = a.value;
    if (d.uuid !== undefined && d.uuid.toLowerCase().replace(/-/g, '') !== uuidV5(ctx.id).replace(/-/g, '')) annotations[UUID_ANNOTATION] = canonicalUuid(d.uuid);
    if (d.title !== undefined) annotations[TITLE_ANNOTATION] = d.title;
    if (d.description !== undefined) annotations[DESCRIPTION_ANNOTATION] = d.description;
    const frag = xmlOnlyParts(d, ctx.id);
    if (frag) {
      annotations[XML_ONLY_ANNOTATION] = encodeXmlOnly(frag);
      // from-native warned already for a domain it made; say it once for a hand-written one
      if (!ctx.meta)
        ctx.warnings.add(
          `annotations[${JSON.stringify(XML_ONLY_ANNOTATION)}]`,
          `${describeXmlOnly(frag)} have no OCI field: kept in this annotation for from-native, ignored by other OCI runtimes`,
        );
    }
    if (Object.keys(annotations).length) out.annotations = annotations;
    if (d.os.arch !== undefined && d.os.arch === ARCH_32BIT_COMPANION[ctx.hostArch]) out.linux = { personality: { domain: 'LINUX32' } };
    return out;
  },
};
