"""A small convnet classifier (LeNet-like): ``python -m models.classifier``.

    x (1x28x28) -> conv 3x3, w -> ReLU -> max-pool 2   (w x 14 x 14)
                -> conv 3x3, 2w -> ReLU -> max-pool 2  (2w x 7 x 7)
                -> flatten -> linear hidden -> ReLU     ("features": the penultimate layer)
                -> linear 10                            (logits)

with w = --width 8 and --hidden 64 by default: about 52,000 weights, smaller than
LeNet-5, so the shipped scorer is a 0.2 MB file.

trained with cross-entropy, L = -log softmax(logits)[y], and Adam.

Besides its own accuracy, the other models use the network (models/blocks.py's
ConvNet) twice:
- the SCORER of generated images (models/metrics.py: classifier-FID on its
  penultimate features, inception score and class histogram on its predictions;
  CVAE label fidelity) is this network, trained once by the default run on
  mnist-10k and shipped as models/scorer/mnist-10k.npz. ``python -m
  models.classifier --train-scorer`` reproduces that file: it is the default run
  (every model option at its default, seed 0, NumPy), which also writes its
  weights there. The generative models only load it; they never train one;
- its conv trunk is the pretrained network of transfer learning (models/transfer.py).
Every run saves its weights as <out>/classifier-<dataset>.npz, which a generative
model on another data set takes as ``--scorer PATH``.
"""
from __future__ import annotations

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from models.blocks import ConvNet
from models.cli import Experiment, UsageError, positive_int, run_cli
from models.evaluation import SCORER_PATH, accuracy, evaluating
from models.figures import draw_curves


# ----------------------------------------------------------------------------- training
class Classifier(Experiment):
    """Convnet classifier: conv-ReLU-pool x2, linear-ReLU (features), linear; cross-entropy
    loss L = -log softmax(f(x))_y, Adam. Saves classifier-<dataset>.npz, which the
    generative models' metrics and transfer learning load."""

    name = "classifier"
    defaults = dict(epochs=15, batch_size=128, lr=3e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        if args.train_scorer:
            changed = sorted(args.given - {"train_scorer", "quiet", "out", "overwrite", "backend"})
            if changed or args.backend != "numpy":
                raise UsageError("--train-scorer reproduces the shipped scorer, the default run "
                                 "on NumPy: drop " + (", ".join(f"--{c.replace('_', '-')}"
                                                               for c in changed) or "--backend"))
        self.model = ConvNet(run.data.n_classes, args.width, args.hidden)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--width", type=positive_int, default=8,
                            help="channels of the first conv layer")
        parser.add_argument("--hidden", type=positive_int, default=64,
                            help="units of the hidden layer (the features)")
        parser.add_argument("--train-scorer", action="store_true",
                            help=f"also write the weights to {SCORER_PATH.parent.name}/"
                                 f"{SCORER_PATH.name} in the package: the shipped sample "
                                 "scorer (only with every option at its default)")

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch):
        d = self.run.data
        with evaluating(self.model):
            return {"test_accuracy": accuracy(self.model, self.run.tensor(d.test_x),
                                              self.run.tensor(d.test_y))}

    def final(self):
        weights = {"dataset": self.args.dataset, "width": self.args.width,
                   "hidden": self.args.hidden, "state": self.model.state_dict()}
        paths = [self.run.out / f"classifier-{self.args.dataset}.npz"]
        if self.args.train_scorer:
            SCORER_PATH.parent.mkdir(exist_ok=True)
            paths.append(SCORER_PATH)
        for path in paths:
            mg.save(weights, path)
            self.run.print(f"classifier weights saved to {path}")
        return {}

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        if final:
            draw_curves(self.run, "classifier_accuracy.png", history,
                        [([("loss", "train")], "cross-entropy (nats per image)"),
                         ([("test_accuracy", "test")], "accuracy")],
                        title=f"classifier on {self.args.dataset}")


if __name__ == "__main__":
    raise SystemExit(run_cli(Classifier))
