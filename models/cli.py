"""The shared training CLI: every ``python -m models.<name>`` runs through here.

A model file subclasses ``Experiment`` (build modules and optimizers in
``__init__``, one batch in ``train_step``, metrics in ``evaluate``/``final``,
PNGs in ``figures``) and ends with ``raise SystemExit(run_cli(MyModel))``.
Everything else lives here, once:

- the common flags (``--backend --dataset --data-dir --epochs --batch-size --lr
  --seed --out --resume --limit --quiet``) and the model's own;
- seeding, data loading, the epoch loop with a tqdm bar (on a terminal only);
- ``<out>/metrics.jsonl``: one JSON line per epoch (train metrics averaged over
  the epoch's examples, evaluation metrics, wall time, examples/s) and a last
  line with ``"final": true``;
- ``<out>/checkpoint.npz``, written atomically after every epoch (and on
  Ctrl-C): modules, optimizers, schedulers, every random generator, the data
  order, the epoch and the history, so ``--resume`` continues exactly where
  the run stopped ("2 epochs" == "1 epoch, resume, 1 epoch" on NumPy);
- errors a user can fix (bad flags, missing data, no GPU) print one line and
  exit with status 2, no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np  # host-side: data sets and noise for figures are host arrays

import minigrad as mg
from minigrad import nn, optim
from minigrad.backend import BackendError, get_backend
from minigrad.data import DataError, DataLoader, TensorDataset, load_dataset

__all__ = ["Experiment", "Run", "run_cli", "UsageError"]


class UsageError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class Experiment:
    """Base class of a model run. Subclasses set ``name`` and ``defaults`` and
    override the methods below; every ``nn.Module``, optimizer and LR scheduler
    stored as an attribute is checkpointed under its attribute name."""

    name = "experiment"
    defaults: dict = {}

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser):
        """Add the model's own flags."""

    def __init__(self, args, run):
        self.args = args
        self.run = run

    def train_step(self, x, y) -> dict:
        """One optimisation step on a batch; returns floats to average and log."""
        raise NotImplementedError

    def evaluate(self, epoch) -> dict:
        """Metrics on the test split after each epoch."""
        return {}

    def final(self) -> dict:
        """Metrics after the last epoch (expensive ones: IW likelihood, FID...)."""
        return {}

    def figures(self, epoch, history, final):
        """Write PNGs with ``self.run.savefig``."""

    def state_dict_extra(self) -> dict:
        return {}

    def load_state_dict_extra(self, d):
        pass

    # -- found by attribute, checkpointed by name
    def _stateful(self):
        out = {}
        for k, v in vars(self).items():
            if isinstance(v, (nn.Module, optim.Optimizer, optim.LRScheduler)):
                out[k] = v
        return out

    def _modules(self):
        return [v for v in vars(self).values() if isinstance(v, nn.Module)]


class Run:
    """What a model sees of the run: flags, output folder, backend, data, RNG."""

    def __init__(self, args, name):
        self.args = args
        self.name = name
        self.out = pathlib.Path(args.out)
        self.backend = get_backend()
        self.quiet = args.quiet
        self.rng = np.random.default_rng(args.seed)
        self.data = None
        self._train_loader = None

    def tensor(self, host_array, dtype=None):
        """A host (NumPy) array as a Tensor on the run's backend; float64 becomes
        float32 unless ``dtype`` says otherwise."""
        a = np.asarray(host_array)
        if dtype is None and a.dtype == np.float64:
            a = a.astype(np.float32)
        return mg.Tensor._make(self.backend.from_numpy(np.ascontiguousarray(a), dtype),
                               self.backend, False, None)

    def loader(self, split="train", batch_size=None, shuffle=None):
        """Batches (x, y) of a split as Tensors. The training loader is one object
        for the whole run, so its shuffling state is checkpointed and resumed."""
        bs = batch_size or self.args.batch_size
        if split == "train" and batch_size is None and shuffle in (None, True):
            if self._train_loader is None:
                self._train_loader = DataLoader(
                    TensorDataset(self.data.train_x, self.data.train_y), batch_size=bs,
                    shuffle=True, seed=self.args.seed)
            return self._train_loader
        if split not in ("train", "test"):
            raise ValueError(f"loader: split must be 'train' or 'test', got {split!r}")
        x = self.data.train_x if split == "train" else self.data.test_x
        y = self.data.train_y if split == "train" else self.data.test_y
        return DataLoader(TensorDataset(x, y), batch_size=bs,
                          shuffle=bool(shuffle), seed=int(self.rng.integers(2**31)))

    def savefig(self, fig, filename):
        import matplotlib.pyplot as plt  # host-side: figures
        path = self.out / filename
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    def print(self, *a, **kw):
        if not self.quiet:
            print(*a, **kw, flush=True)


# ----------------------------------------------------------------------------- the parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse's default prints usage too)
        raise UsageError(message)


def _positive_int(name):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {v}")
        return v
    return parse


def _non_negative_int(name):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {v}")
        return v
    return parse


def _positive_float(name):
    def parse(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {v}")
        return v
    return parse


def build_parser(exp_cls):
    d = dict(epochs=10, batch_size=128, lr=1e-3, seed=0, dataset="mnist-10k")
    d.update(exp_cls.defaults)
    p = _Parser(prog=f"python -m models.{exp_cls.name}",
                description=(exp_cls.__doc__ or "").strip(),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("common options (every model)")
    g.add_argument("--backend", default=os.environ.get("MINIGRAD_BACKEND", "numpy"),
                   choices=["numpy", "cupy", "strict"], metavar="{numpy,cupy}",
                   help="array backend: numpy (CPU) or cupy (NVIDIA GPU) (default: %(default)s)")
    g.add_argument("--dataset", default=d["dataset"],
                   choices=["mnist-10k", "mnist", "fashion-mnist"],
                   help="mnist-10k ships with minigrad (8,000 train / 2,000 test); mnist and "
                        "fashion-mnist are the full sets (default: %(default)s)")
    g.add_argument("--data-dir", default=None,
                   help="directory holding the official IDX .gz files of --dataset")
    g.add_argument("--epochs", type=_non_negative_int("--epochs"), default=d["epochs"],
                   help="total number of epochs (default: %(default)s)")
    g.add_argument("--batch-size", type=_positive_int("--batch-size"), default=d["batch_size"],
                   help="(default: %(default)s)")
    g.add_argument("--lr", type=_positive_float("--lr"), default=d["lr"],
                   help="learning rate (default: %(default)s)")
    g.add_argument("--seed", type=int, default=d["seed"], help="(default: %(default)s)")
    g.add_argument("--out", default=None, help=f"output folder (default: runs/{exp_cls.name})")
    g.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from a checkpoint.npz written by an earlier run")
    g.add_argument("--limit", type=_positive_int("--limit"), default=None, metavar="N",
                   help="use only the first N training (and at most N test) examples")
    g.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    exp_cls.add_arguments(p.add_argument_group(f"{exp_cls.name} options"))
    return p


# ----------------------------------------------------------------------------- running
def run_cli(exp_cls, argv=None) -> int:
    """Parse flags, train, evaluate, write metrics, checkpoints and figures.
    Returns the exit status (0, or 2 for a usage error)."""
    try:
        args = build_parser(exp_cls).parse_args(argv)
        return _run(exp_cls, args)
    except UsageError as e:
        print(f"{_prog(exp_cls)}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0


def _prog(exp_cls):
    return f"python -m models.{exp_cls.name}"


def _setup(exp_cls, args):
    """Everything that can fail because of what the user asked for."""
    if args.out is None:
        args.out = os.path.join("runs", exp_cls.name)
    try:
        mg.set_backend(args.backend)
    except BackendError as e:
        raise UsageError(str(e)) from None
    mg.manual_seed(args.seed)
    try:
        data = load_dataset(args.dataset, args.data_dir)
    except DataError as e:
        raise UsageError(str(e)) from None
    if args.limit:
        data.train_x, data.train_y = data.train_x[:args.limit], data.train_y[:args.limit]
        data.test_x, data.test_y = data.test_x[:args.limit], data.test_y[:args.limit]
    checkpoint = None
    if args.resume:
        try:
            checkpoint = mg.load(args.resume)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--resume: {e}") from None
        if checkpoint.get("model") != exp_cls.name:
            raise UsageError(f"--resume: {args.resume} is a checkpoint of "
                             f"{checkpoint.get('model')!r}, not {exp_cls.name!r}")
    try:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {args.out}: {e.strerror}") from None
    run = Run(args, exp_cls.name)
    run.data = data
    try:
        exp = exp_cls(args, run)
    except (ValueError, TypeError) as e:
        if isinstance(e, TypeError) and "argument" not in str(e):
            raise
        raise UsageError(str(e)) from None
    return run, exp, checkpoint


def _run(exp_cls, args):
    import matplotlib
    matplotlib.use("Agg")
    run, exp, checkpoint = _setup(exp_cls, args)
    history, start = [], 1
    loader = run.loader("train")
    if checkpoint is not None:
        _restore(exp, run, loader, checkpoint)
        history, start = list(checkpoint["history"]), int(checkpoint["epoch"]) + 1
        run.print(f"resumed from {args.resume} after epoch {start - 1}")
    ckpt_path = run.out / "checkpoint.npz"
    metrics_path = run.out / "metrics.jsonl"
    # metrics.jsonl describes THIS run: a fresh run starts it anew, a resumed one
    # rewrites it from the checkpoint's history (dropping lines of later epochs)
    with open(metrics_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
    epoch = completed = start - 1
    # the file that holds epoch `completed`: none yet in a fresh run (a checkpoint.npz
    # already in --out may be an older run's)
    holder = args.resume
    try:
        for epoch in range(start, args.epochs + 1):
            record = _train_epoch(exp, run, loader, epoch)
            for m in exp._modules():
                m.eval()
            with mg.no_grad():
                record.update(_floats(exp.evaluate(epoch)))
            record["time_s"] = round(time.perf_counter() - record.pop("_t0"), 3)
            history.append(record)
            _append(metrics_path, record)
            _save(exp, run, loader, epoch, history, ckpt_path)
            completed, holder = epoch, ckpt_path
            _figures(exp, run, epoch, history, False)
            for m in exp._modules():
                m.train()
            run.print(_summary(record))
        for m in exp._modules():
            m.eval()
        final = {"epoch": epoch, "final": True}
        final.update(_floats(exp.final()))
        history.append(final)
        _append(metrics_path, final)
        _figures(exp, run, epoch, history, True)
        if len(final) > 2:
            run.print(_summary(final))
        run.print(f"wrote {metrics_path}, {ckpt_path} and figures in {run.out}/")
    except KeyboardInterrupt:
        # the checkpoint of the last COMPLETED epoch is already on disk; keep it
        if holder is None:
            print(f"\ninterrupted in epoch {epoch}, before any epoch finished: "
                  "no checkpoint was written", file=sys.stderr)
        else:
            print(f"\ninterrupted: {holder} holds the state after epoch {completed}; "
                  f"continue with --resume {holder}", file=sys.stderr)
        return 130
    return 0


def _figures(exp, run, epoch, history, final):
    """Draw without touching the training's random streams: whatever noise the
    figures draw, the next epoch sees the same numbers as in a run without them
    (and as a resumed run, whose checkpoint was saved before the figures)."""
    saved = run.backend.rng_state(), run.rng.bit_generator.state
    with mg.no_grad():
        exp.figures(epoch, history, final)
    run.backend.set_rng_state(saved[0])
    run.rng.bit_generator.state = saved[1]


def _train_epoch(exp, run, loader, epoch):
    t0 = time.perf_counter()
    sums, n = {}, 0
    bar = None
    if not run.quiet and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{run.args.epochs}", leave=False,
                   unit="batch")
    for x, y in loader:
        out = exp.train_step(x, y)
        b = x.shape[0]
        n += b
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{sums[k] / n:.4g}" for k in list(sums)[:2]},
                            ex_s=f"{n / (time.perf_counter() - t0):.0f}")
    if bar is not None:
        bar.close()
    train_time = time.perf_counter() - t0
    record = {"epoch": epoch, "_t0": t0}
    record.update({k: v / max(n, 1) for k, v in sums.items()})
    record["train_time_s"] = round(train_time, 3)
    record["examples_per_s"] = round(n / train_time, 1) if train_time > 0 else None
    return record


def _floats(d):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, mg.Tensor):
            v = v.item()
        out[k] = v if isinstance(v, (str, bool, int, type(None), list, dict)) else float(v)
    return out


def _summary(record):
    parts = [f"epoch {record['epoch']}" + (" (final)" if record.get("final") else "")]
    for k, v in record.items():
        if k in ("epoch", "final") or not isinstance(v, float):
            continue
        parts.append(f"{k} {v:.4g}")
    return "  ".join(parts)


def _append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _state(exp, run, loader, epoch, history):
    return {
        "model": exp.name,
        "epoch": epoch,
        "history": history,
        "args": {k: v for k, v in vars(run.args).items()
                 if isinstance(v, (int, float, str, bool, type(None)))},
        "state": {k: v.state_dict() for k, v in exp._stateful().items()},
        "extra": exp.state_dict_extra(),
        "rng": {"backend": run.backend.rng_state(), "run": run.rng.bit_generator.state,
                "loader": loader.state_dict()},
    }


def _save(exp, run, loader, epoch, history, path):
    mg.save(_state(exp, run, loader, epoch, history), path)


def _restore(exp, run, loader, ckpt):
    stateful = exp._stateful()
    missing = set(stateful) - set(ckpt["state"])
    if missing:
        raise UsageError(f"--resume: the checkpoint has no state for {sorted(missing)}; "
                         "was it written with other model options?")
    try:
        for k, obj in stateful.items():
            obj.load_state_dict(ckpt["state"][k])
    except (KeyError, ValueError, RuntimeError) as e:
        raise UsageError(f"--resume: the checkpoint does not fit this model ({e}); "
                         "use the same model options as the run that wrote it") from None
    exp.load_state_dict_extra(ckpt.get("extra") or {})
    run.backend.set_rng_state(ckpt["rng"]["backend"])
    run.rng.bit_generator.state = ckpt["rng"]["run"]
    loader.load_state_dict(ckpt["rng"]["loader"])
