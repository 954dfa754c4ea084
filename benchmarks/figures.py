"""Regenerate every figure in docs/figures/ from the code as it is: ``python -m benchmarks.figures``.

Runs every command of the README's model tables, in the README's order (each in
its own process, into its default folder runs/<name>...), then copies the figures
the README and the guide show into docs/figures/. The generative models' sample
scores use the scorer shipped in models/scorer/, which no run here retrains
(``python -m models.classifier --train-scorer`` does, on purpose). A figure in
docs/figures/ is therefore never older than the code that drew it: rerun this
after changing a model or models/figures.py.

    python -m benchmarks.figures                  # everything (several minutes on a CPU)
    python -m benchmarks.figures --only vae gan   # the jobs whose name starts so
    python -m benchmarks.figures --list           # the commands, without running them

It prints each command's wall time and final metrics: the README's tables come from them.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "figures"

# (job, the command's flags, its default folder, {figure in the run: name in docs/figures}),
# in the README's order: every row of its model tables, so that one run of this file
# remakes them all (a job with no figures is a table row only)
JOBS = [
    ("vae", ["vae"], "runs/vae",
     {f: f for f in ("vae_samples.png", "vae_reconstructions.png", "vae_interpolation.png",
                     "vae_loss.png")}),
    ("vae-binarize", ["vae", "--binarize"], "runs/vae-binarize", {}),
    ("vae-likelihood-gaussian", ["vae", "--likelihood", "gaussian"],
     "runs/vae-gaussian", {}),
    ("vae-likelihood-gaussian-sigma-learned",
     ["vae", "--likelihood", "gaussian", "--sigma", "learned"],
     "runs/vae-gaussian-sigmalearned", {}),
    ("cvae", ["cvae"], "runs/cvae",
     {f: f for f in ("cvae_samples.png", "cvae_style_transfer.png")}),
    ("cvae-latent-dim20", ["cvae", "--latent-dim", "20"], "runs/cvae-latent-dim20",
     {"cvae_style_transfer.png": "cvae_style_transfer_latent20.png"}),
    ("autoencoder", ["autoencoder"], "runs/autoencoder",
     {f: f for f in ("autoencoder_manifold.png", "autoencoder_reconstructions.png")}),
    ("autoencoder-loss-squared-norm", ["autoencoder", "--loss", "squared-norm"],
     "runs/autoencoder-squared-norm", {}),
    ("vae-latent-dim2", ["vae", "--latent-dim", "2"], "runs/vae-latent-dim2",
     {"vae_manifold.png": "vae_manifold.png"}),
    ("siamese", ["siamese"], "runs/siamese",
     {f: f for f in ("siamese_embedding.png", "siamese_retrieval.png", "siamese_distances.png",
                     "siamese_loss.png")}),
    ("siamese-triplet", ["siamese", "--loss", "triplet"], "runs/siamese-triplet", {}),
    ("siamese-embedding-dim64", ["siamese", "--embedding-dim", "64"],
     "runs/siamese-embedding-dim64", {}),
    ("siamese-triplet-embedding-dim64",
     ["siamese", "--loss", "triplet", "--embedding-dim", "64"], "runs/siamese-triplet-embedding-dim64",
     {"siamese_embedding.png": "siamese_embedding_dim64.png"}),
    ("siamese-triplet-embedding-dim64-normalize",
     ["siamese", "--loss", "triplet", "--embedding-dim", "64", "--normalize"],
     "runs/siamese-triplet-embedding-dim64-normalize", {}),
    ("gan", ["gan"], "runs/gan",
     {f: f for f in ("gan_samples.png", "gan_samples_progress.png", "gan_curves.png",
                     "gan_class_histogram.png")}),
    ("vaegan", ["vaegan"], "runs/vaegan",
     {f: f for f in ("vaegan_samples.png", "vaegan_class_histogram.png")}),
    ("transfer", ["transfer"], "runs/transfer", {"transfer_accuracy.png": "transfer_accuracy.png"}),
    ("transfer-pretrained-autoencoder", ["transfer", "--pretrained", "autoencoder"],
     "runs/transfer-autoencoder", {}),
    ("classifier", ["classifier"], "runs/classifier",
     {"classifier_accuracy.png": "classifier_accuracy.png"}),
]


def command(flags):
    return [sys.executable, "-m", f"models.{flags[0]}", *flags[1:], "--quiet"]


def last_records(folder):
    """The last epoch's record and the final one, without times."""
    lines = [json.loads(s) for s in (ROOT / folder / "metrics.jsonl").read_text().splitlines()]
    keep = lambda r: {k: round(v, 4) if isinstance(v, float) else v      # noqa: E731
                      for k, v in r.items() if not k.endswith(("time_s", "per_s"))}
    return [keep(r) for r in lines[-2:]]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.figures",
                                description="Regenerate docs/figures/ from fresh model runs.")
    p.add_argument("--only", nargs="+", metavar="JOB", help="the jobs whose name starts so")
    p.add_argument("--list", action="store_true", help="print the commands and stop")
    args = p.parse_args(argv)
    jobs = [j for j in JOBS if not args.only or any(j[0].startswith(o) for o in args.only)]
    if not jobs:
        p.error(f"--only {' '.join(args.only)} matches none of: {', '.join(j[0] for j in JOBS)}")
    DOCS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg")
    for name, flags, folder, figures in jobs:
        cmd = "python -m models." + " ".join(flags)
        if args.list:
            print(f"{cmd:60s} -> {folder}: {', '.join(figures.values())}")
            continue
        print(f"== {cmd}", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run(command(flags), cwd=ROOT, env=env)
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"{cmd} failed with status {r.returncode}", file=sys.stderr)
            return r.returncode
        for src, dst in figures.items():
            shutil.copyfile(ROOT / folder / src, DOCS / dst)
        last, final = last_records(folder)
        print(f"   {seconds:.0f} s\n   last epoch: {json.dumps(last)}\n   final: {json.dumps(final)}",
              flush=True)
        print(f"   wrote {', '.join('docs/figures/' + d for d in figures.values())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
