#!/usr/bin/env bash
# Quick-start demo: sets libvirt up if needed (as root), builds ocivirt, defines and starts the
# demo's own isolated libvirt network (ocivirt-demo: no <forward>, only this host and the demo's
# containers are on it), fills a demo spool with a runtime bundle and an OCI image, each on that
# network, and runs the ocivirt daemon on it against the local libvirtd (JSON events on stdout;
# Ctrl-C stops the daemon, the containers keep running). Once the containers run it checks, with
# curl, that the web container answers by its address and through its published port (8080 on the
# host's own addresses), and stops with an error if it does not.
#   scripts/demo.sh           run it
#   scripts/demo.sh --check   only the curl checks, against a demo already running
#   scripts/demo.sh --clean   remove every domain of the demo instance, its published ports' table,
#                             the ocivirt-demo network and the demo directory
# In another shell meanwhile: `bin/ocivirt status --state /var/lib/ocivirt-demo/state`,
# `virsh -c lxc:/// list --all`, `virsh -c lxc:/// memtune demo-hello --hard-limit 200000 --config`
# (then look at /var/lib/ocivirt-demo/export/demo-hello/config.json), or drop more entries in.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${OCIVIRT_DEMO_DIR:-/var/lib/ocivirt-demo}
URI=${OCIVIRT_URI:-lxc:///}
NET=ocivirt-demo
PAGE="hello from the ocivirt demo's web container"

demo_virsh() { virsh -q -c "$URI" "$@"; }
# the first IPv4 address of an XML document (the network's own; the domain's interface)
first_ip() { sed -n "/<ip address='/{s/.*<ip address='\([0-9.]*\)'.*/\1/p;q}"; }

# The demo instance: its domains carry the prefix demo- and ocivirt's ownership metadata.
demo_ocivirt() { env OCIVIRT_NAME_PREFIX=demo- bin/ocivirt "$@"; }

# The README's curl commands, until they answer the page or `$1` seconds have passed: the web
# container by its address on the demo network, and its published port 8080 on the host's own
# addresses (the network's bridge address and the address of the host's default route; loopback
# is not forwarded, see docs/entry-settings.md). Prints each command with its answer; fails if one
# never answers the page.
demo_check() {
  local deadline=$((SECONDS + $1)) web bridge host url urls body
  while :; do
    web=$(demo_virsh dumpxml demo-web 2>/dev/null | first_ip || true)
    bridge=$(demo_virsh net-dumpxml "$NET" 2>/dev/null | first_ip || true)
    host=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1 || true)
    if [ -n "$web" ] && [ -n "$bridge" ]; then
      urls="http://$web/ http://$bridge:8080/"
      [ -z "$host" ] || [ "$host" = "$bridge" ] || urls="$urls http://$host:8080/"
      local ok=1
      for url in $urls; do
        body=$(curl -fsS --max-time 2 "$url" 2>&1) || true
        [ "$body" = "$PAGE" ] || { ok=0; break; }
      done
      if [ $ok = 1 ]; then
        for url in $urls; do echo "demo: check: curl $url -> $(curl -fsS --max-time 2 "$url")"; done
        return 0
      fi
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: FAILED: the web container did not answer: demo-web address '${web:-none}', network $NET address '${bridge:-none}'; last: curl ${url:-(no address yet)} -> ${body:-nothing}" >&2
      return 1
    fi
    sleep 1
  done
}

if [ "${1:-}" = --check ]; then
  demo_check "${OCIVIRT_DEMO_CHECK_SEC:-10}"
  exit
fi

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
    # the published ports' table of the demo instance (the daemon keeps it while containers run;
    # `sync --once` leaves tables alone): named by network/ports.ts from the instance id
    if [ -f "$DEMO/state/instance-id" ] && command -v nft >/dev/null; then
      table=$(node --input-type=module -e '
        import { readFileSync } from "node:fs"; import { tableName } from "./dist/src/network/ports.js";
        console.log(tableName(readFileSync(process.argv[1], "utf8").trim()));' "$DEMO/state/instance-id")
      if nft list table ip "$table" >/dev/null 2>&1; then nft delete table ip "$table"; fi
    fi
  fi
  if demo_virsh net-info "$NET" >/dev/null 2>&1; then
    demo_virsh net-destroy "$NET" >/dev/null 2>&1 || true   # not running
    demo_virsh net-undefine "$NET" >/dev/null
  fi
  rm -rf "$DEMO"
  echo "demo: removed the demo's domains, its ports table, the network $NET and $DEMO"
  exit 0
fi

scripts/setup-libvirt.sh
[ -f libvirt-binding/build/Release/binding.node ] || npm ci --no-audit --no-fund
[ -f dist/src/cli/main.js ] || npm run build

umask 077
mkdir -p "$DEMO/spool" "$DEMO/state" "$DEMO/export" "$DEMO/build"

# 0. the demo's network: isolated (no <forward>: nothing leaves this machine through it), a /24 no
# route of this host covers yet (10.217.N.0/24, or OCIVIRT_DEMO_SUBNET=A.B.C), defined once,
# started whenever it is not running, and started by libvirtd at boot (autostart); STP off: with it
# the kernel holds every new container's port ~4 s before it forwards, and there is no loop to break
if ! demo_virsh net-info "$NET" >/dev/null 2>&1; then
  sub=${OCIVIRT_DEMO_SUBNET:-}
  if [ -z "$sub" ]; then
    routes=$(ip -4 route show table all)
    for n in $(seq 0 255); do
      case "$routes" in *"10.217.$n."*) ;; *) sub=10.217.$n; break ;; esac
    done
  fi
  [ -n "$sub" ] || { echo "demo: no free 10.217.N.0/24 on this host; set OCIVIRT_DEMO_SUBNET=A.B.C" >&2; exit 1; }
  cat > "$DEMO/build/network.xml" <<XML
<network>
  <name>$NET</name>
  <bridge name='ocvdemo%d' stp='off' delay='0'/>
  <ip address='$sub.1' netmask='255.255.255.0'>
    <dhcp><range start='$sub.100' end='$sub.199'/></dhcp>
  </ip>
</network>
XML
  demo_virsh net-define "$DEMO/build/network.xml" >/dev/null
fi
net_xml=$(demo_virsh net-dumpxml "$NET")
case "$net_xml" in *'<forward'*)
  echo "demo: the libvirt network $NET forwards off this machine: it is not the demo's (remove it, or run scripts/demo.sh --clean)" >&2
  exit 1 ;;
esac
net_info=$(demo_virsh net-info "$NET")
grep -qE '^Active: +yes' <<<"$net_info" || demo_virsh net-start "$NET" >/dev/null
demo_virsh net-autostart "$NET" >/dev/null
GW=$(printf '%s\n' "$net_xml" | first_ip)
SUB=${GW%.*}

busybox_rootfs() { # $1 = rootfs dir
  mkdir -p "$1/bin" "$1/etc" "$1/tmp" "$1/proc" "$1/sys" "$1/dev"   # a read-only root needs the mount points
  cp /bin/busybox "$1/bin/busybox"
  for applet in sh sleep ps cat ls echo hostname id ip httpd wget; do ln -sf busybox "$1/bin/$applet"; done
  echo 'root:x:0:0:root:/:/bin/sh' > "$1/etc/passwd"
  echo 'root:x:0:' > "$1/etc/group"
}
# $1 = settings file name, stdin = its JSON; written beside and renamed in whole
put_settings() {
  [ -e "$DEMO/spool/$1" ] && return 0
  cat > "$DEMO/build/$1"
  mv "$DEMO/build/$1" "$DEMO/spool/$1"
}

# 1. a runtime bundle, as `runc spec` writes it (started: startPolicy "always" is the default), on
# the network with an address ocivirt allocates from the network's range
put_settings hello.ocivirt.json <<JSON
{ "networks": ["$NET"] }
JSON
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

# 2. an OCI image (image layout made with umoci): busybox httpd serving /www; its container has a
# fixed address on the network and publishes its port 80 as port 8080 of the host
put_settings web.ocivirt.json <<JSON
{ "networks": [{ "network": "$NET", "ip": "$SUB.10/24" }], "publish": ["8080:80"] }
JSON
if [ ! -e "$DEMO/spool/web" ]; then
  I="$DEMO/build/web"; rm -rf "$I" "$DEMO/build/web-bundle"
  umoci init --layout "$I"
  umoci new --image "$I:latest"
  umoci unpack --image "$I:latest" "$DEMO/build/web-bundle" >/dev/null
  busybox_rootfs "$DEMO/build/web-bundle/rootfs"
  mkdir -p "$DEMO/build/web-bundle/rootfs/www"
  echo "$PAGE" > "$DEMO/build/web-bundle/rootfs/www/index.html"
  chmod -R a+rX "$DEMO/build/web-bundle/rootfs/www"
  umoci repack --image "$I:latest" "$DEMO/build/web-bundle"
  umoci config --image "$I:latest" --config.entrypoint sh --config.cmd -c \
    --config.cmd 'echo web up; exec /bin/httpd -f -p 80 -h /www'
  rm -rf "$DEMO/build/web-bundle"
  mv "$I" "$DEMO/spool/web"
fi

# 3. a settings entry: a second container of the web image, with its own command, env and memory,
# on the network too (an allocated address)
put_settings web-2.ocivirt.json <<JSON
{
  "image": "web",
  "command": ["-c", "echo web-2 up as \$GREETING; exec sleep 86400"],
  "env": { "GREETING": "hello" },
  "memory": "64M",
  "networks": ["$NET"]
}
JSON

echo "demo: spool $DEMO/spool (hello: runtime bundle, web: OCI image, web-2.ocivirt.json: a settings entry running web); domains get the prefix demo-, all on the isolated libvirt network $NET ($SUB.0/24)"
echo "demo: running the daemon (Ctrl-C to stop it; the containers keep running; scripts/demo.sh --clean removes them)"
# in a session of its own, so Ctrl-C reaches only this script, which passes one SIGTERM on (as it
# does a SIGTERM sent to it)
setsid env OCIVIRT_NAME_PREFIX=demo- bin/ocivirt daemon --spool "$DEMO/spool" --state "$DEMO/state" \
  --export "$DEMO/export" --uri "$URI" &
DAEMON=$!
trap 'kill -TERM "$DAEMON" 2>/dev/null' TERM INT
if ! demo_check "${OCIVIRT_DEMO_CHECK_SEC:-180}"; then
  kill -TERM "$DAEMON" 2>/dev/null; wait "$DAEMON" || true
  exit 1
fi
echo "demo: check passed; the daemon keeps running (Ctrl-C to stop it)"
# `wait` returns early when a trapped signal arrives: wait again until the daemon has exited, then
# exit with its status (bash keeps it)
while kill -0 "$DAEMON" 2>/dev/null; do wait "$DAEMON" || true; done
wait "$DAEMON"
