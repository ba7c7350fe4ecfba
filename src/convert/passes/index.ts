/** The passes, in the order from-native runs them. */
import { configPass } from './config.js';
import { devicesPass } from './devices.js';
import { mountsPass } from './mounts.js';
import { namespacesPass } from './namespaces.js';
import { networksPass } from './networks.js';
import type { Pass } from './pass.js';
import { processPass } from './process.js';
import { resourcesPass } from './resources.js';

// namespaces before devices (netDevices need the private network); config after them (it sees the
// name); networks last (its interfaces follow the XML-only ones, which keep their MACs).
export const PASSES: Pass[] = [processPass, mountsPass, namespacesPass, resourcesPass, devicesPass, configPass, networksPass];
