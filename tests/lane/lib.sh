# Helpers for lane cases (source it: `. lane/lib.sh` from the case's cwd,
# which is a copy of the repo's tests/). Needs bash; no python or jq inside
# the lane. Every wait here is bounded.

# The kernel command line the Linux-lane cases boot with (plus their own
# additions). reboot=k: reboot through the i8042 reset line, which the VMM
# turns into a clean exit. panic=-1: reboot at once on a panic instead of
# hanging. reboot=...,panic_warm: a panic reboot writes the BIOS warm-reboot
# flag (0x1234 at guest physical 0x472) while an ordinary reboot writes 0, so
# a VMM can tell a guest panic from a clean reboot at the i8042 reset.
# loglevel=5: the console shows the kernel's warnings and errors (and
# panics) but not its info/notice chatter. Every console byte is a VM exit,
# and in the nested lane printing the full boot log costs about 20 s per
# boot. WISP_LANE_GUEST_LOGLEVEL=8 (passed into the L2 by run.sh) brings the
# full log back when debugging a boot.
LANE_BOOT_ARGS="console=ttyS0 reboot=k,panic_warm panic=-1 loglevel=${WISP_LANE_GUEST_LOGLEVEL:-5}"

lane_skip() { echo "SKIPPED: $*"; exit 77; }
lane_fail() { echo "FAIL: $*"; exit 1; }

# lane_need_bin NAME...: skip unless $WISP_BIN/NAME exists.
lane_need_bin() {
	local b
	for b in "$@"; do
		[ -x "$WISP_BIN/$b" ] || lane_skip "$b is not built yet ($WISP_BIN/$b missing)"
	done
}
# lane_need_image NAME...: skip unless $WISP_IMAGES/NAME exists.
lane_need_image() {
	local i
	for i in "$@"; do
		[ -f "$WISP_IMAGES/$i" ] || lane_skip "image $i is not built ($WISP_IMAGES/$i missing)"
	done
}

# lane_json_str STRING: STRING as a JSON string literal.
lane_json_str() {
	local s=$1
	s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
	printf '"%s"' "$s"
}

# lane_vmm_config FILE OPTIONS...: write a Firecracker-schema config file.
#   --kernel PATH (required)  --initrd PATH  --args "BOOT ARGS"
#   --vcpus N (1)  --mem MIB (128)  --smt  --track-dirty
#   --rootfs PATH  --rootfs-ro             (drive "rootfs", is_root_device)
#   --drive ID:PATH[:ro]                    (more drives; repeatable)
#   --net ID:TAP[:MAC]                      (repeatable)
#   --vsock CID:UDS_PATH
#   --log PATH [--level LEVEL]  --metrics PATH
lane_vmm_config() {
	local file=$1; shift
	local kernel="" initrd="" args=$LANE_BOOT_ARGS vcpus=1 mem=128 smt=false dirty=false
	local rootfs="" rootfs_ro=false vsock="" log="" level=Info metrics=""
	local drives=() nets=()
	while [ $# -gt 0 ]; do
		case $1 in
		--kernel) kernel=$2; shift ;;
		--initrd) initrd=$2; shift ;;
		--args) args=$2; shift ;;
		--vcpus) vcpus=$2; shift ;;
		--mem) mem=$2; shift ;;
		--smt) smt=true ;;
		--track-dirty) dirty=true ;;
		--rootfs) rootfs=$2; shift ;;
		--rootfs-ro) rootfs_ro=true ;;
		--drive) drives+=("$2"); shift ;;
		--net) nets+=("$2"); shift ;;
		--vsock) vsock=$2; shift ;;
		--log) log=$2; shift ;;
		--level) level=$2; shift ;;
		--metrics) metrics=$2; shift ;;
		*) echo "lane_vmm_config: unknown option $1" >&2; return 2 ;;
		esac
		shift
	done
	[ -n "$kernel" ] || { echo "lane_vmm_config: --kernel is required" >&2; return 2; }
	{
		printf '{\n  "boot-source": {\n    "kernel_image_path": %s,\n    "boot_args": %s' \
			"$(lane_json_str "$kernel")" "$(lane_json_str "$args")"
		[ -n "$initrd" ] && printf ',\n    "initrd_path": %s' "$(lane_json_str "$initrd")"
		printf '\n  },\n  "machine-config": {\n    "vcpu_count": %s,\n    "mem_size_mib": %s,\n    "smt": %s,\n    "track_dirty_pages": %s\n  },\n' \
			"$vcpus" "$mem" "$smt" "$dirty"
		printf '  "drives": ['
		local sep="" d id path ro
		if [ -n "$rootfs" ]; then
			printf '\n    {"drive_id": "rootfs", "path_on_host": %s, "is_root_device": true, "is_read_only": %s}' \
				"$(lane_json_str "$rootfs")" "$rootfs_ro"
			sep=","
		fi
		for d in ${drives[@]+"${drives[@]}"}; do
			id=${d%%:*}; path=${d#*:}; ro=false
			case $path in *:ro) path=${path%:ro}; ro=true ;; esac
			printf '%s\n    {"drive_id": %s, "path_on_host": %s, "is_root_device": false, "is_read_only": %s}' \
				"$sep" "$(lane_json_str "$id")" "$(lane_json_str "$path")" "$ro"
			sep=","
		done
		printf '\n  ],\n  "network-interfaces": ['
		sep=""
		local n tap mac
		for n in ${nets[@]+"${nets[@]}"}; do
			id=${n%%:*}; tap=${n#*:}; mac=""
			case $tap in *:*) mac=${tap#*:}; tap=${tap%%:*} ;; esac
			printf '%s\n    {"iface_id": %s, "host_dev_name": %s' "$sep" "$(lane_json_str "$id")" "$(lane_json_str "$tap")"
			[ -n "$mac" ] && printf ', "guest_mac": %s' "$(lane_json_str "$mac")"
			printf '}'
			sep=","
		done
		printf '\n  ]'
		if [ -n "$vsock" ]; then
			printf ',\n  "vsock": {"guest_cid": %s, "uds_path": %s}' "${vsock%%:*}" "$(lane_json_str "${vsock#*:}")"
		fi
		if [ -n "$log" ]; then
			printf ',\n  "logger": {"log_path": %s, "level": %s}' "$(lane_json_str "$log")" "$(lane_json_str "$level")"
		fi
		if [ -n "$metrics" ]; then
			printf ',\n  "metrics": {"metrics_path": %s}' "$(lane_json_str "$metrics")"
		fi
		printf '\n}\n'
	} > "$file"
}

# wait_for_file PATH TIMEOUT_S: until PATH exists (returns 1 on timeout).
wait_for_file() {
	local path=$1 deadline=$(( $(date +%s) + $2 ))
	while [ ! -e "$path" ]; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# wait_for_log PATTERN FILE TIMEOUT_S [PID]: until FILE has a line matching
# the extended regex PATTERN. Returns 1 on timeout, 2 if PID (when given)
# exits first without the line having appeared.
wait_for_log() {
	local pat=$1 file=$2 deadline=$(( $(date +%s) + $3 )) pid=${4:-}
	while :; do
		grep -qE -- "$pat" "$file" 2>/dev/null && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			grep -qE -- "$pat" "$file" 2>/dev/null && return 0
			return 2
		fi
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# lane_vmm_run CONFIG OUTPUT_FILE TIMEOUT_S [VMM ARGS...]: run wisp-vmm with
# the config (no API socket) to completion, its stdout+stderr (the guest
# console) in OUTPUT_FILE, stdin from /dev/null. Returns the VMM's exit
# status (124 if it ran past TIMEOUT_S and was killed).
lane_vmm_run() {
	local cfg=$1 out=$2 t=$3; shift 3
	timeout -k 5 "$t" "$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" "$@" </dev/null >"$out" 2>&1
}

# lane_vmm_start CONFIG OUTPUT_FILE [VMM ARGS...]: start wisp-vmm in the
# background (no API socket). Its stdin is a FIFO that lane_vmm_send writes
# to. Sets LANE_VMM_PID and LANE_VMM_STDIN. Stop it with lane_vmm_stop.
lane_vmm_start() {
	local cfg=$1 out=$2; shift 2
	LANE_VMM_STDIN=$WISP_TMP/vmm-stdin.$$.$RANDOM
	mkfifo "$LANE_VMM_STDIN"
	"$WISP_BIN/wisp-vmm" --no-api --config-file "$cfg" "$@" <"$LANE_VMM_STDIN" >"$out" 2>&1 &
	LANE_VMM_PID=$!
	# Hold the FIFO open for writing so the VMM sees no EOF between sends.
	exec {LANE_VMM_FD}>"$LANE_VMM_STDIN"
}
# lane_vmm_send TEXT: write TEXT (as is; add \n yourself) to the VMM's stdin.
lane_vmm_send() { printf '%s' "$1" >&"$LANE_VMM_FD"; }
# lane_vmm_wait TIMEOUT_S: wait for the started VMM to exit; prints nothing,
# returns its status (124 if still running at the deadline; then it is killed).
lane_vmm_wait() {
	local deadline=$(( $(date +%s) + $1 ))
	while kill -0 "$LANE_VMM_PID" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			kill -KILL "$LANE_VMM_PID" 2>/dev/null; wait "$LANE_VMM_PID" 2>/dev/null
			return 124
		fi
		sleep 0.05
	done
	wait "$LANE_VMM_PID"
}
# lane_vmm_stop: kill the started VMM (if still running) and close its stdin.
lane_vmm_stop() {
	[ -n "${LANE_VMM_FD:-}" ] && exec {LANE_VMM_FD}>&-
	LANE_VMM_FD=
	if [ -n "${LANE_VMM_PID:-}" ] && kill -0 "$LANE_VMM_PID" 2>/dev/null; then
		kill -TERM "$LANE_VMM_PID" 2>/dev/null
		sleep 0.2
		kill -KILL "$LANE_VMM_PID" 2>/dev/null
		wait "$LANE_VMM_PID" 2>/dev/null
	fi
	return 0
}

# lane_show FILE [LINES]: print the last LINES (default 60) of FILE, framed,
# for a failure report.
lane_show() {
	local f=$1 n=${2:-60}
	echo "----- $(basename "$f") (last $n lines) -----"
	tail -n "$n" "$f" 2>/dev/null | tr -cd '\11\12\40-\176'
	echo "----- end of $(basename "$f") -----"
}
