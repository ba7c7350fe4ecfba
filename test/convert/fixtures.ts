/**
 * Shared by the converter tests: a seeded PRNG, a generator of varied valid Linux runtime
 * configs (every mapping row, preserved fields and escaping included), fake host facts, and
 * the round-trip check.
 */
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import type { FromNativeOptions, HostDeviceNode } from '../../src/convert/context.js';
import { canonicalInput } from '../../src/convert/from-native.js';
import { canonicalJson } from '../../src/convert/json.js';

export { prng } from '../helpers/prng.js';

export class Gen {
  constructor(readonly rnd: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.rnd() * list.length)]!;
  }
  subset<T>(list: readonly T[], p = 0.5): T[] {
    return list.filter(() => this.chance(p));
  }
  /** Text XML can carry, with the characters escaping must get right. */
  text(min = 1, max = 12): string {
    const alphabet = ['a', 'b', 'z', 'Q', '0', '9', ' ', '&', '<', '>', '"', "'", '\t', '\n', '=', '/', '-', 'ü', '😀', ']]>', '$'];
    let s = '';
    const n = this.int(min, max);
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }
}

export const HOST_DEVICES: Record<string, HostDeviceNode> = {
  '/dev/fuse': { type: 'c', major: 10, minor: 229 },
  '/dev/net/tun': { type: 'c', major: 10, minor: 200 },
  '/dev/loop0': { type: 'b', major: 7, minor: 0 },
};

/** Options as the CLI passes them, with host facts faked (a rootfs where every bare name is in /bin). */
export function testOptions(extra: Partial<FromNativeOptions> = {}): FromNativeOptions {
  return {
    bundleDir: '/srv/bundles/b1',
    cgroupVersion: 1,
    hostArch: 'x86_64',
    resolveExecutable: (argv0, dirs, cwd) =>
      /(^|\/)missing$/.test(argv0)
        ? undefined
        : argv0.startsWith('/')
          ? argv0
          : argv0.includes('/')
            ? `${cwd.replace(/\/$/, '')}/${argv0.replace(/^\.\//, '')}`
            : dirs.includes('/bin')
              ? `/bin/${argv0}`
              : `${dirs[0]}/${argv0}`,
    hostDevice: (p) => HOST_DEVICES[p],
    ...extra,
  };
}

/** runc spec's config (Debian runc 1.1), the most common input. */
export function runcSpec(): RuntimeConfig {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: [...caps], effective: [...caps], permitted: [...caps], ambient: [...caps] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** A minimal valid config: what the per-row tests start from. */
export function minimal(): RuntimeConfig {
  return {
    ociVersion: '1.2.0',
    process: { user: { uid: 0, gid: 0 }, args: ['/bin/sh'], cwd: '/', terminal: true },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }] },
  };
}

const KNOWN_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_KILL', 'CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_SYS_ADMIN', 'CAP_SYS_CHROOT', 'CAP_AUDIT_WRITE', 'CAP_SYSLOG', 'CAP_MKNOD'];
const UNKNOWN_CAPS = ['CAP_BPF', 'CAP_PERFMON', 'CAP_CHECKPOINT_RESTORE', 'CAP_AUDIT_READ'];

/**
 * A varied valid Linux config. `forLibvirt` keeps to what a real libvirtd defines (no forced
 * UUID, host devices that exist here).
 */
export function generateConfig(g: Gen, index: number, forLibvirt = false): RuntimeConfig {
  const uid = g.chance(0.6) ? 0 : g.int(1, 65535);
  const gid = g.chance(0.6) ? 0 : g.int(1, 65535);
  const argv0 = g.pick(['/bin/sh', 'sh', '/usr/bin/env', 'busybox', '/opt/app/run server']);
  const args = [argv0, ...Array.from({ length: g.int(0, 4) }, () => g.text())];
  const env: string[] = [];
  if (g.chance(0.8)) env.push('PATH=' + g.pick(['/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '/bin:/usr/bin', '/opt/bin:/bin']));
  for (let i = 0, n = g.int(0, 5); i < n; i++) {
    const name = g.chance(0.9) ? g.pick(['TERM', 'HOME', 'LANG', 'APP_MODE', '_X', 'V' + i]) + i : g.pick(['my.var', 'my-var', '1VAR']);
    env.push(`${name}=${g.chance(0.9) ? g.text() : ''}`);
  }
  const caps = g.subset(KNOWN_CAPS, 0.3);
  if (g.chance(0.2)) caps.push(g.pick(UNKNOWN_CAPS));
  const process: RuntimeConfig['process'] = {
    user: { uid, gid, ...(g.chance(0.2) ? { additionalGids: [g.int(1, 100)] } : {}), ...(g.chance(0.1) ? { umask: 18 } : {}) },
    args,
    cwd: g.pick(['/', '/', '/srv/app', '/home/u ser', '/tmp/']),
  };
  if (env.length) process.env = env;
  if (g.chance(0.8)) process.terminal = g.chance(0.8);
  if (g.chance(0.8))
    process.capabilities = g.chance(0.7)
      ? { bounding: caps, effective: [...caps], permitted: [...caps] }
      : { bounding: caps, effective: g.subset(caps), permitted: [...caps], ...(g.chance(0.5) ? { ambient: g.subset(caps) } : {}) };
  if (g.chance(0.3)) process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: g.int(64, 4096) }];
  if (g.chance(0.3)) process.noNewPrivileges = g.chance(0.5);
  if (g.chance(0.1)) process.oomScoreAdj = g.int(-1000, 1000);
  if (g.chance(0.1)) process.consoleSize = { height: 24, width: 80 };
  if (g.chance(0.1)) process.selinuxLabel = 'system_u:system_r:container_t:s0:c1,c2';
  if (g.chance(0.1)) process.apparmorProfile = 'docker-default';

  const config: RuntimeConfig = {
    ociVersion: g.pick(['1.0.0', '1.0.2-dev', '1.1.0', '1.2.0', '1.2.1', '1.3.0']),
    process,
    root: { path: g.pick(['rootfs', 'rootfs', '/var/lib/images/x/rootfs', 'sub/dir/../rootfs']), ...(g.chance(0.5) ? { readonly: g.chance(0.5) } : {}) },
  };
  if (g.chance(0.6)) config.hostname = g.pick([`web-${index}`, `host${index}.example.com`, 'Upper_Case', `db-${index}`]);
  if (g.chance(0.1)) config.domainname = 'example.com';

  const mounts: NonNullable<RuntimeConfig['mounts']> = [];
  if (g.chance(0.5)) mounts.push(...runcSpec().mounts!.filter(() => g.chance(0.7)));
  for (let i = 0, n = g.int(0, 4); i < n; i++) {
    const kind = g.pick(['bind', 'bind', 'tmpfs', 'typeless-bind', 'block']);
    const destination = g.pick(['/data', '/etc/conf', '/var/lib/app', '/mnt/a b', '/run/x']) + i;
    if (kind === 'block') {
      mounts.push({ destination, type: g.pick(['ext4', 'xfs']), source: `/dev/vd${'bcd'[i % 3]}1`, ...(g.chance(0.5) ? { options: ['ro'] } : {}) });
    } else if (kind === 'tmpfs') {
      const opts = g.subset(['nosuid', 'nodev', 'noexec', 'mode=1777'], 0.5);
      if (g.chance(0.85)) opts.push(`size=${g.pick([`${g.int(1, 1 << 20)}k`, `${g.int(1, 512)}m`, `${g.int(1, 1 << 30)}`])}`);
      mounts.push({ destination, type: 'tmpfs', source: 'tmpfs', ...(opts.length ? { options: opts } : {}) });
    } else {
      const opts = [g.pick(['bind', 'rbind']), ...g.subset(['ro', 'nosuid', 'nodev', 'rprivate'], 0.3)];
      const source = g.pick(['/srv/vol', '/etc/resolv.conf', 'relative/vol']) + (g.chance(0.5) ? String(i) : '');
      mounts.push(kind === 'bind' ? { destination, type: 'bind', source, options: opts } : { destination, source, options: opts });
    }
  }
  if (mounts.length || g.chance(0.1)) config.mounts = mounts;

  const net = g.pick(['private', 'private', 'host', 'netns', 'pid']);
  const annotations: Record<string, string> = {};
  for (let i = 0, n = g.int(0, 3); i < n; i++) annotations[g.pick(['com.example.team', 'org.x/y', 'k\tey', 'a']) + i] = g.chance(0.9) ? g.text(0) : 'cr\rin value';
  if (g.chance(0.1)) annotations['org.ocivirt.title'] = `Title ${index} & more`;
  if (!forLibvirt && g.chance(0.05)) annotations['org.ocivirt.uuid'] = '0b1c2d3e-4f50-4617-8899-aabbccddeeff';
  if (net === 'private' && g.chance(0.15))
    annotations['org.ocivirt.domain-xml'] = Buffer.from(
      `<domain type='lxc'><name>x</name><devices><interface type='network'><source network='default'/><ip address='192.168.122.${g.int(2, 250)}' prefix='24'/><guest dev='eth0'/></interface></devices><on_reboot>destroy</on_reboot></domain>`,
    ).toString('base64');
  if (Object.keys(annotations).length) config.annotations = annotations;

  const namespaces: NonNullable<NonNullable<RuntimeConfig['linux']>['namespaces']> = [{ type: 'pid' }, { type: 'uts' }, { type: 'mount' }];
  if (g.chance(0.8)) namespaces.push({ type: 'ipc' });
  if (net === 'private') namespaces.push({ type: 'network' });
  else if (net === 'netns') namespaces.push({ type: 'network', path: `/var/run/netns/ns${index}` });
  else if (net === 'pid') namespaces.push({ type: 'network', path: `/proc/${g.int(2, 99999)}/ns/net` });
  if (g.chance(0.3)) namespaces.push({ type: 'cgroup' });
  const linux: NonNullable<RuntimeConfig['linux']> = { namespaces: namespaces.sort(() => g.rnd() - 0.5) };
  if (g.chance(0.3)) {
    namespaces.push({ type: 'user' });
    const size = g.int(1, 65536);
    linux.uidMappings = [{ containerID: 0, hostID: 100000 + g.int(0, 1000) * 65536, size }];
    linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    if (g.chance(0.3)) linux.uidMappings.push({ containerID: size + 10, hostID: 9000000, size: 5 });
  }
  const resources: NonNullable<NonNullable<RuntimeConfig['linux']>['resources']> = {};
  if (g.chance(0.6)) {
    const limit = g.chance(0.2) ? -1 : g.int(64, 8192) * 1048576 + (g.chance(0.3) ? g.int(1, 1023) : 0);
    resources.memory = { limit };
    if (limit > 0 && g.chance(0.5)) resources.memory.reservation = Math.floor(limit / 2);
    if (limit > 0 && g.chance(0.5)) resources.memory.swap = limit * 2;
    if (g.chance(0.1)) resources.memory.swappiness = 10;
    if (g.chance(0.1)) resources.memory.disableOOMKiller = true;
  }
  if (g.chance(0.6)) {
    resources.cpu = {};
    if (g.chance(0.7)) resources.cpu.shares = g.chance(0.9) ? g.int(2, 262144) : g.pick([1, 300000]);
    if (g.chance(0.5)) resources.cpu.quota = g.chance(0.2) ? -1 : g.int(1000, 2000000);
    if (g.chance(0.5)) resources.cpu.period = g.int(1000, 1000000);
    if (g.chance(0.5)) resources.cpu.cpus = g.pick(['0', '1', '0-1', '0,1']);
    if (g.chance(0.3)) resources.cpu.mems = '0';
    if (g.chance(0.1)) resources.cpu.realtimeRuntime = 1000;
  }
  if (g.chance(0.4)) {
    resources.blockIO = {};
    if (g.chance(0.7)) resources.blockIO.weight = g.int(10, 1000);
    if (g.chance(0.5)) resources.blockIO.weightDevice = [{ major: 8, minor: 0, weight: g.int(10, 1000) }];
    if (g.chance(0.5)) resources.blockIO.throttleReadBpsDevice = [{ major: 8, minor: g.pick([0, 16]), rate: g.int(1, 1 << 30) }];
    if (g.chance(0.3)) resources.blockIO.throttleWriteIOPSDevice = [{ major: 8, minor: 16, rate: g.int(1, 10000) }];
    if (g.chance(0.1)) resources.blockIO.leafWeight = 100;
  }
  if (g.chance(0.2)) resources.pids = { limit: g.int(1, 4096) };
  if (g.chance(0.2)) resources.devices = [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' }];
  if (Object.keys(resources).length) linux.resources = resources;
  if (g.chance(0.3)) {
    linux.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, ...(g.chance(0.3) ? { fileMode: 0o666, uid: 0, gid: 0 } : {}) }];
    if (g.chance(0.5)) linux.devices.push({ path: '/dev/loop0', type: 'b', major: 7, minor: 0 });
    if (g.chance(0.3)) linux.devices.push({ path: '/dev/null', type: 'c', major: 1, minor: 3 });
  }
  if (net === 'private' && g.chance(0.15)) linux.netDevices = { [`veth${index}x`]: g.chance(0.5) ? {} : { name: `veth${index}x` } };
  if (g.chance(0.2)) linux.sysctl = { 'net.ipv4.ip_forward': '1' };
  if (g.chance(0.2)) linux.seccomp = { defaultAction: 'SCMP_ACT_ERRNO', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' }] };
  if (g.chance(0.2)) linux.maskedPaths = ['/proc/kcore'];
  if (g.chance(0.1)) linux.rootfsPropagation = 'private';
  if (g.chance(0.1)) linux.cgroupsPath = `/ocivirt/c${index}`;
  if (g.chance(0.05)) linux.personality = { domain: 'LINUX32' };
  config.linux = linux;
  if (g.chance(0.1)) config.hooks = { prestart: [{ path: '/usr/bin/true', args: ['true'] }] };
  return config;
}

/** What to-native must give back for `config`: the same, with root.path absolute. */
export function expectedBack(config: RuntimeConfig, bundleDir: string): string {
  return canonicalJson(canonicalInput(config, bundleDir));
}
