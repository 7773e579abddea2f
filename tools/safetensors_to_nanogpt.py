#!/usr/bin/env python3
"""Turns `nanosparse export --format nanogpt` output (model.safetensors + config.json) into a nanoGPT ckpt.pt that
nanoGPT's sample.py (init_from='resume') and train.py load: {'model': state_dict, 'model_args': config, ...}.
Reads safetensors with struct + json (F32, F16 or BF16); the safetensors package is not needed.

Usage: python3 tools/safetensors_to_nanogpt.py EXPORT_DIR out-nanosparse/ckpt.pt [DATASET]
DATASET (e.g. shakespeare_char) is stored as config['dataset'], so sample.py decodes with data/DATASET/meta.pkl;
without it sample.py uses GPT-2's BPE.
"""
import json
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]) if end > begin else torch.empty(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).to(torch.float32)
    return tensors


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    config = {"dataset": sys.argv[3]} if len(sys.argv) == 4 else {}
    state_dict = load_safetensors(os.path.join(src, "model.safetensors"))
    with open(os.path.join(src, "config.json")) as f:
        model_args = json.load(f)
    # Without flash attention (PyTorch < 2.0) nanoGPT's model has the causal mask as buffer attn.bias, which
    # load_state_dict(strict=True) expects; it holds no learned values, so rebuild it.
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        T = model_args["block_size"]
        for i in range(model_args["n_layer"]):
            state_dict[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"model": state_dict, "model_args": model_args, "iter_num": 0, "best_val_loss": 1e9, "config": config}, out)
    print(f"wrote {out} ({len(state_dict)} tensors, model_args {model_args})")


if __name__ == "__main__":
    main()
