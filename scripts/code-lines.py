#!/usr/bin/env python3
"""The code a client of the `reconnect` bench runs every round: instructions, bytes, cache
lines and pages, and what a client runs that the hand-written loop does not, by function.

Reads callgrind files made with `--dump-instr=yes --dump-line=no --compress-pos=no
--compress-strings=no` (scripts/reconnect-lines.sh makes them): for each client one run of
N rounds and one of 2N. An instruction of the bench's executable belongs to a round when it
ran at least `--per-round` times per extra round ((count in 2N - count in N) / N); its bytes
come from `objdump -d` of the executable (the distance to the next instruction), its
function from `nm`. Libraries (libc) are left out: their addresses are not the executable's.

Usage: code-lines.py [--per-round X] [--top K] EXE N BASE NAME=PREFIX...
  where NAME's files are PREFIX.N and PREFIX.2N, and BASE is the NAME compared against.
"""

import argparse
import bisect
import collections
import os
import subprocess
import sys


def executed(path, exe):
    """Self instruction counts by address in `exe`'s code, from one callgrind file."""
    counts = collections.Counter()
    in_exe = False
    after_call = False
    with open(path) as f:
        for line in f:
            if line.startswith("ob="):
                in_exe = os.path.realpath(line[3:].strip()) == exe
            elif line.startswith("calls="):
                # The next cost line is the call's inclusive cost, not this instruction's.
                after_call = True
            elif line[:2] == "0x":
                if after_call:
                    after_call = False
                    continue
                if in_exe:
                    parts = line.split()
                    if len(parts) > 1:
                        counts[int(parts[0], 16)] += int(parts[1])
    return counts


def instruction_sizes(exe):
    """Bytes of each instruction of `exe`: the distance to the next one."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", exe],
        capture_output=True, text=True, check=True,
    ).stdout
    addrs = []
    for line in out.splitlines():
        head = line.split(":", 1)[0].strip()
        if line.startswith(" ") and head and all(c in "0123456789abcdef" for c in head):
            addrs.append(int(head, 16))
    addrs.sort()
    return {a: b - a for a, b in zip(addrs, addrs[1:]) if b - a <= 16}


def symbols(exe):
    out = subprocess.run(["nm", "-n", "-C", exe], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        # Defined code only ("U" lines have no address).
        if len(parts) == 3 and parts[0] and parts[1] in ("t", "T"):
            syms.append((int(parts[0], 16), parts[2]))
    return [a for a, _ in syms], [n for _, n in syms]


def crate_of(function):
    """The crate a function's code comes from: its path's first name (drop glue and trait
    impls are counted with the type's crate)."""
    name = function
    for prefix in ("<", "core::ptr::drop_in_place<"):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name.split("::", 1)[0].split("<", 1)[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-round", type=float, default=0.9)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("exe")
    p.add_argument("n", type=int)
    p.add_argument("base")
    p.add_argument("clients", nargs="+", help="NAME=PREFIX")
    a = p.parse_args()
    a.exe = os.path.realpath(a.exe)
    sizes = instruction_sizes(a.exe)
    sym_addrs, sym_names = symbols(a.exe)

    def function(addr):
        i = bisect.bisect_right(sym_addrs, addr) - 1
        return sym_names[i] if i >= 0 else "?"

    def size(addr):
        # An address objdump did not list (rare: data in code) counts as 4 bytes.
        return sizes.get(addr, 4)

    def lines_of(instrs):
        return {b >> 6 for x in instrs for b in range(x, x + size(x))}

    rounds = {}
    for spec in a.clients:
        name, prefix = spec.split("=", 1)
        once = executed(f"{prefix}.{a.n}", a.exe)
        twice = executed(f"{prefix}.{2 * a.n}", a.exe)
        rounds[name] = {
            x: (c - once.get(x, 0)) / a.n
            for x, c in twice.items()
            if c - once.get(x, 0) >= a.per_round * a.n
        }
    print(f"{'client':<10} {'instrs':>8} {'Ir/round':>9} {'bytes':>8} {'lines':>6} {'dense':>6} {'pages':>6}")
    for name, run in rounds.items():
        nbytes = sum(size(x) for x in run)
        lines = lines_of(run)
        print(
            f"{name:<10} {len(run):8d} {sum(run.values()):9.0f} {nbytes:8d} {len(lines):6d} "
            f"{nbytes / 64 / max(1, len(lines)):6.0%} {len({x >> 12 for x in run}):6d}"
        )
    base = rounds[a.base]
    base_lines = lines_of(base)
    for name, run in rounds.items():
        if name == a.base:
            continue
        extra = {x for x in run if x not in base}
        lines = lines_of(run)
        print(
            f"\n{name} beyond {a.base}: {len(extra)} instructions, "
            f"{sum(size(x) for x in extra)} bytes, {len(lines - base_lines)} lines "
            f"more, {len(base_lines - lines)} fewer (net {len(lines) - len(base_lines):+d})"
        )
        by = collections.defaultdict(lambda: [0, set()])
        for x in extra:
            entry = by[function(x)]
            entry[0] += size(x)
            entry[1].update(lines_of((x,)))
        crates = collections.defaultdict(set)
        for fn, (_, ls) in by.items():
            crates[crate_of(fn)].update(ls)
        print("  by crate (lines): " + ", ".join(
            f"{c} {len(ls)}" for c, ls in sorted(crates.items(), key=lambda kv: -len(kv[1]))))
        print(f"{'lines':>6} {'bytes':>6}  function")
        for fn, (nbytes, ls) in sorted(by.items(), key=lambda kv: -len(kv[1][1]))[: a.top]:
            print(f"{len(ls):6d} {nbytes:6d}  {fn[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
