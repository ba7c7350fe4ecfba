/** `linux.namespaces` and ID maps <-> privnet, `<lxc:namespace>` shares and `<idmap>` (mapping notes §1.3). */
import type { IdMapping, Namespace } from '../../oci/runtime-spec.js';
import type { IdMapEntry } from '../../xml/domain.js';
import { refuse } from '../context.js';
import type { Pass } from './pass.js';

const NETNS_PATH = /^\/(?:var\/)?run\/netns\/([^/]+)$/;
const PROC_NS_PATH = (kind: string) => new RegExp(`^/proc/(\\d+)/ns/${kind}$`);

export const namespacesPass: Pass = {
  name: 'namespaces',
  forward(cfg, d, ctx) {
    const linux = cfg.linux ?? {};
    const byType = new Map<string, Namespace>();
    for (const ns of linux.namespaces ?? []) byType.set(ns.type, ns);
    const field = 'linux.namespaces';
    if (byType.has('time')) refuse(ctx, field, 'a time namespace cannot be expressed in libvirt-lxc');
    if (linux.timeOffsets) refuse(ctx, 'linux.timeOffsets', 'time namespaces cannot be expressed in libvirt-lxc');
    for (const kind of ['pid', 'mount'] as const) {
      const ns = byType.get(kind);
      if (!ns) refuse(ctx, field, `the host ${kind} namespace cannot be shared: libvirt-lxc always creates a new one`);
      if (ns.path !== undefined) refuse(ctx, field, `joining an existing ${kind} namespace cannot be expressed in libvirt-lxc`);
    }
    const uts = byType.get('uts');
    if (!uts) refuse(ctx, field, 'the host UTS namespace cannot be shared: libvirt would set the host name');
    if (uts.path !== undefined) refuse(ctx, field, 'joining a UTS namespace is refused: libvirt sets the host name inside it');

    const ipc = byType.get('ipc');
    if (!ipc) d.lxcNamespace.shareipc = { type: 'pid', value: '1' };
    else if (ipc.path !== undefined) {
      const m = PROC_NS_PATH('ipc').exec(ipc.path);
      if (!m) refuse(ctx, field, `ipc namespace path '${ipc.path}' is not /proc/PID/ns/ipc`);
      d.lxcNamespace.shareipc = { type: 'pid', value: m[1]! };
    }

    const net = byType.get('network');
    if (net && net.path === undefined) d.features.privnet = true;
    else if (net?.path !== undefined) {
      const named = NETNS_PATH.exec(net.path);
      const byPid = PROC_NS_PATH('net').exec(net.path);
      if (named) d.lxcNamespace.sharenet = { type: 'netns', value: named[1]! };
      else if (byPid) d.lxcNamespace.sharenet = { type: 'pid', value: byPid[1]! };
      else refuse(ctx, field, `network namespace path '${net.path}' is neither /var/run/netns/NAME nor /proc/PID/ns/net`);
    }

    if (byType.has('cgroup')) ctx.warnings.add(field, 'libvirt-lxc does not create a cgroup namespace (it mounts the container cgroup subtree instead)');

    const user = byType.get('user');
    if (user) {
      if (user.path !== undefined) refuse(ctx, field, 'joining an existing user namespace cannot be expressed in libvirt-lxc');
      for (const key of ['uidMappings', 'gidMappings'] as const) {
        const list = linux[key];
        if (!list?.length) refuse(ctx, `linux.${key}`, 'a user namespace needs both uidMappings and gidMappings under libvirt-lxc');
        if (!list.some((m) => m.containerID === 0)) refuse(ctx, `linux.${key}`, 'must map container id 0 (libvirt: "You must map the root user")');
      }
      const entries = (list: IdMapping[]): IdMapEntry[] =>
        list.map((m) => ({ start: m.containerID, target: m.hostID, count: m.size })).sort((a, b) => a.start - b.start);
      d.idmap.uid = entries(linux.uidMappings!);
      d.idmap.gid = entries(linux.gidMappings!);
    } else if (linux.uidMappings?.length || linux.gidMappings?.length) {
      ctx.warnings.add('linux.uidMappings', 'ID mappings without a user namespace have no effect');
    }
  },

  reverse(d) {
    const namespaces: Namespace[] = [{ type: 'pid' }];
    const share = d.lxcNamespace.sharenet;
    const hasNet = d.features.privnet || d.devices.interfaces.length > 0 || d.devices.hostdevs.some((h) => h.type === 'net');
    if (share?.type === 'netns') namespaces.push({ type: 'network', path: `/var/run/netns/${share.value}` });
    else if (share?.type === 'pid') namespaces.push({ type: 'network', path: `/proc/${share.value}/ns/net` });
    else if (hasNet && share === undefined) namespaces.push({ type: 'network' });
    const ipc = d.lxcNamespace.shareipc;
    if (ipc === undefined) namespaces.push({ type: 'ipc' });
    else if (ipc.type === 'pid' && ipc.value !== '1') namespaces.push({ type: 'ipc', path: `/proc/${ipc.value}/ns/ipc` });
    namespaces.push({ type: 'uts' }, { type: 'mount' });
    const linux: Record<string, unknown> = { namespaces };
    if (d.idmap.uid.length && d.idmap.gid.length) {
      namespaces.push({ type: 'user' });
      const mappings = (list: IdMapEntry[]): IdMapping[] =>
        [...list].sort((a, b) => a.start - b.start).map((e) => ({ containerID: e.start, hostID: e.target, size: e.count }));
      linux.uidMappings = mappings(d.idmap.uid);
      linux.gidMappings = mappings(d.idmap.gid);
    }
    return { linux };
  },
};
