/**
 * Reading a runtime bundle's config.json: the argument is the bundle directory or the config
 * file itself. JSON syntax errors name the file, line and column; the config is then checked by
 * the product's validator (validate.ts).
 */
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { readSmallRegularFile, UnreadableFile, withSpoolEntry, type HeldEntry } from '../spool/read.js';
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

/**
 * The config of a bundle directory (or of the config file given itself), read once through the
 * spool's one safe reader: neither the directory nor config.json may be a symlink, and only a
 * regular file of at most MAX_CONFIG_BYTES is read (a FIFO or /proc file never blocks).
 */
export async function readBundleConfig(arg: string): Promise<BundleConfig> {
  const target = resolve(arg);
  try {
    return await withSpoolEntry(target, 'directory', (dir) => readBundleConfigIn(dir, target));
  } catch (e) {
    if (!(e instanceof UnreadableFile)) throw e;
    if (e.code === 'ENOENT') throw new InputError('no such bundle directory or config file', { file: arg });
    if (e.code === 'ELOOP') throw new InputError('is a symlink: give the bundle directory or its config.json itself', { file: arg });
    if (e.code !== 'ENOTDIR') throw new InputError(e.message, { file: arg });
  }
  // not a directory: the config file itself
  const data = await readSmallRegularFile(target, MAX_CONFIG_BYTES).then(
    (r) => r.data,
    (e: unknown) => {
      throw e instanceof UnreadableFile ? new InputError(e.message, { file: target }) : e;
    },
  );
  return { config: validateRuntimeConfig(parseJsonText(data.toString('utf8'), target), target), bundleDir: dirname(target), configPath: target };
}

/**
 * The config.json of the bundle directory held open as `dir` (its path `bundleDir`, for
 * messages): read through the open directory, so whatever `bundleDir` leads to now is not read.
 */
export async function readBundleConfigIn(dir: HeldEntry, bundleDir: string): Promise<BundleConfig> {
  const configPath = join(bundleDir, 'config.json');
  const data = await readSmallRegularFile(`${dir.at}/config.json`, MAX_CONFIG_BYTES).then(
    (r) => r.data,
    (e: unknown) => {
      if (!(e instanceof UnreadableFile)) throw e;
      throw new InputError(e.code === 'ENOENT' ? 'no config.json in the bundle directory' : e.message, { file: configPath });
    },
  );
  const config = validateRuntimeConfig(parseJsonText(data.toString('utf8'), configPath), configPath);
  return { config, bundleDir, configPath };
}
