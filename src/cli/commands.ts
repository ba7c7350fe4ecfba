/** Every subcommand, in the order `ocivirt --help` lists them. One import and one entry each. */
import type { Command } from './command.js';
import { unpackCommand } from './cmd-unpack.js';
import { fromNativeCommand } from './cmd-from-native.js';
import { toNativeCommand } from './cmd-to-native.js';
import { exportCommand } from './cmd-export.js';
import { daemonCommand } from './cmd-daemon.js';
import { statusCommand } from './cmd-status.js';
import { planCommand } from './cmd-plan.js';
import { syncCommand } from './cmd-sync.js';
import { validateCommand } from './cmd-validate.js';
import { volumeCommand } from './cmd-volume.js';
import { logsCommand } from './cmd-logs.js';
import { restartCommand, startCommand, stopCommand } from './cmd-lifecycle.js';

export const COMMANDS: Command[] = [
  unpackCommand, fromNativeCommand, toNativeCommand, daemonCommand, statusCommand, logsCommand, exportCommand, planCommand, syncCommand, validateCommand, volumeCommand,
  startCommand, stopCommand, restartCommand,
];
