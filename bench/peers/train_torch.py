"""Times nanoGPT's training step in PyTorch for a NanoSparse preset; prints one JSON object.

One iteration is exactly the body of nanoGPT train.py's loop (gradient_accumulation_steps = 1, no
scaler, no compile): forward with targets, loss.backward(), clip_grad_norm_(grad_clip),
optimizer.step(), optimizer.zero_grad(set_to_none=True).
With --mask-density d the four Linear weights of every block are masked as PyTorch users prune today
(torch.nn.utils.prune.random_unstructured: weight = weight_orig * weight_mask, recomputed by a forward pre-hook
every forward, the zeros still stored and multiplied densely), keeping a fraction d of each.
Data loading is excluded: the random token batches are made before timing starts and iteration i uses
batch i % len(batches), so both sides time only the step.

Threads: torch 1.13 on Debian has two pools. --threads is torch's own (torch.set_num_threads, OpenMP); every
matmul runs on OpenBLAS's pool instead, sized at start-up by OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else
every core, and not by torch.set_num_threads. With neither variable set (a plain `python train.py`) torch runs one
thread per physical core and OpenBLAS one per logical core: torch 1 / BLAS 2 on the 2-core development machine.
`nanosparse bench train` sets both variables, for this script and for nanoGPT's train.py alike.

Warm-up: a fresh process's first iterations page-fault their memory in (measured on small's widths: minor
faults and system time fall for 3-4 iterations), so the step's steady speed, which train.py's log shows,
comes after a few of them; the default warm-up is 5 (train.py's MFU skips 5 too).

Run: env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/peers/train_torch.py --preset baby --threads 1 --iters 20
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import BROWN_CHAR_VOCAB, GPT, OPTIMIZER, PRESETS, config_for  # noqa: E402


def mm_gflops(n):
    """Dense fp32 torch.mm rate of an n*n*n product (median of repetitions), the peer's own sgemm reference."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.mm(a, b)
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < 0.5 and len(times) < 50):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="baby")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    ap.add_argument("--vocab", type=int, default=BROWN_CHAR_VOCAB)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--batch-size", type=int, default=0, help="batch size (0: the preset's)")
    ap.add_argument("--mask-density", type=float, default=1.0, help="fraction of each block Linear weight kept by a fixed random mask")
    ap.add_argument("--gemm-size", type=int, default=1024, help="n of the n*n*n torch.mm reference rate (0: skip)")
    args = ap.parse_args()
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.vocab < 2 or args.batch_size < 0:
        ap.error(f"need threads >= 1, iters >= 1, warmup >= 0, vocab >= 2, batch-size >= 0; got {vars(args)}")
    if not (0.0 < args.mask_density <= 1.0):
        ap.error(f"--mask-density ({args.mask_density}) must lie in (0, 1]")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    preset = PRESETS[args.preset]
    config = config_for(args.preset, args.vocab)
    B, T = args.batch_size or preset["batch_size"], config.block_size
    model = GPT(config)
    if args.mask_density < 1.0:
        import torch.nn.utils.prune as prune

        for block in model.transformer.h:
            for linear in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                prune.random_unstructured(linear, "weight", amount=1.0 - args.mask_density)
    model.train()
    optimizer = model.configure_optimizers(
        OPTIMIZER["weight_decay"], OPTIMIZER["learning_rate"], (OPTIMIZER["beta1"], OPTIMIZER["beta2"])
    )

    # batches made up front: data loading is not timed (same on the NanoSparse side)
    nbatches = 4
    xs = [torch.randint(0, args.vocab, (B, T), dtype=torch.long) for _ in range(nbatches)]
    ys = [torch.randint(0, args.vocab, (B, T), dtype=torch.long) for _ in range(nbatches)]

    # One loop for warm-up and timed iterations, with train.py's variable lifetimes: logits and loss of one
    # iteration stay alive until the next forward returns. Measured (small widths, batch 16): a timed loop that
    # differed from its warm-up only in keeping `loss` page-faulted again in its first iterations (64k, 159k, 85k,
    # then 0 minor faults) exactly as train.py does after its first one; presumably the allocator's heap settles on
    # the exact sequence of allocations and frees, so warm-up must run the very loop that is timed.
    times = []
    last_loss = float("nan")
    for it in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        logits, loss = model(xs[it % nbatches], ys[it % nbatches])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIMIZER["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last_loss = loss.item()  # train.py reads the loss each iteration it logs (every one in the bench)
        dt = (time.perf_counter() - t0) * 1e3
        if it >= args.warmup:
            times.append(dt)

    flops_per_token = model.flops_per_token(T)
    sgemm_gflops = mm_gflops(args.gemm_size) if args.gemm_size > 0 else None
    tokens = B * T
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "contender": "pytorch",
                "torch_version": torch.__version__,
                "preset": args.preset,
                "threads": args.threads,
                "torch_threads": torch.get_num_threads(),
                "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                "batch_size": B,
                "mask_density": args.mask_density,
                "block_size": T,
                "vocab_size": args.vocab,
                "params": model.get_num_params(non_embedding=False),
                "params_non_embedding": model.get_num_params(),
                "tokens_per_iter": tokens,
                "flops_per_token": flops_per_token,
                "flops_per_iter": flops_per_token * tokens,
                "warmup": args.warmup,
                "iters_ms": [round(t, 3) for t in times],
                "median_ms": round(median, 3),
                "tokens_per_s": tokens / (median / 1e3),
                "gflops": flops_per_token * tokens / (median / 1e3) / 1e9,
                "last_loss": last_loss,
                "sgemm_n": args.gemm_size,
                "sgemm_gflops": sgemm_gflops,
            }
        )
    )


if __name__ == "__main__":
    main()
