"""Times nanoGPT's generate() in PyTorch (no KV cache); prints one JSON object.

For every new token generate() runs the model over the whole context cropped to block_size, as
nanoGPT's model.py does. The model has the preset's shape (or the shape given by --n-layer etc.) with
random nanoGPT-init weights, or the weights of a NanoSparse checkpoint (--checkpoint model.safetensors,
nanoGPT tensor names): the speed does not depend on the values.

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 bench/peers/sample_torch.py --preset baby --threads 1 --tokens 500
"""

import argparse
import json
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import BROWN_CHAR_VOCAB, GPT, PRESETS, GPTConfig  # noqa: E402

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    """Minimal safetensors reader: u64 little-endian header length, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(raw)}")
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype == "BF16":
            begin, end = info["data_offsets"]
            u16 = np.frombuffer(raw[base + begin : base + end], dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dtype in SAFETENSORS_DTYPES:
            begin, end = info["data_offsets"]
            arr = np.frombuffer(raw[base + begin : base + end], dtype=np.dtype(SAFETENSORS_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, expected F32, F16 or BF16")
        tensors[name] = torch.from_numpy(arr.astype(np.float32).reshape(info["shape"]))
    return tensors


def load_checkpoint(model, path):
    tensors = read_safetensors(path)
    state = model.state_dict()
    for name, p in state.items():
        if name.endswith(".attn.bias") or name == "lm_head.weight":
            continue  # causal mask buffer (not c_attn.bias); lm_head is tied to wte
        if name not in tensors:
            raise ValueError(f"{path}: missing tensor {name}")
        if tuple(tensors[name].shape) != tuple(p.shape):
            raise ValueError(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, expected {list(p.shape)}")
        p.copy_(tensors[name])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="baby")
    ap.add_argument("--n-layer", type=int)
    ap.add_argument("--n-head", type=int)
    ap.add_argument("--n-embd", type=int)
    ap.add_argument("--block-size", type=int)
    ap.add_argument("--bias", choices=["true", "false"])
    ap.add_argument("--vocab", type=int, default=BROWN_CHAR_VOCAB)
    ap.add_argument("--checkpoint", help="model.safetensors with nanoGPT tensor names (optional)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=500, help="new tokens per generation")
    ap.add_argument("--repeats", type=int, default=3, help="timed generations (median reported)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    if args.threads < 1 or args.tokens < 1 or args.repeats < 1:
        ap.error(f"need threads >= 1, tokens >= 1, repeats >= 1; got {vars(args)}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    p = PRESETS[args.preset]
    config = GPTConfig(
        block_size=args.block_size or p["block_size"],
        vocab_size=args.vocab,
        n_layer=args.n_layer or p["n_layer"],
        n_head=args.n_head or p["n_head"],
        n_embd=args.n_embd or p["n_embd"],
        dropout=0.0,
        bias=(args.bias == "true") if args.bias else p["bias"],
    )
    model = GPT(config)
    if args.checkpoint:
        with torch.no_grad():
            load_checkpoint(model, args.checkpoint)
    model.eval()

    prompt = torch.zeros((1, 1), dtype=torch.long)  # one token, as nanoGPT sample.py's "\n"
    model.generate(prompt, min(8, args.tokens), args.temperature, args.top_k)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = model.generate(prompt, args.tokens, args.temperature, args.top_k)
        times.append(time.perf_counter() - t0)
        assert out.size(1) == 1 + args.tokens
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "contender": "pytorch generate() (no KV cache)",
                "torch_version": torch.__version__,
                "threads": args.threads,
                "n_layer": config.n_layer,
                "n_head": config.n_head,
                "n_embd": config.n_embd,
                "block_size": config.block_size,
                "vocab_size": config.vocab_size,
                "checkpoint": args.checkpoint,
                "new_tokens": args.tokens,
                "seconds": [round(t, 4) for t in times],
                "median_s": median,
                "tokens_per_s": args.tokens / median,
            }
        )
    )


if __name__ == "__main__":
    main()
