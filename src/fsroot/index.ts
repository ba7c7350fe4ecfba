export { resolveInRoot, resolveInRootSync, pathComponents, MAX_SYMLINKS, type ResolveOptions } from './resolve.js';
export { readFileInRoot } from './read.js';
export { asUtf8, display, fsPath, toBinary } from './binary.js';
