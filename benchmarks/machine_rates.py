"""The machine rates that bound the paper's CNNs on the CPU (benchmarks/RESULTS.md, "The CNNs at the
CPU's bound"): NumPy's sgemm on both cores and on one, sgemm at the product shapes the conv blocks and
the dense layer run (one core each, as they run: one product per thread), and a STREAM-like triad
(Numba, both cores).

    python benchmarks/machine_rates.py

Prints one JSON line (GFLOP/s, GB/s; best of five).
"""
import json
import time

import numpy as np
from numba import njit, prange


def best(fn, r=5):
    fn()
    b = float("inf")
    for _ in range(r):
        t = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t)
    return b


def gemm_rate(M, K, N):
    a = np.random.rand(M, K).astype(np.float32)
    b = np.random.rand(K, N).astype(np.float32)
    return 2.0 * M * K * N / best(lambda: a @ b) / 1e9


@njit(parallel=True, cache=True)
def _triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def main():
    from threadpoolctl import threadpool_limits
    out = {}
    with threadpool_limits(2):
        out["sgemm_2core_512x5184x2400"] = gemm_rate(512, 5184, 2400)
    with threadpool_limits(1):
        out["sgemm_1core_512x5184x2400"] = gemm_rate(512, 5184, 2400)
        # (rows M = output columns x T, K, N) of the products as the blocks run them, one core
        shapes = {"conv2_input_grad_1500x32x16": (1500, 32, 16), "conv3_input_grad_1500x64x32": (1500, 64, 32),
                  "conv3_forward_1500x32x64": (1500, 32, 64), "dense1_9600x5184x512": (9600, 5184, 512)}
        for name, (M, K, N) in shapes.items():
            out["sgemm_1core_" + name] = gemm_rate(M, K, N)
    n = 16 * 2 ** 20  # three 64 MB float32 arrays
    a, b, c = (np.random.rand(n).astype(np.float32) for _ in range(3))
    out["triad_GBps_2core"] = 3 * 4 * n / best(lambda: _triad(a, b, c, np.float32(1.5))) / 1e9
    print(json.dumps({k: round(v, 1) for k, v in out.items()}))


if __name__ == "__main__":
    main()
