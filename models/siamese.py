"""Siamese networks (metric learning): ``python -m models.siamese --loss contrastive|triplet``.

ONE encoder F (a small conv net) maps every image to an embedding F(x) in R^d and is
applied to each input of a pair or triplet (shared weights): training makes images of
one class land close together and images of different classes far apart.

contrastive (pairs):  L = Y * D^2 + (1 - Y) * max(margin - D, 0)^2,  D = ||F(x1) - F(x2)||
    Label convention: Y = 1 for a SAME-class pair, Y = 0 for different classes (the
    lecture's and Keras'; Hadsell et al. 2006 write Y = 0 for similar pairs).
triplet:  L = max(||F(A) - F(P)||^2 - ||F(A) - F(N)||^2 + alpha, 0)
    anchor A, positive P (A's class), negative N (another class); --mining picks the
    triplets inside each batch: random, semihard (FaceNet: the closest negative that is
    farther than the positive) or hard (batch-hard: the farthest positive and the
    closest negative of every anchor).

Pairs are drawn inside each shuffled batch and are balanced: every anchor gets one
random partner of its class (Y = 1) and one of another class (Y = 0). The batch is
embedded once and the pairs/triplets index those embeddings, which is exactly F
applied to each branch with shared weights (SiameseNet.forward(x1, x2) is the explicit
two-branch form; tests/test_siamese.py checks the two agree), at a fraction of the cost.

Evaluation on the test split: verification ROC-AUC and accuracy at the best distance
threshold on a fixed set of balanced test pairs, k-NN accuracy (k = 1, 5) of the test
embeddings against the training embeddings, the raw-pixel 1-NN baseline, and for the
triplet loss the fraction of fixed test triplets that satisfy the margin.
"""
from __future__ import annotations

import numpy as np  # host-side: ROC / threshold metrics and figures on arrays from Tensor.numpy()

import minigrad as mg
from minigrad import nn, optim
from models import losses as L
from models.cli import Experiment, run_cli

EVAL_SEED = 20061  # the fixed test pairs and triplets do not depend on --seed
EVAL_PAIRS = 2000  # positive test pairs, and as many negative ones
EVAL_TRIPLETS = 4000
N_RETRIEVAL_QUERIES = 6
N_NEIGHBOURS_SHOWN = 8


# ----------------------------------------------------------------------------- the model
class Encoder(nn.Module):
    """F: (B, 1, 28, 28) -> (B, embedding_dim). Two stride-2 3x3 convolutions
    (28 -> 14 -> 7) with ReLU, then a hidden linear layer and a linear output (no
    activation: the embedding may use the whole space)."""

    def __init__(self, embedding_dim=2, width=16, hidden=128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
            nn.Linear(hidden, embedding_dim))

    def forward(self, x):
        return self.net(x)


class SiameseNet(nn.Module):
    """One encoder shared by every branch: ``net(x1, x2)`` -> (F(x1), F(x2)),
    ``net(a, p, n)`` -> three embeddings, ``net(x)`` -> F(x). The branches' gradients
    accumulate into the same parameters because there is only one set."""

    def __init__(self, embedding_dim=2, width=16, hidden=128):
        super().__init__()
        self.encoder = Encoder(embedding_dim, width, hidden)

    def forward(self, *xs):
        if not xs:
            raise TypeError("SiameseNet: needs at least one input")
        out = tuple(self.encoder(x) for x in xs)
        return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- sampling
def balanced_pairs(labels):
    """In-batch balanced pairs: every anchor i that has another example of its class
    and one of another class in the batch gets one random same-class partner (Y = 1)
    and one random other-class partner (Y = 0), drawn with the backend's seeded
    generator. Returns index tensors (first, second) and the float 0/1 labels Y,
    with exactly as many positive as negative pairs."""
    pos, neg = L.same_class_masks(labels)
    be = labels._backend
    xp = be.xp
    pos_partner, neg_partner = L.random_partners(pos, be), L.random_partners(neg, be)
    (anchor,) = xp.nonzero(xp.any(pos, axis=1) & xp.any(neg, axis=1))
    first = xp.concat([anchor, anchor])
    second = xp.concat([xp.take(pos_partner, anchor), xp.take(neg_partner, anchor)])
    n = anchor.shape[0]
    same = xp.concat([be.ones((n,), "float32"), be.zeros((n,), "float32")])
    return (mg.Tensor(first, backend=be), mg.Tensor(second, backend=be),
            mg.Tensor(same, backend=be))


def fixed_pairs(labels, n_pairs, seed=EVAL_SEED):
    """Host-side: ``n_pairs`` same-class and ``n_pairs`` different-class index pairs
    of the (host) labels, drawn with a fixed seed: arrays (first, second, same)."""
    rng = np.random.default_rng(seed)
    members = _members(labels)
    has_positive = np.flatnonzero([len(members[c]) > 1 for c in labels])
    first = np.r_[rng.choice(has_positive, n_pairs), rng.integers(0, len(labels), n_pairs)]
    second = np.r_[[_same_class_partner(rng, labels, members, i) for i in first[:n_pairs]],
                   [_other_class_partner(rng, labels, i) for i in first[n_pairs:]]]
    return first, second.astype(np.int64), np.repeat([1, 0], n_pairs)


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


def fixed_triplets(labels, n_triplets, seed=EVAL_SEED + 1):
    """Host-side: ``n_triplets`` (anchor, positive, negative) index triplets of the
    (host) labels, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    members = _members(labels)
    anchor = rng.choice(np.flatnonzero([len(members[c]) > 1 for c in labels]), n_triplets)
    pos = np.array([_same_class_partner(rng, labels, members, i) for i in anchor])
    neg = np.array([_other_class_partner(rng, labels, i) for i in anchor])
    return anchor, pos.astype(np.int64), neg.astype(np.int64)


# ----------------------------------------------------------------------------- evaluation
def embed(encoder, x, run, batch_size=1000):
    """F(x) for a host array x (N, 1, 28, 28), in eval mode without a graph: a
    (N, d) tensor on the run's backend."""
    was_training = encoder.training
    encoder.eval()
    with mg.no_grad():
        out = mg.cat([encoder(run.tensor(x[i:i + batch_size]))
                      for i in range(0, len(x), batch_size)], axis=0)
    encoder.train(was_training)
    return out


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
            # slice stops past the end are not in the Array API standard
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


def pca_2d(e):
    """The first two principal components of the rows of ``e`` (N, d), computed
    with the backend's SVD (numpy, cupy and array_api_strict all have
    xp.linalg.svd); returns a host array (N, 2). For d <= 2 the embedding itself."""
    if e.shape[1] <= 2:
        host = e.numpy()
        return host if host.shape[1] == 2 else np.c_[host, np.zeros(len(host))]
    xp = e._backend.xp
    c = e.data - xp.mean(e.data, axis=0, keepdims=True)
    _, _, vt = xp.linalg.svd(c, full_matrices=False)
    return e._backend.to_numpy(xp.matmul(c, xp.permute_dims(vt[:2, :], (1, 0))))


# ----------------------------------------------------------------------------- the experiment
class Siamese(Experiment):
    __doc__ = __doc__
    name = "siamese"
    defaults = dict(epochs=6, batch_size=128, lr=2e-3)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--loss", choices=("contrastive", "triplet"), default="contrastive",
                            help="contrastive: Y*D^2 + (1-Y)*max(margin-D,0)^2 with Y=1 for a "
                                 "SAME-class pair (the lecture's/Keras' convention, opposite to "
                                 "Hadsell et al. 2006); triplet: max(|A-P|^2 - |A-N|^2 + alpha, 0)"
                                 " (default: %(default)s)")
        parser.add_argument("--embedding-dim", type=int, default=2,
                            help="embedding size d (2 can be drawn directly; larger for "
                                 "accuracy; default: %(default)s)")
        parser.add_argument("--margin", type=float, default=1.0,
                            help="contrastive margin on D (default: %(default)s)")
        parser.add_argument("--alpha", type=float, default=1.0,
                            help="triplet margin on squared distances (default: %(default)s)")
        parser.add_argument("--mining", choices=("random", "semihard", "hard"),
                            default="semihard",
                            help="triplet selection inside each batch; 'hard' (batch-hard) "
                                 "from the first step can collapse every embedding to one "
                                 "point (loss stuck at alpha), as FaceNet warns "
                                 "(default: %(default)s)")
        parser.add_argument("--width", type=int, default=16,
                            help="channels of the first conv layer (default: %(default)s)")
        parser.add_argument("--hidden", type=int, default=128,
                            help="hidden units before the embedding (default: %(default)s)")

    @staticmethod
    def check_arguments(args):
        """Returns an error message for impossible values, else None."""
        if args.embedding_dim < 1:
            return f"--embedding-dim must be >= 1, got {args.embedding_dim}"
        if args.margin <= 0:
            return f"--margin must be > 0, got {args.margin}"
        if args.alpha < 0:
            return f"--alpha must be >= 0, got {args.alpha}"
        if args.batch_size < 2:
            return f"--batch-size must be >= 2 (pairs are formed inside a batch), got " \
                   f"{args.batch_size}"
        if args.width < 1 or args.hidden < 1:
            return f"--width and --hidden must be >= 1, got {args.width} and {args.hidden}"
        return None

    def __init__(self, args, run):
        super().__init__(args, run)
        problem = self.check_arguments(args)
        if problem:
            raise ValueError(problem)
        self.model = SiameseNet(args.embedding_dim, args.width, args.hidden)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)
        data = run.data
        self.n_classes = int(data.n_classes)
        self.pairs = fixed_pairs(data.test_y, min(EVAL_PAIRS, len(data.test_y)))
        self.triplets = fixed_triplets(data.test_y, min(EVAL_TRIPLETS, len(data.test_y)))
        self._raw_knn = None

    # -- training
    def batch_loss(self, e, y):
        """The loss of one batch of embeddings e (B, d) with labels y, and the
        fraction of pairs/triplets with a nonzero loss ("active"); (None, None) for a
        batch without any anchor that has both a same-class and an other-class
        partner (e.g. a last batch of one example)."""
        a = self.args
        if a.loss == "contrastive":
            first, second, same = balanced_pairs(y)
            if first.shape[0] == 0:
                return None, None
            per_pair = L.contrastive_loss(e[first], e[second], same, a.margin, reduction="none")
        else:
            anchor, pos, neg = L.MINERS[a.mining](e, y)
            if anchor.shape[0] == 0:
                return None, None
            per_pair = L.triplet_loss(e[anchor], e[pos], e[neg], a.alpha, reduction="none")
        active = float((per_pair.detach() > 0).float().mean().item())
        return per_pair.mean(), active

    def train_step(self, x, y):
        loss, active = self.batch_loss(self.model(x), y)
        if loss is None:
            return {}              # nothing to learn from this batch: no step
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "active": active}

    # -- evaluation
    def _test_embeddings(self):
        return embed(self.model.encoder, self.run.data.test_x, self.run)

    def pair_metrics(self, test_e):
        """Loss, ROC-AUC (score = -distance) and best-threshold accuracy on the fixed
        balanced test pairs; host arrays of their distances for the histogram."""
        first, second, same = self.pairs
        be = self.run.backend
        i, j = self.run.tensor(first), self.run.tensor(second)
        with mg.no_grad():
            d = L.euclidean_distance(test_e[i], test_e[j]).numpy()
            y = mg.Tensor(be.from_numpy(same.astype(np.float32)), backend=be)
            loss = L.contrastive_loss(test_e[i], test_e[j], y, self.args.margin).item() \
                if self.args.loss == "contrastive" else None
        acc, threshold = best_threshold_accuracy(d, same)
        out = {"roc_auc": roc_auc(-d, same), "pair_acc": acc, "threshold": threshold}
        if loss is not None:
            out["test_loss"] = loss
        return out, d

    def triplet_metrics(self, test_e):
        """On the fixed test triplets: the fraction satisfying the margin,
        ||a-n||^2 > ||a-p||^2 + alpha, the fraction merely ordered right, and the loss."""
        a, p, n = (self.run.tensor(v) for v in self.triplets)
        with mg.no_grad():
            d_ap = L.squared_distance(test_e[a], test_e[p])
            d_an = L.squared_distance(test_e[a], test_e[n])
            return {"triplet_margin_frac": (d_an > d_ap + self.args.alpha).float().mean().item(),
                    "triplet_order_frac": (d_an > d_ap).float().mean().item(),
                    "test_loss": L.triplet_loss(test_e[a], test_e[p], test_e[n],
                                                self.args.alpha).item()}

    def evaluate(self, epoch):
        test_e = self._test_embeddings()
        out, _ = self.pair_metrics(test_e)
        if self.args.loss == "triplet":
            out.update(self.triplet_metrics(test_e))
        return out

    def raw_pixel_knn(self):
        """The baseline: 1-NN on raw pixels (784-D), computed once per run."""
        if self._raw_knn is None:
            data = self.run.data
            flat = lambda x: self.run.tensor(np.reshape(x, (len(x), -1)))  # noqa: E731
            self._raw_knn = knn_accuracy(flat(data.train_x), self.run.tensor(data.train_y),
                                         flat(data.test_x), self.run.tensor(data.test_y), 1,
                                         self.n_classes)
        return self._raw_knn

    def final(self):
        data = self.run.data
        train_e = embed(self.model.encoder, data.train_x, self.run)
        test_e = self._test_embeddings()
        train_y, test_y = self.run.tensor(data.train_y), self.run.tensor(data.test_y)
        out, _ = self.pair_metrics(test_e)
        if self.args.loss == "triplet":
            out.update(self.triplet_metrics(test_e))
        for k in (1, 5):
            out[f"knn{k}_acc"] = knn_accuracy(train_e, train_y, test_e, test_y, k, self.n_classes)
        out["raw_pixel_knn1_acc"] = self.raw_pixel_knn()
        out["knn1_gain_over_raw_pixels"] = out["knn1_acc"] - out["raw_pixel_knn1_acc"]
        return out

    # -- figures
    def figures(self, epoch, history, final):
        """Every epoch: loss.png (loss and verification curves). After the last
        epoch also embedding.png, distances.png and retrieval.png (matplotlib is
        slow here: drawing everything every epoch would cost more than training)."""
        import matplotlib.pyplot as plt  # host-side: figures

        a = self.args
        what = (f"{a.loss}" + (f" ({a.mining} mining)" if a.loss == "triplet" else "")
                + f", d={a.embedding_dim}, epoch {epoch}")
        self.draw_curves(plt, history, what)
        if final:
            test_e = self._test_embeddings()
            self.draw_embedding(plt, test_e, what)
            self.draw_distances(plt, test_e, what)
            self.draw_retrieval(plt, test_e)

    def draw_curves(self, plt, history, what):
        rows = [h for h in history if "epoch" in h and not h.get("final")]
        if not rows:
            return
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        ep = [h["epoch"] for h in rows]
        for key, label in (("loss", "train (mined/sampled in batch)"),
                           ("test_loss", "test (fixed pairs/triplets)")):
            if all(key in h for h in rows):
                axes[0].plot(ep, [h[key] for h in rows], marker="o", ms=3, label=label)
        axes[0].set_ylabel(f"{self.args.loss} loss")
        for key, label in (("roc_auc", "ROC-AUC"), ("pair_acc", "pair accuracy")):
            if all(key in h for h in rows):
                axes[1].plot(ep, [h[key] for h in rows], marker="o", ms=3, label=label)
        for axis in axes:
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        fig.suptitle(what, fontsize=9)
        self.run.savefig(fig, "loss.png")

    def draw_embedding(self, plt, test_e, what):
        data = self.run.data
        xy = pca_2d(test_e)
        fig, ax = plt.subplots(figsize=(5.6, 5))
        names = list(getattr(data, "class_names", None) or range(self.n_classes))
        for c in range(self.n_classes):
            m = data.test_y == c
            ax.scatter(xy[m, 0], xy[m, 1], s=3, alpha=0.6, color=plt.cm.tab10(c % 10),
                       label=str(names[c]))
        ax.legend(markerscale=4, fontsize=7, loc="best", ncol=2)
        ax.set_title(("test embedding" if self.args.embedding_dim <= 2 else
                      "test embedding, 2-D PCA") + f"\n{what}", fontsize=9)
        self.run.savefig(fig, "embedding.png")

    def draw_distances(self, plt, test_e, what):
        """Histograms of D on the fixed positive and negative test pairs."""
        metrics, d = self.pair_metrics(test_e)
        same = self.pairs[2].astype(bool)
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        bins = np.linspace(0, np.percentile(d, 99.5), 60)
        ax.hist(d[same], bins=bins, alpha=0.6, label="same class (Y = 1)")
        ax.hist(d[~same], bins=bins, alpha=0.6, label="different classes (Y = 0)")
        ax.axvline(metrics["threshold"], color="k", ls="--", lw=1,
                   label=f"best threshold (accuracy {metrics['pair_acc']:.3f})")
        if self.args.loss == "contrastive":
            ax.axvline(self.args.margin, color="r", ls=":", lw=1,
                       label=f"margin {self.args.margin}")
        ax.set_xlabel("D = ||F(x1) - F(x2)||")
        ax.set_ylabel("test pairs")
        ax.set_title(f"ROC-AUC {metrics['roc_auc']:.4f}; {what}", fontsize=9)
        ax.legend(fontsize=7)
        self.run.savefig(fig, "distances.png")

    def draw_retrieval(self, plt, test_e):
        """A few test queries (the first test image of evenly spaced classes) and their
        8 nearest training images in the embedding, as one mosaic; a neighbour of
        another class is marked in red."""
        run, data = self.run, self.run.data
        train_e = embed(self.model.encoder, data.train_x, run)
        classes = np.unique(data.test_y)
        picks = np.linspace(0, len(classes) - 1, min(N_RETRIEVAL_QUERIES, len(classes)))
        queries = np.array([np.flatnonzero(data.test_y == classes[int(round(c))])[0]
                            for c in picks])
        d2 = L.pairwise_squared_distances(test_e[run.tensor(queries)], train_e)
        k = min(N_NEIGHBOURS_SHOWN, len(data.train_y))
        order = np.argsort(d2.numpy(), axis=1)[:, :k]
        tile, gap = 28, 4
        rows, cols = len(queries), k + 1
        mosaic = np.ones((rows * (tile + gap), cols * (tile + gap) + gap))
        for r, qi in enumerate(queries):
            imgs = [data.test_x[qi, 0]] + [data.train_x[t, 0] for t in order[r]]
            for c, img in enumerate(imgs):
                x0 = c * (tile + gap) + (gap if c else 0)
                mosaic[r * (tile + gap):r * (tile + gap) + tile, x0:x0 + tile] = 1 - img
        fig, ax = plt.subplots(figsize=(cols * 0.75, rows * 0.8))
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for r, qi in enumerate(queries):
            for c, t in enumerate(order[r]):
                if data.train_y[t] != data.test_y[qi]:
                    x0 = (c + 1) * (tile + gap) + gap
                    ax.add_patch(plt.Rectangle((x0 - 1.5, r * (tile + gap) - 1.5), tile + 2,
                                               tile + 2, fill=False, color="red", lw=1.5))
        ax.set_xticks([tile / 2] + [(c + 1) * (tile + gap) + gap + tile / 2 for c in range(k)])
        ax.set_xticklabels(["query"] + [str(c + 1) for c in range(k)], fontsize=7)
        ax.set_yticks([])
        ax.set_title("test queries and their nearest training images (red: other class)",
                     fontsize=8)
        run.savefig(fig, "retrieval.png")


if __name__ == "__main__":
    raise SystemExit(run_cli(Siamese))
