"""The shared model CLI (models/cli.py): outputs, exact resume (of a toy model and of
every model in models/), Ctrl-C, usage errors, the contract's rules, folder names."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np  # host-side: the toy model's figure noise
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from models.cli import Experiment, positive_int, run_cli
from models.evaluation import evaluating

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tiny(Experiment):
    """A logistic regression on downsampled digits, with dropout so the backend RNG
    matters (resume must restore it)."""

    name = "tiny"
    defaults = dict(epochs=2, batch_size=32, lr=0.05)
    checkpoint = ("model", "opt")
    interrupt_at = None
    figure_noise = "own"            # "own": np.random.default_rng; "run": mg.randn (wrong)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--hidden", type=positive_int, default=16, help="hidden units")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.model = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, args.hidden),
                                   nn.ReLU(), nn.Dropout(0.2), nn.Linear(args.hidden, 10))
        self.opt = optim.SGD(self.model.parameters(), lr=args.lr, momentum=0.9)
        self.steps = 0

    def train_step(self, x, y):
        self.steps += 1
        if Tiny.interrupt_at is not None and self.steps == Tiny.interrupt_at:
            raise KeyboardInterrupt
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def evaluate(self, epoch):
        x = self.run.tensor(self.run.data.test_x)
        y = self.run.tensor(self.run.data.test_y)
        with evaluating(self.model):
            assert not self.model.training and not mg.is_grad_enabled()
            loss = F.cross_entropy(self.model(x), y).item()
        assert self.model.training and mg.is_grad_enabled()     # restored afterwards
        return {"test_loss": loss}

    def final(self):
        return {"done": 1}

    def figures(self, epoch, history, final):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        ax.plot([h["epoch"] for h in history if not h.get("final")],
                [h["loss"] for h in history if not h.get("final")])
        # figure noise comes from a generator of the figure's own, never the run's streams
        if Tiny.figure_noise == "own":
            np.random.default_rng(self.args.seed).standard_normal(3)
        else:
            mg.randn(3)
        self.run.savefig(fig, "tiny_loss.png")


def _run(tmp_path, *extra, out="run"):
    return run_cli(Tiny, ["--limit", "256", "--quiet", "--out", str(tmp_path / out), *extra])


def _lines(path):
    return [json.loads(line) for line in open(path)]


def test_a_run_writes_metrics_checkpoint_and_figures(tmp_path, backend_name):
    other = "strict" if backend_name == "numpy" else "numpy"
    with mg.backend(other):
        assert _run(tmp_path, "--backend", backend_name) == 0
        assert mg.get_backend().name == other             # the caller's backend again
    out = tmp_path / "run"
    lines = _lines(out / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 2] and lines[-1]["final"] and lines[-1]["done"] == 1
    for key in ("loss", "test_loss", "time_s", "examples_per_s"):
        assert key in lines[0]
    assert lines[1]["loss"] < lines[0]["loss"]
    assert (out / "checkpoint.npz").is_file() and (out / "tiny_loss.png").stat().st_size > 1000
    ckpt = mg.load(out / "checkpoint.npz")
    assert ckpt["epoch"] == 2 and ckpt["model"] == "tiny" and set(ckpt["state"]) == {"model", "opt"}


def test_resume_gives_the_same_numbers_as_an_uninterrupted_run(tmp_path):
    assert _run(tmp_path, "--epochs", "3", out="straight") == 0
    assert _run(tmp_path, "--epochs", "1", out="split") == 0
    ckpt = str(tmp_path / "split" / "checkpoint.npz")
    assert _run(tmp_path, "--epochs", "3", "--resume", ckpt, out="split") == 0
    straight = [r for r in _lines(tmp_path / "straight" / "metrics.jsonl") if not r.get("final")]
    split = [r for r in _lines(tmp_path / "split" / "metrics.jsonl") if not r.get("final")]
    assert [r["epoch"] for r in split] == [1, 2, 3]
    for a, b in zip(straight, split):
        assert a["loss"] == b["loss"] and a["test_loss"] == b["test_loss"]


def test_ctrl_c_keeps_the_last_completed_epoch(tmp_path, capsys):
    Tiny.interrupt_at = 12          # 256 examples / 32 = 8 steps per epoch: in epoch 2
    try:
        assert _run(tmp_path, "--epochs", "3") == 130
    finally:
        Tiny.interrupt_at = None
    assert "holds the state after epoch 1" in capsys.readouterr().err
    assert mg.load(tmp_path / "run" / "checkpoint.npz")["epoch"] == 1
    assert _run(tmp_path, "--epochs", "2", "--resume", str(tmp_path / "run" / "checkpoint.npz")) == 0


def test_ctrl_c_in_the_first_epoch_names_no_stale_checkpoint(tmp_path, capsys):
    # an older run's checkpoint in --out must not be offered as this run's state
    assert _run(tmp_path, "--epochs", "1") == 0
    Tiny.interrupt_at = 3
    try:
        assert _run(tmp_path, "--epochs", "2") == 130
    finally:
        Tiny.interrupt_at = None
    err = capsys.readouterr().err
    assert "no checkpoint was written" in err and "--resume" not in err


@pytest.mark.parametrize("args,message", [
    (["--epochs", "-1"], "argument --epochs: must be an integer >= 0, got -1"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["--lr", "abc"], "argument --lr: must be a finite number > 0, got 'abc'"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0, got 0"),
    (["--lr", "inf"], "argument --lr: must be a finite number > 0, got inf"),
    (["--dataset", "cifar"], "invalid choice"),
    (["--backend", "cupy"], "pip install"),
    (["--data-dir", "/no/such/dir"], "not a readable directory"),
    (["--resume", "/no/such/checkpoint.npz"], "no checkpoint"),
    (["--hidden", "0"], "argument --hidden: must be an integer >= 1, got 0"),
    (["--bogus"], "unrecognized arguments"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    if args[:2] == ["--backend", "cupy"] and "cupy" in mg.available_backends():
        pytest.skip("a GPU is present: the cupy backend works here")
    assert _run(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("python -m models.tiny: error:")


def test_resume_of_another_model_is_refused(tmp_path, capsys):
    mg.save({"model": "vae", "epoch": 1}, tmp_path / "vae.npz")
    assert _run(tmp_path, "--resume", str(tmp_path / "vae.npz")) == 2
    assert "checkpoint of 'vae'" in capsys.readouterr().err


def test_command_line_exit_status_and_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "models.classifier", "--epochs", "-3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    h = subprocess.run([sys.executable, "-m", "models.classifier", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert h.returncode == 0 and "--resume" in h.stdout and "strict" not in h.stdout


def test_a_figure_that_draws_from_the_run_streams_is_refused(tmp_path):
    # it would run after the checkpoint is written, so a resumed run would differ
    Tiny.figure_noise = "run"
    try:
        with pytest.raises(RuntimeError, match="figures drew from the run's random streams"):
            _run(tmp_path, "--epochs", "1")
    finally:
        Tiny.figure_noise = "own"


def test_only_declared_state_is_checkpointed_and_a_wrong_declaration_is_named(tmp_path):
    class Undeclared(Tiny):
        checkpoint = ("model", "opt", "no_such_attribute")

    with pytest.raises(AttributeError, match="no_such_attribute"):
        run_cli(Undeclared, ["--limit", "64", "--quiet", "--out", str(tmp_path)])


def test_default_folder_names_what_differs_from_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(Tiny, ["--limit", "64", "--epochs", "1", "--quiet"]) == 0
    assert run_cli(Tiny, ["--limit", "64", "--epochs", "1", "--quiet", "--hidden", "8",
                          "--lr", "0.01"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == \
        ["tiny-epochs1-limit64", "tiny-epochs1-lr0.01-limit64-hidden8"]
    # --resume continues in the checkpoint's folder
    ckpt = tmp_path / "runs" / "tiny-epochs1-limit64" / "checkpoint.npz"
    assert run_cli(Tiny, ["--limit", "64", "--epochs", "2", "--quiet", "--resume", str(ckpt)]) == 0
    lines = _lines(ckpt.parent / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 2]
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_help_shows_every_default(capsys):
    assert run_cli(Tiny, ["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--epochs EPOCHS number of training epochs (default: 2)",
                 "(default: 32)", "(default: 0.05)", "--hidden HIDDEN hidden units (default: 16)"):
        assert text in out, text


# ----------------------------------------------------------------------------- every model
# The smallest settings of every command, and the flags that keep its metrics cheap.
MODELS = {
    "autoencoder": ("autoencoder", "AutoencoderExperiment", ["--hidden", "8"]),
    "autoencoder-conv": ("autoencoder", "AutoencoderExperiment", ["--arch", "conv",
                                                                  "--hidden", "2"]),
    "vae": ("vae", "VAE", ["--hidden", "8", "--iw-samples", "2", "--metric-samples", "20"]),
    "cvae": ("cvae", "CVAE", ["--hidden", "8", "--fidelity-samples", "2", "--iw-samples", "2",
                              "--metric-samples", "20"]),
    "gan": ("gan", "GAN", ["--width", "2", "--z-dim", "4", "--metric-samples", "20"]),
    "gan-wgan-gp": ("gan", "GAN", ["--loss", "wgan-gp", "--n-critic", "2", "--width", "2",
                                   "--z-dim", "4", "--metric-samples", "0"]),
    "vaegan": ("vaegan", "VAEGAN", ["--width", "2", "--latent-dim", "4",
                                    "--metric-samples", "20"]),
    "siamese": ("siamese", "Siamese", ["--width", "2", "--hidden", "8"]),
    "siamese-triplet": ("siamese", "Siamese", ["--width", "2", "--hidden", "8",
                                               "--loss", "triplet", "--mining", "random"]),
    "transfer": ("transfer", "Transfer", ["--width", "2", "--feature-dim", "8", "--steps", "3",
                                          "--labels-per-class", "2", "5"]),
    "classifier": ("classifier", "Classifier", ["--width", "2"]),
}
_TIMES = ("time_s", "train_time_s", "examples_per_s")


@pytest.mark.parametrize("name", MODELS)
def test_every_model_resumes_exactly(name, tmp_path, tiny_classifier):
    """'2 epochs' == '1 epoch, --resume, 1 epoch': every number of every epoch and of
    the final record, so each model's declared checkpoint holds all its state."""
    module, cls_name, flags = MODELS[name]
    cls = getattr(importlib.import_module(f"models.{module}"), cls_name)

    def run(out, epochs, *extra):
        argv = ["--limit", "96", "--batch-size", "32", "--quiet", "--epochs", str(epochs),
                "--out", str(tmp_path / out), *flags, *extra]
        assert run_cli(cls, argv) == 0

    run("straight", 2)
    run("split", 1)
    run("split", 2, "--resume", str(tmp_path / "split" / "checkpoint.npz"))
    straight, split = (_lines(tmp_path / d / "metrics.jsonl") for d in ("straight", "split"))
    assert [r["epoch"] for r in split] == [1, 2, 2] and split[-1]["final"]
    for a, b in zip(straight, split):
        a, b = ({k: v for k, v in r.items() if k not in _TIMES} for r in (a, b))
        assert a == b
    assert len(straight[-1]) > 2 or name.startswith("autoencoder") or name in (
        "classifier", "gan-wgan-gp")                       # a final record with numbers
    # every figure is <model>_<what>.png
    pngs = [p.name for p in (tmp_path / "split").glob("*.png")]
    assert pngs and all(p.startswith(cls.name + "_") for p in pngs), pngs
