/** Seeded randomness for tests: a failing case can be reproduced from its seed. */
import { randomInt } from 'node:crypto';

/** mulberry32: small, seeded, good enough to vary test inputs reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** prng plus picking one element of a list. */
export function rng(seed: number) {
  const next = prng(seed);
  return { next, pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]! };
}

/**
 * A run's seed: `OCIVIRT_SEED` when set (an integer, else an error: a typo must not silently
 * replay seed 0), otherwise a new random one per run. Printed, so any run can be replayed.
 */
export function runSeed(label: string): number {
  const given = process.env.OCIVIRT_SEED;
  if (given !== undefined && given !== '' && !/^\d+$/.test(given)) throw new Error(`OCIVIRT_SEED=${given}: not a non-negative integer`);
  const seed = given !== undefined && given !== '' ? Number(given) : randomInt(2 ** 31);
  console.log(`${label}: seed ${seed} (replay with OCIVIRT_SEED=${seed})`);
  return seed;
}
