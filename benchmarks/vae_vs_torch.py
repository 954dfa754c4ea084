"""The MLP VAE's training step in minigrad, PyTorch and DeZero, each in its own process.

    python benchmarks/vae_vs_torch.py                 # time one training step, 5 rounds
    python benchmarks/vae_vs_torch.py --quick         # 2 rounds of 20 steps: a smoke run
    python benchmarks/vae_vs_torch.py --reference     # also minigrad with its kernels off
    python benchmarks/vae_vs_torch.py --without Adam._update   # one kernel's effect
    python benchmarks/vae_vs_torch.py --profile       # cProfile of minigrad's step
    python benchmarks/vae_vs_torch.py --agree --epochs 10   # the loss-agreement run

Step: models/vae.py's VAEModel (784-400-20, as in the PyTorch example) on a batch
of 128, loss = mean over the batch of BCE-with-logits summed over pixels + KL,
backward, Adam lr 1e-3. Every engine runs in its own process
(``benchmarks/harness.py`` says why) with the same thread count; the table gives
each engine's best step over ``--pairs`` alternating rounds of workers (each its
own best of ``--repeats`` steps) with the range of the workers' bests. *GEMM ms* is
the sum of the matrix products of minigrad's step, each timed alone on the very
arrays the step passed. A bare PyTorch script checks the harness's PyTorch time;
DeZero (``pip install dezero``) is an optional third engine.

``--agree``: both engines start from the SAME initial weights (minigrad's
PyTorch-style init, copied into torch), see the SAME batches in the same order
and the SAME reparameterisation noise eps, so their loss curves must agree up to
float32 rounding: the strongest end-to-end check that minigrad's gradients and
Adam are right. That run alternates the engines epoch by epoch in one process,
so its times are not this benchmark's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import harness  # noqa: E402

BATCH, PIXELS = 128, 784


def host_batch(latent, batch=BATCH, seed=0):
    """A batch of pixels in [0, 1] and the reparameterisation noise, the same for
    every engine (timing does not depend on the values)."""
    import numpy as np  # host-side data, handed to each engine
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 1, 28, 28), dtype=np.float32),
            rng.standard_normal((batch, latent), dtype=np.float32))


# ----------------------------------------------------------------------------- workers
def minigrad_worker(args):
    import minigrad as mg
    from minigrad import optim
    from models.blocks import VAEModel
    from models.losses import vae_loss
    if args.kernels_off:
        mg.kernels.set_enabled(False)
    harness.without_kernels(args.without or [])
    mg.manual_seed(0)
    model = VAEModel("mlp", args.latent_dim, args.hidden)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    xh, eh = host_batch(args.latent_dim)
    x, eps = mg.from_numpy(xh), mg.from_numpy(eh)

    def step():
        logits, mu, logvar = model(x, eps)
        loss = vae_loss(logits, x, mu, logvar).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.profile:
        import cProfile
        import pstats
        harness.time_steps(step, 5)
        prof = cProfile.Profile()
        prof.runcall(harness.time_steps, step, args.repeats, warmup=0)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    res = harness.summary_ms(harness.time_steps(step, args.repeats, warmup=5))
    gemms = harness.time_matmuls(mg.get_backend("numpy").xp,
                                 harness.record_matmuls(mg.get_backend("numpy").xp, step),
                                 args.repeats)
    res["gemm_ms"] = 1e3 * sum(g["s"] for g in gemms)
    res["gemms"] = harness.gemm_summary(gemms)
    harness.answer({"info": harness.minigrad_info(), "cases": {"step": res}})


def torch_worker(args):
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, hdim = args.latent_dim, args.hidden
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(PIXELS, hdim), torch.nn.ReLU(),
                              torch.nn.Linear(hdim, 2 * d))
    dec = torch.nn.Sequential(torch.nn.Linear(d, hdim), torch.nn.ReLU(),
                              torch.nn.Linear(hdim, PIXELS), torch.nn.Unflatten(1, (1, 28, 28)))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    xh, eh = host_batch(d)
    x, eps = torch.from_numpy(xh), torch.from_numpy(eh)

    def step():
        out = enc(x)
        mu, logvar = out[:, :d], out[:, d:]
        logits = dec(mu + torch.exp(0.5 * logvar) * eps)
        # the same sums as minigrad's loss, in the bare script's (the PyTorch example's) form
        loss = TF.binary_cross_entropy_with_logits(logits, x, reduction="sum") / BATCH \
            - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / BATCH
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = harness.summary_ms(harness.time_steps(step, args.repeats, warmup=5))
    harness.answer({"info": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                             "BLAS": harness.blas_info()}, "cases": {"step": res}})


def dezero_worker(args):
    dezero = harness.import_dezero()
    import dezero.functions as DF
    import dezero.layers as DL
    import numpy as np
    np.random.seed(0)
    d, hdim = args.latent_dim, args.hidden

    class VAE(dezero.Model):
        def __init__(self):
            super().__init__()
            self.e1, self.e2 = DL.Linear(hdim, in_size=PIXELS), DL.Linear(2 * d, in_size=hdim)
            self.d1, self.d2 = DL.Linear(hdim, in_size=d), DL.Linear(PIXELS, in_size=hdim)

        def forward(self, x, eps):
            out = self.e2(DF.relu(self.e1(x)))
            mu, logvar = out[:, :d], out[:, d:]
            logits = self.d2(DF.relu(self.d1(mu + DF.exp(0.5 * logvar) * eps)))
            recon = DF.sigmoid_cross_entropy(logits, x)          # summed over pixels / N
            kl = DF.sum(0.5 * (DF.exp(logvar) + mu * mu - 1 - logvar)) / len(x)
            return recon + kl

    model = VAE()
    opt = dezero.optimizers.Adam(alpha=1e-3).setup(model)
    xh, eh = host_batch(d)
    x, eps = xh.reshape(BATCH, PIXELS), eh

    def step():
        loss = model(x, eps)
        model.cleargrads()
        loss.backward()
        opt.update()
    res = harness.summary_ms(harness.time_steps(step, args.repeats, warmup=5))
    harness.answer({"info": {"dezero": getattr(dezero, "__version__", "?"),
                             "numpy": np.__version__, "BLAS": harness.blas_info()},
                    "cases": {"step": res}})


BARE_TORCH = """
import sys, time, torch
import torch.nn as nn, torch.nn.functional as F
threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40))
dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
x, eps = torch.rand(128, 784), torch.randn(128, 20)
times = []
for i in range(repeats + 5):
    t0 = time.perf_counter()
    mu, logvar = enc(x).chunk(2, dim=1)
    logits = dec(mu + torch.exp(0.5 * logvar) * eps)
    loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 128 \
        - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / 128
    opt.zero_grad()
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
t = sorted(times[5:])
print('{"info": {"torch": "%s", "threads": %d}, "cases": {"step": {"best_ms": %f, '
      '"median_ms": %f}}}' % (torch.__version__, torch.get_num_threads(), 1e3 * t[0],
                             1e3 * t[len(t) // 2]))
"""

WORKERS = {"minigrad": minigrad_worker, "torch": torch_worker, "dezero": dezero_worker}


# ----------------------------------------------------------------------------- the parent
def engines(args):
    import importlib.util
    env = harness.worker_env(args.threads)
    base = [sys.executable, str(Path(__file__).resolve()), "--repeats", str(args.repeats),
            "--threads", str(args.threads), "--latent-dim", str(args.latent_dim),
            "--hidden", str(args.hidden)]
    out, notes = harness.minigrad_engines(base, env, args), []
    if importlib.util.find_spec("torch") is None:
        notes.append("PyTorch: not installed; its column is skipped")
    else:
        out["torch"] = (base + ["--worker", "torch"], env)
        if (args.latent_dim, args.hidden) == (20, 400):
            out["torch, bare script"] = ([sys.executable, "-c", BARE_TORCH, str(args.threads),
                                          str(args.repeats)], env)
    harness.add_dezero_engine(out, notes, base, env, args)
    return out, notes


def report(args, results, notes):
    lines = harness.machine_lines(args.threads, args.pairs, args.repeats)
    lines.append(f"MLP VAE 784-{args.hidden}-{args.latent_dim}, Adam, batch {BATCH}: one "
                 f"training step (forward, loss, backward, update)")
    lines += harness.describe_workers(results) + notes
    t = harness.best_and_spread(results.get("torch", []), "step")
    lines += ["", "| engine | ms per step, best (worker range) | / PyTorch |", "|---|---|---|"]
    for name, answers in results.items():
        bs = harness.best_and_spread(answers, "step")
        ratio = f"{bs[0] / t[0]:.2f}" if bs and t else "-"
        lines.append(f"| {name} | {harness.fmt_spread(bs)} | {ratio} |")
    mg_ans = [a for a in results["minigrad"] if "cases" in a]
    if mg_ans:
        # both bests over the workers: a load spike can hit a worker's GEMM timing alone
        best = min(mg_ans, key=lambda a: a["cases"]["step"]["best_ms"])["cases"]["step"]
        gemm = min(mg_ans, key=lambda a: a["cases"]["step"]["gemm_ms"])["cases"]["step"]
        lines.append(f"\nminigrad's GEMMs alone: {gemm['gemm_ms']:.2f} ms, its best step "
                     f"{best['best_ms']:.2f} ms ({100 * (1 - gemm['gemm_ms'] / best['best_ms']):.0f}"
                     f"% outside them): " + "; ".join(gemm["gemms"]))
    bare = harness.best_and_spread(results.get("torch, bare script", []), "step")
    if bare and t:
        lines.append(f"check: PyTorch step in the harness {harness.fmt_spread(t)} ms, bare "
                     f"script {harness.fmt_spread(bare)} ms (ratio {t[0] / bare[0]:.2f})")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(p, WORKERS, repeats=50, quick_repeats=20,
                          repeats_help="timed steps per worker",
                          kernel_example="Adam._update")
    p.add_argument("--profile", action="store_true",
                   help="print a cProfile of minigrad's steps (in its worker, to stderr)")
    p.add_argument("--agree", action="store_true",
                   help="train both engines side by side and compare their losses")
    p.add_argument("--epochs", type=int, default=10, help="--agree: epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    return harness.parse_arguments(p, argv, quick_repeats=20)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        WORKERS[args.worker](args)
        return 0
    if args.agree:
        return agree(args)
    if args.profile:
        env = harness.worker_env(args.threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "minigrad",
               "--profile", "--repeats", str(args.repeats), "--threads", str(args.threads)]
        return harness.subprocess.run(cmd, env=env, cwd=harness.ROOT).returncode
    todo, notes = engines(args)
    results = harness.alternate(todo, args.pairs,
                                log=lambda s: print(s, file=sys.stderr, flush=True))
    if not any("cases" in a for a in results["minigrad"]):
        print(f"vae_vs_torch: minigrad's worker failed: {results['minigrad'][0]['error']}",
              file=sys.stderr)
        return 2
    text = report(args, results, notes)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def agree(args):
    """The two engines trained side by side in one process (a correctness check:
    their loss curves must agree; its times are not the benchmark's)."""
    # BLAS thread pools are sized when NumPy is first imported: set them first.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import numpy as np  # host-side: batches and noise are drawn on the host for both engines
    import torch
    import torch.nn.functional as TF

    import minigrad as mg
    from minigrad import optim
    from minigrad.data import load_dataset
    from models.losses import vae_loss
    from models.blocks import VAEModel

    torch.set_num_threads(args.threads)
    mg.set_backend("numpy")
    mg.manual_seed(args.seed)
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    train_x, test_x = data.train_x, data.test_x
    if args.limit:
        train_x = train_x[:args.limit]
    d, bs = args.latent_dim, args.batch_size

    # -- the two models, same weights
    model = VAEModel("mlp", d, args.hidden)
    opt = optim.Adam(model.parameters(), lr=args.lr)

    class TorchVAE(torch.nn.Module):   # pytorch/examples' vae/main.py, its names and layers
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(784, args.hidden)
            self.fc21 = torch.nn.Linear(args.hidden, d)
            self.fc22 = torch.nn.Linear(args.hidden, d)
            self.fc3 = torch.nn.Linear(d, args.hidden)
            self.fc4 = torch.nn.Linear(args.hidden, 784)

    tmodel = TorchVAE()
    sd = {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}
    tmodel.load_state_dict(sd, strict=True)
    topt = torch.optim.Adam(tmodel.parameters(), lr=args.lr)

    def torch_forward(x, eps):
        h1 = torch.relu(tmodel.fc1(x.reshape(-1, 784)))
        mu, logvar = tmodel.fc21(h1), tmodel.fc22(h1)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = tmodel.fc4(torch.relu(tmodel.fc3(z))).reshape(x.shape)
        recon = TF.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = 0.5 * (logvar.exp() + mu * mu - 1 - logvar).sum(1)
        return recon.mean(), kl.mean()

    def mg_step(x, eps):
        logits, mu, logvar = model(mg.from_numpy(x), mg.from_numpy(eps))
        elbo = vae_loss(logits, mg.from_numpy(x), mu, logvar)
        opt.zero_grad()
        elbo.loss.backward()
        opt.step()
        return elbo.loss.item()

    def torch_step(x, eps):
        recon, kl = torch_forward(torch.from_numpy(x), torch.from_numpy(eps))
        loss = recon + kl
        topt.zero_grad()
        loss.backward()
        topt.step()
        return loss.item()

    def mg_test(eps_all):
        tot = 0.0
        with mg.no_grad():
            for i in range(0, len(test_x), 500):
                x = mg.from_numpy(test_x[i:i + 500])
                logits, mu, logvar = model(x, mg.from_numpy(eps_all[i:i + 500]))
                tot += vae_loss(logits, x, mu, logvar).loss.item() * x.shape[0]
        return tot / len(test_x)

    def torch_test(eps_all):
        tot = 0.0
        with torch.no_grad():
            for i in range(0, len(test_x), 500):
                recon, kl = torch_forward(torch.from_numpy(test_x[i:i + 500]),
                                          torch.from_numpy(eps_all[i:i + 500]))
                tot += (recon + kl).item() * min(500, len(test_x) - i)
        return tot / len(test_x)

    def run_epoch(step, batches):
        losses, times = [], []
        for x, eps in batches:
            t0 = time.perf_counter()
            losses.append(step(x, eps))
            times.append(time.perf_counter() - t0)
        return float(np.mean(losses)), times

    rng = np.random.default_rng(args.seed)

    def epoch_batches():
        perm = rng.permutation(len(train_x))
        out = []
        for i in range(0, len(perm), bs):
            idx = np.sort(perm[i:i + bs])
            out.append((np.ascontiguousarray(train_x[idx]),
                        rng.standard_normal((len(idx), d), dtype=np.float32)))
        return out

    print(f"MLP VAE 784-{args.hidden}-{d}, Adam lr {args.lr}, batch {bs}, dataset {data.name}: "
          f"{len(train_x)} train / {len(test_x)} test, {args.threads} threads "
          f"(torch {torch.__version__}, numpy {np.__version__})")
    print(f"{'epoch':>5} | {'train loss':>21} | {'test -ELBO (nats)':>21} | {'rel diff':>8} | "
          f"{'ms/step (median)':>18} | {'s/epoch':>13} | {'ratio':>5}")
    print(f"{'':>5} | {'minigrad':>10} {'torch':>10} | {'minigrad':>10} {'torch':>10} | {'':>8} | "
          f"{'minigrad':>8} {'torch':>9} | {'minigrad':>6} {'torch':>6} | {'':>5}")
    mg_epoch_s, t_epoch_s, mg_step_ms, t_step_ms = [], [], [], []
    rel = 0.0
    for epoch in range(1, args.epochs + 1):
        batches = epoch_batches()
        eval_eps = rng.standard_normal((len(test_x), d), dtype=np.float32)
        # alternate which engine goes first, so drifting machine load hits both alike
        order = [("mg", mg_step), ("torch", torch_step)]
        if epoch % 2 == 0:
            order.reverse()
        res = {}
        for name, step in order:
            res[name] = run_epoch(step, batches)
        (mg_loss, mg_t), (t_loss, t_t) = res["mg"], res["torch"]
        mg_test_v, t_test_v = mg_test(eval_eps), torch_test(eval_eps)
        rel = (mg_test_v - t_test_v) / t_test_v
        mg_epoch_s.append(sum(mg_t))
        t_epoch_s.append(sum(t_t))
        mg_step_ms.append(1e3 * float(np.median(mg_t)))
        t_step_ms.append(1e3 * float(np.median(t_t)))
        print(f"{epoch:>5} | {mg_loss:>10.3f} {t_loss:>10.3f} | {mg_test_v:>10.3f} "
              f"{t_test_v:>10.3f} | {100 * rel:>+7.3f}% | {mg_step_ms[-1]:>8.2f} "
              f"{t_step_ms[-1]:>9.2f} | {mg_epoch_s[-1]:>6.2f} {t_epoch_s[-1]:>6.2f} | "
              f"{mg_epoch_s[-1] / t_epoch_s[-1]:>5.2f}", flush=True)
    med = float(np.median(mg_step_ms)) / float(np.median(t_step_ms))
    tot = sum(mg_epoch_s) / sum(t_epoch_s)
    print(f"final test -ELBO: minigrad {mg_test_v:.3f}, torch {t_test_v:.3f} nats/image "
          f"(relative difference {100 * rel:+.3f}%)")
    print(f"time: minigrad {np.median(mg_step_ms):.2f} ms/step, torch "
          f"{np.median(t_step_ms):.2f} ms/step (median over epochs of per-epoch medians); "
          f"ratio minigrad/torch: {med:.2f} per step, {tot:.2f} over all epochs")

    if args.profile:
        import cProfile
        import pstats
        batches = epoch_batches()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(run_epoch, mg_step, batches)
        print(f"\ncProfile of one minigrad epoch ({len(batches)} steps, "
              f"{time.perf_counter() - t0:.2f} s under the profiler):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
