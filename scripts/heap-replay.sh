#!/usr/bin/env bash
# Where the RSS of idle connections goes beyond their heap blocks, and what a change of
# size would do to it, without rebuilding anything (BENCHMARKS.md, "glibc's placement").
#
# Runs the memory bench for one kind at one N with an LD_PRELOAD shim that logs every
# allocation and free of the client process (scripts/heap-replay/logger.c), then replays
# that log against glibc's malloc (scripts/heap-replay/replay.c): once as it was, and once
# with each FROM:TO changing the requests of FROM bytes into TO bytes. Each replay prints
# the arena's growth per connection (what RSS sees; it reproduces the bench's RSS figure to
# a few tens of bytes), the bytes in use and the free bytes left inside the arena.
#
# Usage: scripts/heap-replay.sh KIND N [FROM:TO ...]
#   KIND   a memory kind, as MEMORY_KINDS takes it (e.g. Driven, client, hand)
#   N      connections (e.g. 10000)
#   e.g.   scripts/heap-replay.sh Driven 10000 144:136 "144:136 312:296"
#          (each argument is one replay; an argument may hold several changes;
#          FROM:0 leaves the blocks of FROM bytes out)
# Needs gcc and glibc (Linux); the bench's fd limit as for the memory bench.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/valgrind-bench.sh
. scripts/valgrind-bench.sh
if [ $# -lt 2 ]; then
    sed -n '2,18p' "$0" >&2
    exit 2
fi
kind=$1 n=$2
shift 2
out=target/heap-replay
mkdir -p "$out"
rm -rf "$out/logs" && mkdir "$out/logs"
gcc -O2 -Wall -Wextra -shared -fPIC -o "$out/logger.so" scripts/heap-replay/logger.c -ldl -lpthread
gcc -O2 -Wall -Wextra -o "$out/replay" scripts/heap-replay/replay.c
exe=$(bench_exe memory)
# The bench's own figures, for comparison with the replay's (same run, same process).
MEMORY_KINDS="$kind" MEMORY_SIZES="$n" HEAP_LOG_DIR="$PWD/$out/logs" \
    LD_PRELOAD="$PWD/$out/logger.so" "$exe" --bench | grep -E "^ +$n |blocks:" || true
# The client process makes the most allocations: its log is the largest.
log=$(ls -S "$out"/logs/log.* | head -n 1)
printf '%-24s ' "as measured"
"$out/replay" "$log" "$n"
for change in "$@"; do
    printf '%-24s ' "$change"
    # shellcheck disable=SC2086 # one argument may hold several FROM:TO changes
    "$out/replay" "$log" "$n" $change
done
