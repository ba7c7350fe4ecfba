export { Exporter, definitionName, type ExporterOptions } from './exporter.js';
export { exportDomain, exportableName, type ExportOutcome, type ExportDomainOptions } from './export-domain.js';
export { writeConfigAtomically, ensureOwnDirectory } from './write.js';
export { exportSelfContained, settingsPathOf, splitVolumeMounts, type SelfContainedExport, type SelfContainedOptions } from './bundle.js';
