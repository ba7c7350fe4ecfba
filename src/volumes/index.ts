export { anonymousOwner, anonymousVolumeName, isVolumeName, volumesDir } from './names.js';
export { chownIntoRange, ensureVolume, existingVolume, mapIntoRange, volumesRoot, type EnsureOptions, type IdMap, type VolumeSeed } from './store.js';
export { entryVolumes, volumeMounts, type VolumeMount } from './mounts.js';
export { describeVolumes, listVolumes, volumeUsers, type VolumeInfo } from './users.js';
