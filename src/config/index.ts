export { loadConfig, DEFAULT_CONFIG_FILE, type LoadOptions, type LoadedConfig } from './load.js';
export { SETTINGS, defaultConfig, type Config, type Setting, type StartPolicy, type UpdatePolicy, type RemovePolicy, type DriftPolicy } from './settings.js';
