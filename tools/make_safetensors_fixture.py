#!/usr/bin/env python3
"""Writes tests/NanoSparse.Tests/Fixtures/safetensors/reference.safetensors by hand (struct + json), following the
conventions of Hugging Face's safetensors: u64 little-endian header length, compact JSON header with
"__metadata__" first, header padded with spaces to a multiple of 8, tensors packed back to back.
The F16/BF16 tensors are the F32 source converted by PyTorch (round-to-nearest-even), so the test can check
NanoSparse's conversions and file layout byte for byte.

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/make_safetensors_fixture.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "NanoSparse.Tests", "Fixtures", "safetensors")


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().tobytes()  # numpy has no bfloat16: reinterpret bits
    return t.contiguous().numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def save(path, tensors, metadata):
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(4, 6, generator=g) * 3
    # Cases where rounding matters: exact bf16 ties (1 + 2^-8 rounds down to 1, 1 + 3*2^-8 up to the even 1 + 2^-6),
    # f16 ties (1 + 2^-11), f16 overflow to inf, f16 subnormals, signed zero and infinities.
    special = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-11, 1 + 3 * 2**-11, 70000.0, -70000.0,
                            1e-6, -3e-7, 6e-8, 0.0, -0.0, float("inf"), float("-inf"), 65504.0, 65520.0,
                            3.3895314e38, 1.0e-40], dtype=torch.float32)
    src = torch.cat([x.flatten(), special]).reshape(6, 7)
    tensors = [
        ("src", src),
        ("x_f16", src.to(torch.float16)),
        ("x_bf16", src.to(torch.bfloat16)),
        ("x_f16_widened", src.to(torch.float16).to(torch.float32)),
        ("x_bf16_widened", src.to(torch.bfloat16).to(torch.float32)),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 3)),
        ("vec", torch.arange(5, dtype=torch.float32)),
    ]
    os.makedirs(OUT, exist_ok=True)
    save(os.path.join(OUT, "reference.safetensors"), tensors, {"format": "pt", "note": "héllo"})


if __name__ == "__main__":
    main()
