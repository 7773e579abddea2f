#!/usr/bin/env python3
"""Converts a nanoGPT training checkpoint (ckpt.pt from train.py) for `nanosparse import --format nanogpt`.

Writes into OUT_DIR:
  model.safetensors  the state_dict in the safetensors layout (8-byte little-endian header length, JSON header,
                     raw little-endian F32 data), written with struct + json: the safetensors package is not needed
  config.json        the checkpoint's model_args (n_layer, n_head, n_embd, block_size, vocab_size, bias, dropout)
  meta.json          only with --meta: a char-level dataset's meta.pkl (stoi/itos) as a NanoSparse meta.json, so
                     `nanosparse sample` decodes without --tokenizer (for GPT-2 BPE models use --tokenizer gpt2)

Usage: python3 tools/nanogpt_to_safetensors.py out-shakespeare-char/ckpt.pt OUT_DIR [--meta data/shakespeare_char/meta.pkl]
Needs only torch (to unpickle ckpt.pt); runs on CPU.
"""
import argparse
import json
import os
import pickle
import struct

import torch


def save_safetensors(path, state_dict):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state_dict.items():
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # pad the header so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for data in blobs:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out_dir")
    ap.add_argument("--meta", help="nanoGPT char dataset meta.pkl (stoi/itos) to convert to meta.json")
    args = ap.parse_args()

    ckpt = torch.load(args.ckpt, map_location="cpu")
    os.makedirs(args.out_dir, exist_ok=True)
    # NanoSparse strips torch.compile's "_orig_mod." prefix and skips the attn.bias mask buffers itself.
    save_safetensors(os.path.join(args.out_dir, "model.safetensors"), ckpt["model"])
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(dict(ckpt["model_args"]), f, indent=2)

    if args.meta:
        with open(args.meta, "rb") as f:
            meta = pickle.load(f)
        itos = meta["itos"]
        symbols = [itos[i] for i in range(len(itos))]
        nanosparse_meta = {
            "vocab_size": len(symbols), "dtype": "uint16",
            "tokenizer": {"kind": "char", "symbols": symbols},
            "corpus": os.path.basename(os.path.dirname(os.path.abspath(args.meta))),
            "train_tokens": 0, "val_tokens": 0, "documents": [],
        }
        with open(os.path.join(args.out_dir, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(nanosparse_meta, f, indent=2, ensure_ascii=False)
    print(f"wrote {args.out_dir}/model.safetensors ({len(ckpt['model'])} tensors), config.json"
          + (", meta.json" if args.meta else ""))


if __name__ == "__main__":
    main()
