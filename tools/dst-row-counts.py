#!/usr/bin/env python3
"""Q/K/V slice counts and row spread of a sparse medium run's c_attn weights, read from its checkpoint.

    /usr/bin/python3 tools/dst-row-counts.py RUN_DIR...

For each run: per layer the stored count of c_attn's Q, K and V row slices and the coefficient of variation (std/mean)
of its per-row counts, then the range of that coefficient over the other CSR block weights. Reads the row_ptr tensors
of model.safetensors (numpy only).
"""
import json, struct, sys
import numpy as np

DTYPES = {'I32': np.int32, 'I64': np.int64, 'U16': np.uint16, 'I16': np.int16}

def tensors(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    def get(name):
        if name not in header:
            sys.exit(f"error: {path} has no tensor '{name}' (expected a CSR block weight)")
        info = header[name]
        a, b = info['data_offsets']
        return np.frombuffer(data[a:b], dtype=DTYPES[info['dtype']])
    layers = sorted({int(k.split('.')[2]) for k in header if k.startswith('transformer.h.') and k.endswith('.row_ptr')})
    return get, layers

for run in sys.argv[1:]:
    get, layers = tensors(f'{run}/model.safetensors')
    parts, cvs = [], []
    for l in layers:
        rows = np.diff(get(f'transformer.h.{l}.attn.c_attn.weight.row_ptr'))
        a = len(rows) // 3
        q, k, v = (int(rows[i * a:(i + 1) * a].sum()) for i in range(3))
        parts.append(f'L{l} Q/K/V {q}/{k}/{v} cv {rows.std() / rows.mean():.2f}')
        for w in ('attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'):
            r = np.diff(get(f'transformer.h.{l}.{w}.weight.row_ptr'))
            cvs.append(r.std() / r.mean())
    print(f"{run}: {'; '.join(parts)} | other weights' row cv {min(cvs):.2f}-{max(cvs):.2f}")
