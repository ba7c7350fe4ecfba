#!/usr/bin/env node
// `npm install` step: generate the sources from the installed libvirt-api.xml, then compile them
// with node-gyp against the headers of the Node that runs this (no header download).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: here, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run(process.execPath, [join(here, 'generator/generate.mjs')]);

// Node's own headers (node_api.h) sit in <prefix>/include/node beside its binary.
const prefix = resolve(dirname(process.execPath), '..');
const nodedir = process.env.npm_config_nodedir || prefix;
if (!existsSync(join(nodedir, 'include/node/node_api.h'))) {
  console.error(`libvirt-binding: ${nodedir}/include/node/node_api.h not found; set npm_config_nodedir to Node's install prefix`);
  process.exit(1);
}
// npm puts its bundled node-gyp on PATH for install scripts; outside npm, use the one npm ships
const gyp = process.env.npm_config_node_gyp
  ? [process.execPath, [process.env.npm_config_node_gyp]]
  : ['node-gyp', []];
run(gyp[0], [...gyp[1], 'rebuild', `--nodedir=${nodedir}`]);
