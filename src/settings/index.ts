export { ENTRY_KEYS, KEY_NAMES, RECORDED_PREFIX, type EntrySettings, type KeySpec, type NetworkAttachment, type PublishedPort, type Volume } from './keys.js';
export { checkRole, MAX_SETTINGS_BYTES, parseEntrySettings, parseSettingsBytes, readEntrySettings, type ReadSettings, type SettingsRole } from './parse.js';
export { entrySettingsSchema, entrySettingsSchemaText } from './schema.js';
export { applySettings, type ApplyContext, type Applied } from './apply.js';
