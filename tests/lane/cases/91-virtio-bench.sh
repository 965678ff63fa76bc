#!/usr/bin/env bash
# Runs bench/virtio.sh (virtio-blk sequential and 4 KiB random I/O, net TCP
# guest->host, vsock guest->host, VMM CPU per GiB) and passes its figures
# on as lane-figure lines. Asserts only that the benchmark produced them.
# lane-timeout: 900
set -uo pipefail
. lane/lib.sh
lane_need_bin wisp-vmm wisp-agent-ctl wisp-virtio-test
lane_need_image vmlinux rootfs.ext4
bench=../bench/virtio.sh
[ -f "$bench" ] || lane_fail "$bench missing beside the tests copy"
out=$WISP_TMP/bench.log
VT_LIB_DIR=$PWD/lane WISP_BENCH_MB=${WISP_BENCH_MB:-32} WISP_BENCH_SECS=${WISP_BENCH_SECS:-3} \
	bash "$bench" "$WISP_BIN" "$WISP_IMAGES" > "$out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || { lane_show "$out"; lane_fail "bench/virtio.sh exited $rc"; }
n=$(grep -c '^virtio-bench: .*/s\|IOPS' "$out")
[ "$n" -ge 6 ] || { lane_show "$out"; lane_fail "only $n figures in the benchmark's output"; }
mode=${WISP_LANE_MODE:-direct}
sed -n "s/^virtio-bench: /lane-figure: virtio ($mode lane): /p" "$out"
