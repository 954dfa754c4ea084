"""Siamese networks (metric learning): ``python -m models.siamese --loss contrastive|triplet``.

Two (or three) branches, ONE encoder F: the same network with the same weights
maps each input of a pair or triplet to an embedding F(x) in R^d,

    x1 --F--> F(x1) \\
                     D = ||F(x1) - F(x2)||  -> loss
    x2 --F--> F(x2) /

and training makes images of one class land close together and images of
different classes far apart.

contrastive (pairs):  L = Y * D^2 + (1 - Y) * max(margin - D, 0)^2
    Label convention: Y = 1 for a SAME-class pair, Y = 0 for different classes (the
    lecture's and Keras'; Hadsell et al. 2006 write Y = 0 for similar pairs).
triplet:  L = max(||F(A) - F(P)||^2 - ||F(A) - F(N)||^2 + alpha, 0)
    anchor A, positive P (A's class), negative N (another class); alpha defaults to
    FaceNet's 0.2 (here and in models/losses.triplet_loss). --normalize makes F(x)
    unit-length, as FaceNet does: squared distances then lie in [0, 4] and alpha
    has a fixed meaning; without it the embedding's scale is free, so any alpha
    only sets that scale. --mining picks the
    triplets inside each batch: random, semihard (FaceNet: the closest negative that is
    farther than the positive) or hard (batch-hard: the farthest positive and the
    closest negative of every anchor).

Evaluation on the test split: verification ROC-AUC and accuracy at the best distance
threshold on a fixed set of balanced test pairs, k-NN accuracy (k = 1, 5) of the test
embeddings against the training embeddings, the raw-pixel 1-NN baseline, and for the
triplet loss the fraction of fixed test triplets that satisfy the margin.
"""
from __future__ import annotations

import numpy as np  # host-side: distances and figures on arrays from Tensor.numpy()

import minigrad as mg
from minigrad import nn, optim
from minigrad.functional import normalize
from models import losses as L
from models.cli import Experiment, non_negative_float, positive_float, positive_int, run_cli
from models.evaluation import (best_threshold_accuracy, embed, evaluating, knn_accuracy,
                               pixel_knn_accuracy, roc_auc, verification_pairs,
                               verification_triplets)
from models.figures import draw_curves, draw_embedding, draw_histograms, draw_rows, lda_projection

EVAL_SEED = 20061                 # the fixed test pairs and triplets do not depend on --seed
EVAL_PAIRS, EVAL_TRIPLETS = 2000, 4000     # positive test pairs (as many negative ones)


# ----------------------------------------------------------------------------- the model
def encoder(embedding_dim=2, width=16, hidden=128):
    """F: (B, 1, 28, 28) -> (B, embedding_dim). Two stride-2 3x3 convolutions (28 -> 14
    -> 7) with ReLU, a hidden linear layer and a linear output (no activation)."""
    return nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
                         nn.Linear(hidden, embedding_dim))


class SiameseNet(nn.Module):
    """The branches: ``net(x1, x2)`` -> (F(x1), F(x2)), ``net(a, p, n)`` -> three
    embeddings, ``net(x)`` -> F(x). There is one encoder, so the branches' gradients
    accumulate into one set of parameters (the shared weights). ``normalize=True``:
    F(x) = e(x) / ||e(x)||, on the unit sphere (FaceNet)."""

    def __init__(self, embedding_dim=2, width=16, hidden=128, normalize=False):
        super().__init__()
        self.encoder = encoder(embedding_dim, width, hidden)      # e
        self.normalize = normalize

    def forward(self, *xs):
        if not xs:
            raise TypeError("SiameseNet: needs at least one input")
        out = tuple(self.encoder(x) for x in xs)
        if self.normalize:                         # F(x) = e(x) / ||e(x)|| (FaceNet)
            out = tuple(normalize(e, dim=1) for e in out)
        return out[0] if len(out) == 1 else out


# ----------------------------------------------------------------------------- training
class Siamese(Experiment):
    """Siamese networks: one encoder F shared by the branches, trained with the
    contrastive loss on pairs or the triplet loss on mined triplets."""

    name = "siamese"
    defaults = dict(epochs=6, batch_size=128, lr=2e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        if args.batch_size < 2:
            raise ValueError(f"--batch-size must be >= 2 (pairs are formed inside a batch), "
                             f"got {args.batch_size}")
        self.model = SiameseNet(args.embedding_dim, args.width, args.hidden, args.normalize)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)
        self.pairs, self.triplets = evaluation_pairs(run.data.test_y)

    def train_step(self, x, y):
        # The pairs (triplets) are drawn inside the batch, so F runs once on the batch
        # and each branch picks its rows: e[first], e[second] IS (F(x1), F(x2)) with
        # the shared weights, at the cost of one pass instead of one per branch
        # (tests/test_siamese.py checks the two agree, gradients included).
        loss, active = self.batch_loss(self.model(x), y)
        if loss is None:
            return {}              # nothing to learn from this batch: no step
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "active": active}

    def batch_loss(self, e, y):
        """The loss of a batch's embeddings e = F(x) (B, d) with labels y, and the
        fraction of its pairs/triplets with a nonzero loss ("active"); (None, None) if
        no anchor has both a same-class and an other-class partner in the batch."""
        a = self.args
        if a.loss == "contrastive":
            first, second, same = L.balanced_pairs(y)        # Y = 1: same class
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

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--loss", choices=("contrastive", "triplet"), default="contrastive",
                            help="contrastive: Y*D^2 + (1-Y)*max(margin-D,0)^2 with Y=1 for a "
                                 "SAME-class pair (the lecture's/Keras' convention, opposite to "
                                 "Hadsell et al. 2006); triplet: max(|A-P|^2 - |A-N|^2 + alpha, 0)")
        parser.add_argument("--embedding-dim", type=positive_int, default=2,
                            help="embedding size d (2 can be drawn directly; larger for accuracy)")
        parser.add_argument("--margin", type=positive_float, default=1.0,
                            help="contrastive margin on D")
        parser.add_argument("--alpha", type=non_negative_float, default=L.TRIPLET_ALPHA,
                            help="triplet margin on squared distances: FaceNet's value, which "
                                 "it uses on unit-length embeddings (--normalize: squared "
                                 "distances in [0, 4]); without --normalize the embedding's "
                                 "scale is free and alpha only sets it")
        parser.add_argument("--normalize", action="store_true",
                            help="L2-normalise the embeddings, F(x) = e(x) / ||e(x)|| "
                                 "(FaceNet); distances are then at most 2")
        parser.add_argument("--mining", choices=("random", "semihard", "hard"),
                            default="semihard",
                            help="triplet selection inside each batch; 'hard' (batch-hard) "
                                 "from the first step can collapse every embedding to one "
                                 "point (loss stuck at alpha), as FaceNet warns")
        parser.add_argument("--width", type=positive_int, default=16,
                            help="channels of the first conv layer")
        parser.add_argument("--hidden", type=positive_int, default=128,
                            help="hidden units before the embedding")

    # ------------------------------------------------------------------------- evaluation
    def embeddings(self, x):
        """F(x) of a host array, in eval mode without a graph: a (N, d) tensor."""
        with evaluating(self.model):
            return embed(self.model, x, self.run, batch_size=1000)

    def pair_metrics(self, test_e):
        """Loss, ROC-AUC (score = -distance) and best-threshold accuracy on the fixed
        balanced test pairs; host arrays of their distances for the histogram."""
        first, second, same = self.pairs
        i, j = self.run.tensor(first), self.run.tensor(second)
        with mg.no_grad():
            d = L.euclidean_distance(test_e[i], test_e[j]).numpy()
            loss = L.contrastive_loss(test_e[i], test_e[j], self.run.tensor(same.astype(np.float32)),
                                      self.args.margin).item() \
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

    def test_metrics(self, test_e):
        out, _ = self.pair_metrics(test_e)
        if self.args.loss == "triplet":
            out.update(self.triplet_metrics(test_e))
        return out

    def evaluate(self, epoch):
        return self.test_metrics(self.embeddings(self.run.data.test_x))

    def final(self):
        data, tensor = self.run.data, self.run.tensor
        train_e, test_e = self.embeddings(data.train_x), self.embeddings(data.test_x)
        out = self.test_metrics(test_e)
        n_classes = int(data.n_classes)
        for k in (1, 5):
            out[f"knn{k}_acc"] = knn_accuracy(train_e, tensor(data.train_y), test_e,
                                              tensor(data.test_y), k, n_classes)
        out["raw_pixel_knn1_acc"] = pixel_knn_accuracy(self.run, data.train_x, data.train_y,
                                                       data.test_x, data.test_y, 1, n_classes)
        out["knn1_gain_over_raw_pixels"] = out["knn1_acc"] - out["raw_pixel_knn1_acc"]
        return out

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        """Every epoch: the curves. After the last epoch also the test embedding, the
        distance histograms and nearest-neighbour retrieval (matplotlib is slow here:
        drawing everything every epoch would cost more than training)."""
        a = self.args
        what = (f"{a.loss}" + (f" ({a.mining} mining)" if a.loss == "triplet" else "")
                + f", d = {a.embedding_dim}, after epoch {epoch}")
        draw_curves(self.run, f"{self.name}_loss.png", history, [
            ([("loss", "train (pairs/triplets of each batch)"),
              ("test_loss", "test (fixed pairs/triplets)")], f"{a.loss} loss"),
            ([("roc_auc", "ROC-AUC"), ("pair_acc", "best-threshold accuracy")],
             "verification of the test pairs")], title=f"{self.name}: {what}")
        if not final:
            return
        data = self.run.data
        train_e, test_e = self.embeddings(data.train_x), self.embeddings(data.test_x)
        names = [str(c) for c in (data.class_names or range(int(data.n_classes)))]
        if a.embedding_dim <= 2:
            xy = np.c_[test_e.numpy(), np.zeros(len(data.test_y))][:, :2]
            axes, how = ("F(x)[0]", "F(x)[1]" if a.embedding_dim == 2 else "(none)"), ""
        else:
            xy = lda_projection(train_e.numpy(), data.train_y, test_e.numpy())
            axes = ("linear discriminant 1", "linear discriminant 2")
            how = (f"\nprojected from {a.embedding_dim}-D by Fisher LDA: the linear map to 2-D that "
                   "best separates\nthe classes (fitted on the training embeddings)")
        draw_embedding(self.run, f"{self.name}_embedding.png", xy, data.test_y, names,
                       f"{self.name}: test embedding, {what}{how}", axes)
        metrics, d = self.pair_metrics(test_e)
        same = self.pairs[2].astype(bool)
        lines = [(metrics["threshold"], f"best threshold (accuracy {metrics['pair_acc']:.3f})",
                  "k", "--")]
        if a.loss == "contrastive":
            lines.append((a.margin, f"margin {a.margin:g}", "r", ":"))
        draw_histograms(self.run, f"{self.name}_distances.png",
                        [(d[same], "same class (Y = 1)"), (d[~same], "different classes (Y = 0)")],
                        lines, "D = ||F(x1) - F(x2)||", "test pairs",
                        f"{self.name}: distances of the fixed test pairs (ROC-AUC "
                        f"{metrics['roc_auc']:.4f})\n{what}")
        self.draw_retrieval(train_e, test_e, names)

    def draw_retrieval(self, train_e, test_e, names, n_queries=6, k=8):
        """The first test image of evenly spaced classes and its k nearest training
        images in the embedding; a neighbour of another class gets a red frame."""
        data, run = self.run.data, self.run
        classes = np.unique(data.test_y)
        picks = np.linspace(0, len(classes) - 1, min(n_queries, len(classes))).round()
        queries = np.array([np.flatnonzero(data.test_y == classes[int(c)])[0] for c in picks])
        d2 = L.pairwise_squared_distances(test_e[run.tensor(queries)], train_e)
        k = min(k, len(data.train_y))
        order = np.argsort(d2.numpy(), axis=1)[:, :k]
        rows = [np.concatenate([data.test_x[q:q + 1], data.train_x[order[r]]])
                for r, q in enumerate(queries)]
        wrong = [(r, c + 1) for r, q in enumerate(queries) for c, t in enumerate(order[r])
                 if data.train_y[t] != data.test_y[q]]
        draw_rows(run, f"{self.name}_retrieval.png", rows,
                  [f"class {names[data.test_y[q]]}" for q in queries],
                  f"{self.name}: test queries and their {k} nearest training images, "
                  "nearest first (red: another class)",
                  col_labels=["query"] + [str(c + 1) for c in range(k)], marked=wrong)


def evaluation_pairs(labels):
    """The fixed, balanced test pairs and triplets of the evaluation (the same for
    every --seed); ValueError for a test split too small to have them."""
    return (verification_pairs(labels, min(EVAL_PAIRS, len(labels)), EVAL_SEED),
            verification_triplets(labels, min(EVAL_TRIPLETS, len(labels)), EVAL_SEED + 1))


if __name__ == "__main__":
    raise SystemExit(run_cli(Siamese))
