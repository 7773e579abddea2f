"""Exports nanoGPT's GPT as an ONNX decode-step graph with a KV cache and checks it; prints one JSON object.

The graph is torch_gpt.KvCacheGPT traced by torch.onnx.export (opset 17):
  inputs   idx (1, t) int64, past_key_I and past_value_I (1, n_head, past, head_size) float32 for I < n_layer
  outputs  logits (1, vocab) of the last position, present_key_I and present_value_I (1, n_head, past + t, head_size)
with t and past dynamic, so one graph runs the prefill (empty past) and every decode step (t = 1; the presents become
the next step's pasts). lm_head is tied to wte as in nanoGPT (the exporter stores wte and its transpose).

The weights are a NanoSparse checkpoint exported as nanoGPT (`nanosparse export --format nanogpt`: a directory with
model.safetensors and config.json; sparse weights arrive dense with zeros), or random nanoGPT-init weights of a preset.

The check runs the exported graph on a random prompt (prefill) and one decode step after it with an evaluator written
here in NumPy (onnxruntime's Python package is not needed, and onnx 1.12 has no reference evaluator), independently of
PyTorch, and compares its logits and presents with PyTorch's: the script fails if any differs by more than --tolerance.

Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 bench/peers/export_onnx.py --checkpoint out/nanogpt --out out/model.onnx
Needs Debian's python3-torch and python3-onnx (apt-get install python3-torch python3-onnx) and SciPy (erf).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import BROWN_CHAR_VOCAB, GPT, PRESETS, GPTConfig, KvCacheGPT  # noqa: E402

OPSET = 17


def io_names(n_layer):
    past = [f"past_{kv}_{i}" for i in range(n_layer) for kv in ("key", "value")]
    present = [f"present_{kv}_{i}" for i in range(n_layer) for kv in ("key", "value")]
    return ["idx"] + past, ["logits"] + present


def build_model(args):
    if args.checkpoint:
        with open(os.path.join(args.checkpoint, "config.json")) as f:
            c = json.load(f)
        missing = [k for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if k not in c]
        if missing:
            raise ValueError(f"{args.checkpoint}/config.json: missing field(s) {', '.join(missing)} (expected a nanoGPT config)")
        config = GPTConfig(block_size=c["block_size"], vocab_size=c["vocab_size"], n_layer=c["n_layer"], n_head=c["n_head"],
                           n_embd=c["n_embd"], dropout=0.0, bias=bool(c.get("bias", False)))
    else:
        p = PRESETS[args.preset]
        config = GPTConfig(block_size=p["block_size"], vocab_size=args.vocab, n_layer=args.n_layer or p["n_layer"],
                           n_head=p["n_head"], n_embd=p["n_embd"], dropout=0.0, bias=p["bias"])
    torch.manual_seed(args.seed)
    gpt = GPT(config)
    if args.checkpoint:
        from sample_torch import load_checkpoint  # noqa: E402  (the peers' safetensors reader)

        with torch.no_grad():
            load_checkpoint(gpt, os.path.join(args.checkpoint, "model.safetensors"))
    return KvCacheGPT(gpt).eval()


def export(model, path):
    cfg = model.gpt.config
    names_in, names_out = io_names(cfg.n_layer)
    hs = cfg.n_embd // cfg.n_head
    # Trace with a non-empty past and t > 1 so neither length is specialised away.
    idx = torch.randint(0, cfg.vocab_size, (1, 2))
    past = [torch.randn(1, cfg.n_head, 3, hs) for _ in range(2 * cfg.n_layer)]
    axes = {"idx": {1: "new_tokens"}}
    axes.update({n: {2: "past_length"} for n in names_in[1:]})
    axes.update({n: {2: "total_length"} for n in names_out[1:]})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer warns about shapes turned into tensors: they are dynamic on purpose
        torch.onnx.export(model, (idx, *past), path, input_names=names_in, output_names=names_out, dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True)
    # The exporter writes a bias-free LayerNorm as LayerNormalization(X, scale, "") with an empty third input; ONNX
    # Runtime's SkipLayerNormFusion (optimization level all, still in 1.32) dereferences that empty input and crashes the
    # process (microsoft/onnxruntime#18967). Dropping trailing empty optional inputs is the same graph by the ONNX spec.
    import onnx

    proto = onnx.load(path)
    for node in proto.graph.node:
        while len(node.input) > 0 and node.input[-1] == "":
            node.input.pop()
    onnx.save(proto, path)


# ---- a NumPy evaluator for the operators this exporter emits (ONNX operator semantics at opset 17) ----

def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _op(node, x):
    from scipy.special import erf

    t = node.op_type
    if t == "Constant":
        import onnx.numpy_helper as nh

        return [nh.to_array(_attr(node, "value"))]
    if t == "Identity":
        return [x[0]]
    if t in ("Add", "Sub", "Mul", "Div"):
        a, b = x
        if t == "Div" and np.issubdtype(a.dtype, np.integer):
            return [np.floor_divide(a, b)]  # integer Div truncates; only non-negative shapes reach it here
        return [{"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[t](a, b).astype(np.result_type(a, b))]
    if t == "MatMul":
        return [np.matmul(x[0], x[1])]
    if t == "Greater":
        return [np.greater(x[0], x[1])]
    if t == "Where":
        return [np.where(x[0], x[1], x[2])]
    if t == "Erf":
        return [erf(x[0]).astype(x[0].dtype)]
    if t == "Softmax":
        axis = _attr(node, "axis", -1)
        e = np.exp(x[0] - np.max(x[0], axis=axis, keepdims=True))
        return [e / np.sum(e, axis=axis, keepdims=True)]
    if t == "LayerNormalization":
        axis = _attr(node, "axis", -1)
        eps = _attr(node, "epsilon", 1e-5)
        xx = x[0].astype(np.float64)
        axes = tuple(range(axis % xx.ndim, xx.ndim))
        mean = xx.mean(axis=axes, keepdims=True)
        var = ((xx - mean) ** 2).mean(axis=axes, keepdims=True)
        y = (xx - mean) / np.sqrt(var + eps) * x[1]
        if len(x) > 2 and x[2] is not None:
            y = y + x[2]
        return [y.astype(x[0].dtype)]
    if t == "Gather":
        return [np.take(x[0], x[1], axis=_attr(node, "axis", 0))]
    if t == "Shape":
        return [np.array(x[0].shape, dtype=np.int64)]
    if t == "Cast":
        import onnx

        return [x[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[_attr(node, "to")])]
    if t == "Unsqueeze":
        y = x[0]
        for a in sorted(int(v) % (y.ndim + len(x[1])) for v in x[1]):
            y = np.expand_dims(y, a)
        return [y]
    if t == "Concat":
        return [np.concatenate(x, axis=_attr(node, "axis"))]
    if t == "Reshape":
        shape = [x[0].shape[i] if s == 0 else int(s) for i, s in enumerate(x[1])]
        return [x[0].reshape(shape)]
    if t == "Transpose":
        return [np.transpose(x[0], _attr(node, "perm"))]
    if t == "Range":
        return [np.arange(x[0], x[1], x[2]).astype(x[0].dtype)]
    if t == "Split":
        axis = _attr(node, "axis", 0)
        sizes = x[1] if len(x) > 1 and x[1] is not None else [x[0].shape[axis] // len(node.output)] * len(node.output)
        return np.split(x[0], np.cumsum(sizes)[:-1], axis=axis)
    raise NotImplementedError(f"the NumPy evaluator has no operator {t}; extend _op in {os.path.basename(__file__)}")


def run_numpy(graph, feeds):
    """Runs an ONNX graph node by node (nodes are in topological order, as the format requires)."""
    import onnx.numpy_helper as nh

    values = {init.name: nh.to_array(init) for init in graph.initializer}
    values.update(feeds)
    for node in graph.node:
        ins = [values[n] if n else None for n in node.input]
        for name, value in zip(node.output, _op(node, ins)):
            values[name] = np.asarray(value)
    return [values[o.name] for o in graph.output]


def check(model, path, tolerance, prompt_len, seed):
    """Prefill on a random prompt, then one decode step: the graph run in NumPy against PyTorch, logits and presents."""
    import onnx

    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    cfg = model.gpt.config
    names_in, _ = io_names(cfg.n_layer)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (1, prompt_len), generator=g)
    past = model.empty_past()
    report = {}
    for step, idx in (("prefill", prompt), ("decode", None)):
        if idx is None:
            idx = torch.randint(0, cfg.vocab_size, (1, 1), generator=g)
        with torch.no_grad():
            ref = model(idx, *past)
        feeds = {"idx": idx.numpy().astype(np.int64)}
        feeds.update({n: p.numpy() for n, p in zip(names_in[1:], past)})
        got = run_numpy(proto.graph, feeds)
        diffs = [float(np.max(np.abs(r.numpy() - o))) if r.numel() else 0.0 for r, o in zip(ref, got)]
        shapes_ok = all(tuple(r.shape) == o.shape for r, o in zip(ref, got))
        scale = max(1.0, float(ref[0].abs().max()))
        report[step] = {"tokens": int(idx.size(1)), "past": int(past[0].size(2)), "logits_max_abs_diff": diffs[0],
                        "presents_max_abs_diff": max(diffs[1:]), "shapes_equal": shapes_ok}
        if not shapes_ok or max(diffs) > tolerance * scale:
            raise SystemExit(f"{path}: the ONNX graph's {step} differs from PyTorch's (max |diff| logits {diffs[0]:.3g}, "
                             f"presents {max(diffs[1:]):.3g}, shapes equal {shapes_ok}); expected at most {tolerance:g}")
        # The cache itself against nanoGPT's forward over the whole sequence without one.
        seq = idx if step == "prefill" else torch.cat([prompt, idx], dim=1)
        with torch.no_grad():
            full = model.gpt(seq)[0][:, -1, :]
        report[step]["kv_cache_vs_full_forward_max_abs_diff"] = float((full - ref[0]).abs().max())
        if report[step]["kv_cache_vs_full_forward_max_abs_diff"] > tolerance * scale:
            raise SystemExit(f"KvCacheGPT's {step} logits differ from GPT.forward's by {report[step]['kv_cache_vs_full_forward_max_abs_diff']:.3g}")
        past = list(ref[1:])
    return report


def time_decode(model, prompt_len, new_tokens, repeats):
    """PyTorch's own KV-cache decode loop on the same module: prefill the prompt, then one token a step, each step's
    presents fed back as the next pasts. The next token is picked from the logits' bits (as NanoSparse's bench does):
    the work is a greedy/sampled decode's without timing a sampler. Wall and CPU time (all threads of this process)."""
    V = model.gpt.config.vocab_size
    prompt = torch.tensor([[(i * 7 + 3) % V for i in range(prompt_len)]], dtype=torch.long)

    def generate(steps=new_tokens):
        with torch.no_grad():
            out = model(prompt, *model.empty_past())
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(steps):
                bits = int(out[0][0, i % V].numpy().view(np.uint32))
                out = model(torch.tensor([[bits % V]], dtype=torch.long), *out[1:])
            return time.perf_counter() - t0, time.process_time() - c0

    generate(min(16, new_tokens))  # warm-up (eager PyTorch has nothing to compile: a few steps touch every weight)
    runs = [generate() for _ in range(repeats)]
    return {"seconds": [round(w, 4) for w, _ in runs], "tokens_per_s": [new_tokens / w for w, _ in runs],
            "cpu_seconds": [round(c, 4) for _, c in runs], "tokens_per_cpu_s": [new_tokens / c for _, c in runs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="directory with model.safetensors (nanoGPT names) and config.json; default: random weights")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-124m", help="shape of the random model (without --checkpoint)")
    ap.add_argument("--n-layer", type=int, help="n_layer of the random model (default: the preset's)")
    ap.add_argument("--vocab", type=int, default=BROWN_CHAR_VOCAB, help="vocabulary of the random model")
    ap.add_argument("--out", help="path of the .onnx file (default: a temporary file, removed after the check)")
    ap.add_argument("--check-prompt", type=int, default=16, help="random prompt length of the check")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest |ONNX - PyTorch| allowed, relative to max(1, max |logit|)")
    ap.add_argument("--time-decode", action="store_true", help="also time PyTorch's KV-cache decode loop on the same model")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens before decoding (--time-decode)")
    ap.add_argument("--new-tokens", type=int, default=256, help="tokens decoded one at a time (--time-decode)")
    ap.add_argument("--repeats", type=int, default=1, help="timed generations (--time-decode)")
    ap.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (set OPENBLAS_NUM_THREADS alike)")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    if args.threads < 1 or args.repeats < 1 or args.prompt < 1 or args.new_tokens < 1 or args.check_prompt < 1:
        ap.error(f"need threads, repeats, prompt, new-tokens and check-prompt >= 1; got {vars(args)}")
    torch.set_num_threads(args.threads)

    model = build_model(args)
    cfg = model.gpt.config
    if args.check_prompt + 1 > cfg.block_size:
        ap.error(f"--check-prompt {args.check_prompt} + 1 must fit block_size {cfg.block_size}")
    if args.time_decode and args.prompt + args.new_tokens > cfg.block_size:
        ap.error(f"--prompt {args.prompt} + --new-tokens {args.new_tokens} must fit block_size {cfg.block_size}")
    result = {"torch_version": torch.__version__, "opset": OPSET, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "n_embd": cfg.n_embd, "block_size": cfg.block_size, "vocab_size": cfg.vocab_size, "checkpoint": args.checkpoint}
    if args.out or not args.time_decode:
        # Written beside --out and renamed only after the check: --out never holds a graph that failed it.
        scratch = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(args.out)) if args.out else None)
        try:
            t0 = time.perf_counter()
            tmp = os.path.join(scratch, "model.onnx")
            export(model, tmp)
            result["check"] = check(model, tmp, args.tolerance, args.check_prompt, args.seed)
            result["export_seconds"] = round(time.perf_counter() - t0, 2)
            result["onnx_bytes"] = os.path.getsize(tmp)
            if args.out:
                os.replace(tmp, args.out)
                result["onnx"] = args.out
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.time_decode:
        result["torch_decode"] = dict(time_decode(model, args.prompt, args.new_tokens, args.repeats), threads=args.threads,
                                      prompt=args.prompt, new_tokens=args.new_tokens, contender="pytorch KvCacheGPT loop")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
