"""The same MLP VAE trained in minigrad and in PyTorch, side by side.

    python benchmarks/vae_vs_torch.py                 # 10 epochs on the bundled mnist-10k
    python benchmarks/vae_vs_torch.py --epochs 2 --profile

Both engines start from the SAME initial weights (minigrad's PyTorch-style init,
copied into torch), see the SAME batches in the same order and the SAME
reparameterisation noise eps (drawn on the host once per step), so their loss
curves must agree up to float32 rounding: the strongest end-to-end check that
minigrad's gradients and Adam are right. Model: models/vae.py's VAEModel
(784-400-20, as in the PyTorch example), Adam lr 1e-3, batch 128, loss = mean
over the batch of BCE summed over pixels + KL (nats per image).

Timing: the two engines alternate epoch by epoch in one process with the same
thread count (--threads sets torch's and OpenBLAS's). Reported: ms per training
step (median) and seconds per epoch, and minigrad/PyTorch ratios.
``--profile`` runs one more minigrad epoch under cProfile and prints where its
time goes. PyTorch is imported only here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--dataset", default="mnist-10k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for PyTorch and for NumPy's BLAS (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true",
                   help="profile one extra minigrad epoch with cProfile")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
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
