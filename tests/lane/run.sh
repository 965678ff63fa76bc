#!/usr/bin/env bash
# The KVM lane: runs every tests/lane/cases/*.sh (the lane case contract is in
# tests/lane/README.md) where /dev/kvm is real.
#
#   tests/lane/run.sh [PATTERN...]      run all cases, or those matching
#
# - On a host with hardware KVM (kvm_intel or kvm_amd loaded, /dev/kvm
#   usable) the cases run here, as root, directly.
# - Otherwise Linux guests need the nested lane: QEMU (TCG with emulated
#   SVM) boots a Debian cloud kernel (L2) with an initramfs holding busybox,
#   a few tools, the project's binaries, guests, images and tests; the L2
#   loads kvm-amd and runs the cases; results come back over the serial
#   console.
# - Where the host's /dev/kvm is software KVM that still runs the tiny test
#   guests (PVM, docs/HOST.md lane 1: probed by booting hello.elf), the cases
#   marked `# lane-guest: tiny` run here on it first (mode split), and only
#   the Linux cases go to the nested lane. Without a usable /dev/kvm every
#   case goes nested.
#
# Environment:
#   WISP_LANE_FILTER         case names to run (patterns, as the arguments)
#   WISP_LANE_MODE           direct | split | nested (default: detect)
#   WISP_LANE_KIND           all | tiny | linux: which cases (by their
#                            `# lane-guest:` line; split mode sets it)
#   WISP_LANE_CASE_TIMEOUT   default per-case timeout in seconds (300)
#   WISP_LANE_TOTAL_TIMEOUT  overall limit (default: sum of the selected
#                            cases' timeouts + 300, at most 3000)
#   WISP_LANE_HANG_GRACE     seconds past a case's timeout before the host
#                            declares the L2 hung and stops QEMU (120)
#   WISP_LANE_L2_RESTARTS    how often a crashed or hung L2 is restarted
#                            for the cases without a result (3)
#   WISP_LANE_GUEST_LOGLEVEL kernel loglevel in lib.sh's LANE_BOOT_ARGS (5)
#   WISP_LANE_L2_PIN=0       let the cases use every CPU of the L2 (default:
#                            its last CPU only; see l2-init.sh)
#   WISP_LANE_VERBOSE=1      show every case's output, not only failures'
#   WISP_LANE_NO_BUILD=1     do not run make / the image builders first
#   WISP_LANE_EXTRA_BINS     more host programs to pack into the L2
#   WISP_DEMO_MESSAGE        the input of case 83-demo-function (scripts/demo.sh)
#   WISP_CACHE               cache dir (default /var/cache/wisp): kernels
# Output: RUN/PASS/FAIL/SKIPPED per case (failures with their output and the
# logs they left), then `lane: N passed, N failed, N skipped`. Exit status 0
# only if no case failed and the lane itself (QEMU, L2 setup) worked.
# Artifacts: tests/lane/out/ (serial log of the L2, failed cases' scratch dirs).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
outdir=$here/out
P='@@wisp-lane@@'
[ $# -gt 0 ] && export WISP_LANE_FILTER="$*"
export WISP_LANE_FILTER=${WISP_LANE_FILTER:-}
mkdir -p "$outdir"

die() { echo "lane: $*"; echo "lane: 0 passed, 1 failed, 0 skipped"; exit 1; }

# ---- build what the cases use ------------------------------------------------
if [ "${WISP_LANE_NO_BUILD:-0}" != 1 ]; then
	make -s -C "$repo" -j2 all >"$outdir/build.log" 2>&1 || { tail -n 40 "$outdir/build.log"; die "make failed"; }
	"$repo/images/build-kernel.sh" || die "guest kernel build failed"
	"$repo/images/build-rootfs.sh" || die "guest rootfs build failed"
fi

# ---- which cases, and how long they may take -------------------------------------
. "$here/select.sh"
export WISP_LANE_KIND=${WISP_LANE_KIND:-all}
ncases=0 budget=0 selected=()
for c in "$here"/cases/*.sh; do
	[ -e "$c" ] || continue
	lane_selected "$(basename "$c" .sh)" "$WISP_LANE_FILTER" || continue
	lane_kind_ok "$c" "$WISP_LANE_KIND" || continue
	t=$(sed -n 's/^# lane-timeout: *\([0-9][0-9]*\).*/\1/p' "$c" | head -n1)
	ncases=$((ncases + 1)); budget=$((budget + ${t:-${WISP_LANE_CASE_TIMEOUT:-300}}))
	selected+=("$(basename "$c" .sh)")
done
# The sum of the case timeouts is only a ceiling; past 50 minutes something
# is hung, and the README's whole test command must stay under an hour.
total_timeout=${WISP_LANE_TOTAL_TIMEOUT:-$((budget + 300))}
[ -n "${WISP_LANE_TOTAL_TIMEOUT:-}" ] || [ "$total_timeout" -le 3000 ] || total_timeout=3000

# ---- hardware KVM or the nested lane ---------------------------------------------
hw_kvm() {
	[ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ] || return 1
	[ -c /dev/kvm ] || return 1
	{ exec 3<>/dev/kvm; } 2>/dev/null || return 1
	exec 3>&-
}
# tiny_kvm: the host's /dev/kvm runs a tiny guest to its reset (PVM does;
# docs/HOST.md lane 1), so the tiny-guest cases can run here.
tiny_kvm() {
	local cfg out rc
	[ -c /dev/kvm ] && [ -x "$repo/build/bin/wisp-vmm" ] && [ -f "$repo/build/guests/hello.elf" ] || return 1
	cfg=$(mktemp) out=$(mktemp)
	printf '{"boot-source": {"kernel_image_path": "%s"}, "machine-config": {"vcpu_count": 1, "mem_size_mib": 16}}\n' \
		"$repo/build/guests/hello.elf" > "$cfg"
	# The guest's console (stdout) apart from the VMM's log (stderr): the
	# two are written concurrently and would interleave in one file.
	timeout -k 5 30 "$repo/build/bin/wisp-vmm" --no-api --config-file "$cfg" </dev/null >"$out" 2>"$out.log"
	rc=$?
	grep -q 'hello from the wisp tiny guest' "$out" && [ "$rc" -eq 0 ]; rc=$?
	[ "$rc" -eq 0 ] || { echo "lane: the host's /dev/kvm does not run the tiny hello guest; its output:"; tail -n 5 "$out" "$out.log" | sed 's/^/    /'; }
	rm -f "$cfg" "$out" "$out.log"
	return "$rc"
}
mode=${WISP_LANE_MODE:-}
if [ -z "$mode" ]; then
	if hw_kvm; then mode=direct; elif tiny_kvm; then mode=split; else mode=nested; fi
fi
export WISP_LANE_MODE=$mode
if [ "$(id -u)" -ne 0 ]; then
	die "the lane needs root (it loads modules in the L2 or runs VMMs with taps here)"
fi

# ---- split: tiny guests on the host's KVM, Linux guests nested --------------------
if [ "$mode" = split ]; then
	echo "lane: mode split: tiny-guest cases on this host's /dev/kvm, Linux cases in the nested lane"
	tot_p=0 tot_f=0 tot_s=0 bad=0
	for part in direct:tiny nested:linux; do
		n=0
		for c in "$here"/cases/*.sh; do
			# `any` cases (the lane self-check) alone do not start a part.
			grep -q '^# lane-guest: *any' "$c" && continue
			lane_selected "$(basename "$c" .sh)" "$WISP_LANE_FILTER" && lane_kind_ok "$c" "${part#*:}" && n=$((n + 1))
		done
		[ "$n" -gt 0 ] || continue
		rm -f "$outdir/summary"
		WISP_LANE_NO_BUILD=1 WISP_LANE_MODE=${part%%:*} WISP_LANE_KIND=${part#*:} bash "$here/run.sh" || bad=1
		read -r p f s _ < "$outdir/summary" || { p=0 f=1 s=0; }
		tot_p=$((tot_p + p)) tot_f=$((tot_f + f)) tot_s=$((tot_s + s))
	done
	echo "lane (both parts): $tot_p passed, $tot_f failed, $tot_s skipped"
	[ "$bad" -eq 0 ] && [ "$tot_f" -eq 0 ]
	exit $?
fi

# ---- parse the runner's protocol from stdin -----------------------------------------
# Prints RUN/PASS/FAIL/SKIPPED as results arrive and leaves the counts in
# $outdir/summary ("PASSED FAILED SKIPPED DONE SETUP_FAILED READY L2CRASH
# L2HUNG CURRENT"; CURRENT is the case in flight when the output ended, or -).
# Every case with a result is appended to $outdir/reported.
report() {
	local line rest kind name status rc secs pass=0 fail=0 skip=0 done=0 setupfail=0 ready=0
	local rrc outbuf=$outdir/.case-output t0=$SECONDS deadline=0 current="" grace=${WISP_LANE_HANG_GRACE:-120}
	local partial="" l2crash=0 hung=0
	: > "$outbuf"
	while :; do
		# A case the L2 never reports on (the L2 hung, or its runner did) ends
		# the run: per-case timeout plus a grace period, then QEMU is killed.
		# A read that times out keeps what it got of a line (the serial
		# console may stop mid-line); the rest comes with the next read.
		IFS= read -r -t 5 line; rrc=$?
		if [ "$rrc" -gt 128 ]; then
			partial+=$line
		else
			line=$partial$line
			partial=""
		fi
		if [ "$rrc" -ne 0 ]; then
			if [ "$rrc" -gt 128 ]; then
				if [ "$deadline" -gt 0 ] && [ "$SECONDS" -gt "$deadline" ] && [ -f "$outdir/qemu.pid" ]; then
					echo "STOPPED  $current: no result from the L2 ${grace}s past the case's timeout; the L2 is hung, stopping QEMU"
					hung=1; deadline=0
					kill "$(cat "$outdir/qemu.pid")" 2>/dev/null
				fi
				continue
			fi
			[ -n "$line" ] || break
		fi
		line=${line//$'\r'/}
		if [[ $line != *"$P "* ]]; then
			# The L2's own kernel crashing (it prints only its most severe
			# messages) is the nested lane failing, not wisp: say so.
			if [[ $line =~ (Kernel\ panic|BUG:|Oops:|general\ protection\ fault|stack\ guard\ page) ]] \
				&& [ "$l2crash" -lt 5 ]; then
				echo "lane: the L2's kernel (the nested host, not a wisp guest) reported: ${line:0:200}"
				l2crash=$((l2crash + 1))
			fi
			continue
		fi
		rest=${line#*"$P "}
		kind=${rest%% *}; rest=${rest#"$kind"}; rest=${rest# }
		case $kind in
		setup-ok) echo "lane: L2 ready after $((SECONDS - t0))s ($rest)"; ready=1 ;;
		setup-fail) echo "lane: L2 setup failed: $rest"; setupfail=1 ;;
		setup-log) echo "    $rest" ;;
		start) read -r name secs <<<"$rest"; : > "$outbuf"; echo "RUN      $name (timeout ${secs}s)"
			current=$name; deadline=$((SECONDS + secs + 10 + grace)) ;;
		out) printf '%s\n' "${rest#* | }" >> "$outbuf" ;;
		retry)
			read -r name _ <<<"$rest"
			echo "RETRY    $name: a guest triple fault in the nested lane, where QEMU's emulated SVM corrupts guests now and then (tests/lane/README.md); this attempt's output, then the case once more:"
			sed 's/^/    | /' "$outbuf"; : > "$outbuf"
			echo "$name" >> "$outdir/retried" ;;
		result)
			read -r name status rc secs <<<"$rest"
			case $status in
			pass) echo "PASS     $name (${secs}s)"; pass=$((pass + 1)); sed 's/^/    /' "$outbuf" ;;
			skip) echo "SKIPPED  $name: $(sed -n '1s/^SKIPPED:* *//p' "$outbuf")"; skip=$((skip + 1)) ;;
			*) echo "FAIL     $name (exit $rc, ${secs}s); its output:"; fail=$((fail + 1)); sed 's/^/    | /' "$outbuf" ;;
			esac
			echo "$name" >> "$outdir/reported"
			: > "$outbuf"; deadline=0; current="" ;;
		done) done=1 ;;
		esac
	done
	echo "$pass $fail $skip $done $setupfail $ready $((l2crash > 0)) $hung ${current:--}" > "$outdir/summary"
}

finish() {
	local pass fail skip done setupfail extra=$1
	read -r pass fail skip done setupfail _ < "$outdir/summary"
	if [ "$done" != 1 ] || [ "$setupfail" = 1 ]; then
		extra=1
	fi
	echo "lane: $pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ] && [ "$extra" -eq 0 ]
}

# copy_tests DEST: the repo's tests/ without the lane's own outputs.
copy_tests() {
	mkdir -p "$1"
	tar -C "$repo/tests" --exclude=./lane/out -cf - . | tar -C "$1" -xf -
}

echo "lane: mode $mode, $ncases case(s)${WISP_LANE_FILTER:+ matching '$WISP_LANE_FILTER'}$([ "$WISP_LANE_KIND" = all ] || echo ", $WISP_LANE_KIND guests")"
if [ "$mode" = direct ]; then
	# Failed cases' scratch dirs from an earlier run would mislead.
	for d in "$outdir"/*/; do [ "$(basename "$d")" = l2root ] || rm -rf "$d"; done
	: > "$outdir/reported"
	scratch=$(mktemp -d /dev/shm/wisp-lane.XXXXXX 2>/dev/null || mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	mkdir -p "$scratch/repo"
	copy_tests "$scratch/repo/tests"
	[ -d "$repo/bench" ] && cp -a "$repo/bench" "$scratch/repo/bench"
	mkdir -p "$repo/build/guests"
	timeout -k 10 "$total_timeout" "$here/runner.sh" "$scratch/repo/tests" "$repo/build/bin" \
		"$repo/build/guests" "$repo/images/out" "$scratch/tmp" 2>&1 | tee "$outdir/direct.log" | report
	rc=${PIPESTATUS[0]}
	# Keep failed cases' scratch dirs for inspection.
	for d in "$scratch"/tmp/*/; do [ -d "$d" ] && rm -rf "$outdir/$(basename "$d")" && cp -a "$d" "$outdir/"; done
	[ "$rc" -eq 124 ] && echo "lane: the cases ran past the overall limit of ${total_timeout}s"
	finish "$([ "$rc" -eq 0 ] && echo 0 || echo 1)"
	exit $?
fi

# ---- nested: build the L2 initramfs ------------------------------------------------
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/deps.sh)"
kdir=$("$here/l2-kernel.sh") || die "no L2 kernel (apt-get download of the Debian cloud kernel failed)"
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "no vmlinuz in $kdir"
kver=${vmlinuz##*/vmlinuz-}
mods=$kdir/lib/modules/$kver/kernel

pack_t0=$SECONDS
root=$outdir/l2root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,dev,proc,sys,tmp,run,root,lane/modules}

# Host programs (with their shared libraries, found by ldd) the cases may use.
bins=(bash curl socat ip timeout sha256sum date stat mktemp truncate dd sort env sleep
      grep sed cmp mke2fs e2fsck debugfs dumpe2fs tune2fs resize2fs ${WISP_LANE_EXTRA_BINS:-})
libs=()
for b in "${bins[@]}"; do
	p=$(command -v "$b") || die "host program $b missing (scripts/deps.sh)"
	cp -L "$p" "$root/usr/bin/$b"
	while read -r lib; do libs+=("$lib"); done < <(ldd "$p" 2>/dev/null | grep -o '/[^ ]*')
done
# The peer of bench/peer-boot.sh (DESIGN.md Targets: ratios against QEMU's
# microvm machine in the same lane): QEMU's KVM-only microvm build and the
# one data file it reads with acpi=off (strace: qboot.rom, looked up in
# ../share/qemu beside the binary). Only these; left out, with a note, where
# the host lacks them (the peer case then skips).
peer_bins=(qemu-system-x86_64-microvm)
peer_data=(/usr/share/qemu/qboot.rom)
peer_kib=0
for b in "${peer_bins[@]}"; do
	p=$(command -v "$b") || { echo "lane: peer program $b missing, not packed (scripts/deps.sh)"; continue; }
	cp -L "$p" "$root/usr/bin/$b"
	peer_kib=$((peer_kib + $(du -kL "$p" | cut -f1)))
	while read -r lib; do
		[[ " ${libs[*]} " == *" $lib "* ]] || peer_kib=$((peer_kib + $(du -kL "$lib" | cut -f1)))
		libs+=("$lib")
	done < <(ldd "$p" 2>/dev/null | grep -o '/[^ ]*')
done
for f in "${peer_data[@]}"; do
	[ -f "$f" ] || { echo "lane: peer data file $f missing, not packed"; continue; }
	mkdir -p "$root$(dirname "$f")"
	cp -L "$f" "$root$f"
	peer_kib=$((peer_kib + $(du -kL "$f" | cut -f1)))
done
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
ldconfig -r "$root" 2>/dev/null || true
ln -s /usr/bin/bash "$root/bin/bash"
for e in ext2 ext3 ext4; do ln -s mke2fs "$root/usr/bin/mkfs.$e"; ln -s e2fsck "$root/usr/bin/fsck.$e"; done
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n' > "$root/etc/hosts"

# Kernel modules, named in load order.
n=0
for m in virt/lib/irqbypass kvm/kvm kvm/kvm-amd drivers/net/tun; do
	case $m in kvm/*) m=arch/x86/$m ;; esac
	n=$((n + 1))
	if [ -f "$mods/$m.ko" ]; then cp "$mods/$m.ko" "$root/lane/modules/$n-$(basename "$m").ko"
	elif [ -f "$mods/$m.ko.xz" ]; then xz -dc "$mods/$m.ko.xz" > "$root/lane/modules/$n-$(basename "$m").ko"
	else die "module $m missing from $kdir"; fi
done

# The project: binaries, tiny guests, images, tests, benchmarks.
mkdir -p "$root/lane/bin" "$root/lane/guests" "$root/lane/images"
[ -d "$repo/build/bin" ] && cp -a "$repo/build/bin/." "$root/lane/bin/"
[ -d "$repo/build/guests" ] && cp -a "$repo/build/guests/." "$root/lane/guests/"
for f in vmlinux bzImage rootfs.ext4 initramfs.cpio.gz; do
	[ -f "$repo/images/out/$f" ] && cp "$repo/images/out/$f" "$root/lane/images/"
done
copy_tests "$root/lane/tests"
[ -d "$repo/bench" ] && cp -a "$repo/bench" "$root/lane/bench"
install -m 0755 "$here/l2-init.sh" "$root/init"

# pack FILTER: the L2's settings (FILTER: the cases it runs) and the initramfs.
pack() {
	{
		printf 'export WISP_LANE_FILTER=%q\n' "$1"
		[ -n "${WISP_LANE_CASE_TIMEOUT:-}" ] && printf 'export WISP_LANE_CASE_TIMEOUT=%q\n' "$WISP_LANE_CASE_TIMEOUT"
		[ -n "${WISP_LANE_VERBOSE:-}" ] && printf 'export WISP_LANE_VERBOSE=%q\n' "$WISP_LANE_VERBOSE"
		printf 'export WISP_LANE_KIND=%q\n' "$WISP_LANE_KIND"
		[ -n "${WISP_LANE_GUEST_LOGLEVEL:-}" ] && printf 'export WISP_LANE_GUEST_LOGLEVEL=%q\n' "$WISP_LANE_GUEST_LOGLEVEL"
		[ -n "${WISP_LANE_L2_PIN:-}" ] && printf 'export WISP_LANE_L2_PIN=%q\n' "$WISP_LANE_L2_PIN"
		[ -n "${WISP_DEMO_MESSAGE:-}" ] && printf 'export WISP_DEMO_MESSAGE=%q\n' "$WISP_DEMO_MESSAGE"
		echo 'export WISP_LANE_MODE=nested'
	} > "$root/lane/env"
	( cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 ) > "$outdir/l2-initramfs.cpio"
}
pack "$WISP_LANE_FILTER" || die "packing the L2 initramfs failed"
echo "lane: L2 kernel $kver, packed in $((SECONDS - pack_t0))s, initramfs $(( $(stat -c %s "$outdir/l2-initramfs.cpio") / 1048576 )) MiB (QEMU peer: $((peer_kib / 1024)) MiB of it); overall limit ${total_timeout}s"

# l2log LOG: the last warnings and errors the L2's kernel logged (l2-init.sh
# forwards them every 10 s).
l2log() {
	grep -aq "$P l2log" "$1" || return 0
	echo "lane: the last warnings the nested host's kernel logged:"
	grep -a "$P l2log" "$1" | tail -n 12 | tr -d '\r' | sed "s/^.*$P l2log | /    /" | cut -c1-200
}

# ---- nested: boot it ----------------------------------------------------------------
# HOST.md: TCG with emulated SVM and nested paging; -smp 2 (one vCPU stalls).
# no_timer_check: under TCG on a busy host the IO-APIC timer check can
# misfire and panic the L2 ("IO-APIC + timer doesn't work").
# tsc=reliable: TCG's TSC is the host's, the same on both vCPUs, but the L2's
# clocksource watchdog marks it unstable against the emulated HPET and falls
# back to HPET, whose every read is an MMIO exit into QEMU under its global
# lock; the L2's KVM then also withholds the stable-TSC bit from the guests'
# kvmclock. With TSC the nested cases ran in 265 s instead of 333 s.
#
# The L2 is restarted (at most WISP_LANE_L2_RESTARTS times, default 3) when
# it dies under a case: its own kernel crashed (panic, BUG, oops on its
# console) or it stopped answering. That is QEMU's emulated SVM failing
# (tests/lane/README.md, "Known failures of the nested lane itself"), not a
# result: an unprivileged VMM process cannot take its host's kernel down.
# The fresh L2 runs the case in flight and every case without a result yet;
# the results already reported stand. A wisp guest's own failure (a triple
# fault included) is a result and is not rerun by a restart (runner.sh's
# one retry after a guest triple fault in the nested lane is separate).
log=$outdir/l2-serial.log
: > "$outdir/reported"
: > "$outdir/retried"
end=$((SECONDS + total_timeout))
max_restarts=${WISP_LANE_L2_RESTARTS:-3}
boot=0 restarts=0 filter=$WISP_LANE_FILTER
tp=0 tf=0 ts=0 ready_once=0
while :; do
	boot=$((boot + 1))
	t0=$(date +%s)
	rm -f "$outdir/qemu.pid"
	timeout -k 10 "$((end - SECONDS))" qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC,+svm,+npt \
		-smp 2 -m 4G -nographic -no-reboot -nic none -pidfile "$outdir/qemu.pid" \
		-kernel "$vmlinuz" -initrd "$outdir/l2-initramfs.cpio" \
		-append "console=ttyS0 rdinit=/init quiet loglevel=3 panic=-1 no_timer_check tsc=reliable" \
		</dev/null 2>&1 | tee "$log" | report
	rc=${PIPESTATUS[0]}
	echo "lane: L2 ran $(( $(date +%s) - t0 ))s, serial log in ${log#"$repo/"}"
	read -r p f s done setupfail ready crashed hung current < "$outdir/summary"
	tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
	[ "$ready" = 1 ] && ready_once=1
	[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$done" = 1 ] || [ "$SECONDS" -ge $((end - 60)) ] && break
	cp "$log" "$outdir/l2-serial.boot$boot.log"
	# An L2 that died before running anything (TCG timing trouble on a
	# loaded host) gets one more try.
	if [ "$ready" != 1 ]; then
		[ "$ready_once" = 0 ] && [ "$boot" -eq 1 ] || break
		echo "lane: the L2 did not come up (QEMU status $rc); its console said:"
		grep -v 'TCG doesn.t support' "$log" | tail -n 15 | tr -d '\r' | sed 's/^/    /'
		echo "lane: retrying the L2 boot once (console kept as ${outdir#"$repo/"}/l2-serial.boot$boot.log)"
		continue
	fi
	[ "$crashed" = 1 ] || [ "$hung" = 1 ] || break
	[ "$restarts" -lt "$max_restarts" ] || break
	restarts=$((restarts + 1))
	# Exact names (select.sh: a leading '=') of the cases without a result.
	filter="" left=0
	for n in "${selected[@]}"; do
		grep -qxF "$n" "$outdir/reported" && continue
		filter+="=$n "; left=$((left + 1))
	done
	[ "$left" -gt 0 ] || break
	what=$([ "$crashed" = 1 ] && echo crashed || echo hung)
	[ "$current" = - ] && where="between cases" || where="during $current"
	echo "lane: the nested host $what $where; its console is kept as ${outdir#"$repo/"}/l2-serial.boot$boot.log"
	l2log "$log"
	echo "lane: restart $restarts of $max_restarts: a fresh L2 runs the $left case(s) without a result yet"
	pack "$filter" || die "packing the L2 initramfs failed"
done
bad=0
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	echo "lane: the L2 ran past the overall limit of ${total_timeout}s and was killed"; bad=1
elif [ "$rc" -ne 0 ]; then
	echo "lane: QEMU exited with status $rc"; bad=1
fi
if [ "$done" != 1 ]; then
	echo "lane: the L2 stopped before all cases ran; last lines of its console:"
	grep -v "TCG doesn.t support" "$log" | grep -av "$P l2log" | tail -n 40 | tr -d "\r" | sed "s/^/    /"
	l2log "$log"
	# The case in flight has no result of its own: it failed with the L2.
	[ "$current" != - ] && { echo "FAIL     $current: the L2 died under it"; tf=$((tf + 1)); }
	bad=1
fi
[ "$restarts" -gt 0 ] && echo "lane: the L2 was restarted $restarts time(s) after the nested host crashed or hung; every case has one result"
[ -s "$outdir/retried" ] && echo "lane: ran once more after a guest triple fault (nested lane only): $(tr '\n' ' ' < "$outdir/retried")"
echo "$tp $tf $ts $done $setupfail $ready_once $crashed $hung $current" > "$outdir/summary"
finish "$bad"
