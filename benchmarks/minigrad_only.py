"""minigrad alone, one process, on any checkout: the five conv cases and the MLP VAE step.

    python benchmarks/minigrad_only.py CHECKOUT      # prints one JSON line of best-of-7 ms

Run it alternately on two checkouts (and with MINIGRAD_KERNELS=off) to compare
versions of minigrad, as the README's before/after table does; it uses only API
that every version has, so it also runs on code older than benchmarks/harness.py."""
import json, math, os, sys, time
repo = sys.argv[1]
sys.path.insert(0, repo)
import numpy as np
import minigrad as mg
import minigrad.functional as F
import minigrad.nn as nn
import minigrad.optim as optim

CASES = [
    ("conv 1->32 k3 s1", False, 1, 32, 3, 1, 1, 28),
    ("conv 32->64 k4 s2", False, 32, 64, 4, 2, 1, 28),
    ("conv 64->128 k4 s2", False, 64, 128, 4, 2, 1, 14),
    ("convT 128->64 k4 s2", True, 128, 64, 4, 2, 1, 7),
    ("convT 64->1 k4 s2", True, 64, 1, 4, 2, 1, 14),
]
rng = np.random.default_rng(0)
res = {}
def best(fn, n):
    b = math.inf
    for _ in range(n):
        t = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t)
    return b * 1e3
for label, tr, ci, co, k, s, p, h in CASES:
    x = mg.tensor(rng.standard_normal((128, ci, h, h)).astype("float32"), requires_grad=True)
    wshape = (ci, co, k, k) if tr else (co, ci, k, k)
    w = mg.tensor((0.1 * rng.standard_normal(wshape)).astype("float32"), requires_grad=True)
    f = F.conv_transpose2d if tr else F.conv2d
    y = f(x, w, stride=s, padding=p)
    gy = mg.tensor(rng.standard_normal(y.shape).astype("float32"))
    def step():
        x.grad = None; w.grad = None
        y = f(x, w, stride=s, padding=p)
        y.backward(gy)
    step()
    res[label] = best(step, 7)
# VAE step 784-400-20, Adam, batch 128
mg.manual_seed(0)
fc1, fc21, fc22, fc3, fc4 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20), nn.Linear(20, 400), nn.Linear(400, 784)
params = [p for m in (fc1, fc21, fc22, fc3, fc4) for p in m.parameters()]
opt = optim.Adam(params, lr=1e-3)
xb = mg.tensor(rng.random((128, 784)).astype("float32"))
eps = mg.tensor(rng.standard_normal((128, 20)).astype("float32"))
def vstep():
    h = fc1(xb).relu()
    mu, logvar = fc21(h), fc22(h)
    z = mu + (0.5 * logvar).exp() * eps
    logits = fc4(fc3(z).relu())
    rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
    kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum()
    loss = (rec + kl) / 128
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(5): vstep()
res["vae step"] = best(vstep, 30)
print(json.dumps(res))
