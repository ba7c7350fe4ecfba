#!/usr/bin/env bash
# The full test suite on a fresh machine: Debian packages + libvirtd (setup-libvirt.sh),
# npm dependencies (npm ci generates and compiles libvirt-binding, the other addons and the TypeScript), then npm test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-libvirt.sh
npm ci --no-audit --no-fund
npm test
