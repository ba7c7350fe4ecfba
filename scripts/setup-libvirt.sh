#!/bin/sh
# setup-libvirt.sh: make lxc:/// answer with a libvirtd that can really start
# LXC domains, on Debian 12 (with or without systemd as PID 1). Idempotent;
# run as root. Prints one line; details go to $OCIVIRT_SETUP_LOG.
#
#   scripts/setup-libvirt.sh            install what is missing, start libvirtd if none answers
#   scripts/setup-libvirt.sh --restart  always (re)start libvirtd (running containers survive)
#   scripts/setup-libvirt.sh --stop     stop libvirtd (running containers survive)
#
# Also installs what ocivirt's build and tests need from Debian (libvirt-dev,
# g++, python3 for the libvirt-binding addon (generated from libvirt-dev's libvirt-api.xml); xmllint for virt-xml-validate;
# busybox-static, runc, umoci, skopeo for test fixtures and comparisons).
#
# Why a private mount namespace: on hosts with a hybrid cgroup layout (v1
# controllers under /sys/fs/cgroup plus a cgroup2 mount whose
# cgroup.controllers is not empty), libvirt 9 uses its v1 and v2 backends
# together and libvirt_lxc fails at container start with "Unable to create
# directory /sys/fs/cgroup/unified". libvirtd is started in its own mount
# namespace with the cgroup2 mount removed there only, so libvirt uses v1
# alone; the host's mounts are not changed. Start libvirtd only through this
# script: a plain `libvirtd -d` sees cgroup2 and loses running containers.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
URI=lxc:///
PKGS="libvirt-daemon libvirt-daemon-driver-lxc libvirt-clients libvirt-dev libxml2-utils
      g++ make python3 pkg-config busybox-static runc umoci skopeo systemd debootstrap zstd ${OCIVIRT_EXTRA_PKGS:-}"
LOG=${OCIVIRT_SETUP_LOG:-/var/log/libvirt/ocivirt-setup.log}
PIDFILE=/var/run/libvirtd.pid
T0=$(date +%s)

mkdir -p "$(dirname "$LOG")" 2>/dev/null
log() { printf '%s %s\n' "$(date '+%F %T')" "$*" >>"$LOG"; }
result() { rc=$1; shift; log "RESULT rc=$rc $*"; echo "setup-libvirt: $* ($(( $(date +%s) - T0 ))s, log: $LOG)"; exit "$rc"; }
run() { log "+ $*"; "$@" >>"$LOG" 2>&1; }

[ "$(id -u)" = 0 ] || result 1 "FAILED: must run as root"
MODE=up
case "${1:-}" in
    "") ;;
    --restart) MODE=restart ;;
    --stop) MODE=stop ;;
    *) result 2 "FAILED: unknown argument ${1} (use --restart or --stop)" ;;
esac
log "=== setup-libvirt.sh $MODE"

answers() { timeout 15 virsh -q -c "$URI" version >>"$LOG" 2>&1; }
daemon_pid() {
    p=$(cat "$PIDFILE" 2>/dev/null)
    if [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = libvirtd ]; then echo "$p"; return; fi
    pgrep -x libvirtd | head -n1
}
hybrid() { grep -q ' cgroup ' "$1" && grep -q ' cgroup2 ' "$1"; }
stop_daemon() {
    p=$(daemon_pid)
    [ -n "$p" ] || return 0
    log "stopping libvirtd pid $p"
    kill -TERM "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$p" 2>/dev/null; then log "pid $p ignored SIGTERM, SIGKILL"; kill -KILL "$p" 2>/dev/null; sleep 0.5; fi
}

if [ "$MODE" = stop ]; then stop_daemon; result 0 "OK: libvirtd stopped"; fi

# 1. Debian packages, only when something is missing
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    run apt-get -q -o DPkg::Lock::Timeout=300 update || log "apt-get update failed (continuing)"
    # shellcheck disable=SC2086
    run apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends $missing ||
        result 1 "FAILED: apt-get install$missing"
fi
for b in libvirtd virsh unshare; do command -v $b >/dev/null || result 1 "FAILED: $b not found"; done

# 2. what libvirt-daemon-system would create: libvirtd's QEMU driver aborts without them
getent group kvm >/dev/null || run groupadd -r kvm
getent group libvirt >/dev/null || run groupadd -r libvirt
getent group libvirt-qemu >/dev/null || run groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
    run useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin -c 'Libvirt Qemu' libvirt-qemu
mkdir -p /var/log/libvirt/lxc /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/lxc /var/cache/libvirt

# 3. a usable libvirtd already there? (a systemd-managed one on a real host counts)
pid=$(daemon_pid)
if [ "$MODE" = up ] && [ -n "$pid" ]; then
    i=0
    until answers; do i=$((i + 1)); [ $i -ge 10 ] && break; sleep 1; done
    if [ $i -lt 10 ]; then
        if hybrid /proc/"$pid"/mounts; then
            log "libvirtd pid $pid answers but sees the hybrid cgroup layout: restarting it"
        else
            result 0 "OK: libvirtd already running (pid $pid), $URI answers"
        fi
    else
        log "libvirtd pid $pid does not answer: restarting it"
    fi
elif [ "$MODE" = up ] && answers; then
    result 0 "OK: $URI answers (daemon not visible here)"
fi
if [ -d /run/systemd/system ] && ! hybrid /proc/self/mounts; then
    # a real systemd host: let systemd own libvirtd
    run systemctl start libvirtd.service || result 1 "FAILED: systemctl start libvirtd"
    i=0; until answers; do i=$((i + 1)); [ $i -ge 30 ] && result 1 "FAILED: $URI does not answer"; sleep 1; done
    result 0 "OK: libvirtd started by systemd, $URI answers"
fi
stop_daemon

# 4. start it, hiding the cgroup2 mount from it when the layout is hybrid
if hybrid /proc/self/mounts; then HIDE=1; else HIDE=0; fi
log "starting libvirtd (hide cgroup2: $HIDE)"
# shellcheck disable=SC2016
env -i PATH="$PATH" LANG=C.UTF-8 HOME=/root HIDE=$HIDE \
    unshare --mount --propagation private -- /bin/sh -c '
        if [ "$HIDE" = 1 ]; then
            for m in $(awk "\$3 == \"cgroup2\" { print \$2 }" /proc/self/mounts); do
                umount "$m" 2>/dev/null || umount -l "$m" || exit 1
            done
        fi
        exec libvirtd --daemon --pid-file '"$PIDFILE"'
    ' >>"$LOG" 2>&1 || result 1 "FAILED: libvirtd did not start (see $LOG, /var/log/libvirt/libvirtd.log)"

i=0
until answers; do
    i=$((i + 1)); [ $i -ge 30 ] && result 1 "FAILED: libvirtd started but $URI does not answer"
    [ $i -ge 3 ] && [ -z "$(daemon_pid)" ] &&
        result 1 "FAILED: libvirtd exited during start-up (see /var/log/libvirt/libvirtd.log)"
    sleep 1
done
pid=$(daemon_pid)
if [ -n "$pid" ] && hybrid /proc/"$pid"/mounts; then
    result 1 "FAILED: libvirtd pid $pid still sees cgroup2, containers would not start"
fi
result 0 "OK: libvirtd started (pid $pid), $URI answers"
