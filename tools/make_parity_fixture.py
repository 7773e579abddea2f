#!/usr/bin/env python3
"""Writes the PyTorch parity fixture for NanoSparse's Gpt (tests/NanoSparse.Tests/Nn/GptParityTests.cs).

The model below is nanoGPT's architecture written out from its description (pre-LN blocks, LayerNorm with optional
bias, causal self-attention with an explicit masked softmax, MLP with exact GELU, lm_head tied to wte).
For each configuration it writes <name>.bin (float32 little-endian, tensors back to back) and <name>.json:
  {"config": {...nanoGPT fields...}, "batch_size": B, "seq_len": T, "tokens": [...], "targets": [...],
   "loss": float, "tensors": [{"name", "shape", "offset", "length"}]}   (offset and length in floats)
Tensor names: "param:<state_dict name>", "grad:<state_dict name>", "logits" (B, T, V).

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/make_parity_fixture.py
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
from torch.nn import functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "NanoSparse.Tests", "Fixtures", "parity")


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_embd = cfg["n_head"], cfg["n_embd"]
        self.c_attn = nn.Linear(self.n_embd, 3 * self.n_embd, bias=cfg["bias"])
        self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=cfg["bias"])
        T = cfg["block_size"]
        self.register_buffer("mask", torch.tril(torch.ones(T, T)).view(1, 1, T, T), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["n_embd"]
        self.c_fc = nn.Linear(C, 4 * C, bias=cfg["bias"])
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * C, C, bias=cfg["bias"])

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = LayerNorm(cfg["n_embd"], cfg["bias"])
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg["n_embd"], cfg["bias"])
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg["vocab_size"], cfg["n_embd"]),
            wpe=nn.Embedding(cfg["block_size"], cfg["n_embd"]),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])]),
            ln_f=LayerNorm(cfg["n_embd"], cfg["bias"]),
        ))
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx, targets):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def make(name, cfg, B, T, seed):
    torch.manual_seed(seed)
    model = GPT(cfg)
    # Larger-than-default random values everywhere (LayerNorm gains near 1) so every tensor matters.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if ".ln_" in pname and pname.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    idx = torch.randint(0, cfg["vocab_size"], (B, T))
    targets = torch.randint(0, cfg["vocab_size"], (B, T))
    logits, loss = model(idx, targets)
    loss.backward()

    state = [(k, v) for k, v in model.state_dict().items() if k != "lm_head.weight"]
    grads = dict(model.named_parameters())
    tensors, blob = [], bytearray()

    def add(tname, t):
        data = t.detach().contiguous().view(-1).tolist()
        tensors.append({"name": tname, "shape": list(t.shape), "offset": len(blob) // 4, "length": len(data)})
        blob.extend(struct.pack("<%df" % len(data), *data))

    for k, v in state:
        add("param:" + k, v)
    for k, _ in state:
        add("grad:" + k, grads[k].grad)
    add("logits", logits)
    index = {"config": cfg, "batch_size": B, "seq_len": T, "tokens": idx.view(-1).tolist(),
             "targets": targets.view(-1).tolist(), "loss": loss.item(), "tensors": tensors,
             "torch_version": torch.__version__}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(index, f, indent=1)
    print(name, "loss", loss.item(), "floats", len(blob) // 4)


if __name__ == "__main__":
    base = dict(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=13, dropout=0.0)
    make("tiny_bias", dict(base, bias=True), B=2, T=8, seed=1337)
    make("tiny_nobias", dict(base, bias=False), B=2, T=8, seed=2024)
