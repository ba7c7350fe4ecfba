#!/usr/bin/env bash
# Quick-start demo: sets libvirt up if needed, builds ocivirt, drops a busybox runtime bundle
# into a demo spool and runs ocivirt against the local libvirtd (lxc:///).
#   scripts/demo.sh           run the demo (leaves the domain 'demo-hello' running)
#   scripts/demo.sh --clean   remove the demo domain and the demo directory
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${OCIVIRT_DEMO_DIR:-/var/lib/ocivirt-demo}
URI=${OCIVIRT_URI:-lxc:///}
DOMAIN=demo-hello
virsh_() { virsh -q -c "$URI" "$@"; }

if [ "${1:-}" = --clean ]; then
  virsh_ destroy "$DOMAIN" >/dev/null 2>&1 || true
  virsh_ undefine "$DOMAIN" >/dev/null 2>&1 || true
  rm -rf "$DEMO"
  echo "demo: removed $DOMAIN and $DEMO"
  exit 0
fi

scripts/setup-libvirt.sh
[ -d node_modules/@unraid/libvirt/build ] || npm ci --no-audit --no-fund
[ -f dist/src/cli/main.js ] || npm run build

# a runtime bundle: Debian's busybox-static as the rootfs, a config made by `runc spec`
BUNDLE="$DEMO/spool/hello"
if [ ! -f "$BUNDLE/config.json" ]; then
  mkdir -p "$BUNDLE/rootfs/bin" "$BUNDLE/rootfs/etc" "$BUNDLE/rootfs/tmp"
  cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
  for applet in sh sleep ps cat ls echo hostname; do ln -sf busybox "$BUNDLE/rootfs/bin/$applet"; done
  (cd "$BUNDLE" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo hello from ocivirt; exec sleep 3600"/' config.json)
  chmod 0700 "$DEMO" "$DEMO/spool"
fi

echo "demo: from-native $BUNDLE"
bin/ocivirt from-native --name "$DOMAIN" "$BUNDLE" > "$DEMO/$DOMAIN.xml"
virsh_ destroy "$DOMAIN" >/dev/null 2>&1 || true
virsh_ define "$DEMO/$DOMAIN.xml"
virsh_ start "$DOMAIN"
sleep 1
virsh_ list --all | grep -E "^ *[0-9-]+ +$DOMAIN " || true
echo "demo: inside the container:"
virsh_ lxc-enter-namespace "$DOMAIN" --noseclabel /bin/ps || true
echo "demo: to-native of the defined domain:"
bin/ocivirt to-native --domain "$DOMAIN" --uri "$URI" | head -n 20
echo "demo: done (remove it with: scripts/demo.sh --clean)"
