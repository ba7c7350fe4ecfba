/** The archive indexer that lets oci-archives and docker-save tarballs be read in place. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { open } from 'node:fs/promises';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import { indexTar, resolveMember } from '../../src/image/tar-index.js';
import { TarStore } from '../../src/image/store.js';
import { dir, file, hardlink, symlink, tar, type Entry } from '../helpers/tar.js';
import { tmp } from './fixtures.js';

const root = tmp();
test.after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

async function index(buf: Buffer) {
  const p = join(root, `a${n++}.tar`);
  writeFileSync(p, buf);
  const fh = await open(p, 'r');
  try {
    return await indexTar(fh, buf.length, p);
  } finally {
    await fh.close();
  }
}

async function rejects(buf: Buffer, pattern: RegExp) {
  try {
    await index(buf);
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected ${pattern}`);
}

test('members are found by normalised name, with data offsets that read back the content', async () => {
  const long = `blobs/sha256/${'d'.repeat(120)}`;
  const entries: Entry[] = [
    dir('./blobs/'),
    file('./blobs/sha256/aa', 'first'),
    file('blobs/sha256/aa', 'second wins'),
    { ...file('x', 'pax named'), pax: { path: 'pax/named/file' } },
    { ...file('y', 'gnu long'), longName: long },
    symlink('link', 'blobs/sha256/aa'),
    hardlink('hard', 'pax/named/file'),
  ];
  const buf = tar(entries);
  const p = join(root, 'members.tar');
  writeFileSync(p, buf);
  const store = await TarStore.open(p);
  try {
    assert.is((await store.readSmall('blobs/sha256/aa', 100))?.toString(), 'second wins');
    assert.is((await store.readSmall('pax/named/file', 100))?.toString(), 'pax named');
    assert.is((await store.readSmall(long, 100))?.toString(), 'gnu long');
    assert.is((await store.readSmall('link', 100))?.toString(), 'second wins');
    assert.is((await store.readSmall('hard', 100))?.toString(), 'pax named');
    assert.is(await store.size('missing'), undefined);
    const chunks: Buffer[] = [];
    for await (const c of await store.open('pax/named/file')) chunks.push(c as Buffer);
    assert.is(Buffer.concat(chunks).toString(), 'pax named');
  } finally {
    await store.close();
  }
});

test('a bad header checksum, a member running past the end and a malformed size are refused', async () => {
  await rejects(tar([{ ...file('a', 'x'), badChecksum: true }]), /bad header checksum at offset 0/);
  await rejects(tar([file('a', 'x'.repeat(2000))]).subarray(0, 1024), /truncated: member "a" runs past the end/);
  await rejects(tar([{ ...file('a', 'x'), pax: { size: '-5' } }]), /malformed PAX size/);
  await rejects(tar([{ ...file('a', 'x'), pax: { size: '99999999999' } }]), /runs past the end/);
});

test('links that leave the archive or loop are refused; devices are never blobs', async () => {
  const members = await index(tar([symlink('up', '../../etc/passwd'), symlink('abs', '/etc/passwd'), symlink('loop1', 'loop2'), symlink('loop2', 'loop1'), { name: 'dev', type: '3', devmajor: 1, devminor: 3 }]));
  assert.throws(() => resolveMember(members, 'up', 'a.tar'), (e: Error) => /links outside the archive/.test(e.message));
  assert.throws(() => resolveMember(members, 'abs', 'a.tar'), (e: Error) => /links outside the archive/.test(e.message));
  assert.throws(() => resolveMember(members, 'loop1', 'a.tar'), (e: Error) => /too many levels of links/.test(e.message));
  assert.is(resolveMember(members, 'dev', 'a.tar'), undefined);
});

test.run();
