/** `process` <-> `<os>` init settings, capabilities and security labels (mapping notes §1.1, §1.5). */
import { posix } from 'node:path';
import { InputError } from '../../errors.js';
import type { Capabilities, Process } from '../../oci/runtime-spec.js';
import { xmlTextProblem } from '../../xml/escape.js';
import { refuse, type ForwardContext } from '../context.js';
import { effectiveCaps, libvirtCapName, NEEDED_FOR_USER_SWITCH, ociCapName, sortLibvirtCaps } from './capabilities.js';
import type { Pass } from './pass.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The RNG's pattern for initenv names; others define but fail validation (§6.1). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * libvirt 9 writes initenv values unescaped (dumpxml and its own config file): a value with `&`,
 * `<` or `]]>` would make the domain's XML malformed, and libvirtd could not reload it.
 */
const UNESCAPED_BY_LIBVIRT = /[&<]|\]\]>/;

function checkText(ctx: ForwardContext, field: string, s: string): void {
  const problem = xmlTextProblem(s);
  if (problem) refuse(ctx, field, `${problem}; libvirt cannot carry it unchanged`);
}

function splitEnv(entry: string): [string, string] | undefined {
  const i = entry.indexOf('=');
  return i <= 0 ? undefined : [entry.slice(0, i), entry.slice(i + 1)];
}

/** The init path: argv0 itself when absolute, else looked up in the rootfs. */
function initPath(p: Process, argv0: string, ctx: ForwardContext): string {
  if (argv0.startsWith('/')) {
    // libvirt only finds out at start; a mount may still provide it, so this is a warning
    const resolver = ctx.opts.resolveExecutable;
    if (resolver && resolver(argv0, [], p.cwd) === undefined)
      ctx.warnings.add('process.args[0]', `${argv0} is not an executable file in the rootfs: the container will not start unless a mount provides it`);
    return argv0;
  }
  let searchPath = DEFAULT_PATH;
  for (const e of p.env ?? []) {
    const kv = splitEnv(e);
    if (kv && kv[0] === 'PATH') searchPath = kv[1];
  }
  const dirs = searchPath.split(':').filter((d) => d.startsWith('/'));
  const resolver = ctx.opts.resolveExecutable;
  if (!resolver) refuse(ctx, 'process.args[0]', `'${argv0}' is not an absolute path and there is no rootfs to look it up in`);
  const found = resolver(argv0, dirs, p.cwd);
  if (found === undefined)
    refuse(ctx, 'process.args[0]', `'${argv0}' is not an executable file in the rootfs (searched ${argv0.includes('/') ? `from ${p.cwd}` : `PATH ${searchPath}`})`);
  checkText(ctx, 'process.args[0]', found);
  return found;
}

/** The one capability set libvirt applies, from the OCI sets. */
function capabilitySet(caps: Capabilities | undefined, ctx: ForwardContext, nonRoot: boolean): string[] {
  const w = ctx.warnings;
  const bounding = caps?.bounding ?? [...new Set([...(caps?.permitted ?? []), ...(caps?.effective ?? [])])];
  const wanted: string[] = [];
  for (const c of bounding) {
    const n = libvirtCapName(c);
    if (n) wanted.push(n);
    else w.add('process.capabilities', `${c} is unknown to libvirt-lxc and is dropped`);
  }
  // the init shim sets all five sets exactly and switches the user itself (src/shim/domain.ts)
  const shim = ctx.opts.shim !== undefined;
  if (caps && !shim) {
    const same = (l: string[] | undefined) => l === undefined || [...new Set(l)].sort().join() === [...new Set(bounding)].sort().join();
    if (!same(caps.effective) || !same(caps.permitted) || !same(caps.inheritable))
      w.add('process.capabilities', 'libvirt applies one set to bounding, effective, permitted and inheritable alike');
    if (caps.ambient?.length) w.add('process.capabilities.ambient', 'ambient capabilities are not supported by libvirt-lxc');
    if (nonRoot && (caps.effective?.length ?? 0) > 0)
      w.add('process.capabilities.effective', 'a non-root init has no effective capabilities under libvirt-lxc (only the bounding set is kept)');
  }
  if (nonRoot && !shim) {
    const missing = NEEDED_FOR_USER_SWITCH.filter((c) => !wanted.includes(c));
    if (missing.length) {
      wanted.push(...missing);
      w.add('process.capabilities', `${missing.join(', ')} added to the bounding set: libvirt needs them to switch to a non-root user`);
    }
  }
  return sortLibvirtCaps(wanted);
}

export const processPass: Pass = {
  name: 'process',
  forward(cfg, d, ctx) {
    const p = cfg.process;
    if (!p) refuse(ctx, 'process', 'is required: libvirt-lxc needs a program to run');
    const args = p.args ?? [];
    if (args.length === 0) refuse(ctx, 'process.args', 'is missing or empty: there is no program to run (an image with neither Entrypoint nor Cmd gives none)');
    args.forEach((a, i) => {
      if (a === '') refuse(ctx, `process.args[${i}]`, 'is empty: libvirt rejects empty init arguments');
      checkText(ctx, `process.args[${i}]`, a);
    });
    if (!p.cwd?.startsWith('/')) refuse(ctx, 'process.cwd', 'must be an absolute path');
    checkText(ctx, 'process.cwd', p.cwd);
    d.os.init = initPath(p, args[0]!, ctx);
    d.os.initargs = args.slice(1);
    (p.env ?? []).forEach((entry, i) => {
      const field = `process.env[${i}]`;
      checkText(ctx, field, entry);
      const kv = splitEnv(entry);
      if (!kv) refuse(ctx, field, "is not in the form KEY=VALUE");
      const [name, value] = kv;
      // the shim passes the exact environment: what libvirt cannot carry is no loss then
      const warn = ctx.opts.shim === undefined ? (f: string, m: string) => ctx.warnings.add(f, m) : () => undefined;
      if (!ENV_NAME.test(name)) warn(field, `the name '${name}' is not accepted by libvirt's schema; not passed to init`);
      else if (value === '') warn(field, `'${name}' has an empty value, which libvirt rejects; not passed to init`);
      else if (UNESCAPED_BY_LIBVIRT.test(value))
        warn(field, `the value of '${name}' holds & or < or ]]>, which libvirt writes unescaped (corrupting its XML); not passed to init`);
      else d.os.initenv.push({ name, value });
    });
    if (posix.normalize(p.cwd) !== '/') d.os.initdir = p.cwd;
    const uid = p.user?.uid ?? 0;
    const gid = p.user?.gid ?? 0;
    // libvirt switches user whenever these are set, and the switch needs setuid/setgid/setpcap
    // (init dies silently without them); root:root is libvirt's default, so say nothing for it
    const switchesUser = uid !== 0 || gid !== 0;
    if (switchesUser) {
      d.os.inituser = `+${uid}`;
      d.os.initgroup = `+${gid}`;
    }
    // At least one pty console is required to start; init's stdio is the first one.
    d.devices.consoles.push({ type: 'pty', attrs: {}, extra: [] });
    if (p.terminal === false) ctx.warnings.add('process.terminal', "init's stdio is always the console pty under libvirt-lxc");
    d.features.capabilities = {
      policy: 'deny',
      caps: capabilitySet(p.capabilities, ctx, switchesUser).map((name) => ({ name, state: 'on' as const })),
    };
    for (const [field, model, label] of [
      ['process.selinuxLabel', 'selinux', p.selinuxLabel],
      ['process.apparmorProfile', 'apparmor', p.apparmorProfile],
    ] as const) {
      if (label === undefined) continue;
      if (!(ctx.opts.secModels ?? []).includes(model)) {
        ctx.warnings.add(field, `the host's libvirt has no ${model} security model; the label is not applied`);
        continue;
      }
      checkText(ctx, field, label);
      d.seclabels.push({ attrs: { type: 'static', model, relabel: 'no' }, label, extra: [] });
    }
  },

  reverse(d, ctx) {
    const os = d.os;
    const proc: Record<string, unknown> = { terminal: true };
    const parseId = (v: string | undefined, kind: 'user' | 'group'): number => {
      if (v === undefined) return 0;
      const m = /^\+?(\d+)$/.exec(v);
      if (m) return Number(m[1]);
      const id = ctx.opts.lookupId?.(kind, v);
      // never guess: a wrong id (0 above all) would change who the process runs as
      if (id === undefined)
        throw new InputError(`'${v}' is a ${kind} name that is not in the rootfs /etc/${kind === 'user' ? 'passwd' : 'group'}`, { field: `os.init${kind}` });
      return id;
    };
    proc.user = { uid: parseId(os.inituser, 'user'), gid: parseId(os.initgroup, 'group') };
    proc.args = [os.init ?? '/sbin/init', ...os.initargs];
    if (os.initenv.length) proc.env = os.initenv.map((e) => `${e.name}=${e.value}`);
    proc.cwd = os.initdir ?? '/';
    const caps = d.features.capabilities;
    const set = effectiveCaps(caps?.policy, caps?.caps ?? [])
      .map(ociCapName)
      .sort();
    proc.capabilities = { bounding: set, effective: [...set], permitted: [...set] };
    for (const s of d.seclabels) {
      if (s.attrs.type !== 'static' || s.label === undefined) continue;
      if (s.attrs.model === 'selinux') proc.selinuxLabel = s.label;
      else if (s.attrs.model === 'apparmor') proc.apparmorProfile = s.label;
    }
    return { process: proc };
  },
};

/** Whether a seclabel is carried by `process` (the others travel as XML-only parts). */
export function isProcessSeclabel(s: { attrs: Record<string, string>; label?: string; extra: unknown[] }): boolean {
  return s.attrs.type === 'static' && (s.attrs.model === 'selinux' || s.attrs.model === 'apparmor') && s.label !== undefined && s.extra.length === 0;
}
