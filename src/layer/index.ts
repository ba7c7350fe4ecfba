export { applyLayer, DEFAULT_LIMITS, type ApplyLayerOptions, type LayerLimits, type LayerStats, type TarLimits } from './apply.js';
export { xattrAllowed } from './writer.js';
