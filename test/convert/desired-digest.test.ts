// The desired digest in the metadata decides between "the spool changed" and "changed by hand"
// (driftPolicy): it must change whenever the desired definition would, and only then.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { readOwnership } from '../../src/convert/ownership.js';
import { runcSpec, testOptions } from './fixtures.js';

const digestOf = (opts: Parameters<typeof testOptions>[0] = {}, config = runcSpec()) =>
  readOwnership(fromNative(config, testOptions({ owner: { entry: 'web-1' }, ...opts })).domain)!.desiredDigest;

test('the same config and inputs give the same digest', () => {
  assert.is(digestOf(), digestOf());
  assert.match(digestOf(), /^sha256:[0-9a-f]{64}$/);
});

test('a change of the config changes the digest', () => {
  const c = runcSpec();
  c.process!.env = [...(c.process!.env ?? []), 'EXTRA=1'];
  assert.is.not(digestOf({}, c), digestOf());
});

test('conversion inputs that change the XML change the digest (cgroup version, name, bundle)', () => {
  assert.is.not(digestOf({ cgroupVersion: 2 }), digestOf({ cgroupVersion: 1 }));
  assert.is.not(digestOf({ name: 'other' }), digestOf({ name: 'web-1' }));
  assert.is.not(digestOf({ bundleDir: '/srv/b2' }), digestOf({ bundleDir: '/srv/b1' }));
});

test.run();
