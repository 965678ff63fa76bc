#!/usr/bin/env bash
# Benchmark against the peer (DESIGN.md Targets: on machines without hardware
# virtualization, compare ratios against QEMU's microvm machine run in the
# same place). Boots the same stripped kernel and test initramfs with
# wisp-vmm and with QEMU (-M microvm, KVM), 1 vCPU, 128 MiB, boot args
# "console=ttyS0 quiet reboot=k panic=-1 wisp.test=hold" (the guest holds at
# its init, so the process is still there to be read), runs alternating, and
# measures
# for each run the time from starting the VMM process to the guest's init
# marker ("wisp-init: ready" on the serial console) and that process's
# VmRSS when the marker arrives (guest pages touched so far included, for
# both). Prints per-run figures, the medians, and the ratios wisp/QEMU.
# Asserts nothing about the figures; exits 1 when a run never reached the
# marker, 77 (after a "SKIPPED: reason" line) when the peer cannot run here.
#
#   bench/peer-boot.sh [WISP_VMM [IMAGES_DIR]]
#   WISP_BENCH_RUNS=N (default 5)
#   WISP_PEER_QEMU=PATH (default: qemu-system-x86_64-microvm, QEMU's
#       KVM-only microvm build, else qemu-system-x86_64)
#
# The kernel is the bzImage: QEMU's -kernel loads an ELF vmlinux only
# through its PVH note, and the stripped kernel is built without CONFIG_PVH.
# wisp-vmm's vmlinux boot is printed too, for reference (no peer figure).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmm=${1:-$here/../build/bin/wisp-vmm}
images=${2:-$here/../images/out}
runs=${WISP_BENCH_RUNS:-5}
args="console=ttyS0 quiet reboot=k panic=-1 wisp.test=hold"
limit_s=120
[ -x "$vmm" ] || { echo "peer-boot: $vmm not built"; exit 1; }
for f in bzImage vmlinux initramfs.cpio.gz; do
	[ -f "$images/$f" ] || { echo "peer-boot: $images/$f missing"; exit 1; }
done
[ -c /dev/kvm ] || { echo "SKIPPED: peer-boot: no /dev/kvm here"; exit 77; }
qemu=${WISP_PEER_QEMU:-$(command -v qemu-system-x86_64-microvm || command -v qemu-system-x86_64)}
[ -n "$qemu" ] && [ -x "$qemu" ] || { echo "SKIPPED: peer-boot: no qemu-system-x86_64(-microvm) here (scripts/deps.sh; the nested lane packs it, tests/lane/run.sh)"; exit 77; }
# -M microvm: no option ROMs (qboot loads the bzImage through fw_cfg itself),
# the ISA serial port for the console, no RTC, no ACPI tables (the kernel has
# no ACPI), no virtio-mmio entries added to the command line (there are no
# devices); PIT and PIC stay (wisp-vmm gives the guest both as well).
# Firmware: with acpi=off microvm loads qboot.rom (with ACPI, bios-microvm.bin),
# found beside the binary in ../share/qemu (tests/lane/run.sh packs it).
qemu_cmd=("$qemu" -M microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off,auto-kernel-cmdline=off
	-enable-kvm -cpu host -m 128 -smp 1 -nodefaults -no-user-config -nographic -no-reboot
	-serial stdio -kernel "$images/bzImage" -initrd "$images/initramfs.cpio.gz" -append "$args")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wisp-peer-boot.XXXXXX"); trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/bz.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$images/bzImage", "initrd_path": "$images/initramfs.cpio.gz", "boot_args": "$args"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}
}
JSON
sed "s|$images/bzImage|$images/vmlinux|" "$tmp/bz.json" > "$tmp/elf.json"

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
# one_run LOG CMD...: runs CMD with its console on a pipe until the init
# marker (then kills it), prints "MARKER_MS RSS_KIB" ("none" when the marker
# never came within limit_s or CMD ended first). The process substitution execs CMD, so $! is
# its PID and /proc/$!/status is CMD's own.
one_run() {
	local log=$1 fd pid line t0 t1="" rss=none left; shift
	: > "$log"
	t0=$EPOCHREALTIME
	exec {fd}< <(exec "$@" </dev/null 2>&1)
	pid=$!
	while :; do
		left=$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit_s" 'BEGIN { d = l - (b - a); printf "%.3f", (d > 0 ? d : 0) }')
		IFS= read -r -t "$left" -u "$fd" line || break
		printf '%s\n' "$line" >> "$log"
		if [ -z "$t1" ] && [[ $line == *"wisp-init: ready"* ]]; then
			t1=$EPOCHREALTIME
			rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
			rss=${rss:-none}
			break
		fi
	done
	kill -KILL "$pid" 2>/dev/null
	exec {fd}<&-
	echo "$([ -n "$t1" ] && ms "$t0" "$t1" || echo none) $rss"
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "none"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

status=0
# name -> command; runs alternate so drift in the host's load hits both alike.
for i in $(seq 1 "$runs"); do
	for who in wisp-bzImage qemu-bzImage wisp-vmlinux; do
		case $who in
		wisp-bzImage) set -- "$vmm" --no-api --config-file "$tmp/bz.json" ;;
		wisp-vmlinux) set -- "$vmm" --no-api --config-file "$tmp/elf.json" ;;
		qemu-bzImage) set -- "${qemu_cmd[@]}" ;;
		esac
		read -r mark rss < <(one_run "$tmp/$who.$i.log" "$@")
		echo "peer-boot: $who run $i: init marker at $mark ms, RSS at marker $rss KiB"
		if [ "$mark" = none ]; then
			echo "peer-boot: $who run $i never reached the init marker; its console:"
			tail -n 15 "$tmp/$who.$i.log" | tr -d '\r' | sed 's/^/    /'
			# QEMU that refuses to start (its own "qemu-system-...: reason"
			# line) on its first run: the peer cannot run here, say why.
			if [ "$who" = qemu-bzImage ] && [ "$i" = 1 ] &&
				why=$(grep -m1 "^$(basename "$qemu"): " "$tmp/$who.$i.log"); then
				echo "SKIPPED: peer-boot: QEMU cannot run here: $why" | tr -d '\r'; exit 77
			fi
			status=1; continue
		fi
		echo "$mark" >> "$tmp/$who.marks"
		[ "$rss" = none ] || echo "$rss" >> "$tmp/$who.rss"
	done
done
med() { [ -s "$tmp/$1" ] && median < "$tmp/$1" || echo none; }
for who in wisp-bzImage qemu-bzImage wisp-vmlinux; do
	n=$(cat "$tmp/$who.marks" 2>/dev/null | wc -l)
	echo "peer-boot: $who median $(med "$who.marks") ms to init marker, RSS at marker $(med "$who.rss") KiB ($n/$runs runs reached it)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "none" || b == "none" || b == 0) print "none"; else printf "%.2f", a / b }'; }
wm=$(med wisp-bzImage.marks); qm=$(med qemu-bzImage.marks)
wr=$(med wisp-bzImage.rss); qr=$(med qemu-bzImage.rss)
echo "peer-boot: ratio wisp/QEMU-microvm (bzImage): init marker $(ratio "$wm" "$qm") ($wm / $qm ms), RSS at marker $(ratio "$wr" "$qr") ($wr / $qr KiB)"
echo "peer-boot: peer $("$qemu" --version 2>/dev/null | head -n1) ($(basename "$qemu"), -M microvm); no peer vmlinux figure: QEMU loads an ELF kernel only through a PVH note (CONFIG_PVH is off)"
exit $status
