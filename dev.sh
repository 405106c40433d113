#!/usr/bin/env bash
# One entry point for newcomers and CI: each command sets up what it needs by itself.
#   ./dev.sh run [ARGS...]    install, then capture live on the default interface
#   ./dev.sh demo             install, then replay the shipped captures
#   ./dev.sh demo --prometheus [--once]  sensor + Prometheus + the conflict alert firing
#   ./dev.sh test [PYTEST...] install (with test tools), then lint, type-check and run all tests
#   ./dev.sh bench [ARGS...]  install, then run the side-by-side benchmark
set -euo pipefail
cd "$(dirname "$0")"

VENV=${ARPWATCHD_VENV:-.venv}
# Debian's interpreter is built with PGO and LTO: the sensor's per-frame loop runs about twice
# as fast on it as on a plain source build (pyenv's default) of the same Python version.
BASE_PYTHON=${ARPWATCHD_PYTHON:-/usr/bin/python3}
# gcc and python3-dev build the fast path's C kernel at install; without them the package
# installs pure and runs the same rules in Python, slower (`arpwatchd --version` says which)
RUN_PACKAGES=(python3 python3-venv ieee-data libcap2-bin gcc python3-dev)
TEST_PACKAGES=(iproute2 iputils-arping iputils-ping tcpdump prometheus arpwatch tcpreplay procps
    # the real tools of the live tests: failover daemons, spoofers and scanners
    keepalived ucarp dsniff ettercap-text-only bettercap arp-scan nmap
    # IPv6 neighbour discovery (issue 17): thc-ipv6 attack tools and ndisc6
    thc-ipv6 ndisc6)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "dev.sh: need root (or sudo) to install Debian packages: $*" >&2; exit 1; fi
}

# Debian's prometheus and keepalived packages start services where systemd runs; a policy-rc.d
# that answers 101 keeps package scripts from starting what we only need the binaries of. One
# that was there before (Debian container images ship one) is put back, even when apt fails.
POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=""

restore_policy() {
    if [ -n "$POLICY_SAVED" ]; then
        as_root mv -f "$POLICY_SAVED" "$POLICY"
    else
        as_root rm -f "$POLICY"
    fi
}

debian_packages() {
    command -v dpkg >/dev/null || { echo "dev.sh: not Debian; install by hand: $*" >&2; return; }
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
    # another apt (unattended-upgrades, a first-boot script) may hold the locks: wait for it
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
    if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
        POLICY_SAVED=$(as_root mktemp /usr/sbin/.policy-rc.d.XXXXXX)
        as_root cp -a "$POLICY" "$POLICY_SAVED"
    fi
    trap restore_policy EXIT
    trap 'restore_policy; exit 130' INT TERM
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY.new && chmod 755 $POLICY.new \
        && mv -f $POLICY.new $POLICY"
    as_root "${apt[@]}" update -qq
    as_root "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    restore_policy
    trap - EXIT INT TERM
    POLICY_SAVED=""
}

python_env() {
    local extra=$1
    local base=$BASE_PYTHON
    [ -x "$base" ] || base=$(command -v python3)
    base=$(readlink -f "$base")
    if [ -x "$VENV/bin/python" ] && ! grep -qx "executable = $base" "$VENV/pyvenv.cfg"; then
        echo "dev.sh: $VENV was made with another Python; recreating it on $base" >&2
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        "$base" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed$extra"
    # the C kernel is compiled at install: a changed source needs a new install
    if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ arpwatchd/_kernel.c -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$VENV/bin/python" -m pip install -q -e ".$extra"
        touch "$stamp"
    fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
    run)
        debian_packages "${RUN_PACKAGES[@]}"
        python_env ""
        if [ "$(id -u)" != 0 ]; then
            echo "dev.sh: live capture needs root; running through sudo" >&2
            exec sudo "$VENV/bin/arpwatchd" run "$@"
        fi
        exec "$VENV/bin/arpwatchd" run "$@"
        ;;
    demo)
        if [ "${1:-}" = "--prometheus" ]; then
            shift
            debian_packages "${RUN_PACKAGES[@]}" prometheus
            python_env ""
            exec "$VENV/bin/python" dashboards/demo.py "$@"
        fi
        debian_packages "${RUN_PACKAGES[@]}"
        python_env ""
        for capture in pcaps/*.pcap; do
            config="${capture%.pcap}.yml"
            echo "== $capture" >&2
            if [ -e "$config" ]; then
                "$VENV/bin/arpwatchd" replay -c "$config" "$capture"
            else
                "$VENV/bin/arpwatchd" replay "$capture"
            fi
        done
        ;;
    test)
        debian_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        python_env "[test]"
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy" arpwatchd
        exec "$VENV/bin/python" -m pytest -q -ra "$@"
        ;;
    debian-packages)  # the package step alone (its own test uses it)
        debian_packages "$@"
        ;;
    bench)
        debian_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        python_env "[test]"
        exec "$VENV/bin/python" benchmarks/bench.py "$@"
        ;;
    *)
        sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
        ;;
esac
