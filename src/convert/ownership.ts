/** Who owns a domain, as the reconciler reads it from ocivirt's metadata. */
import type { Domain } from '../xml/domain.js';

export interface Ownership {
  /** The spool entry the domain was made from. */
  entry: string;
  /** sha256 of the canonical desired runtime config. */
  desiredDigest: string;
  /** The source image digest, when made from an image. */
  imageDigest?: string;
}

export function readOwnership(domain: Domain): Ownership | undefined {
  const m = domain.metadata.ours;
  if (!m?.entry || !m.desiredDigest) return undefined;
  return m.imageDigest ? { entry: m.entry, desiredDigest: m.desiredDigest, imageDigest: m.imageDigest } : { entry: m.entry, desiredDigest: m.desiredDigest };
}
