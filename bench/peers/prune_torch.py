"""Wanda and SparseGPT in PyTorch on a nanoGPT-format model, the peer that NanoSparse's pruning is compared with.

Written from the papers' algorithms (Sun et al. 2024, "A Simple and Effective Pruning Approach for Large Language
Models"; Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"):

- calibration windows pass through the model block by block, as both papers do: the inputs of block i are the
  outputs of blocks 0..i-1 already pruned; within a block, every Linear's inputs are recorded in one forward pass of
  the block as it was before pruning (c_attn, attn.c_proj, c_fc, mlp.c_proj), then the four are pruned, then the
  block's outputs are computed again with the pruned weights;
- Wanda: score |W_ij| * ||X_j||_2 over the calibration tokens, the lowest int(in * sparsity) of each output row
  removed (N:M: the M-N lowest of every group of M inputs of a row); no weight update;
- SparseGPT: H = 2/n X^T X; dead inputs (H_ii = 0) get H_ii = 1 and W[:, i] = 0; H += 1% of mean(diag H) * I;
  U = upper Cholesky factor of H^-1; columns in blocks of 128: the block's mask (unstructured: the lowest
  w^2 / U_jj^2 over the whole block, so many that the pruned count after the block is int(rows * end * sparsity);
  N:M: per row, the M-N lowest of each group when the group starts), each column's error err = (w - q) / U_ii
  spread over the block's later columns, then over the columns after the block in one product (lazy batch update).
  Arithmetic in float64 unless --fp32.

The windows (which token offsets calibrate and which evaluate) come from a JSON file shared with NanoSparse
(README.md beside this file: "windows file"); --write-windows makes one.

With --ours CMD, each block's layers and their recorded inputs are also handed to NanoSparse
(`CMD --layers IN --out OUT ...`, i.e. `nanosparse bench prune-layers`), and the script reports per layer how far
NanoSparse's masks and pruned weights are from its own on the same inputs, and the time of each. --driver ours puts
NanoSparse's pruned weights (instead of its own) into the model that feeds the next block and is evaluated.

The last stdout line is one JSON object (val loss and perplexity dense and pruned, per-layer agreement and times).

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 bench/peers/prune_torch.py --model DIR --data data/brown
     --windows windows.json --method sparsegpt --sparsity 0.5 [--pattern 2:4] [--ours "nanosparse bench prune-layers"]
"""

import argparse
import copy
import json
import math
import os
import shlex
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sample_torch import read_safetensors  # noqa: E402
from torch_gpt import GPT, GPTConfig  # noqa: E402

LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


# ----------------------------------------------------------------------------------------------- files

def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer (F32 and U8), atomic: temp file in the same folder, then rename."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}.get(arr.dtype)
        if dtype is None:
            arr, dtype = arr.astype(np.float32), "F32"
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header).encode("utf-8")
    raw += b" " * ((8 - (8 + len(raw)) % 8) % 8)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_tensors(path):
    """The F32 and U8 tensors of a safetensors file (sample_torch's reader takes floats only)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": "<f4", "U8": "u1"}.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32 or U8")
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + b : 8 + n + e], dtype=dtype).reshape(info["shape"]).copy())
    return out


def read_model_args(model_dir):
    for name in ("config.json", "state.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            args = doc.get("model_args", doc)
            need = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
            missing = [k for k in need if k not in args]
            if missing:
                raise ValueError(f"{path}: model_args lacks {', '.join(missing)}")
            return args, path
    raise FileNotFoundError(f"{model_dir}: no config.json or state.json with model_args")


def load_model(model_dir):
    args, _ = read_model_args(model_dir)
    cfg = GPTConfig(block_size=args["block_size"], vocab_size=args["vocab_size"], n_layer=args["n_layer"],
                    n_head=args["n_head"], n_embd=args["n_embd"], dropout=0.0, bias=bool(args.get("bias", False)))
    model = GPT(cfg)
    path = os.path.join(model_dir, "model.safetensors")
    tensors = read_safetensors(path)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("attn.bias") or name == "lm_head.weight":
                continue
            if name not in tensors:
                raise ValueError(f"{path}: missing tensor {name}")
            if tuple(tensors[name].shape) != tuple(p.shape):
                raise ValueError(f"{path}: tensor {name} has shape {list(tensors[name].shape)}, expected {list(p.shape)}")
            p.copy_(tensors[name])
    model.eval()
    return model


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    dtype = str(meta.get("dtype", meta.get("Dtype", "uint16"))).lower()
    if dtype not in ("uint16", "uint32"):
        raise ValueError(f"{path}: field dtype is {dtype!r}, expected uint16 or uint32")
    return meta.get("vocab_size", meta.get("VocabSize")), np.dtype("<u2" if dtype == "uint16" else "<u4")


def write_windows(path, data_dir, block_size, calibration, val, seed):
    """A windows file: seeded uniform start offsets in [0, len - block_size) of train.bin and val.bin."""
    _, dtype = read_meta(data_dir)
    doc = {"format": "nanosparse-windows", "version": 1, "block_size": block_size, "seed": seed}
    rng = np.random.default_rng(seed)
    for split, count in (("calibration", calibration), ("val", val)):
        file = "train.bin" if split == "calibration" else "val.bin"
        n = len(np.memmap(os.path.join(data_dir, file), dtype=dtype, mode="r"))
        if n <= block_size + 1:
            raise ValueError(f"{os.path.join(data_dir, file)}: {n} tokens, expected more than block_size + 1 = {block_size + 1}")
        doc[split] = {"file": file, "starts": sorted(int(s) for s in rng.integers(0, n - block_size - 1, size=count))}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def read_windows(path, data_dir, block_size):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc.get("format") != "nanosparse-windows":
        raise ValueError(f"{path}: field format is {doc.get('format')!r}, expected 'nanosparse-windows'")
    if doc.get("block_size") != block_size:
        raise ValueError(f"{path}: field block_size is {doc.get('block_size')}, expected the model's {block_size}")
    _, dtype = read_meta(data_dir)
    out = {}
    for split in ("calibration", "val"):
        data = np.memmap(os.path.join(data_dir, doc[split]["file"]), dtype=dtype, mode="r")
        starts = doc[split]["starts"]
        for s in starts:
            if s < 0 or s + block_size + 1 > len(data):
                raise ValueError(f"{path}: {split} start {s} outside [0, {len(data) - block_size - 1}]")
        x = np.stack([data[s : s + block_size].astype(np.int64) for s in starts])
        y = np.stack([data[s + 1 : s + 1 + block_size].astype(np.int64) for s in starts])
        out[split] = (torch.from_numpy(x), torch.from_numpy(y))
    return out


# ----------------------------------------------------------------------------------------------- pruners

def wanda(w, x_norm_sq, target):
    """Wanda: |W| * ||X_j||; per output row (N:M: per group) the lowest removed. Returns (W pruned, kept mask)."""
    score = w.abs() * torch.sqrt(x_norm_sq).reshape(1, -1)
    keep = torch.ones_like(w, dtype=torch.bool)
    rows, cols = w.shape
    if target["m"]:
        n, m = target["n"], target["m"]
        groups = score.reshape(rows, cols // m, m)
        idx = torch.sort(groups, dim=2, stable=True)[1][:, :, : m - n]
        keep.reshape(rows, cols // m, m).scatter_(2, idx, False)
    else:
        k = int(cols * target["sparsity"])
        idx = torch.sort(score, dim=1, stable=True)[1][:, :k]
        keep.scatter_(1, idx, False)
    return w * keep, keep


def sparsegpt(w, gram, tokens, target, blocksize=128, percdamp=0.01, dtype=torch.float64):
    """SparseGPT (Algorithm 1 of the paper) on one layer. Returns (W pruned, kept mask)."""
    rows, cols = w.shape
    W = w.to(dtype).clone()
    H = gram.to(dtype) * (2.0 / tokens)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    keep = torch.ones((rows, cols), dtype=torch.bool)
    n, m = target["n"], target["m"]
    if m:
        blocksize = max(m, blocksize - blocksize % m)
    pruned = 0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        E = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d2 = torch.diag(U1) ** 2
        keep1 = keep[:, i1:i2].clone()
        if not m and target["sparsity"] > 0:
            cumulative = int(rows * i2 * target["sparsity"])
            k = cumulative - pruned
            pruned = cumulative
            if k > 0:
                score = (W1**2 / d2.reshape(1, -1)).flatten()
                idx = torch.sort(score, stable=True)[1][:k]
                keep1.view(-1)[idx] = False
        for i in range(i2 - i1):
            if m and (i1 + i) % m == 0:
                score = W1[:, i : i + m] ** 2 / d2[i : i + m].reshape(1, -1)
                idx = torch.sort(score, dim=1, stable=True)[1][:, : m - n]
                keep1[:, i : i + m].scatter_(1, idx, False)
            w_col = W1[:, i]
            q = w_col * keep1[:, i]
            err = (w_col - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            W1[:, i] = q
            E[:, i] = err
        W[:, i1:i2] = W1
        keep[:, i1:i2] = keep1
        W[:, i2:] -= E @ U[i1:i2, i2:]
    W = W * keep
    return W.to(w.dtype), keep


# ----------------------------------------------------------------------------------------------- driver

def parse_target(args):
    if args.pattern and args.pattern != "unstructured":
        n, m = (int(v) for v in args.pattern.split(":"))
        if not 1 <= n < m:
            raise ValueError(f"--pattern {args.pattern}: expected N:M with 1 <= N < M")
        return {"sparsity": 1 - n / m, "n": n, "m": m, "label": args.pattern}
    if not 0 <= args.sparsity < 1:
        raise ValueError(f"--sparsity {args.sparsity}: expected a value in [0, 1)")
    return {"sparsity": args.sparsity, "n": 0, "m": 0, "label": f"{args.sparsity:g}"}


@torch.no_grad()
def val_loss(model, xy, batch):
    x, y = xy
    total, count = 0.0, 0
    for b in range(0, len(x), batch):
        _, loss = model(x[b : b + batch], y[b : b + batch])
        total += loss.item() * x[b : b + batch].numel()
        count += x[b : b + batch].numel()
    return total / count


@torch.no_grad()
def run_block(block, inps, batch):
    return torch.cat([block(inps[b : b + batch]) for b in range(0, len(inps), batch)])


def record_inputs(block, inps, batch):
    """Runs the block over its inputs and returns (outputs, {linear: its inputs (tokens, in)})."""
    mods = {name: block.get_submodule(name) for name in LINEARS}
    recorded = {name: [] for name in mods}
    hooks = [mod.register_forward_hook(lambda _m, inp, _o, name=name: recorded[name].append(inp[0].reshape(-1, inp[0].shape[-1]).clone()))
             for name, mod in mods.items()]
    outs = run_block(block, inps, batch)
    for h in hooks:
        h.remove()
    return outs, {name: torch.cat(v) for name, v in recorded.items()}


def prune_peer(w, x, args, target):
    """One layer by the peer: (W pruned, kept mask, timings)."""
    t0, c0 = time.perf_counter(), time.process_time()
    if args.method == "wanda":
        pw, keep = wanda(w, (x.double() ** 2).sum(0), target)
        t1, c1 = t0, c0
    else:
        xd = x if args.fp32 else x.double()
        gram = xd.t() @ xd
        t1, c1 = time.perf_counter(), time.process_time()
        pw, keep = sparsegpt(w, gram, x.shape[0], target, args.block_size, args.dampening,
                             torch.float32 if args.fp32 else torch.float64)
    t2, c2 = time.perf_counter(), time.process_time()
    return pw, keep, {"peer_s": t2 - t0, "peer_stats_s": t1 - t0, "peer_prune_s": t2 - t1, "peer_cpu_s": c2 - c0}


def recon_err(x, dense, pruned):
    """||X W^T - X W_pruned^T||^2 over the tokens, through the Gram matrix (double)."""
    d = (dense.double() - pruned.double())
    g = x.double().t() @ x.double()
    return ((d @ g) * d).sum().item()


@torch.no_grad()
def prune_model(models, calib, args, target):
    """Prunes models["peer"] block by block with the peer; with --ours also NanoSparse's per-layer results, which go
    into models["ours"] (driver both: a second copy fed by its own pruned blocks) or into the one model (driver ours)."""
    T = calib.shape[1]
    pos = torch.arange(T)
    inps = {k: m.transformer.wte(calib) + m.transformer.wpe(pos) for k, m in models.items()}  # (N, T, C)
    layers_out, totals = [], {"peer_s": 0.0, "peer_cpu_s": 0.0, "ours_s": 0.0, "ours_cpu_s": 0.0}
    n_layer = len(models["peer"].transformer.h)
    for i in range(n_layer):
        blocks = {k: m.transformer.h[i] for k, m in models.items()}
        xs = {k: record_inputs(blocks[k], inps[k], args.batch)[1] for k in models}
        ours_key = "ours" if "ours" in models else "peer"
        ours = run_ours(args, target, {n: blocks[ours_key].get_submodule(n) for n in LINEARS}, xs[ours_key]) if args.ours else None
        for name in LINEARS:
            full = f"transformer.h.{i}.{name}"
            mod = blocks["peer"].get_submodule(name)
            x = xs["peer"][name]
            pw, keep, timing = prune_peer(mod.weight.data, x, args, target)
            entry = {"name": full, "shape": list(mod.weight.shape), "tokens": x.shape[0], **timing}
            totals["peer_s"] += timing["peer_s"]
            totals["peer_cpu_s"] += timing["peer_cpu_s"]
            line = f"{full}: peer {timing['peer_s'] * 1e3:.0f} ms (cpu {timing['peer_cpu_s'] * 1e3:.0f})"
            if ours is not None:
                ow, okeep, t = ours[name]
                entry.update({"ours_s": t["stats_s"] + t["prune_s"], "ours_stats_s": t["stats_s"], "ours_prune_s": t["prune_s"],
                              "ours_cpu_s": t["stats_cpu_s"] + t["prune_cpu_s"],
                              "same_inputs": ours_key == "peer" or i == 0,
                              "mask_agreement": (okeep == keep).double().mean().item(),
                              "weight_rel_diff": ((ow.double() - pw.double()).norm() / pw.double().norm()).item()})
                totals["ours_s"] += entry["ours_s"]
                totals["ours_cpu_s"] += entry["ours_cpu_s"]
                omod = blocks[ours_key].get_submodule(name)
                entry["recon_err_peer"] = recon_err(x, mod.weight.data, pw)
                entry["recon_err_ours"] = recon_err(xs[ours_key][name], omod.weight.data, ow)
                line += (f", ours {entry['ours_s'] * 1e3:.0f} ms (cpu {entry['ours_cpu_s'] * 1e3:.0f}), masks agree "
                         f"{entry['mask_agreement']:.5f}, weights rel diff {entry['weight_rel_diff']:.2e}")
                if ours_key == "ours":
                    omod.weight.data.copy_(ow)
                elif args.driver == "ours":
                    pw = ow
            mod.weight.data.copy_(pw)
            layers_out.append(entry)
            print(line, file=sys.stderr)
        inps = {k: run_block(blocks[k], inps[k], args.batch) for k in models}
    return layers_out, totals


def run_ours(args, target, mods, xs):
    with tempfile.TemporaryDirectory(prefix="prune_torch_") as tmp:
        src, dst = os.path.join(tmp, "layers.safetensors"), os.path.join(tmp, "pruned.safetensors")
        tensors = {}
        for name, mod in mods.items():
            tensors[f"{name}.weight"] = mod.weight.data.float()
            tensors[f"{name}.x"] = xs[name].float()
        write_safetensors(src, tensors)
        cmd = shlex.split(args.ours) + ["--layers", src, "--out", dst, "--method", args.method,
                                        "--block-size", str(args.block_size), "--dampening", str(args.dampening),
                                        "--threads", str(args.threads)]
        cmd += ["--pattern", target["label"]] if target["m"] else ["--sparsity", str(target["sparsity"])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(f"  ours: {time.perf_counter() - t0:.1f} s for the process (start-up, file read, pruning, write)", file=sys.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        tensors = read_tensors(dst)
        timing = {e["name"]: e for e in report["layers"]}
        return {name: (tensors[f"{name}.weight"], tensors[f"{name}.mask"].bool(), timing[name]) for name in mods}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model directory: model.safetensors (nanoGPT names) + config.json or state.json")
    ap.add_argument("--data", required=True, help="dataset directory (train.bin, val.bin, meta.json)")
    ap.add_argument("--windows", required=True, help="windows file (read; written first with --write-windows)")
    ap.add_argument("--write-windows", action="store_true", help="write --windows with seeded random starts and exit")
    ap.add_argument("--calibration-windows", type=int, default=128)
    ap.add_argument("--val-windows", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", choices=["wanda", "sparsegpt", "dense"], default="sparsegpt")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default=None, help="N:M, e.g. 2:4 (default unstructured)")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--dampening", type=float, default=0.01)
    ap.add_argument("--fp32", action="store_true", help="SparseGPT in float32 as the paper's code (default float64)")
    ap.add_argument("--batch", type=int, default=16, help="windows per forward")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ours", default=None, help="command that runs NanoSparse's per-layer pruning (nanosparse bench prune-layers)")
    ap.add_argument("--driver", choices=["peer", "ours", "both"], default="peer",
                    help="whose pruned weights feed the next block and are evaluated; both: two copies of the model, each fed by its own pruned blocks")
    ap.add_argument("--save", default=None, help="write the pruned weights (nanoGPT names) to this safetensors file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.write_windows:
        margs, _ = read_model_args(args.model)
        write_windows(args.windows, args.data, margs["block_size"], args.calibration_windows, args.val_windows, args.seed)
        print(json.dumps({"windows": args.windows}))
        return
    if args.driver != "peer" and not args.ours:
        raise ValueError(f"--driver {args.driver} needs --ours CMD")
    model = load_model(args.model)
    windows = read_windows(args.windows, args.data, model.config.block_size)
    vocab, _ = read_meta(args.data)
    if vocab != model.config.vocab_size:
        raise ValueError(f"{args.data}/meta.json: vocab_size {vocab}, expected the model's {model.config.vocab_size}")
    target = parse_target(args)
    dense_loss = val_loss(model, windows["val"], args.batch)
    result = {"method": args.method, "target": target["label"], "driver": args.driver, "threads": args.threads,
              "calibration_windows": len(windows["calibration"][0]), "val_windows": len(windows["val"][0]),
              "dense_val_loss": dense_loss, "dense_ppl": math.exp(dense_loss)}
    if args.method != "dense":
        models = {"peer": model}
        if args.driver == "both":
            models["ours"] = copy.deepcopy(model)
        t0 = time.perf_counter()
        layers, totals = prune_model(models, windows["calibration"][0], args, target)
        result["wall_s"] = time.perf_counter() - t0
        result.update({f"layers_{k}": v for k, v in totals.items()})
        for key, m in models.items():
            loss = val_loss(m, windows["val"], args.batch)
            label = "pruned" if len(models) == 1 else key
            result[f"{label}_val_loss"], result[f"{label}_ppl"] = loss, math.exp(loss)
            zeros = sum((m.transformer.h[i].get_submodule(n).weight == 0).sum().item() for i in range(len(m.transformer.h)) for n in LINEARS)
            total = sum(m.transformer.h[i].get_submodule(n).weight.numel() for i in range(len(m.transformer.h)) for n in LINEARS)
            result[f"{label}_sparsity_reached"] = zeros / total
        if len(models) == 2:
            result["ppl_ratio_ours_over_peer"] = result["ours_ppl"] / result["peer_ppl"]
        result["layers"] = layers
        if args.save:
            write_safetensors(args.save, {k: v for k, v in models["peer"].state_dict().items() if not k.endswith("attn.bias")})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
