#!/usr/bin/env python3
"""Where RigL's regrowth would go, read from finished DST runs (issue 19: why RigL trails SET).

    /usr/bin/python3 tools/dst-regrowth-analysis.py --nanogpt /tmp/ng --data data/brown [--drop 0.3] RUN_DIR...

For each run folder (a `medium`-shaped NanoSparse run whose block weights are CSR; embeddings tied) it prints
  1. the layout: per block weight, rows and columns without weights, the spread of per-row counts (coefficient of
     variation, max), and for c_attn the weights held by its Q, K and V thirds;
  2. the RigL rule applied once to this checkpoint with drop fraction --drop: the dense gradient dL/dW of every block
     weight is taken by PyTorch on nanoGPT's model.py (the checkpoint densified, zeros where nothing is stored) over two
     training batches of 16 x block_size, the k = round(f * nnz) smallest magnitudes are dropped and the k largest |g|
     among every position not kept are grown (Evci et al. 2020, Algorithm 1). Reported: the share of the grown
     positions that were just dropped (what the paper lets back and the pre-fix implementation did not), how many rows
     the grown positions fall in, and for c_attn the share going to Q, K and V with their mean |g|.
The model is rebuilt independently of NanoSparse (only the checkpoint's tensors are read), so the gradient is a
reference, not a copy of ours. Needs numpy and torch (Debian's torch 1.13 works; nanoGPT warns about slow attention).
"""
import argparse, json, struct, sys
import numpy as np


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    dtypes = {'F32': np.float32, 'I32': np.int32, 'U16': np.uint16, 'U32': np.uint32, 'I64': np.int64}
    tensors = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        tensors[name] = np.frombuffer(blob[a:b], dtype=dtypes[info['dtype']]).reshape(info['shape'])
    return header.get('__metadata__', {}), tensors


def csr_weights(meta, tensors):
    """name -> (dense values (out, in), 0/1 mask) for every CSR block weight."""
    out = {}
    for key, fmt in meta.items():
        if not key.endswith('.format') or fmt != 'csr':
            continue
        name = key[:-len('.format')]
        rows_n, cols_n = json.loads(meta[name + '.shape'])
        rp = tensors[name + '.row_ptr'].astype(np.int64)
        ci = tensors[name + '.col_indices'].astype(np.int64)
        rows = np.repeat(np.arange(rows_n), np.diff(rp))
        dense = np.zeros((rows_n, cols_n), np.float32)
        dense[rows, ci] = tensors[name + '.values']
        mask = np.zeros((rows_n, cols_n), bool)
        mask[rows, ci] = True
        out[name] = (dense, mask)
    return out


def thirds(x):
    a = x.shape[0] // 3
    return [x[i * a:(i + 1) * a] for i in range(3)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('runs', nargs='+')
    ap.add_argument('--nanogpt', required=True, help="a nanoGPT checkout (its model.py)")
    ap.add_argument('--data', required=True, help="the dataset folder (train.bin, meta.json)")
    ap.add_argument('--drop', type=float, default=0.3)
    ap.add_argument('--batches', type=int, default=2)
    ap.add_argument('--seed', type=int, default=1)
    args = ap.parse_args()
    import torch
    sys.path.insert(0, args.nanogpt)
    from model import GPT, GPTConfig
    torch.set_num_threads(1)
    data_meta = json.load(open(f'{args.data}/meta.json'))
    data = np.memmap(f'{args.data}/train.bin', dtype=np.uint16 if data_meta.get('dtype', 'uint16') == 'uint16' else np.uint32, mode='r')

    for run in args.runs:
        meta, t = load_safetensors(f'{run}/model.safetensors')
        weights = csr_weights(meta, t)
        n_layer = 1 + max(int(k.split('.')[2]) for k in weights)
        n_embd = t['transformer.wte.weight'].shape[1]
        vocab = t['transformer.wte.weight'].shape[0]
        block = t['transformer.wpe.weight'].shape[0]
        heads = 8
        print(f'== {run}: {n_layer} layers, n_embd {n_embd}, block {block}, vocab {vocab}')
        print('  layout: weight | empty rows | row-count cv, max | empty cols | Q/K/V weights (c_attn)')
        for name, (w, m) in weights.items():
            rc = m.sum(1); cc = m.sum(0)
            qkv = '/'.join(str(int(p.sum())) for p in thirds(m)) if 'c_attn' in name else ''
            print(f'    {name:36s} {int((rc == 0).sum()):4d}/{m.shape[0]:<5d} {rc.std() / rc.mean():5.2f} {int(rc.max()):4d} '
                  f'{int((cc == 0).sum()):4d}/{m.shape[1]:<5d} {qkv}')

        model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=heads, n_embd=n_embd, dropout=0.0, bias=False))
        sd = model.state_dict()
        for k in sd:
            if k.endswith('.attn.bias'):
                continue   # nanoGPT's causal mask buffer
            sd[k] = torch.tensor(np.array(weights[k][0] if k in weights else t[k]))
        model.load_state_dict(sd)
        model.zero_grad()
        rng = np.random.default_rng(args.seed)
        for _ in range(args.batches):
            ix = rng.integers(0, len(data) - block - 1, 16)
            x = torch.tensor(np.stack([data[i:i + block] for i in ix]).astype(np.int64))
            y = torch.tensor(np.stack([data[i + 1:i + 1 + block] for i in ix]).astype(np.int64))
            _, loss = model(x, y)
            loss.backward()
        params = dict(model.named_parameters())
        total_k = total_back = 0
        lines = []
        for name, (w0, m) in weights.items():
            w = params[name].detach().numpy(); g = params[name].grad.numpy()
            active = np.flatnonzero(m.ravel()); nnz = len(active); k = int(round(args.drop * nnz))
            order = np.lexsort((active, np.abs(w.ravel()[active])))   # smallest |w|, ties to the lower position
            dropped = active[order[:k]]
            candidate = ~m.ravel(); candidate[dropped] = True
            score = np.where(candidate, np.abs(g.ravel()), -np.inf)
            grown = np.argsort(-score, kind='stable')[:k]
            back = int(np.isin(grown, dropped).sum()); total_k += k; total_back += back
            rows = grown // w.shape[1]
            rowcnt = np.bincount(rows, minlength=w.shape[0])
            top = np.sort(rowcnt)[::-1][:max(1, w.shape[0] // 10)].sum() / max(1, k)
            line = (f'    {name:36s} k {k:6d}  just-dropped regrown {back / max(1, k):6.1%}  rows used {int((rowcnt > 0).sum())}/{w.shape[0]}'
                    f'  top 10% of rows take {top:5.1%}')
            if 'c_attn' in name:
                a = w.shape[0] // 3
                share = '/'.join(f'{np.mean((rows >= i * a) & (rows < (i + 1) * a)):.0%}' for i in range(3))
                gm = '/'.join(f'{np.abs(p).mean():.2e}' for p in thirds(g))
                line += f'  Q/K/V grown {share}, mean |g| {gm}'
            lines.append(line)
        print(f'  RigL rule at drop {args.drop} (loss {loss.item():.4f} on the last batch): just-dropped positions among the grown '
              f'{total_back}/{total_k} = {total_back / max(1, total_k):.1%}')
        print('\n'.join(lines))


if __name__ == '__main__':
    main()
