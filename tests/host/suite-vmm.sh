#!/usr/bin/env bash
# wisp-vmm's command line and configuration checks on the host (no KVM
# needed): exit 0 for --help/--version, 153 for bad flags, 152 for a bad
# configuration, each with a message; nothing else happens before them.
# Last, where /dev/kvm runs the tiny hello guest, the sanitizer build's exit
# under seccomp.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
VMM=$PWD/$BUILD/bin/wisp-vmm
pass=0; fail=0; skip=0
ok()  { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
finish() { echo "vmm: $pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
[ -x "$VMM" ] || { bad "$VMM is not built"; finish; }
tmp=$(mktemp -d /tmp/wisp-vmm-suite.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# expect CODE PATTERN DESCRIPTION -- ARGS...: exit code and a stderr/stdout line
expect() {
	local code=$1 pat=$2 what=$3; shift 4
	timeout 10 "$VMM" "$@" >"$tmp/out" 2>&1 </dev/null
	local rc=$?
	if [ "$rc" -ne "$code" ]; then
		bad "$what: exit $rc, expected $code"; sed 's/^/    /' "$tmp/out" | head -5
	elif ! grep -qE -- "$pat" "$tmp/out"; then
		bad "$what: output lacks /$pat/"; sed 's/^/    /' "$tmp/out" | head -5
	else
		ok "$what"
	fi
}

expect 0 'usage: wisp-vmm' "--help" -- --help
expect 0 '^wisp-vmm [0-9]' "--version" -- --version
expect 153 'unknown flag' "an unknown flag" -- --frobnicate
expect 153 'unknown flag|missing value' "a flag without its value" -- --config-file
expect 153 'needs --config-file' "--no-api without --config-file" -- --no-api
expect 153 'unexpected argument' "a stray argument" -- --no-api --config-file x extra
expect 153 'level' "an unknown --level" -- --level Loud --no-api --config-file x
expect 153 '--id' "an --id with bad characters" -- --id 'a/b' --no-api --config-file x
expect 153 'seccomp-selftest' "a bad --seccomp-selftest kind" -- --seccomp-selftest=gpu --no-api --config-file x

expect 152 'nope.json' "a missing config file" -- --no-api --config-file "$tmp/nope.json"
printf '{"boot-source": {' >"$tmp/trunc.json"
expect 152 'trunc.json' "truncated JSON" -- --no-api --config-file "$tmp/trunc.json"
printf '{"boot-source":{"kernel_image_path":"/bin/true"},"machine-config":{"vcpu_count":1,"mem_size_mib":128},"frob":1}' >"$tmp/unknown.json"
expect 152 'frob' "an unknown top-level key" -- --no-api --config-file "$tmp/unknown.json"
printf '{"boot-source":{"kernel_image_path":"/bin/true"},"machine-config":{"vcpu_count":33,"mem_size_mib":128}}' >"$tmp/cpus.json"
expect 152 'vcpu_count' "vcpu_count out of range" -- --no-api --config-file "$tmp/cpus.json"
printf '{"boot-source":{"kernel_image_path":"/bin/true"},"machine-config":{"vcpu_count":"two","mem_size_mib":128}}' >"$tmp/type.json"
expect 152 'vcpu_count' "vcpu_count of the wrong type" -- --no-api --config-file "$tmp/type.json"
printf '{"machine-config":{"vcpu_count":1,"mem_size_mib":128}}' >"$tmp/nokernel.json"
expect 152 'kernel|boot-source' "no boot-source" -- --no-api --config-file "$tmp/nokernel.json"

# --log-path: lines go to the file, with the id.
printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":33,"mem_size_mib":128}}' "$tmp/k" >"$tmp/log.json"
timeout 10 "$VMM" --no-api --config-file "$tmp/log.json" --log-path "$tmp/vmm.log" --id suite-vm-1 >/dev/null 2>&1
if grep -q 'suite-vm-1' "$tmp/vmm.log" 2>/dev/null && grep -q 'vcpu_count' "$tmp/vmm.log"; then
	ok "--log-path and --id: the configuration error is logged with the id"
else
	bad "--log-path/--id: no log line with the id in $tmp/vmm.log"
fi

# The sanitizer build under its seccomp filters ends with the guest's exit
# code: LeakSanitizer's check at exit (prctl, ptrace, /proc reads) is off
# once a filter is loaded, or it would die with 148; --no-seccomp keeps it.
# Needs a /dev/kvm that runs the tiny hello guest (the release VMM probes).
ASAN_VMM=$PWD/build-asan/bin/wisp-vmm
HELLO=$PWD/$BUILD/guests/hello.elf
printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":2,"mem_size_mib":16}}' "$HELLO" >"$tmp/hello.json"
# tiny_kvm: this /dev/kvm runs the tiny guests (probed once with hello).
tiny_kvm=no
[ -f "$HELLO" ] && timeout 30 "$VMM" --no-api --config-file "$tmp/hello.json" </dev/null 2>/dev/null |
	grep -q 'hello from the wisp tiny guest' && tiny_kvm=yes
if [ ! -x "$ASAN_VMM" ] || [ ! -f "$HELLO" ]; then
	echo "SKIPPED: the sanitizer build under seccomp: build-asan/bin/wisp-vmm or $BUILD/guests/hello.elf is not built"
	skip=$((skip + 1))
elif [ "$tiny_kvm" = no ]; then
	echo "SKIPPED: the sanitizer build under seccomp: this /dev/kvm does not run the tiny hello guest"
	skip=$((skip + 1))
else
	for how in "with its filters" "with --no-seccomp"; do
		args=(--no-api --config-file "$tmp/hello.json")
		[ "$how" = "with --no-seccomp" ] && args+=(--no-seccomp)
		timeout 120 "$ASAN_VMM" "${args[@]}" </dev/null >"$tmp/asan.out" 2>&1
		rc=$?
		if [ "$rc" -eq 0 ] && grep -q 'hello from the wisp tiny guest' "$tmp/asan.out"; then
			ok "the ASan+UBSan VMM $how runs the hello guest and exits 0"
		else
			bad "the ASan+UBSan VMM $how: exit $rc"; tail -n 5 "$tmp/asan.out" | sed 's/^/    /'
		fi
	done
	# Thread start-up races show only now and then: the VMM and both vCPU
	# threads load their filters at once (a malloc_trim of glibc's unused
	# arenas under ASan crashed about 1 start in 80). 300 starts, about
	# 15 s; any exit but 0 fails.
	n=0 rc=0
	while [ "$n" -lt 300 ]; do
		timeout 60 "$ASAN_VMM" --no-api --config-file "$tmp/hello.json" </dev/null >"$tmp/asan.out" 2>&1
		rc=$?
		[ "$rc" -eq 0 ] || break
		n=$((n + 1))
	done
	if [ "$n" -eq 300 ]; then
		ok "the ASan+UBSan VMM with its filters starts and exits 0 300 times in a row"
	else
		bad "the ASan+UBSan VMM with its filters: start $((n + 1)) of 300 exited $rc"
		tail -n 8 "$tmp/asan.out" | sed 's/^/    /'
	fi
fi
# SIGUSR1 logs every virtio device's state and the VM goes on; SIGTERM then
# ends it with 0. The idle tiny guest never sets its devices up, so every
# queue is "not ready" and each device's IOAPIC pin is still masked.
IDLE=$PWD/$BUILD/guests/idle.elf
if [ ! -f "$IDLE" ]; then
	echo "SKIPPED: SIGUSR1 state dump: $IDLE is not built"
	skip=$((skip + 1))
elif [ "$tiny_kvm" = no ]; then
	echo "SKIPPED: SIGUSR1 state dump: this /dev/kvm does not run the tiny guests"
	skip=$((skip + 1))
else
	truncate -s 1M "$tmp/d.img"
	printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":1,"mem_size_mib":64},"drives":[{"drive_id":"d","path_on_host":"%s","is_root_device":false,"is_read_only":false}],"vsock":{"guest_cid":3,"uds_path":"%s"}}' \
		"$IDLE" "$tmp/d.img" "$tmp/v.sock" >"$tmp/idle.json"
	"$VMM" --no-api --config-file "$tmp/idle.json" --log-path "$tmp/idle.log" </dev/null >"$tmp/idle.out" 2>&1 &
	vpid=$!
	for _ in $(seq 100); do grep -q 'idle: ready' "$tmp/idle.out" 2>/dev/null && break; sleep 0.1; done
	kill -USR1 "$vpid" 2>/dev/null
	for _ in $(seq 50); do grep -q 'state: virtio-vsock: IOAPIC' "$tmp/idle.log" 2>/dev/null && break; sleep 0.1; done
	alive=no; kill -0 "$vpid" 2>/dev/null && alive=yes
	kill -TERM "$vpid" 2>/dev/null
	timeout 20 tail --pid="$vpid" -f /dev/null
	wait "$vpid"; rc=$?
	if [ "$alive" = yes ] && [ "$rc" -eq 0 ] &&
	   grep -q 'state: virtio-blk:d: irq [0-9]*, status 0x0' "$tmp/idle.log" &&
	   grep -q 'state: virtio-blk:d: queue 0: not ready' "$tmp/idle.log" &&
	   grep -q 'state: virtio-vsock: queue 2: not ready' "$tmp/idle.log" &&
	   grep -q 'state: virtio-blk:d: IOAPIC pin [0-9]*: vector 0x[0-9a-f]*, masked, edge' "$tmp/idle.log"; then
		ok "SIGUSR1 logs each virtio device's transport, queue and IOAPIC state; the VM goes on, SIGTERM exits 0"
	else
		bad "SIGUSR1 state dump: alive after it: $alive, exit $rc after SIGTERM"
		grep 'state:' "$tmp/idle.log" | sed 's/^/    /' | head -12
	fi
fi
finish
