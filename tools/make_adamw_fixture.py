"""Reference AdamW trajectory from torch.optim.AdamW, grouped as nanoGPT's configure_optimizers does
(weight decay on 2-D tensors only). Writes tests/NanoSparse.Tests/Fixtures/optim/adamw.json.
Run: env -u OPENBLAS_CORETYPE /usr/bin/python3 tools/make_adamw_fixture.py"""
import json, os
import torch

torch.manual_seed(0)
w = torch.nn.Parameter(torch.randn(4, 5) * 0.5)   # decayed (2-D)
b = torch.nn.Parameter(torch.randn(7) * 0.5)      # not decayed (1-D)
init = [w.detach().clone(), b.detach().clone()]
opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
lrs = [1e-3, 6e-4, 3e-3, 1e-4, 2e-2]
grads = []
for step, lr in enumerate(lrs):
    scale = 1e-4 if step == 2 else 1.0          # a step with tiny gradients exercises eps
    gw, gb = torch.randn(4, 5) * scale, torch.randn(7) * scale
    grads.append([gw.flatten().tolist(), gb.flatten().tolist()])
    for g in opt.param_groups: g["lr"] = lr
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()

out = {
    "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "lrs": lrs,
    "shapes": [[4, 5], [7]], "decay": [True, False],
    "init": [t.flatten().tolist() for t in init],
    "grads": grads,
    "final": [w.detach().flatten().tolist(), b.detach().flatten().tolist()],
    "exp_avg": [opt.state[p]["exp_avg"].flatten().tolist() for p in (w, b)],
    "exp_avg_sq": [opt.state[p]["exp_avg_sq"].flatten().tolist() for p in (w, b)],
    "torch": torch.__version__,
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "NanoSparse.Tests", "Fixtures", "optim", "adamw.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", os.path.normpath(path))
