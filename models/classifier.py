"""A small convnet classifier (LeNet-like): ``python -m models.classifier``.

    x (1x28x28) -> conv 3x3, 32 -> ReLU -> max-pool 2  (32x14x14)
                -> conv 3x3, 64 -> ReLU -> max-pool 2  (64x7x7)
                -> flatten -> linear 128 -> ReLU        ("features": the penultimate layer)
                -> linear 10                            (logits)

trained with cross-entropy, L = -log softmax(logits)[y], and Adam.

Besides its own accuracy, the other models use it twice:
- its penultimate features score generated images (``models/metrics.py``: a
  Frechet distance on classifier features, and an inception score);
- its conv trunk is the pretrained network for transfer learning (``models/transfer.py``).
``load_pretrained_classifier`` returns a trained one for a run's data set,
loading ``runs/classifier/classifier-<dataset>.npz`` or training it once.
"""
from __future__ import annotations

import os
import pathlib
import types

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from models.cli import Experiment, run_cli


class ConvNet(nn.Module):
    """The classifier; ``trunk`` is the convolutional part reused by transfer learning."""

    def __init__(self, n_classes=10, width=32, hidden=128):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x):
        """Penultimate-layer features (N, hidden)."""
        return self.fc(self.trunk(x))

    def forward(self, x):
        return self.head(self.features(x))


def accuracy(model, x, y, batch_size=500):
    """Fraction of correctly classified examples (x, y: Tensors)."""
    correct = 0
    with mg.no_grad():
        for s in range(0, x.shape[0], batch_size):
            e = min(s + batch_size, x.shape[0])
            pred = model(x[s:e]).argmax(axis=1)
            correct += int((pred == y[s:e]).astype("int64").sum().item())
    return correct / max(x.shape[0], 1)


class Classifier(Experiment):
    """Convnet classifier: conv-ReLU-pool x2, linear-ReLU (features), linear; cross-entropy
    loss L = -log softmax(f(x))_y, Adam. Saves runs/classifier/classifier-<dataset>.npz,
    which the generative models' metrics and transfer learning load."""

    name = "classifier"
    defaults = dict(epochs=5, batch_size=128, lr=1e-3)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--width", type=int, default=32,
                            help="channels of the first conv layer (default: %(default)s)")

    def __init__(self, args, run):
        super().__init__(args, run)
        if args.width < 1:
            raise ValueError(f"--width must be positive, got {args.width}")
        self.model = ConvNet(run.data.n_classes, args.width)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def evaluate(self, epoch):
        d = self.run.data
        return {"test_accuracy": accuracy(self.model, self.run.tensor(d.test_x),
                                          self.run.tensor(d.test_y))}

    def final(self):
        path = weights_path(self.args.dataset, self.run.out)
        mg.save({"dataset": self.args.dataset, "width": self.args.width,
                 "state": self.model.state_dict()}, path)
        self.run.print(f"classifier weights saved to {path}")
        return {}

    def figures(self, epoch, history, final):
        if not final:
            return
        import matplotlib.pyplot as plt  # host-side: figures
        rows = [h for h in history if "test_accuracy" in h and not h.get("final")]
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot([h["epoch"] for h in rows], [100 * h["test_accuracy"] for h in rows], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"classifier on {self.args.dataset}")
        ax.grid(alpha=0.3)
        self.run.savefig(fig, "classifier_accuracy.png")


def weights_path(dataset, folder=None):
    folder = pathlib.Path(folder or os.environ.get("MINIGRAD_CLASSIFIER_DIR",
                                                   os.path.join("runs", "classifier")))
    return folder / f"classifier-{dataset}.npz"


_CACHE: dict = {}


def load_pretrained_classifier(run_or_backend=None, path=None, train_if_missing=True, epochs=3,
                               dataset=None):
    """An eval-mode ``ConvNet`` for a data set, on a backend.

    ``run_or_backend`` is a CLI run (its backend, ``--dataset`` and ``--data-dir``
    are used) or a backend / backend name / None for the current one (then
    ``dataset``, default ``mnist-10k``). Loads ``path`` (default
    ``runs/classifier/classifier-<dataset>.npz``, or ``$MINIGRAD_CLASSIFIER_DIR``;
    a classifier run's ``checkpoint.npz`` works too); if it is missing, trains one
    on the FULL training split of the data set (not the run's ``--limit``), saves
    it there and returns it. Kept in memory for the rest of the process.
    """
    if hasattr(run_or_backend, "args") and hasattr(run_or_backend, "backend"):
        run = run_or_backend
    else:
        run = types.SimpleNamespace(
            args=types.SimpleNamespace(dataset=dataset or "mnist-10k", data_dir=None),
            backend=mg.get_backend(run_or_backend), print=lambda *a, **k: None)
    dataset = dataset or getattr(run.args, "dataset", "mnist-10k")
    path = pathlib.Path(path) if path else weights_path(dataset)
    key = (str(path), run.backend.name)
    if key in _CACHE:
        return _CACHE[key]
    if path.is_file():
        saved = mg.load(path, backend=run.backend)
        if saved.get("model") == "classifier":     # the CLI's checkpoint.npz
            state, width = saved["state"]["model"], saved["args"].get("width", 32)
        else:                                        # classifier-<dataset>.npz
            state, width = saved["state"], saved.get("width", 32)
        model = ConvNet(state["head.weight"].shape[0], int(width))
        model.load_state_dict(state)
    elif train_if_missing:
        model = _train_quietly(run, dataset, epochs)
        mg.save({"dataset": dataset, "width": 32, "state": model.state_dict()}, path)
    else:
        raise FileNotFoundError(f"no pretrained classifier at {path}; run "
                                f"`python -m models.classifier --dataset {dataset}` first")
    model.eval()
    _CACHE[key] = model
    return model


def _train_quietly(run, dataset, epochs):
    from minigrad.data import DataLoader, TensorDataset, load_dataset
    data = load_dataset(dataset, getattr(run.args, "data_dir", None))
    run.print(f"training the toolkit classifier on {dataset} ({epochs} epochs) for the metrics...")
    with mg.backend(run.backend.name):
        state = run.backend.rng_state()           # leave the run's random stream untouched
        run.backend.seed(1234)
        model = ConvNet(len(data.class_names))
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=128,
                            shuffle=True, seed=1234)
        for _ in range(epochs):
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        run.backend.set_rng_state(state)
    return model


if __name__ == "__main__":
    raise SystemExit(run_cli(Classifier))
