#!/usr/bin/python3
# hnswlib_load.py - the peer's restart cost: how long hnswlib takes to load a
# saved index of the vectors bench/hnsw_data.py wrote (scenario 7's bar).
#
#   /usr/bin/python3 bench/hnswlib_load.py DIR N
#
# Builds the index once (2 threads, M 16, ef_construction 200), saves it, and
# loads it three times; prints `hnswlib_load_seconds` (the median) and the
# file size. hnswlib's file has no checksum, so this is a lower bound for any
# loader that verifies what it reads.
import os
import sys
import tempfile
import time

import hnswlib
import numpy as np

d, n = sys.argv[1], int(sys.argv[2])
X = np.fromfile(os.path.join(d, 'X.f32'), dtype='<f4').reshape(n, 384)
p = hnswlib.Index(space='ip', dim=384)
p.init_index(max_elements=n, ef_construction=200, M=16, random_seed=100)
p.add_items(X, np.arange(n), num_threads=2)
fn = os.path.join(tempfile.mkdtemp(), 'index.bin')
p.save_index(fn)
del p
times = []
for _ in range(3):
    q = hnswlib.Index(space='ip', dim=384)
    t = time.perf_counter()
    q.load_index(fn, max_elements=n)
    times.append(time.perf_counter() - t)
    del q
print(f"hnswlib_load_seconds {sorted(times)[1]:.3f}")
print(f"hnswlib_index_mib {os.path.getsize(fn) / 2**20:.0f}")
os.unlink(fn)
