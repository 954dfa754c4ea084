"""Convolution benchmark: forward + backward (input and weight gradients), float32, batch 128.

    python -m benchmarks.bench_conv                 # numpy, best of 7, PyTorch CPU beside it
    python -m benchmarks.bench_conv --backend cupy  # on a GPU (PyTorch CUDA beside it if present)
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_conv   # both engines on one thread

The thread count is OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if set, else the CPUs this
process may use; PyTorch gets the same through torch.set_num_threads.

Prints one table: minigrad ms, PyTorch ms at the same thread count (alternating the two
engines, best of N each), their ratio, and minigrad's fraction of this machine's float32
GEMM rate (measured in the same run on a 2048^2 matmul; a conv step does three GEMMs of
2*M*K*O flops each: output, input gradient, weight gradient).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

import numpy as np  # host-side: random data handed to both engines, timing statistics

import minigrad as mg
import minigrad.functional as F

# (label, transposed, C_in, C_out, kernel, stride, padding, H)
CASES = [
    ("conv 1->32 k3 s1 p1 28x28", False, 1, 32, 3, 1, 1, 28),
    ("conv 32->64 k4 s2 p1 28x28", False, 32, 64, 4, 2, 1, 28),
    ("conv 64->128 k4 s2 p1 14x14", False, 64, 128, 4, 2, 1, 14),
    ("convT 128->64 k4 s2 p1 7x7", True, 128, 64, 4, 2, 1, 7),
    ("convT 64->1 k4 s2 p1 14x14", True, 64, 1, 4, 2, 1, 14),
]


def _threads():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            return int(os.environ[var])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _best(fn, sync, repeats):
    best = math.inf
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_gflops(be, repeats):
    """float32 GEMM rate of this machine (2048^2 @ 2048^2), GFLOP/s."""
    n = 2048
    a, b = be.normal((n, n)), be.normal((n, n))
    be.xp.matmul(a, b)
    t = _best(lambda: be.xp.matmul(a, b), be.synchronize, repeats)
    return 2 * n ** 3 / t / 1e9


def case_shapes(transposed, cin, cout, k, s, p, h, batch):
    """Input shape, weight shape, output shape and GEMM (M, K, O) of one case."""
    if transposed:
        ho = (h - 1) * s - 2 * p + (k - 1) + 1
        # the transposed conv is conv2d's input gradient: its GEMM rows are the INPUT pixels
        return (batch, cin, h, h), (cin, cout, k, k), (batch, cout, ho, ho), \
            (batch * h * h, k * k * cout, cin)
    ho = (h + 2 * p - (k - 1) - 1) // s + 1
    return (batch, cin, h, h), (cout, cin, k, k), (batch, cout, ho, ho), \
        (batch * ho * ho, k * k * cin, cout)


def make_minigrad_step(be, host, transposed, s, p):
    x = mg.tensor(host["x"], requires_grad=True, backend=be.name)
    w = mg.tensor(host["w"], requires_grad=True, backend=be.name)
    b = mg.tensor(host["b"], requires_grad=True, backend=be.name)
    gy = mg.tensor(host["gy"], backend=be.name)
    op = F.conv_transpose2d if transposed else F.conv2d

    def step():
        x.grad = w.grad = b.grad = None
        op(x, w, b, stride=s, padding=p).backward(gy)
    return step


def make_torch_step(torch, device, host, transposed, s, p):
    def t(a, rg):
        return torch.tensor(a, device=device, requires_grad=rg)
    x, w, b, gy = t(host["x"], True), t(host["w"], True), t(host["b"], True), t(host["gy"], False)
    op = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

    def step():
        x.grad = w.grad = b.grad = None
        op(x, w, b, stride=s, padding=p).backward(gy)
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "strict"])
    parser.add_argument("--repeats", type=int, default=7, help="best of N (default 7)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    args = parser.parse_args(argv)
    try:
        be = mg.get_backend(args.backend)
    except mg.BackendError as e:
        print(f"bench_conv: {e}", file=sys.stderr)
        return 2
    threads = _threads()
    torch, device = None, None
    if not args.no_torch:
        try:
            import torch
            if args.backend == "cupy":
                device = "cuda" if torch.cuda.is_available() else None
                torch = torch if device else None
            else:
                device = "cpu"
                torch.set_num_threads(threads)
        except ImportError:
            torch = None

    def torch_sync():
        if device == "cuda":
            torch.cuda.synchronize()

    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{_cpu_name()}, {threads} threads; backend {be.name}; float32, batch {args.batch}; "
          f"best of {args.repeats}, engines alternating")
    if torch is not None:
        print(f"PyTorch {torch.__version__} on {device}"
              + (f", torch.set_num_threads({threads})" if device == "cpu" else ""))
    else:
        print("PyTorch: not installed (or no CUDA for --backend cupy); column skipped")
    rate = gemm_gflops(be, args.repeats)
    print(f"float32 GEMM rate (2048^2 matmul): {rate:.0f} GFLOP/s\n")

    rng = np.random.default_rng(0)
    head = f"| {'case':<28} | {'minigrad ms':>11} | {'PyTorch ms':>10} | {'ratio':>5} | " \
           f"{'GEMM frac':>9} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    ratios, mg_times, t_times = [], [], []
    for label, transposed, cin, cout, k, s, p, h in CASES:
        xs, ws, ys, (m_, k_, o_) = case_shapes(transposed, cin, cout, k, s, p, h, args.batch)
        host = {"x": rng.standard_normal(xs, dtype=np.float32),
                "w": (rng.standard_normal(ws, dtype=np.float32) * 0.1),
                "b": rng.standard_normal((ws[1] if transposed else ws[0],), dtype=np.float32),
                "gy": rng.standard_normal(ys, dtype=np.float32)}
        mg_step = make_minigrad_step(be, host, transposed, s, p)
        steps = [("mg", mg_step, be.synchronize)]
        if torch is not None:
            steps.append(("torch", make_torch_step(torch, device, host, transposed, s, p),
                          torch_sync))
        best = {name: math.inf for name, _, _ in steps}
        for name, fn, sync in steps:  # warm up
            fn()
            sync()
        for _ in range(args.repeats):
            for name, fn, sync in steps:
                best[name] = min(best[name], _best(fn, sync, 1))
        flops = 3 * 2 * m_ * k_ * o_
        frac = flops / best["mg"] / 1e9 / rate
        mg_times.append(best["mg"])
        if torch is not None:
            ratio = best["mg"] / best["torch"]
            ratios.append(ratio)
            t_times.append(best["torch"])
            print(f"| {label:<28} | {best['mg'] * 1e3:>11.1f} | {best['torch'] * 1e3:>10.1f} | "
                  f"{ratio:>5.2f} | {frac:>9.2f} |")
        else:
            print(f"| {label:<28} | {best['mg'] * 1e3:>11.1f} | {'-':>10} | {'-':>5} | "
                  f"{frac:>9.2f} |")
    geo = math.exp(sum(math.log(t) for t in mg_times) / len(mg_times))
    if torch is not None:
        tgeo = math.exp(sum(math.log(t) for t in t_times) / len(t_times))
        rgeo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"| {'geometric mean':<28} | {geo * 1e3:>11.1f} | {tgeo * 1e3:>10.1f} | "
              f"{rgeo:>5.2f} | {'':>9} |")
    else:
        print(f"| {'geometric mean':<28} | {geo * 1e3:>11.1f} | {'-':>10} | {'-':>5} | "
              f"{'':>9} |")
    return 0


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
