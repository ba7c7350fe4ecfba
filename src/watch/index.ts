export { SpoolWatcher, type SpoolWatcherOptions } from './spool-watcher.js';
export { snapshotEntry, type Snapshot } from './complete.js';
