#!/usr/bin/env bash
# Runs every cargo-fuzz target of this project for a bounded time and fails on any crash
# (a broken rule, a panic, an overflow, a timeout). CI calls it; so can you.
#
#   fuzz/run.sh [seconds per target]     (default 60)
#
# New inputs go to a temporary corpus, so the committed seed corpus (corpus/<target>/)
# stays small; a crash is saved under artifacts/<target>/, where the regression test
# (tests/tests/corpus.rs) replays it in every `cargo test` once it is committed.
set -euo pipefail

secs="${1:-60}"
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address ...); RUSTC_BOOTSTRAP lets the
# stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "$work/$target" "corpus/$target"
    echo "== fuzz target $target: ${secs}s"
    if ! cargo fuzz run "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz targets that crashed: ${failed[*]} (inputs saved under fuzz/artifacts/)" >&2
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>" >&2
    exit 1
fi
echo "fuzz: every target ran ${secs}s without a crash"
