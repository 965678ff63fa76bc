#!/usr/bin/env bash
# API figures (no KVM needed): exec to API socket ready, the VMM's CPU time
# for it, and PUT/GET round trips over the Unix socket, as medians.
#   bash bench/api.sh [RUNS]        (default 30 starts; 50x that many requests)
# Builds bench/api-latency.c into $BUILD/bench/ and runs it against
# $BUILD/bin/wisp-vmm. Prints figures only; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${1:-30}
VMM=$PWD/$BUILD/bin/wisp-vmm
[ -x "$VMM" ] || { echo "bench/api: $VMM is not built (make -j2)"; exit 1; }
mkdir -p "$BUILD/bench"
cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$BUILD/bench/api-latency" bench/api-latency.c
# The host's floor: the same fork+exec+exit for a static program doing nothing.
echo 'int main(void) { return 0; }' | cc -x c -static -O2 -o "$BUILD/bench/noop-static" -
echo "bench/api: $VMM, $RUNS starts, host $(uname -r), $(nproc) CPUs"
"$BUILD/bench/api-latency" "$VMM" "$RUNS" "$PWD/$BUILD/bench/noop-static"
