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
n=${1:-100000}
if ! command -v valgrind >/dev/null; then
    echo "machine-ir.sh: valgrind is not installed (Debian: apt-get install -y valgrind)" >&2
    exit 2
fi
exe=$(cargo bench -q -p persistent-connection-benches --bench machine --no-run \
        --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "machine" and m.get("executable"):
        print(m["executable"])')
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
