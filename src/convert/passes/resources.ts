/** `linux.resources` <-> memory, memtune, vcpu cpuset, numatune, cputune, blkiotune (mapping notes §1.4, §6.6). */
import type { Resources } from '../../oci/runtime-spec.js';
import type { BlkioDevice } from '../../xml/domain.js';
import { formatCpuset, parseCpuset } from '../../xml/cpuset.js';
import { refuse } from '../context.js';
import type { Pass } from './pass.js';

/** libvirt's largest memory size in KiB: "no limit" (an unlimited cgroup). */
export const MEMORY_UNLIMITED_KIB = 9007199254740991;

const kib = (bytes: number): number => Math.ceil(bytes / 1024);

/** runc's cgroup v1 shares -> v2 weight; libvirt writes shares as-is into cpu.weight on v2. */
export const sharesToWeight = (s: number): number => 1 + Math.floor(((s - 2) * 9999) / 262142);
export const weightToShares = (w: number): number => 2 + Math.floor(((w - 1) * 262142) / 9999);
/** libvirt's schema accepts blkio weights in [100, 1000] (OCI allows 10 to 1000). */
const BLKIO_WEIGHT_MIN = 100;
const BLKIO_WEIGHT_MAX = 1000;

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export const resourcesPass: Pass = {
  name: 'resources',
  forward(cfg, d, ctx) {
    const r: Resources = cfg.linux?.resources ?? {};
    const w = ctx.warnings;
    const v2 = ctx.cgroupVersion === 2;
    const mem = r.memory ?? {};
    const limit = mem.limit !== undefined && mem.limit > 0 ? mem.limit : undefined;
    if (limit !== undefined && kib(limit) > MEMORY_UNLIMITED_KIB) refuse(ctx, 'linux.resources.memory.limit', 'is larger than libvirt accepts');
    // In LXC <memory> is itself enforced as a cgroup limit: no limit means libvirt's maximum.
    d.memory = limit === undefined ? MEMORY_UNLIMITED_KIB : kib(limit);
    if (limit !== undefined) d.memtune.hardLimit = kib(limit);
    if (mem.reservation !== undefined && mem.reservation > 0) {
      d.memtune.softLimit = Math.min(kib(mem.reservation), MEMORY_UNLIMITED_KIB);
      if (v2) w.add('linux.resources.memory.reservation', 'on cgroup v2 libvirt writes it to memory.high (runc uses memory.low)');
    }
    if (mem.swap !== undefined && mem.swap > 0) {
      if (v2) {
        if (limit === undefined || mem.swap < limit) refuse(ctx, 'linux.resources.memory.swap', 'on cgroup v2 it needs a memory limit no larger than it');
        d.memtune.swapHardLimit = kib(mem.swap - limit);
      } else {
        // v1: memory+swap below the memory limit makes libvirt fail at start (runc refuses it too)
        if (limit !== undefined && mem.swap < limit) refuse(ctx, 'linux.resources.memory.swap', 'is memory+swap, so it cannot be less than memory.limit');
        d.memtune.swapHardLimit = Math.min(kib(mem.swap), MEMORY_UNLIMITED_KIB);
      }
    }

    const cpu = r.cpu ?? {};
    if (cpu.shares !== undefined && cpu.shares > 0) {
      const s = clamp(cpu.shares, 2, 262144);
      if (s !== cpu.shares) w.add('linux.resources.cpu.shares', `libvirt accepts 2 to 262144; ${s} is used`);
      // libvirt refuses shares below 2 at define, whatever the cgroup version
      d.cputune.shares = v2 ? Math.max(2, sharesToWeight(s)) : s;
    }
    if (cpu.period !== undefined && cpu.period > 0) {
      const p = clamp(cpu.period, 1000, 1000000);
      if (p !== cpu.period) w.add('linux.resources.cpu.period', `libvirt accepts 1000 to 1000000; ${p} is used`);
      d.cputune.period = p;
    }
    if (cpu.quota !== undefined && cpu.quota !== 0) {
      const q = cpu.quota < 0 ? -1 : clamp(cpu.quota, 1000, 17592186044415);
      if (q !== cpu.quota) w.add('linux.resources.cpu.quota', `libvirt accepts 1000 to 17592186044415 or -1; ${q} is used`);
      d.cputune.quota = q;
    }
    if (cpu.cpus !== undefined && cpu.cpus !== '') {
      const set = parseCpuset(cpu.cpus);
      if (!set) refuse(ctx, 'linux.resources.cpu.cpus', `'${cpu.cpus}' is not a CPU list`);
      d.vcpu = { count: set.length, placement: 'static', cpuset: formatCpuset(set) };
    }
    if (cpu.mems !== undefined && cpu.mems !== '') {
      const set = parseCpuset(cpu.mems);
      if (!set) refuse(ctx, 'linux.resources.cpu.mems', `'${cpu.mems}' is not a NUMA node list`);
      d.numatune = { memory: { mode: 'strict', nodeset: formatCpuset(set) }, extra: [] };
    }

    const bio = r.blockIO ?? {};
    // libvirt writes the weight through unchanged (blkio.weight on v1, io.weight on v2): the
    // ratio between containers is kept; runc's v2 rescaling would leave libvirt's schema range.
    const blkioWeight = (value: number, field: string): number => {
      const v = clamp(value, BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX);
      if (v !== value) w.add(field, `libvirt accepts blkio weights of ${BLKIO_WEIGHT_MIN} to ${BLKIO_WEIGHT_MAX}; ${v} is used`);
      else if (v2) w.add(field, 'on cgroup v2 libvirt writes the weight unscaled to io.weight (runc rescales it)');
      return v;
    };
    if (bio.weight !== undefined && bio.weight > 0) d.blkiotune.weight = blkioWeight(bio.weight, 'linux.resources.blockIO.weight');
    const devices = new Map<string, BlkioDevice>();
    const dev = (major: number, minor: number): BlkioDevice => {
      const path = `/dev/block/${major}:${minor}`;
      let entry = devices.get(path);
      if (!entry) devices.set(path, (entry = { path }));
      return entry;
    };
    for (const wd of bio.weightDevice ?? []) {
      if (wd.weight !== undefined && wd.weight > 0) dev(wd.major, wd.minor).weight = blkioWeight(wd.weight, 'linux.resources.blockIO.weightDevice');
      if (wd.leafWeight !== undefined) w.add('linux.resources.blockIO.weightDevice', 'leafWeight cannot be expressed by libvirt-lxc');
    }
    const throttles = [
      ['throttleReadBpsDevice', 'readBytesSec'],
      ['throttleWriteBpsDevice', 'writeBytesSec'],
      ['throttleReadIOPSDevice', 'readIopsSec'],
      ['throttleWriteIOPSDevice', 'writeIopsSec'],
    ] as const;
    for (const [key, prop] of throttles) for (const t of bio[key] ?? []) if (t.rate > 0) dev(t.major, t.minor)[prop] = t.rate;
    d.blkiotune.devices = [...devices.values()];
    if (bio.leafWeight !== undefined) w.add('linux.resources.blockIO.leafWeight', 'cannot be expressed by libvirt-lxc');
    if (r.pids) w.add('linux.resources.pids', 'libvirt-lxc has no pids limit; not enforced');
    if (r.devices?.length) w.add('linux.resources.devices', 'libvirt-lxc applies its own device allow list; this one is not enforced');
  },

  reverse(d, ctx) {
    const v2 = ctx.cgroupVersion === 2;
    const memory: Record<string, number> = {};
    const hard = d.memtune.hardLimit ?? d.memory;
    if (hard !== undefined && hard < MEMORY_UNLIMITED_KIB) memory.limit = hard * 1024;
    if (d.memtune.softLimit !== undefined && d.memtune.softLimit < MEMORY_UNLIMITED_KIB) memory.reservation = d.memtune.softLimit * 1024;
    const swap = d.memtune.swapHardLimit;
    if (swap !== undefined && swap < MEMORY_UNLIMITED_KIB) memory.swap = swap * 1024 + (v2 ? (memory.limit ?? 0) : 0);
    const cpu: Record<string, number | string> = {};
    if (d.cputune.shares !== undefined && d.cputune.shares > 0) cpu.shares = v2 ? weightToShares(d.cputune.shares) : d.cputune.shares;
    if (d.cputune.quota !== undefined && d.cputune.quota !== 0) cpu.quota = d.cputune.quota < 0 ? -1 : d.cputune.quota;
    if (d.cputune.period !== undefined && d.cputune.period !== 0) cpu.period = d.cputune.period;
    if (d.vcpu?.cpuset !== undefined) cpu.cpus = formatCpuset(parseCpuset(d.vcpu.cpuset) ?? []) || d.vcpu.cpuset;
    const nodeset = d.numatune?.memory?.nodeset;
    if (nodeset !== undefined) cpu.mems = formatCpuset(parseCpuset(nodeset) ?? []) || nodeset;
    const blockIO: Record<string, unknown> = {};
    if (d.blkiotune.weight !== undefined) blockIO.weight = d.blkiotune.weight;
    const lists: Record<string, unknown[]> = {};
    const push = (key: string, v: unknown) => (lists[key] ??= []).push(v);
    for (const dev of d.blkiotune.devices) {
      const m = /^\/dev\/block\/(\d+):(\d+)$/.exec(dev.path);
      if (!m) {
        ctx.warnings.add('linux.resources.blockIO', `device ${dev.path} is not /dev/block/MAJOR:MINOR; skipped`);
        continue;
      }
      const id = { major: Number(m[1]), minor: Number(m[2]) };
      if (dev.weight !== undefined) push('weightDevice', { ...id, weight: dev.weight });
      if (dev.readBytesSec !== undefined) push('throttleReadBpsDevice', { ...id, rate: dev.readBytesSec });
      if (dev.writeBytesSec !== undefined) push('throttleWriteBpsDevice', { ...id, rate: dev.writeBytesSec });
      if (dev.readIopsSec !== undefined) push('throttleReadIOPSDevice', { ...id, rate: dev.readIopsSec });
      if (dev.writeIopsSec !== undefined) push('throttleWriteIOPSDevice', { ...id, rate: dev.writeIopsSec });
    }
    Object.assign(blockIO, lists);
    const resources: Record<string, unknown> = {};
    if (Object.keys(memory).length) resources.memory = memory;
    if (Object.keys(cpu).length) resources.cpu = cpu;
    if (Object.keys(blockIO).length) resources.blockIO = blockIO;
    return Object.keys(resources).length ? { linux: { resources } } : {};
  },
};
