#!/bin/sh
# setup-libvirt.sh: make lxc:/// answer with a libvirtd that can really start
# LXC domains, on Debian 12 (with or without systemd as PID 1). Idempotent;
# run as root. Prints one line; details go to $OCIVIRT_SETUP_LOG.
#
#   scripts/setup-libvirt.sh            install what is missing, start libvirtd if none answers
#   scripts/setup-libvirt.sh --restart  always (re)start libvirtd (running containers survive)
#   scripts/setup-libvirt.sh --stop     stop libvirtd (running containers survive)
#   scripts/setup-libvirt.sh --packages only install what is missing; libvirtd is not touched
#
# Also installs what ocivirt's build and tests need from Debian (libvirt-dev,
# g++, python3 for the libvirt-binding addon (generated from libvirt-dev's libvirt-api.xml); xmllint for virt-xml-validate;
# busybox-static, runc, umoci, skopeo for test fixtures and comparisons;
# iproute2: libvirt-lxc needs `ip` for private network namespaces, "System
# lacks NETNS support" without it). On a systemd-booted host it also installs
# libvirt-daemon-system (which ships libvirtd.service) and lets systemd run
# libvirtd; elsewhere it does not: that package would pull in a systemd
# init, a default network and a sysv script starting libvirtd without the
# cgroup workaround below.
#
# The only libvirtd this script ever stops or restarts is one it started
# itself: the process named by $PIDFILE whose comm is libvirtd, whose
# executable is this machine's libvirtd, and whose command line carries
# `--pid-file $PIDFILE` (libvirtd started by systemd or an init script has no
# such argument). Any other libvirtd is left alone; if it does not answer,
# the script says so and fails.
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
# dnsmasq-base: libvirt's network driver (in libvirt-daemon on Debian 12) needs it to start a network;
# iptables: libvirt 9 writes every network's firewall rules with it (an isolated one's too);
# nftables: published ports; curl: the demo's checks (and the README's) reach its web container
PKGS="libvirt-daemon libvirt-daemon-driver-lxc dnsmasq-base iptables nftables curl libvirt-clients libvirt-dev libxml2-utils iproute2 procps
      g++ make python3 pkg-config libseccomp-dev busybox-static runc umoci skopeo systemd debootstrap zstd strace ${OCIVIRT_EXTRA_PKGS:-}"
# systemd as PID 1 (not merely installed): systemd runs libvirtd, from libvirt-daemon-system's unit
# (a private pid file, OCIVIRT_LIBVIRTD_PIDFILE, names a libvirtd of this script's own: never systemd's)
if [ -d /run/systemd/system ] && [ -z "${OCIVIRT_LIBVIRTD_PIDFILE:-}" ]; then SYSTEMD=1; PKGS="$PKGS libvirt-daemon-system"; else SYSTEMD=0; fi
LOG=${OCIVIRT_SETUP_LOG:-/var/log/libvirt/ocivirt-setup.log}
PIDFILE=${OCIVIRT_LIBVIRTD_PIDFILE:-/var/run/libvirtd.pid}  # the pid file of the libvirtd this script starts
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
    --packages) MODE=packages ;;
    *) result 2 "FAILED: unknown argument ${1} (use --restart, --stop or --packages)" ;;
esac
log "=== setup-libvirt.sh $MODE"

answers() { timeout 15 virsh -q -c "$URI" version >>"$LOG" 2>&1; }
# The libvirtd this script started (see the header), or nothing: never a guess by name.
own_daemon_pid() {
    p=$(cat "$PIDFILE" 2>/dev/null) || return 0
    case "$p" in ''|*[!0-9]*) return 0 ;; esac
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = libvirtd ] || return 0
    # the same file (by inode: the path it shows depends on the reader's mount namespace), or its
    # path when the package was upgraded under it (deleted)
    bin=$(readlink -f "$(command -v libvirtd)")
    exe=$(readlink /proc/"$p"/exe 2>/dev/null) || return 0
    [ /proc/"$p"/exe -ef "$bin" ] || [ "${exe% (deleted)}" = "$bin" ] || return 0
    tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | grep -q -- "--pid-file $PIDFILE " || return 0
    echo "$p"
}
# Any libvirtd this script can see, for messages only.
some_daemon_pid() { pgrep -x libvirtd 2>/dev/null | head -n1; }
hybrid() { grep -q ' cgroup ' "$1" && grep -q ' cgroup2 ' "$1"; }
stop_daemon() {
    p=$(own_daemon_pid)
    [ -n "$p" ] || return 0
    log "stopping libvirtd pid $p (started by this script)"
    kill -TERM "$p" 2>/dev/null
    i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$p" 2>/dev/null; then log "pid $p ignored SIGTERM, SIGKILL"; kill -KILL "$p" 2>/dev/null; sleep 0.5; fi
}
systemd_owns() { [ "$SYSTEMD" = 1 ] && ! hybrid /proc/self/mounts; }

if [ "$MODE" = stop ]; then
    if systemd_owns; then run systemctl stop libvirtd.service || result 1 "FAILED: systemctl stop libvirtd"
    else stop_daemon; fi
    other=$(some_daemon_pid)
    [ -z "$other" ] || systemd_owns || result 0 "OK: the libvirtd this script started is stopped (libvirtd pid $other is not ours, left running)"
    result 0 "OK: libvirtd stopped"
fi

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
[ "$MODE" != packages ] || result 0 "OK: packages installed"

# 3. a usable libvirtd already there? (one systemd or an admin runs counts)
if systemd_owns; then
    # a real systemd host: let systemd own libvirtd
    if [ "$MODE" = restart ]; then action=restart; else action=start; fi
    run systemctl $action libvirtd.service || result 1 "FAILED: systemctl $action libvirtd"
    i=0; until answers; do i=$((i + 1)); [ $i -ge 30 ] && result 1 "FAILED: $URI does not answer"; sleep 1; done
    result 0 "OK: libvirtd (re)started by systemd, $URI answers"
fi
pid=$(own_daemon_pid)
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
elif [ -z "$pid" ] && other=$(some_daemon_pid) && [ -n "$other" ]; then
    # not ours: never signalled; usable if it answers and can start containers
    answers || result 1 "FAILED: libvirtd pid $other (not started by this script) does not answer on $URI; stop it and run this again"
    if hybrid /proc/"$other"/mounts; then
        result 1 "FAILED: libvirtd pid $other (not started by this script) sees the hybrid cgroup layout and cannot start LXC containers; stop it and run this again"
    fi
    [ "$MODE" = up ] || result 1 "FAILED: libvirtd pid $other was not started by this script: not restarting it"
    result 0 "OK: libvirtd pid $other (not started by this script) answers on $URI"
elif [ "$MODE" = up ] && answers; then
    result 0 "OK: $URI answers (daemon not visible here)"
fi
stop_daemon

# 4. start it, hiding the cgroup2 mount from it when the layout is hybrid
if hybrid /proc/self/mounts; then HIDE=1; else HIDE=0; fi
log "starting libvirtd (hide cgroup2: $HIDE)"
# shellcheck disable=SC2016
env -i PATH="$PATH" LANG=C.UTF-8 HOME=/root HIDE=$HIDE \
    unshare --mount --propagation private -- /bin/bash -c '
        if [ "$HIDE" = 1 ]; then
            for m in $(awk "\$3 == \"cgroup2\" { print \$2 }" /proc/self/mounts); do
                umount "$m" 2>/dev/null || umount -l "$m" || exit 1
            done
        fi
        # libvirtd keeps every fd it inherits for its whole life: a caller under
        # `flock LOCK cmd` would leave LOCK held until libvirtd exits
        for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null
        exec libvirtd --daemon --pid-file '"$PIDFILE"'
    ' >>"$LOG" 2>&1 || result 1 "FAILED: libvirtd did not start (see $LOG, /var/log/libvirt/libvirtd.log)"

i=0
until answers; do
    i=$((i + 1)); [ $i -ge 30 ] && result 1 "FAILED: libvirtd started but $URI does not answer"
    [ $i -ge 3 ] && [ -z "$(own_daemon_pid)" ] &&
        result 1 "FAILED: libvirtd exited during start-up (see /var/log/libvirt/libvirtd.log)"
    sleep 1
done
pid=$(own_daemon_pid)
if [ -n "$pid" ] && hybrid /proc/"$pid"/mounts; then
    result 1 "FAILED: libvirtd pid $pid still sees cgroup2, containers would not start"
fi
result 0 "OK: libvirtd started (pid $pid), $URI answers"
