"""Evaluation that several models share, written once.

- ``evaluating(*modules)``: eval mode and no gradient tape for a block;
- ``embed``: a network applied to a host array in batches;
- ``accuracy`` and k-nearest-neighbour accuracy;
- verification: fixed test pairs and triplets, ROC-AUC, the best distance threshold;
- the VAE family's test -ELBO and importance-weighted log-likelihood, and
  binarised MNIST (dynamic for training, fixed for the test set);
- ``generate``: decoded samples of N(0, I) codes, in batches;
- loading a trained model: the toolkit classifier, a VAE run's model.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import types

import numpy as np  # host-side: fixed evaluation pairs and ROC metrics on host arrays

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from models import losses as L
from models.blocks import N_PIXELS, ConvNet, VAEModel
from models.cli import default_folder, non_negative_int, train_epoch


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
def classifier_weights_path(dataset, folder=None):
    """Where the toolkit classifier of a data set lives: ``folder``, else
    $MINIGRAD_CLASSIFIER_DIR, else the folder of ``python -m models.classifier
    --dataset <dataset>``; the file is classifier-<dataset>.npz."""
    folder = folder or os.environ.get("MINIGRAD_CLASSIFIER_DIR") or \
        default_folder("classifier", dataset)
    return pathlib.Path(folder) / f"classifier-{dataset}.npz"


_CACHE: dict = {}


def load_pretrained_classifier(run_or_backend=None, path=None, train_if_missing=True, epochs=3,
                               dataset=None):
    """An eval-mode ``ConvNet`` for a data set, on a backend.

    ``run_or_backend`` is a CLI run (its backend, ``--dataset`` and ``--data-dir``
    are used) or a backend / backend name / None for the current one (then
    ``dataset``, default ``mnist-10k``). Loads ``path`` (default
    ``classifier_weights_path(dataset)``; a classifier run's ``checkpoint.npz``
    works too); if it is missing, trains one on the FULL training split of the data
    set (not the run's ``--limit``), saves it there and returns it. Kept in memory
    for the rest of the process. The caller's random streams are left as they were:
    loading or training a scorer never shifts a model's training noise.
    """
    if hasattr(run_or_backend, "args") and hasattr(run_or_backend, "backend"):
        run = run_or_backend
    else:
        run = types.SimpleNamespace(
            args=types.SimpleNamespace(dataset=dataset or "mnist-10k", data_dir=None),
            backend=mg.get_backend(run_or_backend), print=lambda *a, **k: None)
    dataset = dataset or getattr(run.args, "dataset", "mnist-10k")
    path = pathlib.Path(path) if path else classifier_weights_path(dataset)
    key = (str(path), run.backend.name)
    if key in _CACHE:
        return _CACHE[key]
    if path.is_file():
        saved = mg.load(path, backend=run.backend)
        if saved.get("model") == "classifier":     # the CLI's checkpoint.npz
            state, width = saved["state"]["model"], saved["args"].get("width", 32)
        else:                                        # classifier-<dataset>.npz
            state, width = saved["state"], saved.get("width", 32)
        rng = run.backend.rng_state()       # the initialisation below is overwritten anyway
        model = ConvNet(state["head.weight"].shape[0], int(width))
        run.backend.set_rng_state(rng)
        model.load_state_dict(state)
    elif train_if_missing:
        model = _train_toolkit_classifier(run, dataset, epochs)
        mg.save({"dataset": dataset, "width": 32, "state": model.state_dict()}, path)
    else:
        raise FileNotFoundError(f"no pretrained classifier at {path}; run "
                                f"`python -m models.classifier --dataset {dataset}` first")
    model.eval()
    _CACHE[key] = model
    return model


def _train_toolkit_classifier(run, dataset, epochs):
    """Train a ConvNet on a data set with a generator of its own (seed 1234), leaving
    the run's random streams as they were."""
    from minigrad.data import DataLoader, TensorDataset, load_dataset
    data = load_dataset(dataset, getattr(run.args, "data_dir", None))
    run.print(f"training the toolkit classifier on {dataset} ({epochs} epochs) for the metrics...")
    # gradients on: a model may ask for its scorer inside an evaluation block
    with mg.backend(run.backend.name), mg.enable_grad():
        state = run.backend.rng_state()
        run.backend.seed(1234)
        model = ConvNet(len(data.class_names))
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=128,
                            shuffle=True, seed=1234)

        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {}

        for _ in range(epochs):
            train_epoch(step, loader)
        run.backend.set_rng_state(state)
    return model


def load_vae(run, folder=None):
    """The VAE of a ``python -m models.vae`` run (default: the folder of a default run
    on the run's data set), in eval mode on the run's backend, or None if there is
    none or it does not load: a comparison with it is optional, never a failure."""
    path = pathlib.Path(folder or default_folder("vae", run.args.dataset)) / "checkpoint.npz"
    if not path.is_file():
        return None
    try:
        ckpt = mg.load(path, backend=run.backend)
        if ckpt.get("model") != "vae":
            return None
        a = ckpt["args"]
        model = VAEModel(a.get("arch", "mlp"), a.get("latent_dim", 20), a.get("hidden"))
        model.load_state_dict(ckpt["state"]["model"])
        return model.eval()
    except Exception as e:  # noqa: BLE001 (a comparison only)
        run.print(f"(VAE comparison skipped: {path}: {type(e).__name__}: {e})")
        return None
