#!/usr/bin/env python3
"""The jitter's golden sequence (tests/tests/rules/r07_retry_delay.rs), computed apart from
the library and from rand_chacha: ChaCha8 written out here, refill k keyed with the seed and
k (8 bytes each, little-endian, then 16 zero bytes), counter 0, its first 4 words, each
split into two 16-bit draws (low half first), one draw per attempt, turned into delays as
`Jitter::apply` does.

Usage: scripts/jitter-golden.py [SEED [DELAY_NS [COUNT]]]   (defaults: 7, 10 s, 10)
"""
import struct
import sys

M32 = 0xFFFFFFFF
KEPT = 4


def rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & M32


def quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & M32
    s[d] = rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32
    s[b] = rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & M32
    s[d] = rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32
    s[b] = rotl(s[b] ^ s[c], 7)


def chacha8_block(key, counter):
    """One block: 64-bit counter in words 12-13, 64-bit stream (0) in 14-15."""
    init = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    init += list(struct.unpack("<8I", key)) + [counter & M32, counter >> 32, 0, 0]
    s = init[:]
    for _ in range(4):  # 8 rounds: 4 double rounds
        quarter(s, 0, 4, 8, 12)
        quarter(s, 1, 5, 9, 13)
        quarter(s, 2, 6, 10, 14)
        quarter(s, 3, 7, 11, 15)
        quarter(s, 0, 5, 10, 15)
        quarter(s, 1, 6, 11, 12)
        quarter(s, 2, 7, 8, 13)
        quarter(s, 3, 4, 9, 14)
    return [(a + b) & M32 for a, b in zip(s, init)]


def draws(seed, count):
    out = []
    k = 0
    while len(out) < count:
        key = struct.pack("<QQ", seed, k) + bytes(16)
        for word in chacha8_block(key, 0)[:KEPT]:
            out += [word & 0xFFFF, word >> 16]
        k += 1
    return out[:count]


def delay(d, draw, percent=30):
    distance = ((d * (draw >> 1)) >> 15) * percent // 100
    return d + distance if draw & 1 else d - distance


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    d = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000_000
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    for w in draws(seed, count):
        n = delay(d, w)
        print(f"{n:_} // {'+' if w & 1 else '-'}")


if __name__ == "__main__":
    main()
