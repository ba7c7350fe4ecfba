export { scanSpool, inspectEntry, refuseCollisions, pairSettings, settle, type SettingsFile, type SpoolEntry, type SpoolEntryKind, type RefusedEntry, type ScanOptions } from './scan.js';
export { domainNameFor, checkNamePrefix, isValidDomainName, MAX_DOMAIN_NAME, entryStem, namesOfStem, isSettingsName, IMAGE_SUFFIXES, SETTINGS_SUFFIX } from './names.js';
export { checkDirectoryTrust, checkBundlePaths, checkHostDevices, checkMountSource, type DirectoryTrustOptions, type BundlePaths, type HostDeviceAllowList } from './trust.js';
export { startProblems, mountsOntoHost, LIBVIRT_MOUNT_POINTS, type StartProblem } from './preflight.js';
