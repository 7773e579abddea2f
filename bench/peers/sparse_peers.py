#!/usr/bin/env python3
"""Peers for `nanosparse bench kernels`: times the same cases the C# bench just timed, on the same matrices.

Input: a manifest (JSON) written by bench/NanoSparse.Bench/SparseKernelsBench.cs into a temp dir, naming raw files:
  per (shape, N):        x (K x N) and xt (M x N), float32 row-major
  per (shape, pattern):  CSR of S (M x K): indptr int32 (M+1), indices int32, data float32
Output: JSON {"cases": {case_id: {peer: median_ms}}, "dense": {dense_id: {...}}, "threads": t, "versions": {...}}.

Peers: NumPy/OpenBLAS dense sgemm (S@X, S.T@Xt, Xt@X.T for SDDMM's dense product), SciPy CSR @ X,
PyTorch dense torch.mm and sparse CSR (torch.sparse.mm), Eigen SparseMatrix<float,RowMajor> * dense (a separate
binary, run by this script on the same manifest). Thread count: set by the caller through OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS in the environment (must be set before numpy loads) and torch.set_num_threads here.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp
import torch


def median_ms(fn, reps, min_sample_s=5e-4):
    """Median wall time of fn() in ms; each sample repeats fn enough times to last >= min_sample_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    iters = max(1, min(1000, int(min_sample_s / max(once, 1e-9)) + 1)) if once < min_sample_s else 1
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - t0) / iters * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def load(path, dtype, shape):
    a = np.fromfile(path, dtype=dtype)
    return a.reshape(shape) if shape is not None else a


def main():
    manifest_path, out_path = sys.argv[1], sys.argv[2]
    eigen = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    with open(manifest_path) as f:
        manifest = json.load(f)
    threads = int(manifest["threads"])
    reps = int(manifest["reps"])
    torch.set_num_threads(threads)
    result = {"threads": threads, "cases": {}, "dense": {},
              "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "torch": torch.__version__,
                           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")}}

    for d in manifest["dense"]:
        m, k, n = d["m"], d["k"], d["n"]
        x = load(d["x"], np.float32, (k, n))
        xt = load(d["xt"], np.float32, (m, n))
        s = load(d["s"], np.float32, (m, k))  # a dense S of this shape (its values do not matter for dense timing)
        sT = np.ascontiguousarray(s.T)
        r = {}
        out = np.empty((m, n), np.float32)
        r["numpy_dense"] = median_ms(lambda: np.matmul(s, x, out=out), reps)
        outT = np.empty((k, n), np.float32)
        r["numpy_dense_t"] = median_ms(lambda: np.matmul(s.T, xt, out=outT), reps)
        outS = np.empty((m, k), np.float32)
        r["numpy_dense_sddmm"] = median_ms(lambda: np.matmul(xt, x.T, out=outS), reps)
        ts, tx = torch.from_numpy(s), torch.from_numpy(x)
        with torch.no_grad():
            r["torch_dense"] = median_ms(lambda: torch.mm(ts, tx), reps)
        result["dense"][d["id"]] = r
        print(f"  peers dense {m}x{k} N={n}: openblas {r['numpy_dense']:.3f} ms, torch {r['torch_dense']:.3f} ms", flush=True)

    for c in manifest["cases"]:
        m, k, n = c["m"], c["k"], c["n"]
        indptr = load(c["indptr"], np.int32, None)
        indices = load(c["indices"], np.int32, None)
        data = load(c["data"], np.float32, None)
        x = load(c["x"], np.float32, (k, n))
        s = sp.csr_matrix((data, indices, indptr), shape=(m, k))
        r = {}
        r["scipy_csr"] = median_ms(lambda: s @ x, reps)
        tcsr = torch.sparse_csr_tensor(torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(indices.astype(np.int64)),
                                       torch.from_numpy(data), size=(m, k))
        tx = torch.from_numpy(x)
        with torch.no_grad():
            r["torch_csr"] = median_ms(lambda: torch.sparse.mm(tcsr, tx), reps)
        result["cases"][c["id"]] = r

    if eigen:
        eig_out = out_path + ".eigen.json"
        env = dict(os.environ)
        subprocess.run([eigen, manifest_path, eig_out], check=True, env=env)
        with open(eig_out) as f:
            for case_id, ms in json.load(f).items():
                result["cases"].setdefault(case_id, {})["eigen_csr"] = ms

    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
