#!/usr/bin/env bash
# Quick-start demo: sets libvirt up if needed (as root), builds ocivirt, fills a demo spool with
# a runtime bundle and an OCI image, and runs the ocivirt daemon on it against the local libvirtd
# in the foreground (JSON events on stdout; Ctrl-C stops the daemon, the containers keep running).
#   scripts/demo.sh           run it
#   scripts/demo.sh --clean   remove every domain of the demo instance and the demo directory
# In another shell meanwhile: `bin/ocivirt status --state /var/lib/ocivirt-demo/state`,
# `virsh -c lxc:/// list --all`, `virsh -c lxc:/// memtune demo-hello --hard-limit 200000 --config`
# (then look at /var/lib/ocivirt-demo/export/demo-hello/config.json), or drop more entries in.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${OCIVIRT_DEMO_DIR:-/var/lib/ocivirt-demo}
URI=${OCIVIRT_URI:-lxc:///}

# The demo instance: its domains carry the prefix demo- and ocivirt's ownership metadata.
demo_ocivirt() { env OCIVIRT_NAME_PREFIX=demo- bin/ocivirt "$@"; }

if [ "${1:-}" = --clean ]; then
  # One pass of the demo instance over an empty spool removes every domain it owns (the two it
  # made and any made from entries added since); other domains, ocivirt's or not, are not its own.
  if [ -d "$DEMO/state" ]; then
    [ -f dist/src/cli/main.js ] || npm run build
    rm -rf "$DEMO/empty"; mkdir -m 700 "$DEMO/empty"
    if ! OCIVIRT_REMOVE_POLICY=undefine OCIVIRT_STOP_TIMEOUT_SEC=2 demo_ocivirt sync --once \
        --spool "$DEMO/empty" --state "$DEMO/state" --uri "$URI"; then
      echo "demo: could not remove the demo's domains (above); $DEMO is kept, run --clean again" >&2
      exit 1
    fi
  fi
  rm -rf "$DEMO"
  echo "demo: removed the demo's domains and $DEMO"
  exit 0
fi

scripts/setup-libvirt.sh
[ -f libvirt-binding/build/Release/binding.node ] || npm ci --no-audit --no-fund
[ -f dist/src/cli/main.js ] || npm run build

umask 077
mkdir -p "$DEMO/spool" "$DEMO/state" "$DEMO/export" "$DEMO/build"
busybox_rootfs() { # $1 = rootfs dir
  mkdir -p "$1/bin" "$1/etc" "$1/tmp" "$1/proc" "$1/sys" "$1/dev"   # a read-only root needs the mount points
  cp /bin/busybox "$1/bin/busybox"
  for applet in sh sleep ps cat ls echo hostname id; do ln -sf busybox "$1/bin/$applet"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$1/etc/passwd"
  echo 'root:x:0:' > "$1/etc/group"
}

# 1. a runtime bundle, as `runc spec` writes it (started: startPolicy "always" is the default)
if [ ! -e "$DEMO/spool/hello" ]; then
  B="$DEMO/build/hello"; rm -rf "$B"; mkdir -p "$B"
  busybox_rootfs "$B/rootfs"
  (cd "$B" && runc spec)
  node -e '
    const fs = require("fs"); const f = process.argv[1]; const c = JSON.parse(fs.readFileSync(f));
    c.process.terminal = false;
    c.process.args = ["sh", "-c", "echo hello from ocivirt; exec sleep 86400"];
    fs.writeFileSync(f, JSON.stringify(c, null, 2));' "$B/config.json"
  mv "$B" "$DEMO/spool/hello"          # renamed in whole: taken at once
fi

# 2. an OCI image (image layout made with umoci)
if [ ! -e "$DEMO/spool/web" ]; then
  I="$DEMO/build/web"; rm -rf "$I" "$DEMO/build/web-bundle"
  umoci init --layout "$I"
  umoci new --image "$I:latest"
  umoci unpack --image "$I:latest" "$DEMO/build/web-bundle" >/dev/null
  busybox_rootfs "$DEMO/build/web-bundle/rootfs"
  umoci repack --image "$I:latest" "$DEMO/build/web-bundle"
  umoci config --image "$I:latest" --config.entrypoint sh --config.cmd -c \
    --config.cmd 'echo web up; exec sleep 86400'
  rm -rf "$DEMO/build/web-bundle"
  mv "$I" "$DEMO/spool/web"
fi

# 3. a settings entry: a second container of the web image, with its own command, env and memory
if [ ! -e "$DEMO/spool/web-2.ocivirt.json" ]; then
  cat > "$DEMO/build/web-2.ocivirt.json" <<'JSON'
{
  "image": "web",
  "command": ["-c", "echo web-2 up as $GREETING; exec sleep 86400"],
  "env": { "GREETING": "hello" },
  "memory": "64M"
}
JSON
  mv "$DEMO/build/web-2.ocivirt.json" "$DEMO/spool/web-2.ocivirt.json"
fi

echo "demo: spool $DEMO/spool (hello: runtime bundle, web: OCI image, web-2.ocivirt.json: a settings entry running web); domains get the prefix demo-"
echo "demo: running the daemon (Ctrl-C to stop it; the containers keep running; scripts/demo.sh --clean removes them)"
exec env OCIVIRT_NAME_PREFIX=demo- bin/ocivirt daemon --spool "$DEMO/spool" --state "$DEMO/state" \
  --export "$DEMO/export" --uri "$URI"
