#!/usr/bin/python3
"""Independent PyTorch check of the copying probe (`nanosparse copy-data`).

Trains the same minimal nanoGPT-shaped model as tools/recall_reference.py (TinyGpt: learned positions, optional RoPE in
GPT-NeoX's half-split layout, pre-LN, bias-free, GELU MLP of 4x, lm_head tied to wte, AdamW with weight decay 0.1 on
matrices, warm-up then cosine decay, clipping at 1) on a copy dataset's train.bin (loss on every position, as
NanoSparse's default) and measures copy accuracy against distance on val.bin the way `eval --probe copy` does: windows
of block + 1 tokens at evenly spaced offsets; a target in a repeat from its second token on whose source (D positions
before its input token) lies inside the window counts, right when the argmax is the copied token. The copy distances
are found here from the tokens alone ('|' separator, optional '.' fillers), independently of the C# code.

Usage (Debian's torch 1.13):
  /usr/bin/python3 tools/copy_reference.py --data data/copy-a16 --block 64 --batch 16 --layers 2 --width 64 --heads 2 \
      --lr 1e-3 --iters 2000 --warmup 100 --rope [--edges 2 4 8 16 32] [--windows 128] [--threads 1]
"""
import argparse, json, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recall_reference import TinyGpt, make_optimizer, lr_schedule, sample_batch, step  # noqa: E402  (the same model and loop pieces, written once)


def copy_distances(tokens, filler):
    """Per token: D where it is a repeat's token from the second on, else 0 (stretches cut by the file's ends skipped)."""
    d = np.zeros(len(tokens), dtype=np.int64)
    seps = np.flatnonzero(tokens == 0)
    for a, b in zip(seps[:-1], seps[1:]):
        st = tokens[a + 1:b]
        n = len(st)
        if n == 0:
            continue
        fill = np.flatnonzero(st == filler) if filler is not None else np.array([], dtype=np.int64)
        gap = len(fill)
        r = (n - gap) // 2
        if r < 1 or 2 * r + gap != n or (gap and (fill[0] != r or fill[-1] != r + gap - 1)) or \
                not np.array_equal(st[:r], st[r + gap:]):
            raise ValueError(f'stretch at {a + 1}..{b - 1} is not run, fillers, repeat')
        D = r + gap
        d[a + 1 + D + 1:a + 1 + D + r] = D
    return d


def accuracy(model, val, dist, T, windows, edges):
    hits, counts = np.zeros(len(edges)), np.zeros(len(edges))
    step = max(1, (len(val) - T - 1) // windows)
    model.eval()
    with torch.no_grad():
        for w in range(windows):
            s = w * step
            x = torch.from_numpy(val[s:s + T].astype(np.int64))[None]
            pred = model(x)[0].argmax(-1).numpy()
            for j in range(T):
                p = s + j + 1
                D = dist[p]
                if D == 0 or p - 1 - D < s or D < edges[0]:
                    continue
                k = np.searchsorted(edges, D, side='right') - 1
                counts[k] += 1
                hits[k] += pred[j] == val[p]
    model.train()
    return hits, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--block', type=int, default=64)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--width', type=int, default=64)
    ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--beta2', type=float, default=0.99)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--iters', type=int, default=2000)
    ap.add_argument('--warmup', type=int, default=100)
    ap.add_argument('--rope', action='store_true')
    ap.add_argument('--edges', type=int, nargs='+', default=[2, 4, 8, 16, 32])
    ap.add_argument('--eval-every', type=int, default=500)
    ap.add_argument('--windows', type=int, default=128)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=1337)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    syms = json.load(open(os.path.join(a.data, 'meta.json')))['tokenizer']['symbols']
    if syms[0] != '|':
        sys.exit(f'{a.data}/meta.json: not a copy dataset (symbol 0 is {syms[0]!r}, expected "|")')
    filler = 1 if syms[1] == '.' else None
    V = len(syms)
    train = np.memmap(os.path.join(a.data, 'train.bin'), dtype=np.uint16, mode='r')
    val = np.array(np.memmap(os.path.join(a.data, 'val.bin'), dtype=np.uint16, mode='r')).astype(np.int64)
    dist = copy_distances(val, filler)
    edges = np.array(a.edges)
    model = TinyGpt(V, a.block, a.layers, a.width, a.heads, a.rope)
    opt = make_optimizer(model, a.lr, a.beta2, a.wd)
    lr_at = lr_schedule(a.lr, a.lr / 10, a.warmup, a.iters)

    t0 = time.time()
    print(f'# {vars(a)}', flush=True)
    for it in range(a.iters + 1):
        if it % a.eval_every == 0 or it == a.iters:
            h, c = accuracy(model, val, dist, a.block, a.windows, edges)
            cells = ' '.join(f'{edges[i]}+:{100 * h[i] / c[i]:.1f}%({int(c[i])})' for i in range(len(edges)) if c[i] > 0)
            print(f'step {it} copy {cells}  [{time.time() - t0:.0f}s]', flush=True)
        if it == a.iters:
            break
        x, y, _ = sample_batch(train, rng, a.block, a.batch)
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        step(model, opt, loss, lr_at(it))
        if it % 100 == 0:
            print(f'it {it} loss {loss.item():.4f} lr {lr_at(it):.2e} [{time.time() - t0:.0f}s]', flush=True)


if __name__ == '__main__':
    main()
