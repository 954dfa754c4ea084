"""The benchmark harness: every engine in its own process, alternating, best of N.

Why a process per engine: two engines in one process share the BLAS and OpenMP
thread pools, the allocator's free lists and the caches, and each slows the other
(PyTorch's conv step, timed between minigrad's in one process, took 1.7x its time
alone). So a benchmark here runs *workers*: ``python <benchmark> --worker ENGINE``
builds its tensors once, times its steps and prints one JSON line; the parent only
starts workers and reads their answers, and imports no engine itself.

A run is ``pairs`` rounds; each round starts one worker per engine, rotating which
engine goes first, so a change in the machine's load hits every engine alike. An
engine's time is the best over all its workers (each worker's own best of
``repeats`` steps), and its spread is the range of the workers' bests.

Each engine gets the same thread count: OMP/OPENBLAS/MKL_NUM_THREADS in its
environment (read when its BLAS loads) and, for PyTorch, ``torch.set_num_threads``.
"""
from __future__ import annotations

import json
import math
import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------- in the parent
def default_threads():
    """OPENBLAS/OMP/MKL_NUM_THREADS if set, else the CPUs this process may use."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            return int(os.environ[var])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_env(threads, extra=None):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def minigrad_engines(base, env, args):
    """minigrad's engines: itself, and the variants ``--reference`` (kernels off),
    ``--without KERNEL`` and ``--env VAR=VALUE`` ask for."""
    out = {"minigrad": (base + ["--worker", "minigrad"], env)}
    if args.reference:
        out["minigrad, kernels off"] = (base + ["--worker", "minigrad", "--kernels-off"], env)
    for name in args.without or []:
        out[f"minigrad without {name}"] = (base + ["--worker", "minigrad", "--without", name],
                                           env)
    for setting in args.env or []:
        var, _, value = setting.partition("=")
        out[f"minigrad, {setting}"] = (base + ["--worker", "minigrad"],
                                       worker_env(args.threads, {var: value}))
    return out


def add_arguments(p, workers, repeats, quick_repeats, repeats_help, kernel_example):
    """The flags every benchmark shares: rounds and steps, threads, the engine
    variants of minigrad, DeZero, the report file, and the hidden worker flags."""
    p.add_argument("--pairs", type=int, default=5,
                   help="alternating rounds, one worker per engine each (default 5)")
    p.add_argument("--repeats", type=int, default=repeats,
                   help=f"{repeats_help} (default {repeats})")
    p.add_argument("--quick", action="store_true",
                   help=f"2 rounds of {quick_repeats} steps: a smoke run")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every engine (default: OPENBLAS/OMP_NUM_THREADS or all "
                        "usable CPUs)")
    p.add_argument("--reference", action="store_true",
                   help="add minigrad with its kernels off (MINIGRAD_KERNELS=off) as an engine")
    p.add_argument("--without", action="append", metavar="KERNEL",
                   help="add minigrad without this kernel (its function name or what it "
                        f"replaces, e.g. {kernel_example}) as an engine; repeatable")
    p.add_argument("--env", action="append", metavar="VAR=VALUE",
                   help="add minigrad with this environment setting as an engine, e.g. "
                        "MINIGRAD_WORKSPACE=off; repeatable")
    p.add_argument("--no-dezero", action="store_true", help="skip the DeZero column")
    p.add_argument("--out", default=None, help="also write the report to this file")
    p.add_argument("--worker", choices=sorted(workers), help=argparse.SUPPRESS)
    p.add_argument("--kernels-off", action="store_true", help=argparse.SUPPRESS)


def parse_arguments(p, argv, quick_repeats):
    """Parse, shorten a --quick run, and fill in the default thread count."""
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.repeats = min(args.pairs, 2), min(args.repeats, quick_repeats)
    if args.threads is None:
        args.threads = default_threads()
    return args


def add_dezero_engine(engines, notes, base, env, args, skipped=None):
    """DeZero's worker, or a note saying why its column is missing (``skipped``: a
    reason this run cannot use it)."""
    import importlib.util
    if args.no_dezero or skipped:
        notes.append(f"DeZero: skipped ({'--no-dezero' if args.no_dezero else skipped})")
    elif importlib.util.find_spec("dezero") is None:
        notes.append("DeZero: not installed (pip install dezero); its column is skipped")
    else:
        engines["dezero"] = (base + ["--worker", "dezero"], env)


def run_worker(cmd, env, timeout=600):
    """Run one worker; its last stdout line is its JSON answer. A failed worker is
    reported with its stderr's last lines and the run goes on without it."""
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-4:])
        return {"error": f"exit {proc.returncode}: {tail or proc.stdout[-300:]}"}
    return json.loads(lines[-1])


def alternate(engines, pairs, log=None):
    """``engines``: {name: (cmd, env)}. Returns {name: [answer of each worker]}, the
    workers started round by round, the first engine of each round rotating."""
    names = list(engines)
    out = {name: [] for name in names}
    failed = set()  # an engine that failed once would fail again: it is not rerun
    for r in range(pairs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name in failed:
                continue
            cmd, env = engines[name]
            t0 = time.perf_counter()
            ans = run_worker(cmd, env)
            out[name].append(ans)
            if log:
                log(f"round {r + 1}/{pairs}: {name} "
                    f"({'failed: ' + ans['error'] if 'error' in ans else 'done'}, "
                    f"{time.perf_counter() - t0:.0f} s)")
            if "error" in ans:
                failed.add(name)
    return out


def best_and_spread(answers, key, field="best_ms"):
    """(best, lowest worker best, highest worker best) of one case over the workers."""
    vals = [a["cases"][key][field] for a in answers if "cases" in a and key in a["cases"]]
    if not vals:
        return None
    return min(vals), min(vals), max(vals)


def fmt_spread(bs):
    if bs is None:
        return "-"
    best, lo, hi = bs
    return f"{best:.2f} ({lo:.2f}-{hi:.2f})" if best < 10 else f"{best:.1f} ({lo:.1f}-{hi:.1f})"


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines(threads, pairs, repeats):
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [f"machine: {cpu_name()}, {cpus} CPUs usable, load average {load}; "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
            f"each engine in its own process, {threads} threads each "
            f"({'/'.join(THREAD_VARS)}={threads}, torch.set_num_threads({threads})); "
            f"{pairs} alternating rounds, each worker's best of {repeats} steps; "
            f"table: best over workers (lowest-highest worker best)"]


def describe_workers(results):
    """One line per engine: versions, threads, BLAS and (for minigrad) the kernels."""
    lines = []
    for name, answers in results.items():
        info = next((a["info"] for a in answers if "info" in a), None)
        if info is None:
            err = next((a["error"] for a in answers if "error" in a), "no answer")
            lines.append(f"{name}: not run ({err})")
            continue
        lines.append(f"{name}: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return lines


# ----------------------------------------------------------------------------- in a worker
def blas_info():
    """The BLAS libraries loaded in this process and their thread counts (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for lib in threadpool_info():
        parts.append(f"{lib.get('internal_api')} {lib.get('version') or ''} "
                     f"{lib.get('architecture') or ''} {lib.get('num_threads')} threads".strip())
    return ", ".join(parts) or "none found"


def minigrad_info():
    import numpy
    import minigrad
    from minigrad import kernels
    on = kernels.is_enabled()
    names = [ov.qualname for ov in kernels.registered() if
             getattr(ov.owner, ov.name) is ov.dispatch]
    return {"numpy": numpy.__version__,
            "kernels": ("on: " + ", ".join(names)) if on and names else "off (reading path)",
            "BLAS": blas_info(), "minigrad": getattr(minigrad, "__version__", "")}


def without_kernels(names):
    """Uninstall the named kernels (``"Adam._update"`` or the kernel's function name)
    in this worker only, to measure what each one brings."""
    from minigrad import kernels
    for ov in kernels.registered():
        if ov.qualname in names or ov.kernel.__name__ in names:
            if getattr(ov.owner, ov.name) is ov.dispatch:
                ov.uninstall()


def import_dezero():
    """DeZero 0.0.13 (PyPI's latest) names ``np.int`` in a default argument, which
    NumPy 2 removed; the alias is restored in the DeZero worker only, before import."""
    import numpy as np
    if not hasattr(np, "int"):
        np.int = int
    import dezero
    return dezero


def gemm_summary(gemms):
    """Each distinct GEMM shape once: its count, operand layouts and best rate."""
    groups = {}
    for g in gemms:
        key = (g["shape"], g["layout"])
        n, s, flops = groups.get(key, (0, 0.0, 0))
        groups[key] = (n + 1, s + g["s"], flops + g["flops"])
    return [f"{shape} {layout}{f' x{n}' if n > 1 else ''} {flops / s / 1e9:.0f} GFLOP/s"
            for (shape, layout), (n, s, flops) in groups.items()]


def time_steps(step, repeats, sync=lambda: None, warmup=2):
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def summary_ms(times):
    s = sorted(times)
    return {"best_ms": 1e3 * s[0], "median_ms": 1e3 * s[len(s) // 2]}


def record_matmuls(xp, step):
    """The operands of every ``xp.matmul`` one call of ``step`` makes (the very arrays,
    with their layouts), so that the GEMMs can be timed alone at their exact shapes."""
    calls, orig = [], xp.matmul

    def recording(a, b, *args, **kwargs):
        calls.append((a, b))
        return orig(a, b, *args, **kwargs)
    xp.matmul = recording
    try:
        step()
    finally:
        xp.matmul = orig
    return calls


def _layout(a):
    flags = getattr(a, "flags", None)
    if flags is None:
        return "?"
    return "C" if flags.c_contiguous else "F" if flags.f_contiguous else "strided"


def time_matmuls(xp, calls, repeats, sync=lambda: None):
    """Best time (s) of each recorded matmul on its own, its flop count and the
    operands' layouts (C or F order, or strided)."""
    out = []
    for a, b in calls:
        t = min(time_steps(lambda: xp.matmul(a, b), repeats, sync, warmup=1))
        m, k = a.shape[-2], a.shape[-1]
        n = b.shape[-1]
        batch = math.prod(a.shape[:-2]) if a.ndim > 2 else 1
        out.append({"shape": f"{tuple(a.shape)}@{tuple(b.shape)}", "s": t,
                    "flops": 2 * batch * m * k * n, "layout": f"{_layout(a)},{_layout(b)}"})
    return out


def answer(obj):
    """A worker's answer: one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
