/** The image pipeline's public face for the CLI and the daemon. */
export { unpackImage, type LayerProgress, type UnpackOptions, type UnpackResult, type UnpackedLayer } from './unpack.js';
export { RECORD_FILE, readRecord, type UnpackRecord } from './bundle-dir.js';
export { openImageSource, type ImageSource, type SourceFormat } from './source.js';
export { hostPlatform, parsePlatform, formatPlatform } from './platform.js';
