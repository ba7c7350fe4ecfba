/**
 * A compressed stream that is not what its format says (a bad header, a checksum that does not
 * match, data that ends in the middle): the layer stream reports it as a corrupt stream of the
 * layer, as it does zlib's and zstd's own errors.
 */
export class CorruptStreamError extends Error {
  override name = 'CorruptStreamError';
}
