"""Evaluation that several models share, written once.

- ``evaluating(*modules)``: eval mode and no gradient tape for a block;
- ``embed``: a network applied to a host array in batches;
- ``accuracy`` and k-nearest-neighbour accuracy;
- verification: fixed test pairs and triplets, ROC-AUC, the best distance threshold;
- the VAE family's test -ELBO and importance-weighted log-likelihood, and
  binarised MNIST (dynamic for training, fixed for the test set);
- ``generate``: decoded samples of N(0, I) codes, in batches;
- loading a trained classifier: the shipped sample scorer, or another one.
"""
from __future__ import annotations

import contextlib
import pathlib

import numpy as np  # host-side: fixed evaluation pairs and ROC metrics on host arrays

import minigrad as mg
from models import losses as L
from models.blocks import N_PIXELS, ConvNet
from models.cli import non_negative_int


@contextlib.contextmanager
def evaluating(*modules):
    """``with evaluating(model):`` runs the block in eval mode (Dropout off, BatchNorm
    on running statistics) without recording a graph, as ``model.eval()`` and
    ``torch.no_grad()`` do in PyTorch; every module's mode is restored afterwards."""
    modes = [(m, m.training) for root in modules for m in root.modules()]
    for root in modules:
        root.eval()
    try:
        with mg.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.__dict__["training"] = mode


def embed(fn, x, run, batch_size=500):
    """``fn`` applied to a host array ``x`` (N, ...) in batches, without a graph:
    one (N, ...) Tensor on the run's backend."""
    with mg.no_grad():
        return mg.cat([fn(run.tensor(x[i:i + batch_size])) for i in range(0, len(x), batch_size)],
                      axis=0)


# ----------------------------------------------------------------------------- classification
def accuracy(classify, x, y, batch_size=500):
    """Fraction of the rows of ``x`` that ``classify`` (x -> class scores) assigns
    their label ``y`` (Tensors on one backend)."""
    correct = 0
    with mg.no_grad():
        for s in range(0, x.shape[0], batch_size):
            e = min(s + batch_size, x.shape[0])   # in-bounds slice stops: the Array API
            pred = classify(x[s:e]).argmax(axis=1)
            correct += int((pred == y[s:e]).astype("int64").sum().item())
    return correct / max(x.shape[0], 1)


def knn_predict(train_e, train_y, query_e, k=1, n_classes=10, chunk=500):
    """k-nearest-neighbour labels of the rows of ``query_e`` among ``train_e`` (all
    tensors on one backend; ``train_y`` int64). Distances are one (chunk, N_train)
    matrix at a time (no loop over pairs); the vote counts labels among the k
    nearest, ties broken in favour of the nearest neighbour's label, then the
    smaller label. Returns an int64 tensor of predictions."""
    be = train_e._backend
    xp = be.xp
    classes = be.arange(n_classes, dtype="int64")
    preds = []
    with mg.no_grad():
        n = query_e.shape[0]
        for s in range(0, n, chunk):
            d2 = L.pairwise_squared_distances(query_e[s:min(s + chunk, n)], train_e).data
            nearest = xp.argsort(d2, axis=1)[:, :k]                        # (c, k)
            lab = xp.reshape(xp.take(train_y.data, xp.reshape(nearest, (-1,))), nearest.shape)
            votes = xp.sum(xp.astype(lab[:, :, None] == classes[None, None, :], d2.dtype),
                           axis=1)
            votes = votes + 0.5 * xp.astype(lab[:, :1] == classes[None, :], d2.dtype)
            preds.append(xp.argmax(votes, axis=1))
    return mg.Tensor(xp.concat(preds), backend=be)


def knn_accuracy(train_e, train_y, query_e, query_y, k=1, n_classes=10):
    pred = knn_predict(train_e, train_y, query_e, k, n_classes)
    return float((pred == query_y).float().mean().item())


def pixel_knn_accuracy(run, train_x, train_y, test_x, test_y, k=1, n_classes=10):
    """The no-learning baseline: k-NN accuracy on the raw pixels (squared Euclidean)
    of host image arrays (N, 1, 28, 28)."""
    flat = lambda x: run.tensor(np.reshape(x, (len(x), -1)))     # noqa: E731
    return knn_accuracy(flat(train_x), run.tensor(train_y), flat(test_x), run.tensor(test_y),
                        k, n_classes)


# ----------------------------------------------------------------------------- verification
def verification_pairs(labels, n_pairs, seed):
    """Host-side: ``n_pairs`` same-class and ``n_pairs`` different-class index pairs of
    the (host) labels, drawn with a fixed seed: arrays (first, second, same)."""
    rng = np.random.default_rng(seed)
    members = _members(labels)
    has_positive = np.flatnonzero([len(members[c]) > 1 for c in labels])
    first = np.r_[rng.choice(has_positive, n_pairs), rng.integers(0, len(labels), n_pairs)]
    second = np.r_[[_same_class_partner(rng, labels, members, i) for i in first[:n_pairs]],
                   [_other_class_partner(rng, labels, i) for i in first[n_pairs:]]]
    return first, second.astype(np.int64), np.repeat([1, 0], n_pairs)


def verification_triplets(labels, n_triplets, seed):
    """Host-side: ``n_triplets`` (anchor, positive, negative) index triplets of the
    (host) labels, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    members = _members(labels)
    anchor = rng.choice(np.flatnonzero([len(members[c]) > 1 for c in labels]), n_triplets)
    pos = np.array([_same_class_partner(rng, labels, members, i) for i in anchor])
    neg = np.array([_other_class_partner(rng, labels, i) for i in anchor])
    return anchor, pos.astype(np.int64), neg.astype(np.int64)


def _members(labels):
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    if len(members) < 2 or max(len(m) for m in members.values()) < 2:
        raise ValueError(f"the test split ({len(labels)} examples) needs two classes and a "
                         "class with two examples for evaluation pairs: raise --limit")
    return members


def _same_class_partner(rng, labels, members, i):
    others = members[labels[i]]
    j = i
    while j == i:
        j = others[rng.integers(len(others))]
    return j


def _other_class_partner(rng, labels, i):
    j = i
    while labels[j] == labels[i]:
        j = rng.integers(len(labels))
    return j


def roc_auc(scores, positive):
    """Host-side: area under the ROC curve of ``scores`` (higher = more likely
    positive) for 0/1 ``positive``: the Mann-Whitney probability that a random
    positive outscores a random negative, ties counted one half."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold_accuracy(dist, same):
    """Host-side: the best accuracy of the rule "same class iff distance <= t" over
    all thresholds t, and that t (midway between two sorted distances)."""
    dist = np.asarray(dist, dtype=np.float64)
    same = np.asarray(same).astype(bool)
    order = np.argsort(dist, kind="mergesort")
    d, s = dist[order], same[order]
    # accuracy with the first i sorted pairs called "same": i = 0..N
    correct = np.r_[0, np.cumsum(s)] + (~s).sum() - np.r_[0, np.cumsum(~s)]
    valid = np.r_[True, d[1:] > d[:-1], True]          # thresholds between distinct values
    correct = np.where(valid, correct, -1)
    i = int(np.argmax(correct))
    t = d[0] - 1.0 if i == 0 else (d[-1] + 1.0 if i == len(d) else (d[i - 1] + d[i]) / 2)
    return float(correct[i] / len(d)), float(t)


# ----------------------------------------------------------------------------- the VAE family
def evaluate_elbo(run, forward, nll=L.bernoulli_nll, batch_size=500):
    """Test-set negative ELBO (beta = 1) in nats per image, split into the expected
    reconstruction term and the KL term. ``forward(x, y) -> (logits, mu, logvar)``;
    ``nll(logits, x)`` is the decoder's -log P(x|h) per image (the model's
    likelihood: Bernoulli by default)."""
    recon = kl = 0.0
    n = 0
    with mg.no_grad():
        for x, y in run.loader("test", batch_size=batch_size):
            logits, mu, logvar = forward(x, y)
            recon += nll(logits, x).sum().item()
            kl += L.gaussian_kl(mu, logvar).sum().item()
            n += x.shape[0]
    return {"test_loss": (recon + kl) / n, "test_recon": recon / n, "test_kl": kl / n}


def evaluate_iw_log_likelihood(run, encode, decode, k, nll=L.bernoulli_nll, rows=10_000):
    """Mean over the test set of the K-sample importance-weighted estimate of log p(x)
    (nats per image). ``encode(x, y) -> (mu, logvar)``; ``decode(h, y) -> logits`` for
    h of shape (K*B, d) and y the labels repeated K times (B-blocks); ``nll(logits,
    x)`` the decoder's -log P(x|h) per image. Batches hold about ``rows`` decoder
    rows (K * batch) to bound memory."""
    total, n = 0.0, 0
    with mg.no_grad():
        for x, y in run.loader("test", batch_size=max(1, rows // k)):
            b = x.shape[0]
            mu, logvar = encode(x, y)
            x_rep = mg.broadcast_to(x.reshape(1, *x.shape), (k, *x.shape)) \
                .reshape(k * b, *x.shape[1:])
            y_rep = y[run.tensor(np.tile(np.arange(b), k))]

            def log_likelihood(h):  # (K, B, d) -> log P(x|h) of shape (K, B)
                logits = decode(h.reshape(k * b, h.shape[-1]), y_rep)
                return -nll(logits.reshape(x_rep.shape), x_rep).reshape(k, b)

            total += L.iw_log_likelihood(log_likelihood, mu, logvar, k=k).sum().item()
            n += b
    return total / n


BINARIZE_TEST_SEED = 2015   # the fixed binarised test set is the same for every --seed


def binarize_fixed(x, seed=BINARIZE_TEST_SEED):
    """Host-side: one fixed stochastic binarisation of images in [0, 1], each pixel
    1 with probability its grey level (the binarised-MNIST test set of Burda et al.
    2016). Row i gets the same draws whatever the number of rows (--limit)."""
    u = np.random.default_rng(seed).random(x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def binarized_data(run, args):
    """--binarize: binarise the run's test set once (``binarize_fixed``) and return the
    ``DynamicBinarization`` for its training batches (a model names it in its
    checkpoint); None without --binarize."""
    if not args.binarize:
        return None
    run.data.test_x = binarize_fixed(run.data.test_x)
    return DynamicBinarization(run, args.seed)


class DynamicBinarization:
    """``binarize(x)``: a fresh binarisation x' ~ Bernoulli(x) of a batch every time
    it is called, so every epoch sees each training image resampled. The draws come
    from the object's own generator (seeded; ``state_dict`` holds it, so a model that
    names it in ``checkpoint`` resumes with the same draws)."""

    def __init__(self, run, seed):
        self.run = run
        self.rng = np.random.default_rng([seed, BINARIZE_TEST_SEED])

    def __call__(self, x):
        u = self.run.tensor(self.rng.random(x.shape, dtype=np.float32))
        return (u < x).astype(x.dtype.name)

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


def likelihood_record(run, likelihood, binarized, **values):
    """The VAE family's final likelihood numbers, named after what they are: which
    decoder (``likelihood``, a blocks.PixelLikelihood), whether the data were
    binarised, and each value as <name>_<likelihood>[_binarized], e.g.
    test_iw_log_likelihood_bernoulli_binarized. A Gaussian's numbers are densities of
    continuous pixels, a Bernoulli's probabilities of binary ones (of grey levels
    used as targets, unless binarised): the names keep them apart. Prints them."""
    tag = likelihood.name() + ("_binarized" if binarized else "")
    sigma = likelihood.sigma if likelihood.kind == "gaussian" else None
    out = {"likelihood": likelihood.kind, "sigma": sigma, "binarized": bool(binarized)}
    out.update({f"{k}_{tag}": v for k, v in values.items()})
    what = f"{likelihood.name()} decoder" + (", binarised data" if binarized else "")
    said = {"test_neg_elbo": "test -ELBO", "test_iw_log_likelihood":
            "test log p(x) >= (importance-weighted)"}
    for k, v in values.items():
        run.print(f"{said.get(k, k)} {v:.2f} nats/image ({what})")
    return out


def add_iw_samples_argument(parser, default):
    """``--iw-samples K``: one flag for the VAE family's importance-weighted bound."""
    parser.add_argument("--iw-samples", type=non_negative_int, default=default,
                        help="K for the importance-weighted test log-likelihood after the "
                             "last epoch (0 skips it)")


def generate(decode, n, latent_dim, noise=None, batch_size=500):
    """n images ``decode(h)`` (pixels in [0, 1]) of codes h ~ N(0, I) from the
    backend's generator (or the rows of ``noise``), in batches, without a graph."""
    out = []
    with mg.no_grad():
        for s in range(0, n, batch_size):
            b = min(batch_size, n - s)
            h = mg.randn(b, latent_dim) if noise is None else noise[s:s + b]
            out.append(decode(h))
    return mg.cat(out, axis=0)


# ----------------------------------------------------------------------------- trained models
SCORER_PATH = pathlib.Path(__file__).with_name("scorer") / "mnist-10k.npz"
SCORER_DATASETS = ("mnist-10k", "mnist")        # the digits the shipped scorer judges


def load_classifier(path, backend=None):
    """An eval-mode ``ConvNet`` from a file: a classifier run's
    classifier-<dataset>.npz or its checkpoint.npz, or the shipped scorer. Its shape
    (width, hidden units, classes) is read from the weights; loading draws nothing
    from the backend's generator, and the weights never require gradients. Kept in
    memory for the rest of the process (a file is read once per backend)."""
    backend = mg.get_backend(backend)
    path = pathlib.Path(path)
    key = (str(path.resolve()), backend.name)
    if key in _CACHE:
        return _CACHE[key]
    saved = mg.load(path, backend=backend)
    state = saved["state"]["model"] if saved.get("model") == "classifier" else saved["state"]
    width, hidden = state["trunk.0.weight"].shape[0], state["fc.0.weight"].shape[0]
    rng = backend.rng_state()           # the initialisation below is overwritten anyway
    with mg.backend(backend.name):
        model = ConvNet(state["head.weight"].shape[0], int(width), int(hidden))
    backend.set_rng_state(rng)
    model.load_state_dict(state)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    _CACHE[key] = model
    return model


_CACHE: dict = {}


def load_scorer(run):
    """The classifier that judges a run's samples (classifier-FID, inception score,
    class histogram, CVAE label fidelity), or None where the run's data set has none.

    It is fixed: ``--scorer PATH`` if the run was given one (a classifier-<dataset>.npz
    of ``python -m models.classifier``), else the scorer shipped in the package
    (models/scorer/mnist-10k.npz, for the digit sets mnist-10k and mnist; the README
    names the command that trained it). A run never trains, changes or caches a
    scorer on disk, so numbers of runs on any machine are comparable."""
    path = getattr(run.args, "scorer", None)
    if path is None:
        if run.args.dataset not in SCORER_DATASETS:
            return None
        path = SCORER_PATH
    return load_classifier(path, run.backend)
