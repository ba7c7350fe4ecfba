/**
 * `ocivirt unpack`: an image (layout dir, oci-archive, docker save) into a runtime bundle.
 * A progress bar per layer on a terminal; pino events (JSON lines on stderr) otherwise, so
 * stdout carries only the result.
 */
import cliProgress from 'cli-progress';
import { unpackImage, type LayerProgress, type UnpackResult } from '../image/unpack.js';
import { UsageError } from '../errors.js';
import { DEFAULT_MAX_RATIO } from '../image/layer-stream.js';
import { DEFAULT_LIMITS } from '../layer/index.js';
import { createLogger, silentLogger } from '../log.js';
import { parseCommandArgs } from './args.js';
import type { Command, CommandIO } from './command.js';

const usage = `Usage: ocivirt unpack [options] <image> <bundle-dir>

Unpacks an OCI image into <bundle-dir>/rootfs and <bundle-dir>/config.json, verifying every blob
(digest and size) and every layer's diffID while it streams. <image> is recognised by content:
an OCI image-layout directory, an oci-archive (that layout as a tar), or a docker save tarball
(legacy or Docker 25+). The bundle is built beside <bundle-dir> and swapped in only when
complete; an image whose manifest digest is already unpacked there is not unpacked again.

Options:
  --ref REF                 the image to take: org.opencontainers.image.ref.name or a docker
                            RepoTag (needed when the source holds several images)
  --platform OS/ARCH[/VAR]  the platform to pick from an index (default: this host's)
  --force                   unpack even if the bundle already holds this manifest
  --allow-devices           create device nodes from layers (default: skipped with a warning)
  --max-layer-size SIZE     refuse a layer bigger than SIZE uncompressed (default 32G; K/M/G/T suffixes)
  --max-entries N           refuse a layer with more than N entries (default 1000000)
  --max-ratio N             refuse a layer that inflates more than N times its compressed size,
                            checked after its first 64 MiB (default 1000; 0: no limit)
  --min-free SIZE           refuse a layer that would leave less than SIZE free on the bundle's
                            filesystem (default 1G; 0: no reserve)
  --json                    print the result as JSON
  -h, --help                this text

Exit codes: 0 done (or unchanged), 2 bad image or usage, 1 any other failure.
`;

function mib(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

/** `123`, `64K`, `1.5G` (binary units) -> bytes. */
function parseSize(flag: string, text: string, zeroOk = false): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)i?B?$/i.exec(text.trim());
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const n = m ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(n) || n < (zeroOk ? 0 : 1)) throw new UsageError(`${flag}: expected a size such as 512M or 4G, got '${text}'`);
  return n;
}

function parseCount(flag: string, text: string, zeroOk = false): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < (zeroOk ? 0 : 1)) throw new UsageError(`${flag}: expected a ${zeroOk ? 'non-negative' : 'positive'} integer, got '${text}'`);
  return n;
}

function summary(r: UnpackResult): string {
  const name = r.refs[0] ?? r.manifestDigest;
  if (r.reconverted) return `config derived again: ${name} (${r.platform}) manifest ${r.manifestDigest} already in ${r.bundleDir}, its config.json made by an older ocivirt\n`;
  if (r.skipped) return `unchanged: ${name} (${r.platform}) manifest ${r.manifestDigest} already in ${r.bundleDir}\n`;
  const bytes = r.layers.reduce((n, l) => n + l.uncompressedBytes, 0);
  return `unpacked ${name} (${r.platform}) manifest ${r.manifestDigest} into ${r.bundleDir}: ${r.layers.length} layers, ${mib(bytes)} in ${(r.durations.totalMs / 1000).toFixed(1)}s\n`;
}

/** One bar per layer, created when the layer starts. */
function progressBars(stream: NodeJS.WritableStream): { onProgress: (p: LayerProgress) => void; stop: () => void } {
  const multi = new cliProgress.MultiBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: ' layer {layer} [{bar}] {percentage}% | {done}/{size} | {rate}',
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<number, { bar: cliProgress.SingleBar; started: number }>();
  return {
    onProgress: (p) => {
      let b = bars.get(p.layer);
      const total = p.totalBytes ?? Math.max(p.bytes, 1);
      if (b === undefined) {
        b = { bar: multi.create(total, 0, { layer: `${p.layer + 1}/${p.layers}`, done: mib(0), size: mib(total), rate: '' }), started: Date.now() };
        bars.set(p.layer, b);
      }
      const secs = Math.max((Date.now() - b.started) / 1000, 0.001);
      b.bar.setTotal(p.totalBytes ?? Math.max(p.bytes, 1));
      b.bar.update(p.bytes, { done: mib(p.bytes), rate: `${mib(p.bytes / secs)}/s` });
    },
    stop: () => multi.stop(),
  };
}

export const unpackCommand: Command = {
  name: 'unpack',
  summary: 'unpack an OCI image (layout, oci-archive, docker save) into a verified runtime bundle',
  usage,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(
      'unpack',
      argv,
      {
        ref: { type: 'string' },
        platform: { type: 'string' },
        force: { type: 'boolean' },
        'allow-devices': { type: 'boolean' },
        'max-layer-size': { type: 'string' },
        'max-entries': { type: 'string' },
        'max-ratio': { type: 'string' },
        'min-free': { type: 'string' },
        json: { type: 'boolean' },
      },
      { min: 2, max: 2 },
    );
    const [image, bundle] = positionals as [string, string];
    const limits = {
      maxBytes: values['max-layer-size'] !== undefined ? parseSize('--max-layer-size', values['max-layer-size']) : DEFAULT_LIMITS.maxBytes,
      maxEntries: values['max-entries'] !== undefined ? parseCount('--max-entries', values['max-entries']) : DEFAULT_LIMITS.maxEntries,
      maxRatio: values['max-ratio'] !== undefined ? parseCount('--max-ratio', values['max-ratio'], true) : DEFAULT_MAX_RATIO,
      minFreeBytes: values['min-free'] !== undefined ? parseSize('--min-free', values['min-free'], true) : DEFAULT_LIMITS.minFreeBytes,
    };
    const tty = (io.stderr as NodeJS.WriteStream).isTTY === true;
    const bars = tty ? progressBars(io.stderr) : undefined;
    const log = tty ? silentLogger() : createLogger({ destination: io.stderr });
    const warnings: string[] = [];
    try {
      const result = await unpackImage(image, bundle, {
        ...(values.ref !== undefined ? { ref: values.ref } : {}),
        ...(values.platform !== undefined ? { platform: values.platform } : {}),
        force: values.force === true,
        allowDevices: values['allow-devices'] === true,
        limits,
        log,
        ...(bars ? { onProgress: bars.onProgress } : {}),
        onWarning: (m) => {
          warnings.push(m);
          if (!tty) log.warn('image.warning', { entry: image, warning: m }, m);
        },
      });
      bars?.stop();
      if (tty) for (const w of warnings) io.stderr.write(`ocivirt unpack: warning: ${w}\n`);
      io.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : summary(result));
      return 0;
    } finally {
      bars?.stop();
    }
  },
};
