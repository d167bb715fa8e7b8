#!/usr/bin/python3
# hnsw_data.py - write the vectors ../shared/bench/hnswlib_bench.py indexes,
# so that parrot's HNSW (bench/hnsw_bench.c) runs on exactly the same data.
#
#   /usr/bin/python3 bench/hnsw_data.py N DIR    (DATA=random|lowrank, as the peer)
#
# The peer draws everything from numpy's default_rng(12345) in a fixed order;
# this script makes the same draws in the same order, so the arrays are equal
# bit for bit (the "mean cos" line printed by both must agree). Files in DIR,
# little-endian: X.f32 (N x 384), Q.f32 and QN.f32 (1000 x 384: random and
# near-duplicate queries), G.i32 and GN.i32 (1000 x 10: brute-force top 10).
import os
import sys

import numpy as np

n, out = int(sys.argv[1]), sys.argv[2]
D, NQ = 384, 1000
rng = np.random.default_rng(12345)
kind = os.environ.get('DATA', 'random')


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


if kind == 'random':
    X = unit(rng.standard_normal((n, D), dtype=np.float32))
    Q = unit(rng.standard_normal((NQ, D), dtype=np.float32))
else:
    W = rng.standard_normal((32, D), dtype=np.float32)

    def gen(m):
        z = unit(rng.standard_normal((m, 32), dtype=np.float32) @ W)
        e = unit(rng.standard_normal((m, D), dtype=np.float32))
        return unit(z + 0.1 * e)
    X = gen(n)
    Q = gen(NQ)
src = rng.integers(0, n, NQ)
noise = unit(rng.standard_normal((NQ, D), dtype=np.float32))
QN = unit(X[src] + 0.33 * noise)
print(f"DATA {kind} N={n} mean cos(QN,src)={np.mean(np.sum(QN * X[src], 1)):.6f}")


def truth(qs, k=10):
    res = np.empty((len(qs), k), dtype=np.int32)
    for s in range(0, len(qs), 100):
        sims = qs[s:s + 100] @ X.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        res[s:s + 100] = np.take_along_axis(part, order, 1)
    return res


os.makedirs(out, exist_ok=True)
for name, a in (('X.f32', X), ('Q.f32', Q), ('QN.f32', QN), ('G.i32', truth(Q)), ('GN.i32', truth(QN))):
    a.astype('<f4' if a.dtype == np.float32 else '<i4').tofile(os.path.join(out, name))
