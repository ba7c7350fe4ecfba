/** `linux.devices` and `linux.netDevices` <-> `<hostdev mode='capabilities'>` (mapping notes §1.6). */
import type { Device } from '../../oci/runtime-spec.js';
import type { Hostdev } from '../../xml/domain.js';
import { xmlTextProblem } from '../../xml/escape.js';
import { refuse } from '../context.js';
import type { Pass } from './pass.js';

/** Device nodes libvirt-lxc always creates in the container's /dev. */
export const LIBVIRT_DEVICES = ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty', '/dev/console', '/dev/ptmx'];

const NETDEV_NAME = /^[^/\s:]{1,15}$/;

export const devicesPass: Pass = {
  name: 'devices',
  forward(cfg, d, ctx) {
    const w = ctx.warnings;
    (cfg.linux?.devices ?? []).forEach((dev: Device, i) => {
      const field = `linux.devices[${i}]`;
      if (LIBVIRT_DEVICES.includes(dev.path)) return;
      const problem = xmlTextProblem(dev.path);
      if (problem) refuse(ctx, `${field}.path`, problem);
      if (dev.type !== 'c' && dev.type !== 'b') {
        w.add(field, `a '${dev.type}' device cannot be passed to a libvirt-lxc container`);
        return;
      }
      const host = ctx.opts.hostDevice?.(dev.path);
      if (!host) {
        w.add(field, `${dev.path} is not a device node on this host; not passed through`);
        return;
      }
      if (host.type !== dev.type || (dev.major !== undefined && host.major !== dev.major) || (dev.minor !== undefined && host.minor !== dev.minor)) {
        w.add(field, `${dev.path} on this host is ${host.type} ${host.major}:${host.minor}, not what the config names; not passed through`);
        return;
      }
      if (dev.fileMode !== undefined || dev.uid !== undefined || dev.gid !== undefined)
        w.add(field, 'fileMode, uid and gid cannot be expressed: libvirt copies the host node');
      d.devices.hostdevs.push({
        mode: 'capabilities',
        type: dev.type === 'c' ? 'misc' : 'storage',
        source: dev.type === 'c' ? { char: dev.path } : { block: dev.path },
        attrs: {},
        extra: [],
      });
    });
    const netDevices = cfg.linux?.netDevices ?? {};
    const names = Object.keys(netDevices);
    if (names.length && !d.features.privnet)
      refuse(ctx, 'linux.netDevices', 'moving host interfaces needs a new network namespace');
    for (const name of names) {
      const field = `linux.netDevices[${JSON.stringify(name)}]`;
      if (!NETDEV_NAME.test(name)) refuse(ctx, field, 'is not a network interface name');
      const rename = netDevices[name]?.name;
      if (rename !== undefined && rename !== name) refuse(ctx, `${field}.name`, 'libvirt-lxc cannot rename a moved interface');
      d.devices.hostdevs.push({ mode: 'capabilities', type: 'net', source: { interface: name }, attrs: {}, extra: [] });
    }
  },

  reverse(d, ctx) {
    const devices: Device[] = [];
    const netDevices: Record<string, object> = {};
    for (const h of d.devices.hostdevs) {
      if (!isMappedHostdev(h)) continue;
      if (h.type === 'net') {
        netDevices[h.source.interface!] = {};
        continue;
      }
      const path = h.type === 'misc' ? h.source.char! : h.source.block!;
      const dev: Device = { path, type: h.type === 'misc' ? 'c' : 'b' };
      const host = ctx.opts.hostDevice?.(path);
      if (host) Object.assign(dev, { major: host.major, minor: host.minor });
      devices.push(dev);
    }
    const linux: Record<string, unknown> = {};
    if (devices.length) linux.devices = devices;
    if (Object.keys(netDevices).length) linux.netDevices = netDevices;
    return Object.keys(linux).length ? { linux } : {};
  },
};

/** Hostdevs that map to `linux.devices`/`netDevices`; the others travel as XML-only parts. */
export function isMappedHostdev(h: Hostdev): boolean {
  if (h.mode !== 'capabilities' || Object.keys(h.attrs).length || h.extra.length) return false;
  const s = Object.keys(h.source).join();
  return (h.type === 'misc' && s === 'char') || (h.type === 'storage' && s === 'block') || (h.type === 'net' && s === 'interface');
}
