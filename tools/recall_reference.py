#!/usr/bin/python3
"""Independent PyTorch check of the associative-recall task (`nanosparse recall-data`).

Trains a minimal nanoGPT-shaped model (learned positions, optional RoPE in GPT-NeoX's half-split layout, pre-LN
blocks, bias-free LayerNorm and Linear, GELU MLP of 4x, lm_head tied to wte, AdamW with weight decay 0.1 on
matrices, warm-up then cosine decay, gradient clipping at 1) on a dataset's train.bin / val.bin (uint16 tokens,
meta.json char vocabulary) and measures exact recall against distance on the val stream.

Recall is measured on the val stream as it is (no records written in): windows of block_size + 1 tokens at fixed
offsets; a query is a key token whose previous occurrence (the record) lies inside the window with a value token
after it; it counts as right when the argmax after the query is the record's value. Distance = query - record - 2
(tokens between the record's end and the query), binned by powers of two.

--loss all        every position carries loss (nanoGPT; NanoSparse's default)
--loss targets    only positions whose target token id is in --targets (e.g. the answer alphabet)
--loss answers    only the value after a query whose record is inside the window (the ideal MQAR mask)

Usage (Debian's torch 1.13):
  /usr/bin/python3 tools/recall_reference.py --data DIR --block 256 --batch 8 --layers 2 --width 64 --heads 2 \
      --lr 1e-3 --iters 2000 --warmup 100 [--rope] [--loss all|targets|answers] [--targets A-B] [--threads 1]
"""
import argparse, json, math, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def rope(x, base=10000.0):
    # x: (B, nh, T, hs); GPT-NeoX half split: pairs (i, i + hs/2) rotate by θ_i·t, θ_i = base^(-2i/hs)
    B, nh, T, hs = x.shape
    half = hs // 2
    inv = base ** (-torch.arange(0, half, dtype=torch.float64) * 2.0 / hs)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # (T, half)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, C, nh, use_rope):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, elementwise_affine=True)
        self.ln_1.bias = None
        self.c_attn = nn.Linear(C, 3 * C, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.ln_2 = nn.LayerNorm(C)
        self.ln_2.bias = None
        self.c_fc = nn.Linear(C, 4 * C, bias=False)
        self.m_proj = nn.Linear(4 * C, C, bias=False)
        self.nh, self.use_rope = nh, use_rope

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = [t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v)]  # (B, nh, T, hs)
        if self.use_rope:
            q, k = rope(q), rope(k)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float('-inf')).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)

    def forward(self, x):
        x = x + self.attn(F.layer_norm(x, (x.size(-1),), self.ln_1.weight, None, 1e-5))
        h = F.layer_norm(x, (x.size(-1),), self.ln_2.weight, None, 1e-5)
        return x + self.m_proj(F.gelu(self.c_fc(h)))


class TinyGpt(nn.Module):
    def __init__(self, V, T, L, C, nh, use_rope):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.blocks = nn.ModuleList([Block(C, nh, use_rope) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.ln_f.bias = None
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith('c_proj.weight') or name.endswith('m_proj.weight') else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        x = F.layer_norm(x, (x.size(-1),), self.ln_f.weight, None, 1e-5)
        return x @ self.wte.weight.t()  # (B, T, V), tied


def answer_mask(xy, is_key, is_value):
    """(B, T+1) tokens -> (B, T) bool: target j is the value after a query at j whose record lies in the window."""
    B, T1 = xy.shape
    m = np.zeros((B, T1 - 1), dtype=bool)
    for b in range(B):
        last = {}
        row = xy[b]
        for j in range(T1 - 1):
            t = int(row[j])
            if is_key[t]:
                if t in last and is_value[int(row[last[t] + 1])] and is_value[int(row[j + 1])]:
                    m[b, j] = True
                last[t] = j
    return m


def recall_by_distance(model, val, T, is_key, is_value, windows, bins):
    """Exact recall of the val stream's own queries inside windows of T + 1 tokens, per distance bin."""
    hits, counts = np.zeros(len(bins)), np.zeros(len(bins))
    step = max(1, (len(val) - T - 1) // windows)
    model.eval()
    with torch.no_grad():
        for w in range(windows):
            s = w * step
            xy = val[s:s + T + 1].astype(np.int64)
            x = torch.from_numpy(xy[:-1])[None]
            pred = model(x)[0].argmax(-1).numpy()
            last = {}
            for j in range(T):
                t = int(xy[j])
                if is_key[t]:
                    if t in last and is_value[int(xy[last[t] + 1])] and last[t] + 1 < j:
                        d = j - last[t] - 2
                        bi = np.searchsorted(bins, d, side='right') - 1
                        counts[bi] += 1
                        hits[bi] += pred[j] == xy[last[t] + 1]
                    last[t] = j
    model.train()
    return hits, counts


def make_optimizer(model, lr, beta2, wd):
    """AdamW with weight decay on the matrices only (nanoGPT's grouping)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{'params': decay, 'weight_decay': wd}, {'params': nodecay, 'weight_decay': 0.0}],
                             lr=lr, betas=(0.9, beta2))


def lr_schedule(lr, min_lr, warmup, iters):
    """Linear warm-up, then cosine decay from lr to min_lr at iters (nanoGPT's get_lr)."""
    def lr_at(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        r = min(1.0, (it - warmup) / max(1, iters - warmup))
        return min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (lr - min_lr)
    return lr_at


def sample_batch(train, rng, block, batch):
    """batch random windows of block + 1 tokens: (x, y) as int64 tensors, and the windows as a numpy array."""
    ix = rng.integers(0, len(train) - block - 1, batch)
    xy = np.stack([train[i:i + block + 1].astype(np.int64) for i in ix])
    return torch.from_numpy(xy[:, :-1]), torch.from_numpy(xy[:, 1:]), xy


def step(model, opt, loss, lr):
    """One optimizer step at learning rate lr, gradients clipped at norm 1."""
    for g in opt.param_groups:
        g['lr'] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--block', type=int, default=256)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--width', type=int, default=64)
    ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--min-lr', type=float, default=None)
    ap.add_argument('--beta2', type=float, default=0.99)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--iters', type=int, default=2000)
    ap.add_argument('--warmup', type=int, default=100)
    ap.add_argument('--rope', action='store_true')
    ap.add_argument('--loss', choices=['all', 'targets', 'answers'], default='all')
    ap.add_argument('--targets', default='', help='token ids A-B (inclusive) for --loss targets')
    ap.add_argument('--eval-every', type=int, default=250)
    ap.add_argument('--windows', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--max-seconds', type=float, default=1e9)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    meta = json.load(open(os.path.join(a.data, 'meta.json')))
    syms = meta['tokenizer']['symbols']
    V = len(syms)
    is_key = np.array([0x100 <= ord(s) < 0x200 for s in syms])
    is_value = np.array([0x400 <= ord(s) < 0x600 for s in syms])  # values and answers
    train = np.memmap(os.path.join(a.data, 'train.bin'), dtype=np.uint16, mode='r')
    val = np.array(np.memmap(os.path.join(a.data, 'val.bin'), dtype=np.uint16, mode='r'))
    tgt = None
    if a.loss == 'targets':
        lo, hi = (int(t) for t in a.targets.split('-'))
        tgt = torch.zeros(V, dtype=torch.bool)
        tgt[lo:hi + 1] = True
    model = TinyGpt(V, a.block, a.layers, a.width, a.heads, a.rope)
    opt = make_optimizer(model, a.lr, a.beta2, a.wd)
    lr_at = lr_schedule(a.lr, a.min_lr if a.min_lr is not None else a.lr / 10, a.warmup, a.iters)
    bins = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096])

    t0 = time.time()
    print(f'# {vars(a)}', flush=True)
    for it in range(a.iters + 1):
        if it % a.eval_every == 0 or it == a.iters:
            h, c = recall_by_distance(model, val, a.block, is_key, is_value, a.windows, bins)
            cells = ' '.join(f'{bins[i]}+:{100 * h[i] / c[i]:.0f}%({int(c[i])})' for i in range(len(bins)) if c[i] > 0)
            print(f'step {it} recall {cells}  [{time.time() - t0:.0f}s]', flush=True)
        if it == a.iters or time.time() - t0 > a.max_seconds:
            break
        x, y, xy = sample_batch(train, rng, a.block, a.batch)
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction='none').view_as(y)
        if a.loss == 'all':
            m = torch.ones_like(y, dtype=torch.bool)
        elif a.loss == 'targets':
            m = tgt[y]
        else:
            m = torch.from_numpy(answer_mask(xy, is_key, is_value))
        loss = (ce * m).sum() / m.sum().clamp(min=1)
        step(model, opt, loss, lr_at(it))
        if it % 50 == 0:
            am = ce[torch.from_numpy(answer_mask(xy, is_key, is_value))]
            print(f'it {it} loss {loss.item():.4f} answer-loss {am.mean().item() if am.numel() else float("nan"):.3f} '
                  f'lr {lr_at(it):.2e} [{time.time() - t0:.0f}s]', flush=True)


if __name__ == '__main__':
    main()
