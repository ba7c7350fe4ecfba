#!/usr/bin/env bash
# fresh-machine-check.sh: the README's quick start on a fresh Debian 12 root, repeatable.
#
#   scripts/fresh-machine-check.sh [--ref REF] [--repo DIR] [--keep] [--new-base] [--base-only]
#
# 1. debootstrap bookworm (minbase, from Debian's archive) once into $WORK/base.tar (--new-base
#    makes it again); every run unpacks a new root from it.
# 2. node and npm are copied in from this machine (the binary `which node` names, its prefix's
#    lib/node_modules (npm), include/node and the npm/npx links), nothing else is installed by hand.
# 3. `git clone` of REF (default HEAD) of the repository into /root/ocivirt in that root; nothing
#    beside the clone (no ../shared).
# 4. In its own PID and mount namespace (so setup-libvirt.sh can neither see nor signal this
#    machine's libvirtd), with the new root pivoted in, with /sys, /dev, a fresh /proc and an empty /run (the chroot's
#    libvirtd has its own socket): first `scripts/setup-libvirt.sh --packages` (apt only, no
#    libvirtd: without the lock), then `scripts/demo.sh` in the background until its domains run and
#    its curl check passed, `scripts/demo.sh --check` again, the README's memtune -> export check,
#    then SIGTERM to the demo (its daemon) and `scripts/demo.sh --clean`; then
#    `scripts/test.sh`. On exit every domain and network of the chroot's libvirtd is destroyed (and
#    after a failure the demo's ports table, by `scripts/demo.sh --clean`), and libvirtd is stopped;
#    the PID namespace ends with it (its network namespace is this machine's).
# The chroot's libvirtd and this machine's one share the kernel's cgroups, so step 4 holds the
# integration lock ($OCIVIRT_INTEGRATION_LOCK, default /tmp/ocivirt-integration.lock) from the
# demo to the end of the tests.
# Prints one line per step with its time; the full output is in $WORK/run-<stamp>.log.
set -euo pipefail
PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin
REPO=$(cd "$(dirname "$0")/.." && pwd)
REF=HEAD
KEEP=0
NEW_BASE=0
BASE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ref) REF=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --new-base) NEW_BASE=1; shift ;;
    --base-only) BASE_ONLY=1; shift ;;
    *) echo "usage: $0 [--ref REF] [--repo DIR] [--keep] [--new-base] [--base-only]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "fresh-machine-check: must run as root" >&2; exit 1; }
WORK=${OCIVIRT_FRESH_DIR:-/var/tmp/ocivirt-fresh}
MIRROR=${OCIVIRT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOCK=${OCIVIRT_INTEGRATION_LOCK:-/tmp/ocivirt-integration.lock}
STAMP=$(date +%Y%m%d-%H%M%S)
ROOT=$WORK/root-$STAMP
LOG=$WORK/run-$STAMP.log
mkdir -p "$WORK"
T0=$(date +%s)
step() { echo "fresh-machine-check: [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# 1. the base system
if [ "$NEW_BASE" = 1 ] || [ ! -f "$WORK/base.tar" ]; then
  step "debootstrap bookworm from $MIRROR"
  rm -rf "$WORK/base"
  debootstrap --variant=minbase bookworm "$WORK/base" "$MIRROR" >>"$LOG" 2>&1
  tar -C "$WORK/base" -cf "$WORK/base.tar.part" . && mv "$WORK/base.tar.part" "$WORK/base.tar"
  rm -rf "$WORK/base"
fi
[ "$BASE_ONLY" = 0 ] || { step "base ready: $WORK/base.tar"; exit 0; }
step "new root $ROOT"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$WORK/base.tar"
cleanup_root() { if [ "$KEEP" = 0 ]; then rm -rf --one-file-system "$ROOT"; else step "kept $ROOT"; fi; }
trap cleanup_root EXIT

# 2. node and npm, as this machine has them (with the workplace's CA and npm config)
NODE=$(readlink -f "$(command -v node)")
PREFIX=$(dirname "$(dirname "$NODE")")     # /usr or /usr/local: bin/node, lib/node_modules/npm
step "copying node $("$NODE" --version) and npm from $PREFIX"
( cd / && for p in "$NODE" "$PREFIX/lib/node_modules" "$PREFIX/include/node" "$PREFIX/bin/npm" "$PREFIX/bin/npx" "$PREFIX/bin/corepack"; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "${p#/}"; fi
  done ) | tar -C / -cf - -T - | tar -C "$ROOT" -xf -
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# this workplace's network setup, which every machine here has: its CA bundle (the registries are
# reached through a TLS-inspecting egress) and npm's config files that point at it
( cd / && for p in etc/ssl/certs/ca-certificates.crt usr/local/share/ca-certificates etc/npmrc usr/etc/npmrc root/.npmrc; do
    if [ -e "/$p" ]; then echo "$p"; fi
  done ) | tar -C / -cf - -T - | tar -C "$ROOT" -xf -

# 3. the clone
COMMIT=$(git -C "$REPO" rev-parse --verify "$REF^{commit}")
step "git clone $REPO at $COMMIT"
git clone -q --no-hardlinks "$REPO" "$ROOT/root/ocivirt" >>"$LOG" 2>&1
git -C "$ROOT/root/ocivirt" checkout -q --detach "$COMMIT"
[ ! -e "$ROOT/root/shared" ] || { step "FAILED: $ROOT/root/shared exists"; exit 1; }

# 4. the run, inside the chroot (this part is the README's two commands and the demo checks)
cat >"$ROOT/root/fresh-run.sh" <<'EOF'
#!/bin/bash
set -u
cd /root/ocivirt
T0=$(date +%s)
step() { echo "fresh-machine-check: (inside) [$(( $(date +%s) - T0 ))s] $*"; }
running() { virsh -q -c lxc:/// list --state-running --name 2>/dev/null | grep -qx "$1"; }
finish() {
  rc=$?
  [ -n "${DEMO_PID:-}" ] && kill -TERM "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID"
  # the demo's ports table and network live in this machine's network namespace: never left behind
  [ $rc = 0 ] || scripts/demo.sh --clean >/dev/null 2>&1
  for d in $(virsh -q -c lxc:/// list --all --name 2>/dev/null); do
    virsh -q -c lxc:/// destroy "$d" >/dev/null 2>&1; virsh -q -c lxc:/// undefine "$d" >/dev/null 2>&1
  done
  for n in $(virsh -q -c lxc:/// net-list --all --name 2>/dev/null); do
    virsh -q -c lxc:/// net-destroy "$n" >/dev/null 2>&1; virsh -q -c lxc:/// net-undefine "$n" >/dev/null 2>&1
  done
  [ -x scripts/setup-libvirt.sh ] && scripts/setup-libvirt.sh --stop
  exit $rc
}
trap finish EXIT

step "scripts/demo.sh (background)"
scripts/demo.sh >/root/demo.log 2>&1 &
DEMO_PID=$!
ok=0
for i in $(seq 1 900); do
  if running demo-hello && running demo-web && running demo-web-2; then ok=1; break; fi
  kill -0 "$DEMO_PID" 2>/dev/null || break
  sleep 1
done
if [ $ok = 0 ]; then step "FAILED: demo domains not running"; tail -n 40 /root/demo.log; exit 1; fi
step "demo: demo-hello, demo-web and demo-web-2 (a settings entry) run"
for i in $(seq 1 180); do
  grep -q '^demo: check passed' /root/demo.log && break
  kill -0 "$DEMO_PID" 2>/dev/null || break
  sleep 1
done
grep -q '^demo: check passed' /root/demo.log || { step "FAILED: the demo's curl check"; tail -n 40 /root/demo.log; exit 1; }
scripts/demo.sh --check || { step "FAILED: scripts/demo.sh --check"; exit 1; }
step "demo: curl reaches demo-web by its address on ocivirt-demo and through the published port 8080"
bin/ocivirt status --state /var/lib/ocivirt-demo/state || { step "FAILED: status"; exit 1; }
virsh -q -c lxc:/// memtune demo-hello --hard-limit 200000 --config
for i in $(seq 1 60); do
  grep -q '"limit": *204800000' /var/lib/ocivirt-demo/export/demo-hello/config.json 2>/dev/null && break
  sleep 1
done
if grep -q '"limit": *204800000' /var/lib/ocivirt-demo/export/demo-hello/config.json 2>/dev/null; then
  step "demo: memtune -> export/demo-hello/config.json has memory.limit 204800000"
else
  step "FAILED: the memtune change was not exported"; tail -n 40 /root/demo.log; exit 1
fi
# an entry the user adds to the demo spool: --clean must remove its domain too
cp -a /var/lib/ocivirt-demo/spool/hello /var/lib/ocivirt-demo/build/extra
mv /var/lib/ocivirt-demo/build/extra /var/lib/ocivirt-demo/spool/extra
for i in $(seq 1 120); do running demo-extra && break; sleep 1; done
running demo-extra || { step "FAILED: demo-extra (added to the spool) does not run"; exit 1; }
step "demo: an entry added to the spool runs as demo-extra"
kill -TERM "$DEMO_PID"; wait "$DEMO_PID"; DEMO_PID=
step "demo: daemon stopped; scripts/demo.sh --clean"
scripts/demo.sh --clean || { step "FAILED: demo.sh --clean"; exit 1; }
left=$(virsh -q -c lxc:/// list --all --name | grep '^demo-' || true)
[ -z "$left" ] || { step "FAILED: demo domains left: $left"; exit 1; }
[ ! -e /var/lib/ocivirt-demo ] || { step "FAILED: /var/lib/ocivirt-demo left"; exit 1; }
! virsh -q -c lxc:/// net-info ocivirt-demo >/dev/null 2>&1 || { step "FAILED: the ocivirt-demo network left"; exit 1; }
step "demo: clean"

step "scripts/test.sh"
scripts/test.sh >/root/test.log 2>&1
rc=$?
grep -E '^(FAIL|ok  )' /root/test.log | grep -v '^ok' || true
tail -n 3 /root/test.log
[ $rc = 0 ] || { step "FAILED: scripts/test.sh exit $rc"; exit 1; }
step "scripts/test.sh passed"
EOF
chmod 755 "$ROOT/root/fresh-run.sh"

# In a new PID and mount namespace whose root is the new root (pivot_root, not a bare chroot: a
# container's mount namespace, entered with `virsh lxc-enter-namespace`, must have the container's
# root as its own, as on a booted machine), with /proc of that namespace, the host's /sys and
# /dev, an empty /run (so the root's libvirtd has its own socket and pid file); the host's root
# is detached.
in_root() {
  # shellcheck disable=SC2016
  unshare --pid --fork --mount --propagation private -- /bin/bash -c '
    R=$1; shift
    mount --bind "$R" "$R" && mount -t proc proc "$R/proc" && mount --rbind /sys "$R/sys" &&
      mount --rbind /dev "$R/dev" && mount -t tmpfs -o mode=755 tmpfs "$R/run" || exit 1
    mkdir -p "$R/run/lock" "$R/.oldroot" && chmod 1777 "$R/run/lock"
    cd "$R" && pivot_root . .oldroot || exit 1
    exec /usr/sbin/chroot . /bin/sh -c "umount -l /.oldroot && rmdir /.oldroot &&
      exec /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \"\$@\"" sh "$@"
  ' in_root "$ROOT" "$@"
}

# The Debian packages first, through the setup script's own --packages step: they touch no
# libvirtd, so this long part runs without the lock.
step "scripts/setup-libvirt.sh --packages (inside, no lock needed)"
set +e
in_root /bin/sh -c 'cd /root/ocivirt && OCIVIRT_SETUP_LOG=/root/setup.log scripts/setup-libvirt.sh --packages' 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || { cp "$ROOT/root/setup.log" "$WORK/$STAMP-setup.log" 2>/dev/null; step "FAILED: setup-libvirt.sh --packages (log: $WORK/$STAMP-setup.log)"; exit 1; }

step "waiting for the integration lock $LOCK"
exec 9>"$LOCK"
flock 9
step "lock held; running the README's commands inside the chroot"
set +e
in_root /root/fresh-run.sh 9>&- 2>&1 | tee -a "$LOG"   # the lock's fd stays out: a daemon would keep it
rc=${PIPESTATUS[0]}
set -e
flock -u 9
for f in demo.log test.log setup.log; do [ -f "$ROOT/root/$f" ] && cp "$ROOT/root/$f" "$WORK/$STAMP-$f"; done
if [ "$rc" = 0 ]; then step "PASSED at $COMMIT (logs: $LOG, $WORK/$STAMP-*.log)"
else step "FAILED (exit $rc) at $COMMIT (logs: $LOG, $WORK/$STAMP-*.log)"; fi
exit "$rc"
