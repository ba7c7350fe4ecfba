/**
 * Platforms: parsing `os/arch[/variant]`, the host's platform in OCI's names, and matching a
 * wanted platform against what an index offers (variants normalised as containerd does, so
 * `arm64` and `arm64/v8` are the same thing).
 */
import { UsageError } from '../errors.js';
import type { Platform } from './documents.js';

/** Node's `process.arch` -> OCI `architecture` (GOARCH names). */
const NODE_TO_OCI_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le', // Node only runs little-endian ppc64 on Linux
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

export function hostPlatform(): Platform {
  const architecture = NODE_TO_OCI_ARCH[process.arch] ?? process.arch;
  const p: Platform = { os: process.platform, architecture };
  if (architecture === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    p.variant = `v${typeof v === 'string' || typeof v === 'number' ? v : '7'}`;
  }
  return p;
}

export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/i.test(p)))
    throw new UsageError(`--platform: expected OS/ARCH[/VARIANT] such as linux/amd64 or linux/arm/v7, got '${text}'`);
  const p: Platform = { os: (parts[0] as string).toLowerCase(), architecture: (parts[1] as string).toLowerCase() };
  if (parts[2]) p.variant = parts[2].toLowerCase();
  return p;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** The variant a platform means when it names none. */
function normalisedVariant(p: Platform): string | undefined {
  if (p.architecture === 'arm64') return p.variant === undefined || p.variant === '' ? 'v8' : p.variant;
  if (p.architecture === 'arm') return p.variant || 'v7';
  return p.variant || undefined;
}

/**
 * Does `offered` run where `wanted` is asked for? OS and architecture must be equal. A wanted
 * variant must be equal too; with none wanted, any variant of the architecture is acceptable
 * and `preference` ranks the exact default first.
 */
export function platformMatches(wanted: Platform, offered: Platform, explicitVariant: boolean): boolean {
  if (wanted.os !== offered.os || wanted.architecture !== offered.architecture) return false;
  if (!explicitVariant) return true;
  return normalisedVariant(wanted) === normalisedVariant(offered);
}

/** Lower is better: the default variant over others (e.g. arm64 before arm64/v9). */
export function preference(wanted: Platform, offered: Platform): number {
  return normalisedVariant(wanted) === normalisedVariant(offered) ? 0 : 1;
}
