/** The domain model: parse, build, compare. */
export * from './domain.js';
export { parseDomainXml } from './parse.js';
export { buildDomainXml } from './build.js';
export { sameDomain, domainChanges, domainDifferences, containerDifferences, sameContainer, type CompareOptions, type DomainChange } from './compare.js';
export { METADATA_NS, type OciMetadata } from './metadata.js';
