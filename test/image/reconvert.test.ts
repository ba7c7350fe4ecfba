/**
 * An unpacked bundle records the image-config converter that made its config.json. A bundle an
 * older ocivirt unpacked keeps what that converter made (image labels as ocivirt's own
 * annotations: an image chose whether it starts): the next pass derives its config again from
 * the image instead of reusing it, and leaves the tree (a running container may use it) alone.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { IMAGE_CONVERTER_VERSION } from '../../src/convert/image-config.js';
import { RECORD_FILE } from '../../src/image/bundle-dir.js';
import { unpackImage } from '../../src/image/unpack.js';
import { desiredDomain, START_ANNOTATION } from '../../src/reconcile/desired.js';
import type { SpoolEntry } from '../../src/spool/index.js';
import { captureLog } from '../helpers/log.js';
import { baseLayerEntries, ImageBuilder, scratchDirs, writeFiles } from './fixtures.js';

const scratch = scratchDirs();

/** A layout whose image labels itself to start, in the spool's own words. */
function labelledImage(): string {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }], config: { Cmd: ['/bin/sh'], Labels: { [START_ANNOTATION]: 'true', keep: 'me' } } });
  return writeFiles(join(scratch(), 'img'), b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]));
}

type Json = Record<string, unknown> & { annotations: Record<string, string> };
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Json;

/** Makes `bundle` what the converter before versions were recorded left: the label as ocivirt's annotation, a record without `converter`. */
function makeOld(bundle: string): void {
  const config = readJson(join(bundle, 'config.json'));
  for (const k of Object.keys(config.annotations)) if (k.startsWith('image-label.')) delete config.annotations[k];
  config.annotations[START_ANNOTATION] = 'true';
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const record = readJson(join(bundle, RECORD_FILE));
  delete record.converter;
  writeFileSync(join(bundle, RECORD_FILE), JSON.stringify(record));
}

/** The one version directory in `dir` (dot-names are locks and staging). */
function readdirOne(dir: string): string {
  const names = readdirSync(dir).filter((n) => !n.startsWith('.'));
  assert.is(names.length, 1, names.join(', '));
  return names[0]!;
}

test('records carry the converter version', async () => {
  const r = await unpackImage(labelledImage(), join(scratch(), 'b'));
  assert.is(readJson(join(r.bundleDir, RECORD_FILE)).converter, IMAGE_CONVERTER_VERSION);
  const config = readJson(join(r.bundleDir, 'config.json'));
  assert.is(config.annotations[START_ANNOTATION], undefined);
  assert.is(config.annotations[`image-label.${START_ANNOTATION}`], 'true');
});

test('a pass over a bundle an older converter made: its config is derived again, the label no longer starts the domain, the tree stays', async () => {
  const path = labelledImage();
  const state = scratch();
  const entry: SpoolEntry = { name: 'img', path, kind: 'layout', domainName: 'img', fingerprint: '' };
  const first = await desiredDomain(entry, { stateDir: state }, 1);
  assert.is(first.start, false, 'the current converter never lets the label start it');
  const bundle = join(state, 'bundles', 'img', readdirOne(join(state, 'bundles', 'img')));
  makeOld(bundle);
  const tree = statSync(join(bundle, 'rootfs', 'bin', 'sh')).ino;

  const { log, events } = captureLog();
  const next = await desiredDomain(entry, { stateDir: state, log }, 1);
  const config = readJson(join(bundle, 'config.json'));
  assert.is(config.annotations[START_ANNOTATION], undefined, 'the old converter annotation is gone from the bundle');
  assert.is(config.annotations[`image-label.${START_ANNOTATION}`], 'true');
  assert.is(config.annotations.keep, 'me');
  assert.is(next.start, false);
  assert.is(readJson(join(bundle, RECORD_FILE)).converter, IMAGE_CONVERTER_VERSION);
  assert.is(statSync(join(bundle, 'rootfs', 'bin', 'sh')).ino, tree, 'the tree was not unpacked again');
  const reconverted = events.filter((e) => e.event === 'image.reconverted');
  assert.equal(reconverted.map((e) => [e.from, e.to]), [[1, IMAGE_CONVERTER_VERSION]]);

  // now current: reused as it is
  const { log: log2, events: events2 } = captureLog();
  await desiredDomain(entry, { stateDir: state, log: log2 }, 1);
  assert.equal(events2.filter((e) => String(e.event).startsWith('image.')).map((e) => e.event), ['image.unchanged']);
});

test('ocivirt unpack into a bundle an older converter made derives its config again too', async () => {
  const image = labelledImage();
  const target = join(scratch(), 'b');
  await unpackImage(image, target);
  makeOld(target);
  const r = await unpackImage(image, target);
  assert.ok(r.skipped, 'the layers are not unpacked again');
  assert.ok(r.reconverted);
  assert.is(readJson(join(target, 'config.json')).annotations[START_ANNOTATION], undefined);
});

test.run();
