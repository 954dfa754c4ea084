"""Transfer learning with few labels: ``python -m models.transfer``.

Source task: classify digits 0-4. Target task: digits 5-9, with only
--labels-per-class labelled training images per class (capped at what the data set
has). A network's early layers learn features (strokes, curves) that are not
specific to the source classes, so a trunk pretrained on the source task should
need far fewer target labels than one trained from scratch.

The run's epochs pretrain the trunk on the source task (digits 0-4 of the
training split):
  --pretrained classifier   (default) the toolkit's convnet (models/blocks.py:
                            conv-ReLU-pool x2, then linear-ReLU-linear) trained with
                            cross-entropy on 5 classes;
  --pretrained autoencoder  a conv autoencoder (models/blocks.py) trained to
                            reconstruct the source images (no labels used); its
                            encoder's convolutions are the trunk.
The trunk is the CONV part only: the layers after it are specific to the source
task (the classifier's hidden layer separates 0-4 and, frozen, transferred worse
than raw pixels), so every method puts a NEW head on it. Then, for every
labels-per-class value k, on the same k labelled target images per class, the
final step compares on the target TEST digits 5-9:
  frozen     the pretrained conv trunk fixed, a new head (linear-ReLU-linear)
             trained on its features;
  finetune   trunk + new head all trained, the trunk with a lower learning rate
             (--trunk-lr-factor; optimizer parameter groups: the pretrained weights
             move slowly);
  scratch    the same network, randomly initialised, trained the same way;
  1-NN       no network: nearest neighbour on raw pixels (squared Euclidean).
Each network method gets the same number of Adam steps (--steps). Writes
transfer_table.md (accuracy table) and transfer_accuracy.png (accuracy against
labels per class), and the numbers in metrics.jsonl's final record.
"""
from __future__ import annotations

import copy

import numpy as np  # host-side: subset selection on host labels, table and figure

import minigrad.functional as F
from minigrad import nn, optim
from models.blocks import ConvNet, conv_decoder, conv_encoder
from models.cli import Experiment, positive_float, positive_int, run_cli, train_epoch
from models.evaluation import accuracy, evaluating, pixel_knn_accuracy
from models.figures import draw_lines

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)
METHODS = ("frozen", "finetune", "scratch", "1nn")


# ----------------------------------------------------------------------------- the model
def build_trunk(kind, width, feature_dim):
    """(trunk, the pretraining network) for --pretrained. The trunk is the conv part,
    x -> (B, 2*width*7*7): conv-ReLU-pool x2 of the classifier, or the two strided
    convs of the autoencoder's encoder (its modules, so pretraining trains them)."""
    if kind == "classifier":
        net = ConvNet(len(SOURCE), width, feature_dim)
        return net.trunk, net
    encoder = conv_encoder(feature_dim, width)
    trunk = nn.Sequential(*[encoder[i] for i in range(5)])     # convs + flatten, no Linear
    return trunk, ConvAutoencoder(encoder, conv_decoder(feature_dim, width))


class ConvAutoencoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


def new_head(width, hidden):
    """The target task's classifier on trunk features: linear-ReLU-linear (5 classes)."""
    return nn.Sequential(nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
                         nn.Linear(hidden, len(TARGET)))


# ----------------------------------------------------------------------------- training
class Transfer(Experiment):
    """Transfer learning: pretrain a conv trunk on digits 0-4 (the epochs), then compare
    on digits 5-9 with --labels-per-class labels: frozen trunk + new head, fine-tuning
    (a lower trunk learning rate), from scratch, and raw-pixel 1-NN."""

    name = "transfer"
    defaults = dict(epochs=6, batch_size=64, lr=1e-3)
    checkpoint = ("pretrain", "opt")
    epochs_help = "epochs of pretraining on digits 0-4 (the transfer comparison follows them)"

    def __init__(self, args, run):
        super().__init__(args, run)
        if run.data.n_classes != 10:
            raise ValueError(f"transfer needs a 10-class data set (0-4 -> 5-9), got "
                             f"{run.data.n_classes} classes")
        self.trunk, self.pretrain = build_trunk(args.pretrained, args.width, args.feature_dim)
        self.opt = optim.Adam(self.pretrain.parameters(), lr=args.lr)
        self.results = {}

    def train_step(self, x, y):
        """Pretraining on the source digits of the batch."""
        keep = y < len(SOURCE)
        if int(keep.astype("int64").sum().item()) == 0:
            return {}
        x, y = x[keep], y[keep]
        if self.args.pretrained == "classifier":
            loss = F.cross_entropy(self.pretrain(x), y)
            metrics = {"source_loss": loss.item()}
        else:
            logits = self.pretrain.decoder(self.pretrain.encoder(x))
            loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
            metrics = {"source_recon_nats": loss.item()}
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return metrics

    def fit(self, model, params, x, y):
        """Train ``model`` on host arrays (x, y) with cross-entropy: --steps Adam steps
        on random batches, through the CLI's training loop."""
        opt = optim.Adam(params, lr=self.args.lr)

        def step(xb, yb):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {"loss": loss.item()}

        train_epoch(step, self.random_batches(x, y))
        return model

    def random_batches(self, x, y):
        n = x.shape[0]
        for _ in range(self.args.steps):
            idx = self.run.rng.choice(n, size=min(self.args.batch_size, n), replace=False)
            yield self.run.tensor(x[idx]), self.run.tensor(y[idx])

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--pretrained", choices=["classifier", "autoencoder"],
                            default="classifier", help="how the trunk is pretrained on 0-4")
        parser.add_argument("--labels-per-class", type=positive_int, nargs="+", metavar="K",
                            default=[10, 100, 1000],
                            help="labelled target images per class (each value a separate "
                                 "comparison; capped at what the training split has)")
        parser.add_argument("--steps", type=positive_int, default=150,
                            help="Adam steps per network method and labels-per-class value")
        parser.add_argument("--width", type=positive_int, default=16,
                            help="channels of the first conv")
        parser.add_argument("--feature-dim", type=positive_int, default=128,
                            help="pretraining: the classifier's hidden layer / the autoencoder's "
                                 "code size; transfer: the new head's hidden layer")
        parser.add_argument("--trunk-lr-factor", type=positive_float, default=0.1,
                            help="fine-tuning: trunk lr = lr x this")

    # ------------------------------------------------------------------------- evaluation
    def split(self, split, classes):
        """Host arrays (x, y - classes[0]) of the given classes."""
        d = self.run.data
        x, y = (d.train_x, d.train_y) if split == "train" else (d.test_x, d.test_y)
        mask = (y >= classes[0]) & (y <= classes[-1])
        return x[mask], y[mask] - classes[0]

    def evaluate(self, epoch):
        if self.args.pretrained != "classifier":
            return {}
        x, y = self.split("test", SOURCE)
        with evaluating(self.pretrain):
            return {"source_test_accuracy": accuracy(self.pretrain, self.run.tensor(x),
                                                     self.run.tensor(y))}

    def subset(self, x, y, k):
        """k examples per class (all of a class if it has fewer), chosen with run.rng."""
        idx = [self.run.rng.permutation(np.flatnonzero(y == c))[:k] for c in range(len(TARGET))]
        idx = np.concatenate(idx)
        return x[idx], y[idx]

    def final(self):
        """The comparison (it trains: gradients on)."""
        args, tensor = self.args, self.run.tensor
        train_x, train_y = self.split("train", TARGET)
        test_x, test_y = self.split("test", TARGET)
        tx, ty = tensor(test_x), tensor(test_y)
        out, rows = {}, []
        for k in args.labels_per_class:
            x, y = self.subset(train_x, train_y, k)
            k_used = int(np.bincount(y, minlength=len(TARGET)).min())
            nets = {}
            # frozen: the pretrained trunk fixed, a new head on its features
            head = new_head(args.width, args.feature_dim)
            nets["frozen"] = self.fit(
                nn.Sequential(copy.deepcopy(self.trunk).requires_grad_(False), head),
                head.parameters(), x, y)
            # finetune: everything trains, the pretrained trunk with a lower lr
            trunk = copy.deepcopy(self.trunk).requires_grad_(True)
            head = new_head(args.width, args.feature_dim)
            nets["finetune"] = self.fit(
                nn.Sequential(trunk, head),
                [{"params": trunk.parameters(), "lr": args.lr * args.trunk_lr_factor},
                 {"params": head.parameters()}], x, y)
            # scratch: the same network, random init, plain lr
            fresh, _ = build_trunk(args.pretrained, args.width, args.feature_dim)
            scratch = nn.Sequential(fresh, new_head(args.width, args.feature_dim))
            nets["scratch"] = self.fit(scratch, scratch.parameters(), x, y)
            acc = {}
            for m, net in nets.items():
                with evaluating(net):
                    acc[m] = accuracy(net, tx, ty)
            acc["1nn"] = pixel_knn_accuracy(self.run, x, y, test_x, test_y, 1, len(TARGET))
            for m in METHODS:
                out[f"acc_{m}_{k}"] = acc[m]
            out[f"labels_used_{k}"] = k_used
            rows.append([k, k_used, [acc[m] for m in METHODS]])
            self.run.print(f"{k} labels/class ({k_used} used): " +
                           ", ".join(f"{m} {acc[m]:.3f}" for m in METHODS))
        self.results = {"rows": rows, "test_size": int(test_x.shape[0])}
        self.write_table()
        return out

    def write_table(self):
        a = self.args
        lines = [f"Transfer digits 0-4 -> 5-9, conv trunk pretrained on 0-4 ({a.pretrained}, "
                 f"{a.epochs} epochs), {a.steps} Adam steps per method; accuracy on "
                 f"{self.results['test_size']} test digits 5-9.", "",
                 "| labels per class | frozen trunk + head | fine-tuned (trunk lr x"
                 f"{a.trunk_lr_factor:g}) | from scratch | 1-NN raw pixels |",
                 "|---|---|---|---|---|"]
        for k, ku, accs in self.results["rows"]:
            label = f"{k}" if ku == k else f"{k} (only {ku})"
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in accs) + " |")
        (self.run.out / "transfer_table.md").write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        if not final or not self.results.get("rows"):
            return
        rows = self.results["rows"]
        names = {"frozen": "frozen trunk + head", "finetune": "fine-tuned",
                 "scratch": "from scratch", "1nn": "1-NN raw pixels"}
        draw_lines(self.run, "transfer_accuracy.png", [r[1] for r in rows],
                   [(names[m], [r[2][i] for r in rows], m == "1nn")
                    for i, m in enumerate(METHODS)],
                   "labelled target images per class (log scale)", "test accuracy, digits 5-9",
                   f"transfer 0-4 -> 5-9 ({self.args.pretrained} trunk)", log_x=True)


if __name__ == "__main__":
    raise SystemExit(run_cli(Transfer))
