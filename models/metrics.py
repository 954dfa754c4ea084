"""Sample-quality metrics for the generative models, on the shipped scorer.

Every number here comes from one fixed classifier, trained once and shipped in the
package (models/scorer/mnist-10k.npz; models/evaluation.py::load_scorer), so that
runs on any machine, in any order, score alike. A run never trains a scorer.

Frechet distance on classifier features ("classifier-FID"). Fit a Gaussian to the
penultimate-layer features of a classifier on real images (mu_r, S_r) and on
generated images (mu_g, S_g); the Frechet (2-Wasserstein) distance between them is

    FD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})

Means and covariances are computed on the backend (NumPy, CuPy or strict); only the
two (d,) means and (d, d) covariances travel to the host, where SciPy's
``linalg.sqrtm`` takes the matrix square root (its real part: round-off leaves a
tiny imaginary part), as in the reference FID code (pytorch-fid).

Inception score on the same classifier's class probabilities p(y|x):

    IS = exp( E_x KL(p(y|x) || p(y)) ),   p(y) = E_x p(y|x)

between 1 (every sample gets the same prediction, or every prediction is uniform)
and n_classes (confident predictions, spread evenly over the classes).

NOT comparable with published FID / IS numbers: those use the Inception-v3
network's 2048-d pool features / ImageNet classes on 50,000 samples. Here the
features come from the small MNIST scorer (models/blocks.py's ConvNet), and the
sample sizes are small (FD is biased upwards for small n). Compare numbers only
with each other at the same n, and against the "floor": real images vs disjoint
real images, which is what a perfect generator would score.

Mode coverage: the scorer's predicted class of every sample gives the class
histogram, and ``rarest_class_share`` (the smallest class's fraction; 1 / n_classes
for even coverage, 0 when a class is never drawn) shows mode dropping, which
neither FID nor IS shows at this sample size.
"""
from __future__ import annotations

import argparse
import math
import warnings

import numpy as np  # host-side: (d,) means and (d, d) covariances from Tensor.numpy()
from scipy import linalg  # host-side: matrix square root on host arrays

import minigrad as mg
from models.cli import non_negative_int
from models.evaluation import evaluating, load_scorer
from models.figures import draw_bars


# ----------------------------------------------------------------------------- Frechet distance
def gaussian_fit(features):
    """(mean (d,), covariance (d, d)) of an (N, d) feature Tensor, computed on its
    backend; the covariance is unbiased (divides by N - 1), like np.cov."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"gaussian_fit: features must have shape (N >= 2, d), got "
                         f"{features.shape}")
    with mg.no_grad():
        f = features.detach().double()
        mu = f.mean(axis=0)
        centred = f - mu
        cov = (centred.T @ centred) / (f.shape[0] - 1)
    return mu, cov


def frechet_distance_from_stats(mu1, cov1, mu2, cov2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) on HOST arrays (NumPy).

    As in pytorch-fid: if the product is singular (sqrtm warns or returns non-finite
    values), eps is added to both diagonals; the imaginary part that round-off
    leaves in sqrtm's result is dropped."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"frechet_distance: means {mu1.shape}, {mu2.shape} and covariances "
                         f"{cov1.shape}, {cov2.shape} do not fit")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            covmean = linalg.sqrtm(cov1 @ cov2)
        except linalg.LinAlgWarning:       # singular product (e.g. collapsed samples)
            covmean = np.full(cov1.shape, np.nan)
    if not np.isfinite(covmean).all():
        offset = np.eye(cov1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def frechet_distance(features1, features2):
    """Frechet distance between Gaussian fits of two (N, d) feature Tensors (on any
    backend): moments on the backend, the matrix square root on the host."""
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise ValueError(f"frechet_distance: features must be (N, d) with the same d, got "
                         f"{features1.shape} and {features2.shape}")
    mu1, cov1 = gaussian_fit(features1)
    mu2, cov2 = gaussian_fit(features2)
    return frechet_distance_from_stats(mu1.numpy(), cov1.numpy(), mu2.numpy(), cov2.numpy())


# ----------------------------------------------------------------------------- inception score
def inception_score_from_log_probs(log_probs):
    """exp(mean_x KL(p(y|x) || p(y))) from (N, C) log class probabilities (a Tensor),
    p(y) = mean_x p(y|x). Terms with p(y|x) = 0 contribute 0 (x log x -> 0)."""
    if log_probs.ndim != 2:
        raise ValueError(f"inception_score: expected (N, C) log-probabilities, got shape "
                         f"{log_probs.shape}")
    with mg.no_grad():
        lp = log_probs.detach().double()
        p = lp.exp()
        marginal = p.mean(axis=0)                      # p(y); 0 only where every p(y|x) is 0
        log_marginal = mg.where(marginal > 0, marginal, mg.ones_like(marginal)).log()
        safe_lp = mg.where(p > 0, lp, mg.zeros_like(lp))
        safe_lm = mg.where(p > 0, log_marginal.broadcast_to(lp.shape), mg.zeros_like(lp))
        kl = (p * (safe_lp - safe_lm)).sum(axis=1)
        return math.exp(kl.mean().item())


def inception_score(logits):
    """Inception score of (N, C) classifier logits: exp(E_x KL(p(y|x) || p(y)))."""
    return inception_score_from_log_probs(mg.log_softmax(logits.detach(), axis=1))


def inception_score_from_probs(probs):
    """Inception score of (N, C) class probabilities (rows summing to 1)."""
    with mg.no_grad():
        p = probs.detach().double()
        lp = mg.where(p > 0, p, mg.ones_like(p)).log()     # log 1 = 0 where p = 0
        return inception_score_from_log_probs(mg.where(p > 0, lp, mg.full_like(p, -math.inf)))


# ----------------------------------------------------------------------------- on a classifier
def classifier_outputs(classifier, images, batch_size=500):
    """(features (N, d), logits (N, C)) of ``classifier`` on (N, 1, 28, 28) images
    (a Tensor on the classifier's backend), in batches, in eval mode without a graph.
    The classifier needs ``features(x)`` (penultimate layer) and ``__call__`` (logits)."""
    feats, logits = [], []
    with evaluating(classifier):
        for start in range(0, images.shape[0], batch_size):
            x = images[start:min(start + batch_size, images.shape[0])]  # in-bounds stop: Array API
            feats.append(classifier.features(x))
            logits.append(classifier(x))
    return mg.cat(feats, axis=0), mg.cat(logits, axis=0)


def class_histogram(logits, n_classes=None):
    """Counts of the predicted classes (argmax of (N, C) logits), a list of C ints."""
    c = n_classes or logits.shape[1]
    pred = logits.argmax(axis=1)
    return [int((pred == k).astype("int64").sum().item()) for k in range(c)]


class SampleQuality:
    """Classifier-FID, inception score and class histogram of generated images, on
    the run's scorer, against ``n`` real TEST images of the run (their statistics
    computed once).

        quality = sample_quality(run, n=1000)     # None if the data set has no scorer
        quality(samples)  -> {"fid", "inception_score", "rarest_class_share",
                              "class_histogram"}
        quality.real_floor() -> the same for n real TRAIN images (disjoint from test):
                                what a perfect generator would score at this n.

    ``samples`` are (n, 1, 28, 28) Tensors or host arrays with pixels in [0, 1].
    """

    def __init__(self, run, n=1000, classifier=None):
        self.run = run
        self.classifier = classifier if classifier is not None else load_scorer(run)
        if self.classifier is None:
            raise ValueError(f"no sample scorer for --dataset {run.args.dataset}: pass "
                             "--scorer PATH or --metric-samples 0")
        self.n = min(int(n), run.data.test_x.shape[0])
        if self.n < 2:
            raise ValueError(f"SampleQuality: needs at least 2 test images, got {self.n}")
        real = run.tensor(run.data.test_x[:self.n])
        feats, logits = classifier_outputs(self.classifier, real)
        mu, cov = gaussian_fit(feats)
        self.real_mu, self.real_cov = mu.numpy(), cov.numpy()
        self.real_inception_score = inception_score(logits)

    def __call__(self, images):
        if not isinstance(images, mg.Tensor):
            images = self.run.tensor(images)
        feats, logits = classifier_outputs(self.classifier, images.detach())
        mu, cov = gaussian_fit(feats)
        counts = class_histogram(logits)
        return {"fid": frechet_distance_from_stats(mu.numpy(), cov.numpy(), self.real_mu,
                                                   self.real_cov),
                "inception_score": inception_score(logits),
                "rarest_class_share": min(counts) / max(sum(counts), 1),
                "class_histogram": counts}

    def real_floor(self):
        """Scores of n real training images against the n real test images."""
        n = min(self.n, self.run.data.train_x.shape[0])
        return self(self.run.data.train_x[:n])


def sample_quality(run, n):
    """``SampleQuality(run, n)``, or None when ``n`` is 0 or the run's data set has no
    scorer (fashion-mnist without --scorer: said once in the run's log)."""
    if not n:
        return None
    if load_scorer(run) is None:
        run.print(f"(no sample scorer ships for {run.args.dataset}: classifier-FID, inception "
                  "score and class histogram skipped; --scorer PATH gives one)")
        return None
    return SampleQuality(run, n)


# ----------------------------------------------------------------------------- the CLI flag
def sample_count(text):
    """argparse type of --metric-samples: 0 (skip the metrics), or at least 2 (a
    covariance needs two samples)."""
    n = non_negative_int(text)
    if n == 1:
        raise argparse.ArgumentTypeError("must be 0 (skip) or >= 2 (a covariance needs two "
                                         "samples), got 1")
    return n


def add_sample_quality_argument(parser):
    """``--metric-samples`` and ``--scorer``: the same flags for every generative model."""
    parser.add_argument("--metric-samples", type=sample_count, default=1000,
                        help="generated images for classifier-FID / inception score / class "
                             "histogram (0 skips them)")
    parser.add_argument("--scorer", default=None, metavar="PATH",
                        help="the classifier that scores samples: a classifier-<dataset>.npz "
                             "of python -m models.classifier (default: the scorer shipped "
                             "for mnist-10k and mnist)")


def final_sample_quality(quality, samples):
    """The final-evaluation record of the generative models of a run. ``samples`` maps a
    key prefix to generated images, e.g. ``{"gan_": ..., "vae_": ...}`` or ``{"": ...}``;
    each gets its classifier-FID and inception score (keys ``<prefix>fid``,
    ``<prefix>inception_score``, ``<prefix>rarest_class_share``,
    ``<prefix>class_histogram``), next to the floor that real images reach at the
    same n (``real_...``, computed once)."""
    out = {}
    for prefix, images in samples.items():
        out.update({f"{prefix}{k}": v for k, v in quality(images).items()})
    out.update({f"real_{k}": v for k, v in quality.real_floor().items()})
    out["metric_samples"] = quality.n
    return out


def report_sample_quality(run, out):
    """One line for the run's log from a ``final_sample_quality`` record."""
    run.print(f"prior samples: classifier-FID {out['fid']:.2f}, inception score "
              f"{out['inception_score']:.2f}, rarest class {out['rarest_class_share']:.3f} "
              f"(real train images vs real test images: {out['real_fid']:.2f}, "
              f"{out['real_inception_score']:.2f}, {out['real_rarest_class_share']:.3f}; "
              f"n = {out['metric_samples']})")


def draw_class_histograms(run, filename, record, models):
    """Mode coverage: the share of each class among a final record's samples, one bar
    per class for each (key prefix, label) of ``models`` and for the real train
    images; nothing when the record has no histograms (--metric-samples 0)."""
    series = [(label, record[f"{prefix}class_histogram"]) for prefix, label in models
              if f"{prefix}class_histogram" in record]
    if not series:
        return
    if "real_class_histogram" in record:
        series.append(("real train images", record["real_class_histogram"]))
    k = len(series[0][1])
    names = run.data.class_names or list(range(k))
    shares = [(f"{label} (rarest {min(c) / max(sum(c), 1):.3f})",
               [v / max(sum(c), 1) for v in c]) for label, c in series]
    draw_bars(run, filename, names, shares, "class predicted by the scorer",
              "share of samples", f"mode coverage: classes of {sum(series[0][1])} samples",
              line=(1 / k, "even share"))
