#!/usr/bin/env bash
# Agent round trips and memory: median/p99 of a PING and of a no-op INVOKE
# (fork + exec of `true` + RESULT), and the agent's resident memory.
#
#   bench/agent.sh                    a host agent over a Unix socket (release build)
#   bench/agent.sh --vsock UDS[:PORT] a guest's agent through the VMM's vsock
#                                     socket (the agent as PID 1 in a microVM)
#   N=2000 bench/agent.sh             round trips per figure (default 1000; 200 for INVOKE)
# Prints figures only; nothing here passes or fails on a timing.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CTLBIN=${WISP_BIN:-$PWD/$BUILD/bin}/wisp-agent-ctl
AGENT=${WISP_BIN:-$PWD/$BUILD/bin}/wisp-agent
N=${N:-1000}
NI=${NI:-200}
[ -x "$CTLBIN" ] || { echo "bench/agent: $CTLBIN is not built (make)"; exit 1; }

if [ "${1:-}" = --vsock ]; then
	target=(--vsock "$2")
	where="vsock ($2), agent as PID 1 in the guest"
	rss() {
		"$CTLBIN" "${target[@]}" invoke /bin/cat /proc/1/status |
			awk '/^VmRSS|^VmHWM/ { printf "%s %s kB  ", $1, $2 } END { print "" }'
	}
	true_path=/bin/true
else
	T=$(mktemp -d /tmp/wisp-agent-bench.XXXXXX)
	"$AGENT" --listen "unix:$T/s" --level error &
	apid=$!
	trap 'kill $apid 2>/dev/null; wait $apid 2>/dev/null; rm -rf "$T"' EXIT
	for _ in $(seq 100); do [ -S "$T/s" ] && break; sleep 0.05; done
	target=(--unix "$T/s")
	where="Unix socket on the host ($(uname -r)), agent not PID 1"
	rss() { awk '/^VmRSS|^VmHWM/ { printf "%s %s kB  ", $1, $2 } END { print "" }' /proc/$apid/status; }
	true_path=/bin/true
fi
ctl() { "$CTLBIN" "${target[@]}" --wait-ms 30000 "$@"; }

echo "bench/agent: $where"
echo "agent memory at rest:      $(rss)"
ctl ping --count "$N"
ctl ping --count "$((N / 4 > 0 ? N / 4 : 1))" --size 65536 | sed 's/^ping:/ping 64 KiB:/'
ctl invoke --repeat "$NI" "$true_path" | sed 's/^invoke:/invoke (no-op, fork+exec):/'
echo "agent memory after load:   $(rss)"
