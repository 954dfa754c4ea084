"""Convolution benchmark: forward + backward (input, weight and bias gradients), float32, batch 128.

    python -m benchmarks.bench_conv                  # numpy; PyTorch CPU and DeZero beside it
    python -m benchmarks.bench_conv --quick          # 2 rounds of 3 steps: a smoke run
    python -m benchmarks.bench_conv --pairs 7 --repeats 10
    python -m benchmarks.bench_conv --reference      # also minigrad with its kernels off
    python -m benchmarks.bench_conv --without input_grad_subpixel   # one kernel's effect
    python -m benchmarks.bench_conv --backend cupy   # GPU; PyTorch CUDA beside it if present

Every engine runs in its own process (``benchmarks/harness.py`` says why), all with the
same thread count: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS if set, else the CPUs this
process may use. Each step is one forward and one backward with a given upstream
gradient, on tensors built once. The table gives each engine's best over
``--pairs`` alternating rounds of workers (each its own best of ``--repeats``
steps) with the range of the workers' bests, and minigrad / PyTorch.

*GEMM ms* is the sum of the matrix products minigrad's step makes, each timed alone
in the same worker on the very arrays the step passed (so at their exact shapes and
layouts); *outside* is the share of minigrad's step spent outside them (copies,
im2col/col2im, padding, elementwise work, Python). A bare PyTorch script (no
harness) times one case as a check on the harness's PyTorch column. DeZero
(``pip install dezero``) is an optional third engine, skipped with a note when
it is not installed.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import harness

# (label, transposed, C_in, C_out, kernel, stride, padding, H)
CASES = [
    ("conv 1->32 k3 s1 p1 28x28", False, 1, 32, 3, 1, 1, 28),
    ("conv 32->64 k4 s2 p1 28x28", False, 32, 64, 4, 2, 1, 28),
    ("conv 64->128 k4 s2 p1 14x14", False, 64, 128, 4, 2, 1, 14),
    ("convT 128->64 k4 s2 p1 7x7", True, 128, 64, 4, 2, 1, 7),
    ("convT 64->1 k4 s2 p1 14x14", True, 64, 1, 4, 2, 1, 14),
]
BARE_CASE = 1  # the case the bare PyTorch script times


def case_shapes(transposed, cin, cout, k, s, p, h, batch):
    """Input shape, weight shape, output shape and the im2col GEMM (M, K, O) of one case."""
    if transposed:
        ho = (h - 1) * s - 2 * p + (k - 1) + 1
        # the transposed conv is conv2d's input gradient: its GEMM rows are the INPUT pixels
        return (batch, cin, h, h), (cin, cout, k, k), (batch, cout, ho, ho), \
            (batch * h * h, k * k * cout, cin)
    ho = (h + 2 * p - (k - 1) - 1) // s + 1
    return (batch, cin, h, h), (cout, cin, k, k), (batch, cout, ho, ho), \
        (batch * ho * ho, k * k * cin, cout)


def host_arrays(case, batch, seed=0):
    """The same float32 input, weight, bias and upstream gradient for every engine."""
    import numpy as np  # host-side data, handed to each engine
    _, transposed, cin, cout, k, s, p, h = case
    xs, ws, ys, _ = case_shapes(transposed, cin, cout, k, s, p, h, batch)
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal(xs, dtype=np.float32),
            "w": rng.standard_normal(ws, dtype=np.float32) * 0.1,
            "b": rng.standard_normal((ws[1] if transposed else ws[0],), dtype=np.float32),
            "gy": rng.standard_normal(ys, dtype=np.float32)}


def gemm_gflops(be, repeats):
    """float32 GEMM rate of this machine (2048^2 @ 2048^2), GFLOP/s."""
    n = 2048
    a, b = be.normal((n, n)), be.normal((n, n))
    t = min(harness.time_steps(lambda: be.xp.matmul(a, b), repeats, be.synchronize, warmup=1))
    return 2 * n ** 3 / t / 1e9


# ----------------------------------------------------------------------------- workers
def minigrad_worker(args):
    import minigrad as mg
    import minigrad.functional as F
    if args.kernels_off:
        mg.kernels.set_enabled(False)
    harness.without_kernels(args.without or [])
    be = mg.get_backend(args.backend)
    cases = {}
    for i in args.cases:
        label, transposed, cin, cout, k, s, p, h = CASES[i]
        host = host_arrays(CASES[i], args.batch)
        x, w, b = (mg.tensor(host[n], requires_grad=True, backend=be.name) for n in "xwb")
        gy = mg.tensor(host["gy"], backend=be.name)
        op = F.conv_transpose2d if transposed else F.conv2d

        def step():
            x.grad = w.grad = b.grad = None
            op(x, w, b, stride=s, padding=p).backward(gy)
        times = harness.time_steps(step, args.repeats, be.synchronize)
        gemms = harness.time_matmuls(be.xp, harness.record_matmuls(be.xp, step),
                                     args.repeats, be.synchronize)
        res = harness.summary_ms(times)
        res["gemm_ms"] = 1e3 * sum(g["s"] for g in gemms)
        res["gemms"] = harness.gemm_summary(gemms)
        cases[label] = res
    info = harness.minigrad_info()
    info["backend"] = be.name
    info["GEMM 2048^2"] = f"{gemm_gflops(be, 3):.0f} GFLOP/s"
    harness.answer({"info": info, "cases": cases})


def torch_worker(args):
    import torch
    device = "cuda" if args.backend == "cupy" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("PyTorch sees no CUDA GPU: its column is skipped")
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    cases = {}
    for i in args.cases:
        label, transposed, cin, cout, k, s, p, h = CASES[i]
        host = host_arrays(CASES[i], args.batch)
        x, w, b = (torch.tensor(host[n], device=device, requires_grad=True) for n in "xwb")
        gy = torch.tensor(host["gy"], device=device)
        op = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

        def step():
            x.grad = w.grad = b.grad = None
            op(x, w, b, stride=s, padding=p).backward(gy)
        cases[label] = harness.summary_ms(harness.time_steps(step, args.repeats, sync))
    harness.answer({"info": {"torch": torch.__version__, "device": device,
                             "threads": torch.get_num_threads(),
                             "oneDNN": torch.backends.mkldnn.is_available(),
                             "BLAS": harness.blas_info()}, "cases": cases})


def dezero_worker(args):
    dezero = harness.import_dezero()
    import dezero.functions_conv as DC
    import numpy as np
    cases = {}
    for i in args.cases:
        label, transposed, cin, cout, k, s, p, h = CASES[i]
        host = host_arrays(CASES[i], args.batch)
        x, w, b = (dezero.Variable(host[n]) for n in "xwb")
        gy = host["gy"]
        out = case_shapes(transposed, cin, cout, k, s, p, h, args.batch)[2][2:]

        def step():
            x.cleargrad(), w.cleargrad(), b.cleargrad()
            y = DC.deconv2d(x, w, b, s, p, outsize=out) if transposed else \
                DC.conv2d(x, w, b, s, p)
            y.grad = dezero.Variable(gy)
            y.backward()
        cases[label] = harness.summary_ms(harness.time_steps(step, args.repeats))
    harness.answer({"info": {"dezero": getattr(dezero, "__version__", "?"),
                             "numpy": np.__version__, "BLAS": harness.blas_info()},
                    "cases": cases})


BARE_TORCH = """
import sys, time, torch
threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
x = torch.randn(128, 32, 28, 28, requires_grad=True)
w = (torch.randn(64, 32, 4, 4) * 0.1).requires_grad_()
b = torch.randn(64, requires_grad=True)
gy = torch.randn(128, 64, 14, 14)
times = []
for i in range(repeats + 2):
    x.grad = w.grad = b.grad = None
    t0 = time.perf_counter()
    torch.nn.functional.conv2d(x, w, b, stride=2, padding=1).backward(gy)
    times.append(time.perf_counter() - t0)
t = sorted(times[2:])
print('{"info": {"torch": "%s", "threads": %d}, "cases": {"%s": {"best_ms": %f, '
      '"median_ms": %f}}}' % (torch.__version__, torch.get_num_threads(), sys.argv[3],
                             1e3 * t[0], 1e3 * t[len(t) // 2]))
"""


WORKERS = {"minigrad": minigrad_worker, "torch": torch_worker, "dezero": dezero_worker}


# ----------------------------------------------------------------------------- the parent
def engines(args):
    """{engine name: (command, environment)} for this run; missing optional engines
    are left out with a note."""
    import importlib.util
    env = harness.worker_env(args.threads)
    base = [sys.executable, "-m", "benchmarks.bench_conv", "--backend", args.backend,
            "--repeats", str(args.repeats), "--batch", str(args.batch),
            "--threads", str(args.threads), "--cases", *map(str, args.cases)]
    out, notes = harness.minigrad_engines(base, env, args), []
    if args.no_torch:
        notes.append("PyTorch: skipped (--no-torch)")
    elif importlib.util.find_spec("torch") is None:
        notes.append("PyTorch: not installed; its column is skipped")
    else:
        out["torch"] = (base + ["--worker", "torch"], env)
        if args.backend == "numpy" and BARE_CASE in args.cases:
            out["torch, bare script"] = ([sys.executable, "-c", BARE_TORCH, str(args.threads),
                                          str(args.repeats), CASES[BARE_CASE][0]], env)
    harness.add_dezero_engine(out, notes, base, env, args,
                              skipped=None if args.backend == "numpy" else "numpy backend only")
    return out, notes


def report(args, results, notes):
    lines = harness.machine_lines(args.threads, args.pairs, args.repeats)
    lines.append(f"float32, batch {args.batch}, backend {args.backend}")
    lines += harness.describe_workers(results) + notes
    mg_res, t_res = results["minigrad"], results.get("torch")
    others = [n for n in results if n not in ("minigrad", "torch", "torch, bare script")]
    head = ["case", "minigrad ms", "PyTorch ms", "ratio"] + [f"{n} ms" for n in others] + \
        ["GEMM ms", "outside"]
    rows, ratios, per_engine = [], [], {n: [] for n in results}
    for i in args.cases:
        label = CASES[i][0]
        m = harness.best_and_spread(mg_res, label)
        t = harness.best_and_spread(t_res, label) if t_res else None
        g = harness.best_and_spread(mg_res, label, "gemm_ms")
        ratio = m[0] / t[0] if m and t else None
        ratios.append(ratio)
        for n in results:
            bs = harness.best_and_spread(results[n], label)
            per_engine[n].append(bs[0] if bs else None)
        # outside: the best step against the best GEMM time, both over the workers (a
        # load spike can hit one worker's GEMMs timed alone)
        outside = 1 - g[0] / m[0] if m and g else None
        rows.append([label, harness.fmt_spread(m), harness.fmt_spread(t),
                     f"{ratio:.2f}" if ratio else "-"] +
                    [harness.fmt_spread(harness.best_and_spread(results[n], label))
                     for n in others] +
                    [f"{g[0]:.1f}" if g else "-", f"{100 * outside:.0f}%" if outside is not None
                     else "-"])
    geo = [harness.geomean(per_engine[n]) for n in ("minigrad", "torch") if n in per_engine]
    rgeo = harness.geomean(ratios)
    rows.append(["geometric mean", f"{geo[0]:.1f}" if geo and geo[0] else "-",
                 f"{geo[1]:.1f}" if len(geo) > 1 and geo[1] else "-",
                 f"{rgeo:.2f}" if rgeo else "-"] +
                [f"{harness.geomean(per_engine[n]):.1f}" if harness.geomean(per_engine[n])
                 else "-" for n in others] + ["", ""])
    widths = [max(len(str(r[j])) for r in [head] + rows) for j in range(len(head))]
    lines.append("")
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w)
                                       for j, (c, w) in enumerate(zip(r, widths))) + " |")
    bare = results.get("torch, bare script")
    if bare and t_res:
        label = CASES[BARE_CASE][0]
        b, t = harness.best_and_spread(bare, label), harness.best_and_spread(t_res, label)
        if b and t:
            lines.append(f"\ncheck: PyTorch on {label}: harness {harness.fmt_spread(t)} ms, "
                         f"bare script {harness.fmt_spread(b)} ms (ratio {t[0] / b[0]:.2f})")
    if args.gemms:
        lines.append("\nminigrad's GEMMs per case (first worker):")
        first = next((a for a in mg_res if "cases" in a), None)
        for i in args.cases if first else []:
            lines.append(f"  {CASES[i][0]}: " + "; ".join(first["cases"][CASES[i][0]]["gemms"]))
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_conv",
                                description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:9]))
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy", "strict"])
    harness.add_arguments(p, WORKERS, repeats=7, quick_repeats=3,
                          repeats_help="timed steps per case in each worker",
                          kernel_example="conv.input_grad")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--cases", type=int, nargs="+", default=list(range(len(CASES))),
                   help="indices into CASES (default: all)")
    p.add_argument("--gemms", action="store_true", help="list each case's GEMMs and rates")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    return harness.parse_arguments(p, argv, quick_repeats=3)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        WORKERS[args.worker](args)
        return 0
    todo, notes = engines(args)
    results = harness.alternate(todo, args.pairs,
                                log=lambda s: print(s, file=sys.stderr, flush=True))
    if not any("cases" in a for a in results["minigrad"]):
        print(f"bench_conv: minigrad's worker failed: {results['minigrad'][0]['error']}",
              file=sys.stderr)
        return 2
    text = report(args, results, notes)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
