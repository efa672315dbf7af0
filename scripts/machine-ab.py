#!/usr/bin/env python3
"""Wall time per Machine input of two or more `machine` bench binaries, side by side.

Each run feeds one loop alone (`MACHINE_IR=<loop>:<inputs>`, the mode `machine-ir.sh` uses)
and times the whole process; the binaries take turns in a shuffled order, so a busy
neighbour slows all of them alike. The minimum over the runs is the figure to compare (the
median shows the spread). Wall time sees what callgrind cannot, such as a load that waits
for stores it cannot be forwarded from (BENCHMARKS.md, F5).

Usage:
  scripts/machine-ab.py [--loops a,b] [--runs N] [--inputs N] BINARY [BINARY...]

Build a binary with `cargo bench -p persistent-connection-benches --bench machine --no-run`
and copy `target/release/deps/machine-*` aside before building the other.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

LOOPS = "fail_retry,connect_cycle,restart_cycle,fail_retry_os_error_keyed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default=LOOPS, help=f"comma-separated (default {LOOPS})")
    parser.add_argument("--runs", type=int, default=8, help="runs of each binary per loop")
    parser.add_argument("--inputs", type=int, default=4_000_000, help="inputs per run")
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    loops = args.loops.split(",")
    times = {(loop, b): [] for loop in loops for b in args.binaries}
    for _ in range(args.runs):
        for loop in loops:
            order = list(args.binaries)
            random.shuffle(order)
            for b in order:
                env = dict(os.environ, MACHINE_IR=f"{loop}:{args.inputs}")
                start = time.perf_counter()
                subprocess.run([b], env=env, check=True)
                times[(loop, b)].append((time.perf_counter() - start) / args.inputs * 1e9)
    for loop in loops:
        print(loop)
        for b in args.binaries:
            t = times[(loop, b)]
            print(
                f"  {b:50} min {min(t):6.2f}  median {statistics.median(t):6.2f} ns/input"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
