#!/usr/bin/env bash
# Per reconnection, what ours costs beyond the hand-written loop, counted by cachegrind's
# cache model instead of timed: instructions, first-level instruction- and data-cache misses
# and last-level misses per round of the `reconnect` bench. Each client runs with
# stubborn-io's rounds between its own (as in the bench, other work evicts its code and
# data between reconnections); per round = (counts of 2N rounds - counts of N rounds) / N,
# so set-up and the bench's fixed parts cancel. On this project's VMs the wall-time ratio
# moves by several percent from run to run; these counts move by well under one.
#
# Usage: scripts/reconnect-cache.sh [N] [CLIENT...]   (default N = 100, clients: ours)
# Each CLIENT (ours, or the calibration clients cold, hot, split and machine of
# BENCHMARKS.md F7) is counted and compared with the hand-written loop.
# Needs valgrind (Debian: apt-get install -y valgrind). BENCHMARKS.md, F7.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/valgrind-bench.sh
. scripts/valgrind-bench.sh
reconnect_setup reconnect-cache.sh "$@"
# The same model on every host (32 KiB L1s, a 32 MiB 16-way last level), not the host's.
caches=(--I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64)
# Prints "Ir I1mr D1mr+D1mw ILmr+DLmr+DLmw" of one run.
counts() {
    RECONNECT_ONLY="$1,stubborn" RECONNECT_ROUNDS="$2" valgrind --tool=cachegrind \
        --cache-sim=yes "${caches[@]}" --cachegrind-out-file="$out/cg" "$exe" --bench \
        >/dev/null 2>&1
    awk '/^summary:/ {print $2, $3, $6 + $9, $4 + $7 + $10}' "$out/cg"
}
printf '%-6s %12s %12s %12s %12s\n' client 'Ir/round' 'I1 miss' 'D1 miss' 'LL miss'
declare -A per
for client in "${clients[@]}" hand; do
    read -r a1 a2 a3 a4 <<<"$(counts "$client" "$n")"
    read -r b1 b2 b3 b4 <<<"$(counts "$client" $((2 * n)))"
    per[$client]="$(((b1 - a1) / n)) $(((b2 - a2) / n)) $(((b3 - a3) / n)) $(((b4 - a4) / n))"
    # shellcheck disable=SC2086
    printf '%-6s %12d %12d %12d %12d\n' "$client" ${per[$client]}
done
read -r h1 h2 h3 h4 <<<"${per[hand]}"
for client in "${clients[@]}"; do
    read -r o1 o2 o3 o4 <<<"${per[$client]}"
    label=extra
    [ "${#clients[@]}" -gt 1 ] && label="+$client"
    printf '%-6s %+12d %+12d %+12d %+12d\n' "$label" $((o1 - h1)) $((o2 - h2)) $((o3 - h3)) $((o4 - h4))
done
echo "(each row includes one stubborn-io round per round: it cancels in the differences)"
