"""Trains a NanoSparse preset with nanoGPT's recipe in PyTorch on a NanoSparse dataset directory and
reports validation loss, the reference that NanoSparse's own training on the same data is compared with.

The dataset directory holds train.bin, val.bin (flat little-endian uint16 or uint32 token ids) and
meta.json (vocab_size, dtype). Batches are nanoGPT's get_batch: batch_size windows at uniformly random
offsets in [0, len - block_size), y = x shifted by one. The loop is nanoGPT train.py's: learning rate
warmup then cosine decay to min_lr at lr_decay_iters; every eval_interval iterations estimate_loss over
eval_iters batches of each split in eval mode; forward, backward, clip, AdamW step,
zero_grad(set_to_none=True); stop once iter_num > max_iters. At the end the validation loss is
estimated again over --final-eval-iters batches for a less noisy figure.

Progress lines go to stderr; the last line on stdout is one JSON object.

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 bench/peers/quality_torch.py --data data/brown --threads 2
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT, OPTIMIZER, PRESETS, config_for  # noqa: E402


def load_split(data_dir, split, dtype, vocab_size):
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: not found (expected a token file beside meta.json)")
    data = np.memmap(path, dtype=dtype, mode="r")
    if len(data) == 0:
        raise ValueError(f"{path}: empty token file")
    top = int(data.max())
    if top >= vocab_size:
        raise ValueError(f"{path}: token id {top} >= vocab_size {vocab_size} from meta.json")
    return data


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    vocab = meta.get("vocab_size", meta.get("VocabSize"))
    if not isinstance(vocab, int) or vocab < 2:
        raise ValueError(f"{path}: field vocab_size is {vocab!r}, expected an integer >= 2")
    dtype_name = str(meta.get("dtype", meta.get("Dtype", "uint16"))).lower()
    dtypes = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
    if dtype_name not in dtypes:
        raise ValueError(f"{path}: field dtype is {dtype_name!r}, expected uint16 or uint32")
    return vocab, dtypes[dtype_name]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset directory (train.bin, val.bin, meta.json)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="baby")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--lr-decay-iters", type=int, default=None, help="default: max-iters")
    ap.add_argument("--warmup-iters", type=int, default=100)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--eval-iters", type=int, default=20)
    ap.add_argument("--final-eval-iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    lr_decay_iters = args.lr_decay_iters or args.max_iters

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab, dtype = read_meta(args.data)
    train_data = load_split(args.data, "train", dtype, vocab)
    val_data = load_split(args.data, "val", dtype, vocab)

    preset = PRESETS[args.preset]
    config = config_for(args.preset, vocab)
    B, T = preset["batch_size"], config.block_size
    for name, d in (("train", train_data), ("val", val_data)):
        if len(d) <= T:
            raise ValueError(f"{args.data}/{name}.bin: {len(d)} tokens, need more than block_size {T}")

    def get_batch(split):
        data = train_data if split == "train" else val_data
        ix = torch.randint(len(data) - T, (B,))
        x = torch.stack([torch.from_numpy(data[i : i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
        return x, y

    model = GPT(config)
    lr = OPTIMIZER["learning_rate"]
    optimizer = model.configure_optimizers(OPTIMIZER["weight_decay"], lr, (OPTIMIZER["beta1"], OPTIMIZER["beta2"]))

    @torch.no_grad()
    def estimate_loss(iters, splits=("train", "val")):
        out = {}
        model.eval()
        for split in splits:
            losses = torch.zeros(iters)
            for k in range(iters):
                _, loss = model(*get_batch(split))
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        model.train()
        return out

    def get_lr(it):
        # linear warmup, cosine decay to min_lr, then min_lr (nanoGPT train.py)
        if it < args.warmup_iters:
            return lr * (it + 1) / (args.warmup_iters + 1)
        if it > lr_decay_iters:
            return args.min_lr
        ratio = (it - args.warmup_iters) / (lr_decay_iters - args.warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
        return args.min_lr + coeff * (lr - args.min_lr)

    evals = []
    X, Y = get_batch("train")
    iter_num = 0
    t_start = time.time()
    train_seconds = 0.0
    while True:
        for group in optimizer.param_groups:
            group["lr"] = get_lr(iter_num)
        if iter_num % args.eval_interval == 0:
            losses = estimate_loss(args.eval_iters)
            evals.append({"iter": iter_num, "train": losses["train"], "val": losses["val"]})
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", file=sys.stderr)
        t0 = time.perf_counter()
        _, loss = model(X, Y)
        X, Y = get_batch("train")  # next batch while nanoGPT's GPU would be busy
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIMIZER["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - t0
        iter_num += 1
        if iter_num > args.max_iters:
            break

    final = estimate_loss(args.final_eval_iters, splits=("val",))
    print(f"final val loss over {args.final_eval_iters} batches: {final['val']:.4f}", file=sys.stderr)
    print(
        json.dumps(
            {
                "contender": "pytorch",
                "torch_version": torch.__version__,
                "data": os.path.abspath(args.data),
                "preset": args.preset,
                "vocab_size": vocab,
                "threads": args.threads,
                "max_iters": args.max_iters,
                "steps": iter_num,
                "evals": evals,
                "final_val_loss": evals[-1]["val"],
                "final_val_loss_long": final["val"],
                "final_eval_iters": args.final_eval_iters,
                "train_seconds": train_seconds,
                "wall_seconds": time.time() - t_start,
            }
        )
    )


if __name__ == "__main__":
    main()
