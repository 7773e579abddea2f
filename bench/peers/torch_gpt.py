"""nanoGPT's GPT in PyTorch, the peer that NanoSparse's benchmarks run beside.

Follows the architecture of karpathy/nanoGPT model.py (LayerNorm with optional bias, causal
self-attention, GELU MLP, pre-LN blocks, weight tying of lm_head and wte, GPT-2 init, AdamW with
weight decay on 2-D parameters only). Debian's torch 1.13 has no F.scaled_dot_product_attention,
so attention always takes the explicit masked-softmax path (nanoGPT's non-flash path).

Shared by train_torch.py, sample_torch.py and quality_torch.py.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

# Character vocabulary size of the Brown corpus as prepared by `nanosparse prepare` (overridable: --vocab).
BROWN_CHAR_VOCAB = 85

PRESETS = {
    # baby: the 1-2 minute smoke model.
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, bias=False, dropout=0.0),
    # small: nanoGPT's shakespeare-char config.
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, bias=False, dropout=0.2),
    # medium: matrices 256 wide; the model pruning and sparse training compare against (configs/medium.json).
    "medium": dict(n_layer=6, n_head=8, n_embd=256, block_size=256, batch_size=16, bias=False, dropout=0.0),
    # wide: 768-wide matrices, where sparse training pays (issue 17, `bench sparse-model`).
    "wide": dict(n_layer=4, n_head=12, n_embd=768, block_size=256, batch_size=8, bias=False, dropout=0.0),
    # gpt2-124m: GPT-2 small's shape, for decode speed.
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=1, bias=False, dropout=0.0),
}

# Optimizer of both presets (nanoGPT train.py names).
OPTIMIZER = dict(learning_rate=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0)


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = BROWN_CHAR_VOCAB
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's nn.LayerNorm has no bias=False in 1.13)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # q, k, v projections for all heads in one matrix
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # causal mask: position t attends to positions <= t
        self.register_buffer(
            "bias",
            torch.tril(torch.ones(config.block_size, config.block_size)).view(1, 1, config.block_size, config.block_size),
        )

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, NH, T, hs)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, NH, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, NH, T, hs)
        # (B, NH, T, hs) x (B, NH, hs, T) -> (B, NH, T, T)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, NH, T, T) x (B, NH, T, hs) -> (B, NH, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the output projection is the token embedding
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections: std 0.02 / sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding=True):
        """Parameter count (wte counted once since tied); nanoGPT subtracts wpe when non_embedding."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        assert t <= self.config.block_size, f"sequence length {t} exceeds block_size {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)  # (T)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            # inference: only the last position's logits are needed
            logits = self.lm_head(x[:, [-1], :])  # (B, 1, V)
            loss = None
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        # decay 2-D tensors (matmul weights, embeddings); not biases and LayerNorm gains
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        nodecay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": nodecay, "weight_decay": 0.0},
        ]
        # torch 1.13 has no fused AdamW on the CPU; foreach=False is the plain per-tensor loop
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=False)

    def flops_per_token(self, T):
        """nanoGPT estimate_mfu: 6N + 12 L H Q T FLOPs per token for forward + backward."""
        N = self.get_num_params()
        cfg = self.config
        L, H, Q = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
        return 6 * N + 12 * L * H * Q * T

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """nanoGPT's generate: the whole (cropped) context runs again for every new token (no KV cache)."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size :]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def config_for(preset, vocab_size):
    p = PRESETS[preset]
    return GPTConfig(
        block_size=p["block_size"],
        vocab_size=vocab_size,
        n_layer=p["n_layer"],
        n_head=p["n_head"],
        n_embd=p["n_embd"],
        dropout=p["dropout"],
        bias=p["bias"],
    )


class KvCacheGPT(nn.Module):
    """One decode step of a GPT with a KV cache: the new tokens attend to the cached keys/values and to themselves.

    forward(idx, past_key_0, past_value_0, ..., past_key_{L-1}, past_value_{L-1}) with idx (B, t) and each past
    (B, NH, T_past, hs) returns (logits of the last position (B, V), present_key_0, present_value_0, ...) with each
    present (B, NH, T_past + t, hs), the past with the new positions appended. An empty past (T_past = 0) is a prefill.
    The same module runs PyTorch's own decode loop and is what export_onnx.py hands to torch.onnx.export, so one graph
    serves the prefill (t = prompt length) and every decode step (t = 1).
    """

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt
        self.n_layer = gpt.config.n_layer
        self.n_head = gpt.config.n_head
        self.n_embd = gpt.config.n_embd

    def empty_past(self, batch=1):
        hs = self.n_embd // self.n_head
        return [torch.zeros(batch, self.n_head, 0, hs) for _ in range(2 * self.n_layer)]

    def _attention(self, attn, x, past_k, past_v):
        B, t, C = x.size()
        hs = C // self.n_head
        q, k, v = attn.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, t, self.n_head, hs).transpose(1, 2)  # (B, NH, t, hs)
        k = torch.cat([past_k, k.view(B, t, self.n_head, hs).transpose(1, 2)], dim=2)  # (B, NH, T, hs)
        v = torch.cat([past_v, v.view(B, t, self.n_head, hs).transpose(1, 2)], dim=2)  # (B, NH, T, hs)
        T = k.size(2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, NH, t, T)
        # new position i sits at T - t + i: it sees keys j <= T - t + i
        rows = torch.arange(t, device=x.device).unsqueeze(1)
        cols = torch.arange(T, device=x.device).unsqueeze(0)
        att = att.masked_fill(cols > rows + (T - t), float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, t, C)  # (B, t, C)
        return attn.c_proj(y), k, v

    def forward(self, idx, *past):
        t = idx.size(1)
        past_len = past[0].size(2)
        pos = torch.arange(past_len, past_len + t, dtype=torch.long, device=idx.device)  # (t)
        tr = self.gpt.transformer
        x = tr.wte(idx) + tr.wpe(pos)  # (B, t, C)
        presents = []
        for i, block in enumerate(tr.h):
            a, k, v = self._attention(block.attn, block.ln_1(x), past[2 * i], past[2 * i + 1])
            x = x + a
            x = x + block.mlp(block.ln_2(x))
            presents += [k, v]
        logits = self.gpt.lm_head(tr.ln_f(x[:, -1, :]))  # (B, V): only the last position is sampled from
        return (logits, *presents)
