#!/usr/bin/env python3
"""Peer for `nanosparse bench gemm`: times NumPy (OpenBLAS sgemm) on the same shapes.

stdin: {"reps": 7, "clock": "wall" | "cpu", "shapes": [{"name": ..., "transA": bool, "transB": bool, "m": int, "n": int, "k": int}, ...]}
stdout: {"blas": "...", "threads": "...", "results": [{"name": ..., "seconds": [per-call seconds of each rep]}]}
Thread count comes from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, set by the caller.
Transposed operands are passed as .T views of row-major arrays so numpy calls sgemm with the transpose flags
instead of copying.
"""
import json
import os
import sys
import time

import numpy as np


def blas_name():
    # Debian's numpy links the generic libblas.so.3, which the alternatives system points at OpenBLAS:
    # name the library that is actually mapped.
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libopenblas" in line.lower():
                    return os.path.basename(line.split()[-1])
    except OSError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:
        pass
    try:
        return ",".join(np.__config__.blas_opt_info["libraries"])
    except Exception:
        return "numpy-blas"


def time_shape(s, reps, clock):
    m, n, k = s["m"], s["n"], s["k"]
    rng = np.random.default_rng(0)
    # Stored shapes: A is m×k (k×m if transA), B is k×n (n×k if transB).
    a_stored = rng.standard_normal((k, m) if s["transA"] else (m, k), dtype=np.float32)
    b_stored = rng.standard_normal((n, k) if s["transB"] else (k, n), dtype=np.float32)
    a = a_stored.T if s["transA"] else a_stored
    b = b_stored.T if s["transB"] else b_stored
    c = np.empty((m, n), dtype=np.float32)

    np.matmul(a, b, out=c)  # warm-up
    t0 = clock()
    np.matmul(a, b, out=c)
    once = clock() - t0
    inner = max(1, int(0.02 / max(once, 1e-9)))  # each sample at least ~20 ms
    seconds = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            np.matmul(a, b, out=c)
        seconds.append((clock() - t0) / inner)
    return seconds


def main():
    request = json.load(sys.stdin)
    reps = int(request.get("reps", 7))
    # "cpu": process CPU time, steadier than wall time on a machine shared with other jobs (meaningful for 1 thread).
    clock = time.process_time if request.get("clock") == "cpu" else time.perf_counter
    results = []
    for s in request["shapes"]:
        r = reps if 2.0 * s["m"] * s["n"] * s["k"] < 2e10 else min(reps, 3)
        results.append({"name": s["name"], "seconds": time_shape(s, r, clock)})
    json.dump({
        "blas": blas_name(),
        "numpy": np.__version__,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
        "results": results,
    }, sys.stdout)


if __name__ == "__main__":
    main()
