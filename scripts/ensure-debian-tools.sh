#!/usr/bin/env bash
# Install the Debian packages that provide missing command-line tools.
#
#   scripts/ensure-debian-tools.sh BINARY=PACKAGE...
#
# e.g. `promtool=prometheus`: when `promtool` is not on PATH, install the Debian
# package `prometheus`. Without arguments: the tools `make test` and `make observe`
# need (prometheus and promtool, both from the package prometheus).
# `apt-get update` runs once, and only when something is missing. Installing needs
# root (or password-less sudo); otherwise the script says what to run and fails.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    set -- prometheus=prometheus promtool=prometheus
fi

missing=()
for pair in "$@"; do
    binary=${pair%%=*}
    package=${pair#*=}
    if [[ $pair != *=* || -z $binary || -z $package ]]; then
        echo "usage: $0 BINARY=PACKAGE... (got '$pair')" >&2
        exit 64
    fi
    command -v "$binary" >/dev/null 2>&1 || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing Debian package(s) ${packages[*]} and no apt-get on this machine;" \
        "install them by hand" >&2
    exit 1
fi
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: missing Debian package(s) ${packages[*]}; installing needs root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${packages[*]}" >&2
    exit 1
fi

echo "installing Debian package(s): ${packages[*]}" >&2
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

for pair in "$@"; do
    binary=${pair%%=*}
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "error: $binary is still missing after installing ${pair#*=}" >&2
        exit 1
    fi
done
