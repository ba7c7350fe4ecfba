export { scanSpool, inspectEntry, refuseCollisions, type SpoolEntry, type SpoolEntryKind, type RefusedEntry, type ScanOptions } from './scan.js';
export { domainNameFor, checkNamePrefix, isValidDomainName, MAX_DOMAIN_NAME } from './names.js';
export { checkDirectoryTrust, checkBundlePaths, checkHostDevices, type DirectoryTrustOptions, type BundlePaths, type HostDeviceAllowList } from './trust.js';
export { startProblems, LIBVIRT_MOUNT_POINTS, type StartProblem } from './preflight.js';
