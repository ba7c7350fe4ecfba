/**
 * Reading a runtime bundle's config.json: the argument is the bundle directory or the config
 * file itself. JSON syntax errors name the file, line and column; the config is then checked by
 * the product's validator (validate.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import type { RuntimeConfig } from './runtime-spec.js';
import { validateRuntimeConfig } from './validate.js';
import { jsonErrorOffset } from './json-error.js';

/** config.json files larger than this are refused before parsing (hostile input). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export interface BundleConfig {
  config: RuntimeConfig;
  /** Absolute bundle directory (the config file's directory). */
  bundleDir: string;
  /** Absolute path of config.json. */
  configPath: string;
}

/** Line and column (1-based) of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

/** JSON.parse with errors that say where: `line L column C: <reason>`. */
export function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const found = jsonErrorOffset(text);
    if (!found) throw new InputError(`not valid JSON: ${(e as Error).message.split('\n')[0]}`, { file });
    const { line, column } = lineColumn(text, found.offset);
    throw new InputError(`not valid JSON at line ${line} column ${column}: ${found.reason}`, { file });
  }
}

export async function readBundleConfig(arg: string): Promise<BundleConfig> {
  const target = resolve(arg);
  let st;
  try {
    st = await stat(target);
  } catch {
    throw new InputError('no such bundle directory or config file', { file: arg });
  }
  const configPath = st.isDirectory() ? join(target, 'config.json') : target;
  let cst;
  try {
    cst = await stat(configPath);
  } catch {
    throw new InputError('no config.json in the bundle directory', { file: configPath });
  }
  if (!cst.isFile()) throw new InputError('is not a regular file', { file: configPath });
  if (cst.size > MAX_CONFIG_BYTES) throw new InputError(`is larger than ${MAX_CONFIG_BYTES} bytes`, { file: configPath });
  const text = await readFile(configPath, 'utf8');
  const value = parseJsonText(text, configPath);
  const config = validateRuntimeConfig(value, configPath);
  return { config, bundleDir: dirname(configPath), configPath };
}
