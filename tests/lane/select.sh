# Which lane cases run; sourced by run.sh (on the host) and runner.sh (where
# the cases run, the L2 included).

# lane_selected NAME FILTER: NAME (a case name without .sh) matches one of
# FILTER's space- or comma-separated shell patterns (a plain word matches as
# a substring, a word after '=' only as the whole name); an empty FILTER
# selects every case.
lane_selected() {
	local name=$1 filter=$2 pat
	[ -z "$filter" ] && return 0
	for pat in ${filter//,/ }; do
		if [[ $pat == =* ]]; then
			[[ $name == "${pat#=}" ]] && return 0
			continue
		fi
		# shellcheck disable=SC2053
		[[ $name == $pat || $name == *$pat* ]] && return 0
	done
	return 1
}

# lane_kind_ok FILE KIND: the case's `# lane-guest: tiny|linux|any` line
# (linux when absent) fits KIND (all, tiny or linux).
lane_kind_ok() {
	local k
	k=$(sed -n 's/^# lane-guest: *\([a-z]*\).*/\1/p' "$1" | head -n1)
	case $2:${k:-linux} in
	all:*|*:any|tiny:tiny|linux:linux) return 0 ;;
	esac
	return 1
}
