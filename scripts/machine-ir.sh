#!/usr/bin/env bash
# Instructions per Machine input, for each loop of the `machine` bench, under callgrind:
# (Ir of 2N inputs - Ir of N inputs) / N, so set-up and process start cancel out. Exact and
# repeatable where wall time on a shared VM is not: use it to judge a change to the core's
# hot path (BENCHMARKS.md, F5).
#
# Usage: scripts/machine-ir.sh [N]        (default N = 100000)
# Needs valgrind (Debian: apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/valgrind-bench.sh
. scripts/valgrind-bench.sh
n=${1:-100000}
need_valgrind machine-ir.sh
exe=$(bench_exe machine)
ir() {
    MACHINE_IR="$1:$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" 2>&1 |
        awk '/Collected/ {print $4}'
}
printf '%-28s %12s\n' loop 'Ir/input'
for loop in fail_retry connect_cycle restart_cycle fail_retry_os_error fail_retry_os_error_keyed; do
    a=$(ir "$loop" "$n")
    b=$(ir "$loop" $((2 * n)))
    printf '%-28s %12d\n' "$loop" $(((b - a) / n))
done
