"""A small convnet classifier (LeNet-like): ``python -m models.classifier``.

    x (1x28x28) -> conv 3x3, 32 -> ReLU -> max-pool 2  (32x14x14)
                -> conv 3x3, 64 -> ReLU -> max-pool 2  (64x7x7)
                -> flatten -> linear 128 -> ReLU        ("features": the penultimate layer)
                -> linear 10                            (logits)

trained with cross-entropy, L = -log softmax(logits)[y], and Adam.

Besides its own accuracy, the other models use it twice, which is why the network
is models/blocks.py's ConvNet:
- its penultimate features score generated images (models/metrics.py: a
  Frechet distance on classifier features, and an inception score);
- its conv trunk is the pretrained network of transfer learning (models/transfer.py).
The run saves the weights as <out>/classifier-<dataset>.npz; the other models load
them from the folder of a default run on their data set, runs/classifier/ for
mnist-10k (models/evaluation.py::load_pretrained_classifier).
"""
from __future__ import annotations

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from models.blocks import ConvNet
from models.cli import Experiment, positive_int, run_cli
from models.evaluation import accuracy, classifier_weights_path, evaluating
from models.figures import draw_curves


# ----------------------------------------------------------------------------- training
class Classifier(Experiment):
    """Convnet classifier: conv-ReLU-pool x2, linear-ReLU (features), linear; cross-entropy
    loss L = -log softmax(f(x))_y, Adam. Saves classifier-<dataset>.npz, which the
    generative models' metrics and transfer learning load."""

    name = "classifier"
    defaults = dict(epochs=5, batch_size=128, lr=1e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.model = ConvNet(run.data.n_classes, args.width)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--width", type=positive_int, default=32,
                            help="channels of the first conv layer")

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch):
        d = self.run.data
        with evaluating(self.model):
            return {"test_accuracy": accuracy(self.model, self.run.tensor(d.test_x),
                                              self.run.tensor(d.test_y))}

    def final(self):
        path = classifier_weights_path(self.args.dataset, self.run.out)
        mg.save({"dataset": self.args.dataset, "width": self.args.width,
                 "state": self.model.state_dict()}, path)
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
