#!/usr/bin/env python3
"""Peers for `nanosparse bench kernels`, run as a server so each case is timed right after NanoSparse times it
(the machine is shared; back-to-back timings keep the ratios meaningful).

Protocol: one JSON request per line on stdin, one JSON reply per line on stdout ({peer: median_ms}; the NumPy
dense products also as {peer_min: fastest sample ms}, for the bench's check of its in-process OpenBLAS yardstick).
  {"op": "dense",  "m", "k", "n", "s", "x", "xt"}         NumPy/OpenBLAS sgemm S@X, S.T@Xt, Xt@X.T; torch.mm S@X;
                                                           at N = 1 sgemv S@x, S.T@xt, SciPy sger (+= xt x^T); torch.mv
  {"op": "sparse", "m", "k", "n", "indptr", "indices", "data", "x"}   SciPy CSR @ X, torch.sparse.mm(CSR, X)
Files are raw little-endian arrays written by bench/NanoSparse.Bench/SparseKernelsBench.cs: float32 row-major
matrices, int32 CSR arrays. Usage: sparse_peers.py THREADS REPS. Thread counts: OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS must be set in the environment by the caller (they are read when numpy loads);
torch.set_num_threads(THREADS) here.
"""
import ctypes
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import sger
import torch


WARMUP_S = 0.03


def median_ms(fn, reps, min_sample_s=5e-4):
    return median_and_min_ms(fn, reps, min_sample_s)[0]


def median_and_min_ms(fn, reps, min_sample_s=5e-4):
    """Median and fastest sample of fn()'s wall time in ms; each sample repeats fn enough times to last >= min_sample_s.

    fn first runs untimed for WARMUP_S (30 ms), as every contender of `nanosparse bench kernels` does: on these
    virtual machines an idle core takes some 10-30 ms of work to run at full speed again.
    """
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < WARMUP_S:
        fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    iters = min(1000, int(min_sample_s / max(once, 1e-9)) + 1) if once < min_sample_s else 1
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        samples.append((time.perf_counter() - t0) / iters * 1e3)
    samples.sort()
    return samples[len(samples) // 2], samples[0]


def numpy_products(products, reps):
    """{name: median ms, name_min: fastest sample ms} for each NumPy product the bench compares its yardstick with."""
    r = {}
    for name, fn in products.items():
        r[name], r[name + "_min"] = median_and_min_ms(fn, reps)
    return r


def load(path, dtype, shape=None):
    a = np.fromfile(path, dtype=dtype)
    return a.reshape(shape) if shape is not None else a


def aligned(shape, order="C", fill=None):
    """A float32 array whose data starts on a 64-byte boundary, as the bench's in-process yardstick operands
    (AlignedBuffer.cs): OpenBLAS's sger measured 1.4-1.65x slower on misaligned rows, and NumPy's own alignment of a
    large array depends on the allocator."""
    size = int(np.prod(shape))
    buf = np.empty(size + 16, np.float32)
    off = (-buf.ctypes.data % 64) // 4
    a = buf[off:off + size].reshape(shape, order=order)
    if fill is not None:
        a[...] = fill
    return a


def dense(req, reps):
    m, k, n = req["m"], req["k"], req["n"]
    s = aligned((m, k), fill=load(req["s"], np.float32, (m, k)))
    x = aligned((k, n), fill=load(req["x"], np.float32, (k, n)))
    xt = aligned((m, n), fill=load(req["xt"], np.float32, (m, n)))
    if n == 1:
        return dense_vector(s, x.reshape(k), xt.reshape(m), reps)
    out, out_t, out_s = aligned((m, n)), aligned((k, n)), aligned((m, k))
    r = numpy_products({"numpy_dense": lambda: np.matmul(s, x, out=out),
                        "numpy_dense_t": lambda: np.matmul(s.T, xt, out=out_t),
                        "numpy_dense_sddmm": lambda: np.matmul(xt, x.T, out=out_s)}, reps)
    ts, tx = torch.from_numpy(s), torch.from_numpy(x)
    with torch.no_grad():
        r["torch_dense"] = median_ms(lambda: torch.mm(ts, tx), reps)
    return r


def dense_vector(s, x, xt, reps):
    """N = 1: the level-2 BLAS routines a dense layer runs at batch 1, the same ones the in-process yardstick calls.

    NumPy's matmul of a 2-D and a 1-D float32 array calls cblas_sgemv, S.T @ xt included (the transposed flag, no
    copy); torch.mv calls sgemv_ (torch.mm with a (K, 1) operand calls sgemm_ instead). Both checked with gdb
    breakpoints on numpy 1.24 / torch 1.13 here. SDDMM's dense counterpart at D = 1 is the rank-1 update
    G += xt x^T (sger), through SciPy into a kept Fortran-ordered k x m array: the same memory as the row-major m x k
    gradient of the in-process sger, updated in place (overwrite_a; no copy).
    """
    m, k = s.shape
    y, yt = aligned((m,)), aligned((k,))
    grad = aligned((k, m), order="F", fill=0)
    r = numpy_products({"numpy_dense": lambda: np.matmul(s, x, out=y),
                        "numpy_dense_t": lambda: np.matmul(s.T, xt, out=yt),
                        "numpy_dense_sddmm": lambda: sger(1.0, x, xt, a=grad, overwrite_a=1)}, reps)
    ts, tx = torch.from_numpy(s), torch.from_numpy(x)
    with torch.no_grad():
        r["torch_dense"] = median_ms(lambda: torch.mv(ts, tx), reps)
    return r


def openblas_core():
    """Kernel set of the OpenBLAS that NumPy loaded (the same libopenblas.so.0 the bench calls in-process)."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def sparse(req, reps):
    m, k, n = req["m"], req["k"], req["n"]
    indptr = load(req["indptr"], np.int32)
    indices = load(req["indices"], np.int32)
    data = load(req["data"], np.float32)
    x = load(req["x"], np.float32, (k, n))
    s = sp.csr_matrix((data, indices, indptr), shape=(m, k))
    # N = 1: a 1-D x, SciPy's matrix-vector path (csr_matvec), as a user writes SpMV. torch's CSR has no mv here
    # (Debian's 1.13 wants MKL for a sparse addmv), so torch stays on sparse.mm with a (K, 1) operand.
    xs = x.reshape(k) if n == 1 else x
    r = {"scipy_csr": median_ms(lambda: s @ xs, reps)}
    tcsr = torch.sparse_csr_tensor(torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(indices.astype(np.int64)),
                                   torch.from_numpy(data), size=(m, k))
    tx = torch.from_numpy(x)
    with torch.no_grad():
        r["torch_csr"] = median_ms(lambda: torch.sparse.mm(tcsr, tx), reps)
    return r


def main():
    threads, reps = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    import warnings
    warnings.filterwarnings("ignore")
    print(json.dumps({"ready": True, "numpy": np.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                      "openblas_core": openblas_core()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        reply = dense(req, reps) if req["op"] == "dense" else sparse(req, reps)
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
