/**
 * systemd/ocivirt.service passes `systemd-analyze verify` with no message at all. The unit's
 * ExecStart names the installed path (/usr/local/bin/ocivirt); verify insists that it exists, so
 * the copy checked here points at this checkout's bin/ocivirt and is otherwise the same bytes.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../helpers/schema.js';

const unitPath = join(repoRoot(), 'systemd', 'ocivirt.service');
const INSTALLED = '/usr/local/bin/ocivirt';

test('the unit names the installed binary and runs after libvirtd', () => {
  const unit = readFileSync(unitPath, 'utf8');
  assert.match(unit, `ExecStart=${INSTALLED} daemon`);
  assert.match(unit, /^After=.*libvirtd\.service/m);
  assert.match(unit, /^Restart=on-failure$/m);
  assert.match(unit, /^ReadOnlyPaths=\/var\/lib\/ocivirt\/spool$/m);
});

test('systemd-analyze verify is clean', () => {
  const which = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  assert.is(which.status, 0, 'systemd-analyze is installed (Debian package systemd)');
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-unit-'));
  try {
    const copy = join(dir, 'ocivirt.service');
    writeFileSync(copy, readFileSync(unitPath, 'utf8').replaceAll(INSTALLED, join(repoRoot(), 'bin', 'ocivirt')));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', cwd: dir });
    assert.is(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings');
    assert.is(r.status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
