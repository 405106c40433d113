#!/usr/bin/env bash
# One entry point for newcomers and CI: each command sets up what it needs by itself.
#   ./dev.sh run [ARGS...]    install, then capture live on the default interface
#   ./dev.sh demo             install, then replay the shipped captures
#   ./dev.sh test [PYTEST...] install (with test tools), then lint, type-check and run all tests
#   ./dev.sh bench [ARGS...]  install, then run the side-by-side benchmark
set -euo pipefail
cd "$(dirname "$0")"

VENV=${ARPWATCHD_VENV:-.venv}
# Debian's interpreter is built with PGO and LTO: the sensor's per-frame loop runs about twice
# as fast on it as on a plain source build (pyenv's default) of the same Python version.
BASE_PYTHON=${ARPWATCHD_PYTHON:-/usr/bin/python3}
RUN_PACKAGES=(python3 python3-venv ieee-data libcap2-bin)
TEST_PACKAGES=(iproute2 iputils-arping tcpdump prometheus arpwatch tcpreplay procps)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "dev.sh: need root (or sudo) to install Debian packages: $*" >&2; exit 1; fi
}

debian_packages() {
    command -v dpkg >/dev/null || { echo "dev.sh: not Debian; install by hand: $*" >&2; return; }
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # Debian's prometheus package starts a server on :9090 where systemd runs;
        # policy-rc.d keeps package scripts from starting services we only need the binaries of.
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
        as_root rm -f /usr/sbin/policy-rc.d
    fi
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
    if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
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
    bench)
        debian_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        python_env "[test]"
        exec "$VENV/bin/python" benchmarks/bench.py "$@"
        ;;
    *)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        ;;
esac
