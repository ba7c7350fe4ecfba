export { resolveInRoot, resolveInRootSync, pathComponents, MAX_SYMLINKS, type ResolveOptions } from './resolve.js';
export { readFileInRoot } from './read.js';
