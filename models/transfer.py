"""Transfer learning with few labels: ``python -m models.transfer``.

Source task: classify digits 0-4. Target task: digits 5-9, with only
--labels-per-class labelled training images per class (e.g. 10, 100, 1000; capped
at what the data set has). A network's early layers learn features (strokes,
curves) that are not specific to the source classes, so a trunk pretrained on the
source task should need far fewer target labels than one trained from scratch.

The epochs of a run (default 6) pretrain the trunk on the source task (digits 0-4
of the training split; with 2 epochs the margin over scratch at 10 labels per class
was 1-2 points, with 6 it was 3-5 over three seeds, on mnist-10k):
  --pretrained classifier   (default) the toolkit's convnet (models/classifier.py:
                            conv-ReLU-pool x2, linear-ReLU = 128 "features") trained
                            with cross-entropy on 5 classes;
  --pretrained autoencoder  a conv autoencoder (models/autoencoder.py) trained to
                            reconstruct the source images (no labels used); its
                            encoder is the trunk.
Then, for every labels-per-class value k, on the same k labelled target images per
class, the final step compares on the target TEST digits 5-9:
  frozen     the pretrained conv trunk fixed, a new head (linear-ReLU-linear)
             trained on its features;
  finetune   trunk + new head all trained, the trunk with a 10x lower learning rate
             (optimizer parameter groups: the pretrained weights move slowly);
  scratch    the same network, randomly initialised, trained the same way;
  1-NN       no network: nearest neighbour on raw pixels (squared Euclidean).
Each network method gets the same number of Adam steps (--steps, batch 64).
Writes transfer_table.md (accuracy table) and transfer_accuracy.png (accuracy
against labels per class), and the numbers in metrics.jsonl's final record.

Note (measured): features of a small MLP trained on digits 0-4 transferred WORSE
than raw pixels to 5-9, and so did this convnet's hidden layer. Its conv layers
transfer: with them frozen or fine-tuned, 10 labels per class give about 0.89
accuracy against 0.86 from scratch (README, three seeds).
"""
from __future__ import annotations

import copy

import numpy as np  # host-side: subset selection on host labels, table and figure

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from models.autoencoder import conv_decoder, conv_encoder
from models.classifier import ConvNet
from models.cli import Experiment, run_cli

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)
METHODS = ("frozen", "finetune", "scratch", "1nn")


def build_trunk(kind, width, feature_dim):
    """(trunk, the pretraining module) for --pretrained. The trunk is the CONV part,
    x -> (B, 2*width*7*7): conv-ReLU-pool x2 of the classifier, or the two strided
    convs of the autoencoder's encoder (its modules, so pretraining trains them). The
    layers after it are specific to the source task (the classifier's hidden layer
    separates 0-4; measured: frozen, it transferred worse than raw pixels), so every
    method puts a NEW head (``new_head``) on the trunk."""
    if kind == "classifier":
        net = ConvNet(len(SOURCE), width, feature_dim)
        return net.trunk, net
    encoder = conv_encoder(feature_dim, width)
    trunk = nn.Sequential(*[encoder[i] for i in range(5)])     # convs + flatten, no Linear
    return trunk, ConvAutoencoder(encoder, conv_decoder(feature_dim, width))


def new_head(width, hidden):
    """The target task's classifier on trunk features: linear-ReLU-linear (5 classes)."""
    return nn.Sequential(nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU(),
                         nn.Linear(hidden, len(TARGET)))


class ConvAutoencoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


def nearest_neighbour_accuracy(train_x, train_y, test_x, test_y, batch_size=500):
    """1-NN on raw pixels: ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, computed on the backend."""
    a = train_x.reshape(train_x.shape[0], -1)
    a2 = (a * a).sum(axis=1)
    correct = 0
    for s in range(0, test_x.shape[0], batch_size):
        e = min(s + batch_size, test_x.shape[0])
        b = test_x[s:e].reshape(e - s, -1)
        d = a2.reshape(1, -1) - 2.0 * (b @ a.T)          # ||b||^2 is constant per row
        pred = train_y[d.argmin(axis=1)]
        correct += int((pred == test_y[s:e]).astype("int64").sum().item())
    return correct / test_x.shape[0]


def accuracy(model, x, y, batch_size=500):
    correct = 0
    with mg.no_grad():
        for s in range(0, x.shape[0], batch_size):
            e = min(s + batch_size, x.shape[0])
            correct += int((model(x[s:e]).argmax(axis=1) == y[s:e]).astype("int64").sum().item())
    return correct / x.shape[0]


class Transfer(Experiment):
    """Transfer learning: pretrain a conv trunk on digits 0-4 (epochs), then compare on
    digits 5-9 with --labels-per-class labels: frozen trunk + new head, fine-tuning
    (trunk lr / 10), from scratch, and raw-pixel 1-NN."""

    name = "transfer"
    defaults = dict(epochs=6, batch_size=64, lr=1e-3)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--pretrained", choices=["classifier", "autoencoder"],
                            default="classifier", help="how the trunk is pretrained on 0-4")
        parser.add_argument("--labels-per-class", type=int, nargs="+", default=[10, 100, 1000],
                            help="labelled target images per class (each value a separate "
                                 "comparison; capped at what the training split has)")
        parser.add_argument("--steps", type=int, default=150,
                            help="Adam steps per network method and labels-per-class value")
        parser.add_argument("--width", type=int, default=16, help="channels of the first conv")
        parser.add_argument("--feature-dim", type=int, default=128,
                            help="pretraining: the classifier's hidden layer / the autoencoder's "
                                 "code size; transfer: the new head's hidden layer")
        parser.add_argument("--trunk-lr-factor", type=float, default=0.1,
                            help="fine-tuning: trunk lr = lr x this")

    def __init__(self, args, run):
        super().__init__(args, run)
        if any(k < 1 for k in args.labels_per_class):
            raise ValueError(f"--labels-per-class values must be >= 1, got {args.labels_per_class}")
        for flag in ("steps", "width", "feature_dim"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(args, flag)}")
        if not args.trunk_lr_factor > 0:
            raise ValueError(f"--trunk-lr-factor must be > 0, got {args.trunk_lr_factor}")
        if run.data.n_classes != 10:
            raise ValueError(f"transfer needs a 10-class data set (0-4 -> 5-9), got "
                             f"{run.data.n_classes} classes")
        self.trunk, self.pretrain = build_trunk(args.pretrained, args.width, args.feature_dim)
        self.opt = optim.Adam(self.pretrain.parameters(), lr=args.lr)
        self.results = {}

    # -- pretraining on the source task (the run's epochs)
    def train_step(self, x, y):
        keep = y < len(SOURCE)
        if int(keep.astype("int64").sum().item()) == 0:
            return {}
        x, y = x[keep], y[keep]
        if self.args.pretrained == "classifier":
            logits = self.pretrain(x)
            loss = F.cross_entropy(logits, y)
            metrics = {"source_loss": loss.item()}
        else:
            logits = self.pretrain.decoder(self.pretrain.encoder(x))
            loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
            metrics = {"source_recon_nats": loss.item()}
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return metrics

    def _split(self, split, classes):
        """Host arrays (x, y - classes[0]) of the given classes."""
        d = self.run.data
        x, y = (d.train_x, d.train_y) if split == "train" else (d.test_x, d.test_y)
        mask = (y >= classes[0]) & (y <= classes[-1])
        return x[mask], y[mask] - classes[0]

    def evaluate(self, epoch):
        if self.args.pretrained != "classifier":
            return {}
        x, y = self._split("test", SOURCE)
        return {"source_test_accuracy": accuracy(self.pretrain, self.run.tensor(x),
                                                 self.run.tensor(y))}

    # -- the transfer comparison
    def _subset(self, x, y, k):
        """k examples per class (all of a class if it has fewer), chosen with run.rng."""
        idx = []
        for c in range(len(TARGET)):
            members = np.flatnonzero(y == c)
            idx.append(self.run.rng.permutation(members)[:k])
        idx = np.concatenate(idx)
        return x[idx], y[idx]

    def _fit(self, model, param_groups, x, y):
        opt = optim.Adam(param_groups, lr=self.args.lr)
        n = x.shape[0]
        b = min(self.args.batch_size, n)
        model.train()
        for step in range(self.args.steps):
            idx = self.run.rng.choice(n, size=b, replace=False)
            xb, yb = self.run.tensor(x[idx]), self.run.tensor(y[idx])
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        return model

    def final(self):
        args, run = self.args, self.run
        train_x, train_y = self._split("train", TARGET)
        test_x, test_y = self._split("test", TARGET)
        tx, ty = run.tensor(test_x), run.tensor(test_y)
        out = {}
        rows = []
        for k in args.labels_per_class:
            x, y = self._subset(train_x, train_y, k)
            k_used = int(np.bincount(y, minlength=len(TARGET)).min())
            acc = {}
            with mg.enable_grad():
                # frozen: the pretrained trunk fixed, a new head on its features
                trunk = copy.deepcopy(self.trunk).requires_grad_(False)
                head = new_head(args.width, args.feature_dim)
                frozen = nn.Sequential(trunk, head)
                self._fit(frozen, head.parameters(), x, y)
                acc["frozen"] = accuracy(frozen, tx, ty)
                # finetune: everything trains, the pretrained trunk with a lower lr
                trunk = copy.deepcopy(self.trunk).requires_grad_(True)
                head = new_head(args.width, args.feature_dim)
                tuned = nn.Sequential(trunk, head)
                self._fit(tuned, [{"params": trunk.parameters(),
                                   "lr": args.lr * args.trunk_lr_factor},
                                  {"params": head.parameters()}], x, y)
                acc["finetune"] = accuracy(tuned, tx, ty)
                # scratch: the same network, random init, plain lr
                fresh, _ = build_trunk(args.pretrained, args.width, args.feature_dim)
                scratch = nn.Sequential(fresh, new_head(args.width, args.feature_dim))
                self._fit(scratch, scratch.parameters(), x, y)
                acc["scratch"] = accuracy(scratch, tx, ty)
            acc["1nn"] = nearest_neighbour_accuracy(run.tensor(x), run.tensor(y), tx, ty)
            for m in METHODS:
                out[f"acc_{m}_{k}"] = acc[m]
            out[f"labels_used_{k}"] = k_used
            rows.append((k, k_used, acc))
            run.print(f"{k} labels/class ({k_used} used): " +
                      ", ".join(f"{m} {acc[m]:.3f}" for m in METHODS))
        self.results = {"rows": [[k, ku, [a[m] for m in METHODS]] for k, ku, a in rows],
                        "test_size": int(test_x.shape[0])}
        self._write_table()
        return out

    def state_dict_extra(self):
        return {"results": self.results}

    def load_state_dict_extra(self, d):
        self.results = dict(d.get("results") or {})

    def _write_table(self):
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

    def figures(self, epoch, history, final):
        if not final or not self.results.get("rows"):
            return
        from matplotlib.figure import Figure
        rows = self.results["rows"]
        ks = [r[1] for r in rows]
        fig = Figure(figsize=(5.2, 3.6), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        names = {"frozen": "frozen trunk + head", "finetune": "fine-tuned",
                 "scratch": "from scratch", "1nn": "1-NN raw pixels"}
        for i, m in enumerate(METHODS):
            ax.plot(ks, [r[2][i] for r in rows], marker="o", label=names[m],
                    linestyle="--" if m == "1nn" else "-")
        ax.set_xscale("log")
        ax.set_xlabel("labelled target images per class")
        ax.set_ylabel("test accuracy, digits 5-9")
        ax.set_title(f"transfer 0-4 -> 5-9 ({self.args.pretrained} trunk)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        self.run.savefig(fig, "transfer_accuracy.png")


if __name__ == "__main__":
    raise SystemExit(run_cli(Transfer))
