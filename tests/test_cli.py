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


def test_the_figure_jobs_read_the_folders_their_commands_write():
    # benchmarks/figures.py copies figures and metrics from each job's folder: a
    # folder that is not the command's default would read a stale run, or none
    from benchmarks.figures import JOBS
    from models.cli import _folder_name, build_parser
    for job, flags, folder, _ in JOBS:
        module = importlib.import_module(f"models.{flags[0]}")
        exp_cls = next(v for v in vars(module).values() if isinstance(v, type)
                       and issubclass(v, Experiment) and v.__module__ == module.__name__)
        parser = build_parser(exp_cls)
        assert _folder_name(parser, parser.parse_args(flags[1:]), exp_cls.name) == folder, job


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
def test_every_model_resumes_exactly(name, tmp_path, shipped_scorer):
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


# ----------------------------------------------------------------------------- samples, scorer
GENERATIVE = ["vae", "cvae", "gan", "vaegan"]


@pytest.mark.parametrize("name", GENERATIVE)
def test_export_samples_of_the_final_model_and_of_a_checkpoint(name, tmp_path, shipped_scorer):
    """--export-samples N: samples.npz with "images" (N, 1, 28, 28) float32 in [0, 1]
    (and the CVAE's "labels"); --resume CKPT --epochs 0 writes the same samples from
    the checkpoint without training."""
    module, cls_name, flags = MODELS[name]
    cls = getattr(importlib.import_module(f"models.{module}"), cls_name)
    base = ["--limit", "64", "--batch-size", "32", "--quiet", *flags, "--metric-samples", "0",
            "--export-samples", "7"]
    assert run_cli(cls, [*base, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    ckpt = tmp_path / "run" / "checkpoint.npz"
    stamp = ckpt.stat().st_mtime_ns
    assert run_cli(cls, [*base, "--resume", str(ckpt), "--epochs", "0",
                         "--out", str(tmp_path / "again")]) == 0
    first, again = (np.load(tmp_path / d / "samples.npz") for d in ("run", "again"))
    images = first["images"]
    assert images.shape == (7, 1, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0
    assert sorted(first.files) == (["images", "labels"] if name == "cvae" else ["images"])
    if name == "cvae":
        assert first["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    for k in first.files:
        np.testing.assert_array_equal(first[k], again[k])
    # nothing trained: no epoch in the evaluation's folder, the checkpoint untouched
    assert [r["epoch"] for r in _lines(tmp_path / "again" / "metrics.jsonl")] == [1, 1]
    assert not (tmp_path / "again" / "checkpoint.npz").exists()
    assert ckpt.stat().st_mtime_ns == stamp


def test_export_samples_is_offered_to_generative_models_only(capsys):
    from models.siamese import Siamese
    assert run_cli(Siamese, ["--export-samples", "3", "--quiet"]) == 2
    assert "--export-samples" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vae", "cvae", "gan", "vaegan"])
def test_a_model_run_never_trains_the_scorer(name, tmp_path, shipped_scorer, monkeypatch):
    """Every sample metric reads the shipped scorer: a model run with its metrics on
    trains no classifier, writes no classifier file and leaves the scorer's weights
    as they were (on disk: the shipped_scorer fixture; in memory: here)."""
    from models import classifier, evaluation

    def refuse(*a, **k):
        raise AssertionError("a model run trained a classifier")

    monkeypatch.setattr(classifier.Classifier, "__init__", refuse)
    monkeypatch.setattr(classifier.Classifier, "train_step", refuse)
    scorer = evaluation.load_classifier(evaluation.SCORER_PATH, "numpy")
    before = {k: v.numpy().copy() for k, v in scorer.state_dict().items()}
    module, cls_name, flags = MODELS[name]
    cls = getattr(importlib.import_module(f"models.{module}"), cls_name)
    assert run_cli(cls, ["--limit", "64", "--batch-size", "32", "--quiet", "--epochs", "1",
                         *flags, "--out", str(tmp_path / "run")]) == 0
    final = _lines(tmp_path / "run" / "metrics.jsonl")[-1]
    assert any(k.endswith("rarest_class_share") for k in final), final
    for k, v in scorer.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert not any("classifier" in f for f in written) and not (tmp_path / "runs").exists()
