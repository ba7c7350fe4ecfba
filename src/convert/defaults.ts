/**
 * The defaults pass: fill in what libvirt adds on define (mapping notes §5.1), so the desired
 * domain already looks like `dumpxml --inactive` and the reconciler compares like with like.
 */
import { elem } from '../xml/element.js';
import type { Domain } from '../xml/domain.js';

export function applyLibvirtDefaults(d: Domain, hostArch: string): void {
  if (d.memory !== undefined) d.currentMemory ??= d.memory;
  d.vcpu = d.vcpu ? { ...d.vcpu, placement: d.vcpu.placement ?? 'static' } : { count: 1, placement: 'static' };
  d.os.arch ??= hostArch;
  d.clock ??= elem('clock', { offset: 'utc' });
  d.onPoweroff ??= 'destroy';
  d.onReboot ??= 'restart';
  d.onCrash ??= 'destroy';
  for (const fs of d.devices.filesystems) fs.accessmode ??= 'passthrough';
  // At least one pty console is required to start (init's stdio is the first one).
  if (!d.devices.consoles.some((c) => c.type === 'pty')) d.devices.consoles.unshift({ type: 'pty', attrs: {}, extra: [] });
  d.devices.consoles.forEach((c, i) => {
    c.targetType ??= 'lxc';
    c.port ??= i;
  });
}
