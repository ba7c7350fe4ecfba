/**
 * One pass per OCI section (as libvirt's lxc_native does): `forward` writes its part of the
 * domain and its warnings; `reverse` derives its part of the config from the domain alone.
 * from-native runs `reverse` on its own output to find what the XML cannot carry.
 */
import type { RuntimeConfig } from '../../oci/runtime-spec.js';
import type { Domain } from '../../xml/domain.js';
import type { ForwardContext, ReverseContext } from '../context.js';

export interface Pass {
  name: string;
  forward(cfg: RuntimeConfig, d: Domain, ctx: ForwardContext): void;
  reverse(d: Domain, ctx: ReverseContext): Record<string, unknown>;
}
