export { SpoolWatcher, type SpoolWatcherOptions, type CheckOutcome } from './spool-watcher.js';
export { snapshotEntry, type Snapshot } from './complete.js';
