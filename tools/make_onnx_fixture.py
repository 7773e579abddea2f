#!/usr/bin/env python3
"""Makes the ONNX decode-graph fixtures under tests/NanoSparse.Tests/Fixtures/onnx/:

  nanogpt_bias.onnx, nanogpt_nobias.onnx   the decode-step graphs (idx and a past key/value per layer in; last
                                           logits and the presents out) of the interop fixtures' small nanoGPT
                                           models (Fixtures/interop/nanogpt_bias, nanogpt_nobias), exported and
                                           checked by bench/peers/export_onnx.py, the exporter `bench sparse-model`
                                           runs for its ONNX Runtime peer

The tests run them in ONNX Runtime (OrtDecoder) one token at a time and compare every step's logits with the
interop fixtures' float64 reference logits, which were computed without a KV cache and without ONNX.

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/make_onnx_fixture.py
"""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "NanoSparse.Tests", "Fixtures")


def main():
    out = os.path.join(FIXTURES, "onnx")
    os.makedirs(out, exist_ok=True)
    for model in ("nanogpt_bias", "nanogpt_nobias"):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "peers", "export_onnx.py"),
                        "--checkpoint", os.path.join(FIXTURES, "interop", model),
                        "--out", os.path.join(out, f"{model}.onnx"), "--check-prompt", "8"], check=True)


if __name__ == "__main__":
    main()
