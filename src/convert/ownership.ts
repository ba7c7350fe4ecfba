/** Who owns a domain, as the reconciler reads it from ocivirt's metadata. */
import type { Domain } from '../xml/domain.js';

export interface Ownership {
  /** The spool entry the domain was made from. */
  entry: string;
  /** The ocivirt instance that made it; undefined for domains made before instances had ids. */
  instance?: string;
  /** The bundle directory it was made from (how a domain without an instance id is claimed). */
  bundle?: string;
  /** sha256 of the canonical desired runtime config. */
  desiredDigest: string;
  /** The source image digest, when made from an image. */
  imageDigest?: string;
}

export function readOwnership(domain: Domain): Ownership | undefined {
  const m = domain.metadata.ours;
  if (!m?.entry || !m.desiredDigest) return undefined;
  return {
    entry: m.entry,
    desiredDigest: m.desiredDigest,
    ...(m.instance ? { instance: m.instance } : {}),
    ...(m.bundle ? { bundle: m.bundle } : {}),
    ...(m.imageDigest ? { imageDigest: m.imageDigest } : {}),
  };
}
