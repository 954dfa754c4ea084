"""How far is issue 18's "classifier-FID at most 3x the floor"? The shipped scorer's
FID of real training digits, slightly changed, against the real test digits.

    python benchmarks/scorer_sensitivity.py                       # real digits only
    python benchmarks/scorer_sensitivity.py runs/gan/samples.npz  # and a model's samples

Each row scores 1,000 real training images after one small change (a Gaussian
blur, a lower contrast, binarisation, pixel noise) against 1,000 real test
images, as the models' metrics do (models/metrics.py), so a sample FID can be
read against what a near-perfect generator would score. For each samples file it
also scores real training digits drawn in the class shares that the scorer sees
in the samples: what a generator with perfect strokes and that file's class
balance would score, so the FID's part due to mode coverage shows.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np  # host-side image changes
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minigrad as mg  # noqa: E402
from minigrad.data import load_dataset  # noqa: E402
from models.evaluation import SCORER_PATH, load_classifier  # noqa: E402
from models.metrics import (class_histogram, classifier_outputs,  # noqa: E402
                            frechet_distance_from_stats, gaussian_fit)

N = 1000


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    data = load_dataset("mnist-10k")
    scorer = load_classifier(SCORER_PATH)

    def stats(images):
        feats, logits = classifier_outputs(scorer, mg.from_numpy(
            np.ascontiguousarray(images, dtype=np.float32)))
        mu, cov = gaussian_fit(feats)
        return mu.numpy(), cov.numpy(), class_histogram(logits)

    real_mu, real_cov, _ = stats(data.test_x[:N])
    train = data.train_x[:N]
    rows = [("real training digits (the floor)", train),
            ("pixel noise N(0, 0.05^2), clipped", np.clip(
                train + 0.05 * np.random.default_rng(0).standard_normal(train.shape), 0, 1)),
            ("contrast x 0.95", train * 0.95), ("contrast x 0.9", train * 0.9),
            ("contrast x 0.8", train * 0.8),
            ("Gaussian blur sigma 0.5 px", gaussian_filter(train, (0, 0, 0.5, 0.5))),
            ("Gaussian blur sigma 0.8 px", gaussian_filter(train, (0, 0, 0.8, 0.8))),
            ("binarised at 0.5", (train > 0.5).astype(np.float32))]
    rows = [(label, stats(images)) for label, images in rows]
    for path in argv:
        scored = stats(np.load(path)["images"][:N])
        rows.append((path, scored))
        rows.append((f"real training digits in the class shares the scorer gives {path}",
                     stats(in_class_shares(data, scored[2]))))
    print("| images (1,000) | classifier-FID | rarest class share |\n|---|---|---|")
    for label, (mu, cov, counts) in rows:
        fid = frechet_distance_from_stats(mu, cov, real_mu, real_cov)
        print(f"| {label} | {fid:.1f} | {min(counts) / sum(counts):.3f} |")


def in_class_shares(data, counts):
    """sum(counts) real training digits, counts[c] of label c (the first ones of
    each): a perfect generator with a model's class balance."""
    picks = [np.flatnonzero(data.train_y == c)[:n] for c, n in enumerate(counts)]
    if any(len(p) < n for p, n in zip(picks, counts)):
        raise ValueError("in_class_shares: too few training digits of some class")
    return data.train_x[np.concatenate(picks)]


if __name__ == "__main__":
    main()
