#!/usr/bin/env python3
"""Makes the interop fixtures under tests/NanoSparse.Tests/Fixtures/interop/:

  nanogpt_bias/, nanogpt_nobias/  a small nanoGPT-shaped model (nanoGPT's model.py semantics: exact GELU, tied
                                  lm_head, LayerNorm eps 1e-5, optional biases) saved as a nanoGPT state_dict
  gpt2/                           a small Hugging Face GPT-2-shaped model (Conv1D weights stored (in, out),
                                  tanh-approximated GELU "gelu_new", attn.bias / attn.masked_bias buffers,
                                  names without the "transformer." prefix) with an HF-style config.json

Each folder holds model.safetensors (written by hand with struct + json in the safetensors layout), config.json and
reference.safetensors with fixed token windows and the reference logits (B, T, V) and mean cross-entropy loss,
computed in float64 by the model written out below (independent of NanoSparse).

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/make_interop_fixture.py
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "NanoSparse.Tests", "Fixtures", "interop")
N_LAYER, N_HEAD, N_EMBD, BLOCK, VOCAB = 2, 2, 16, 16, 37
B, T = 2, 16


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        b = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_params(g, bias):
    """nanoGPT state_dict (canonical names, Linear weights (out, in)), float32 values, spread wide enough that every
    weight matters to the logits."""
    C = N_EMBD

    def rn(*shape, std=0.3):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(torch.float32)

    p = {"transformer.wte.weight": rn(VOCAB, C, std=0.5), "transformer.wpe.weight": rn(BLOCK, C, std=0.3)}

    def ln(prefix):
        p[prefix + ".weight"] = (1 + rn(C, std=0.2))
        if bias:
            p[prefix + ".bias"] = rn(C, std=0.1)

    def lin(prefix, o, i):
        p[prefix + ".weight"] = rn(o, i, std=1 / math.sqrt(i))
        if bias:
            p[prefix + ".bias"] = rn(o, std=0.1)

    for l in range(N_LAYER):
        h = f"transformer.h.{l}"
        ln(h + ".ln_1")
        lin(h + ".attn.c_attn", 3 * C, C)
        lin(h + ".attn.c_proj", C, C)
        ln(h + ".ln_2")
        lin(h + ".mlp.c_fc", 4 * C, C)
        lin(h + ".mlp.c_proj", C, 4 * C)
    ln("transformer.ln_f")
    return p


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(p, idx, targets, bias, gelu):
    """nanoGPT GPT.forward in float64. Linear weights (out, in)."""
    d = {k: v.to(torch.float64) for k, v in p.items()}
    C, nh = N_EMBD, N_HEAD
    hs = C // nh
    b, t = idx.shape

    def lin(x, prefix):
        return F.linear(x, d[prefix + ".weight"], d.get(prefix + ".bias") if bias else None)

    def ln(x, prefix):
        return F.layer_norm(x, (C,), d[prefix + ".weight"], d.get(prefix + ".bias") if bias else None, 1e-5)

    x = d["transformer.wte.weight"][idx] + d["transformer.wpe.weight"][torch.arange(t)]  # (B, T, C)
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(N_LAYER):
        h = f"transformer.h.{l}"
        a = ln(x, h + ".ln_1")
        q, k, v = lin(a, h + ".attn.c_attn").split(C, dim=2)
        q = q.view(b, t, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(b, t, nh, hs).transpose(1, 2)
        v = v.view(b, t, nh, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, C)
        x = x + lin(y, h + ".attn.c_proj")
        m = lin(ln(x, h + ".ln_2"), h + ".mlp.c_fc")
        m = F.gelu(m) if gelu == "gelu" else gelu_new(m)
        x = x + lin(m, h + ".mlp.c_proj")
    x = ln(x, "transformer.ln_f")
    logits = x @ d["transformer.wte.weight"].T  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    return logits, loss


def save_reference(folder, p, bias, gelu, g):
    idx = torch.randint(0, VOCAB, (B, T + 1), generator=g)
    x, y = idx[:, :-1], idx[:, 1:]
    logits, loss = forward(p, x, y, bias, gelu)
    tensors = [("tokens", x.to(torch.float32)), ("targets", y.to(torch.float32)), ("logits", logits), ("loss", loss.reshape(()))]
    meta = {"loss": repr(loss.item()), "gelu": gelu}
    if gelu != "gelu":
        # The same weights run with the exact GELU: checks the import (names, Conv1D transposes) end to end on a model
        # that has no tanh-GELU option, and shows how far apart the two activations put the logits.
        logits_exact, loss_exact = forward(p, x, y, bias, "gelu")
        tensors += [("logits_gelu_exact", logits_exact), ("loss_gelu_exact", loss_exact.reshape(()))]
        meta["loss_gelu_exact"] = repr(loss_exact.item())
        meta["max_abs_logit_diff_gelu_new_vs_exact"] = repr((logits - logits_exact).abs().max().item())
    save_safetensors(os.path.join(folder, "reference.safetensors"), tensors, meta)


def make_nanogpt(name, bias, seed):
    g = torch.Generator().manual_seed(seed)
    p = random_params(g, bias)
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    # nanoGPT state_dict order with the tied lm_head.weight at the end, as model.state_dict() lists it.
    tensors = list(p.items()) + [("lm_head.weight", p["transformer.wte.weight"])]
    save_safetensors(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD, "block_size": BLOCK, "vocab_size": VOCAB,
                   "bias": bias, "dropout": 0.0}, f, indent=2)
    save_reference(folder, p, bias, "gelu", g)


def make_gpt2(seed):
    g = torch.Generator().manual_seed(seed)
    p = random_params(g, True)
    folder = os.path.join(OUT, "gpt2")
    os.makedirs(folder, exist_ok=True)
    conv1d = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
    tensors = []
    for k, v in p.items():
        name = k[len("transformer."):]
        tensors.append((name, v.t().contiguous() if k.endswith(conv1d) else v))  # Conv1D stores (in, out)
        if name.endswith(".attn.c_proj.bias"):
            l = name.split(".")[1]
            tensors.append((f"h.{l}.attn.bias", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK)))
            tensors.append((f"h.{l}.attn.masked_bias", torch.tensor(-1e4)))
    save_safetensors(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
                   "n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD, "n_positions": BLOCK, "n_ctx": BLOCK,
                   "vocab_size": VOCAB, "layer_norm_epsilon": 1e-5, "n_inner": None}, f, indent=2)
    save_reference(folder, p, True, "gelu_new", g)


if __name__ == "__main__":
    torch.manual_seed(0)
    make_nanogpt("nanogpt_bias", True, 101)
    make_nanogpt("nanogpt_nobias", False, 202)
    make_gpt2(303)
