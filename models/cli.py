"""The shared training CLI: every ``python -m models.<name>`` runs through here.

What a model defines
--------------------
A model file defines one subclass of ``Experiment`` and ends with
``raise SystemExit(run_cli(TheClass))``. The subclass sets

    name            the command (python -m models.<name>), its folder runs/<name>...,
                    its figures <name>_<what>.png, and the tag its checkpoints carry
    defaults        its defaults for the common flags, e.g. dict(epochs=10, lr=1e-3)
    checkpoint      the attribute names a checkpoint holds, e.g. ("model", "opt"):
                    an object with state_dict() (module, optimizer, LR scheduler) is
                    saved through it, anything else (numbers, lists, host arrays) as
                    it is. What is not named here is neither saved nor restored.
    __init__(args, run)    build the networks and optimizers (ValueError: a usage error)
    train_step(x, y)       one optimisation step on a batch; returns floats to log

and, where it needs them,

    add_arguments(parser)  its own flags, typed with positive_int, non_negative_float, ...
    evaluate(epoch)        metrics after every epoch
    final()                metrics once, after the last epoch
    figures(epoch, history, final)   PNGs, written with run.savefig
    sample(n)              a generative model: n samples of its current model, a dict
                           {"images": (n, 1, 28, 28) pixels in [0, 1], ...} of Tensors or
                           host arrays (the CVAE adds "labels"); defining it gives the
                           model --export-samples
    epochs_help            what --epochs counts, where that is not plain training epochs
    lr_help                what --lr's default is, where it depends on other options

Modes: the CLI switches none. Every hook runs with gradients on and with the
modules in the mode the model left them in (training mode, from construction).
A hook that evaluates says so where it does: ``with evaluating(self.model):``
(models/evaluation.py) is PyTorch's ``model.eval()`` plus ``no_grad()`` and
restores both afterwards. A hook that trains (transfer learning's final
comparison) just trains.

Randomness: three streams, seeded by --seed and saved in every checkpoint: the
backend's generator (mg.randn, dropout, reparameterisation, in-batch pairs),
``run.rng`` (host-side draws) and the training loader's order. train_step,
evaluate and final may draw from them: they run before the epoch's checkpoint
is written, so --resume replays their draws. figures runs after it, so it must
not: a figure's noise comes from a host generator of its own
(``np.random.default_rng(args.seed)``, the same noise after every epoch), and
the CLI stops with an error if figures moved a stream.

What a run does
---------------
    for epoch in 1 .. --epochs:
        train_step on every batch of the shuffled training split (a tqdm bar on a terminal)
        record = train_step's floats averaged over the examples, evaluate(epoch), times
        append the record to <out>/metrics.jsonl, write <out>/checkpoint.npz atomically
        figures(epoch, history, final=False)
    final() -> the last line of metrics.jsonl, marked "final": true
    --export-samples N: sample(N) -> <out>/samples.npz (written atomically): "images"
        float32 (N, 1, 28, 28) in [0, 1], and whatever else sample returns ("labels")
    figures(epoch, history, final=True)

--export-samples draws its noise from the backend's generator seeded with --seed
(and puts every stream back afterwards), so the samples depend only on the model
and the seed: ``--resume CKPT --epochs 0 --export-samples N`` writes exactly the
samples that the run which wrote CKPT would have written at its end.

``train_epoch`` is that loop's inner part, and the one loop of every other
training in models/ too (transfer learning's heads, the toolkit classifier).

--out defaults to runs/<name> followed by every option that differs from its
default (``python -m models.vae --latent-dim 2`` writes runs/vae-latent-dim2/);
with --resume, to the checkpoint's folder. "2 epochs" and "1 epoch, --resume,
1 epoch" give the same numbers on NumPy.

Nothing is lost
---------------
- One run per folder: a run holds <out>/.lock (its pid) until it ends, however it
  ends; a second run on the folder exits 2 naming the holder; a dead holder's lock
  is taken over. A new run into a folder that holds an earlier run moves that run's
  files into <out>/previous/<time>/ first (--overwrite deletes them instead).
  Temporary files of killed writers are removed at the start.
- A non-finite loss term stops the run at once with exit status 3 and one line
  naming the epoch, the step and the term; so do non-finite weights at the end of
  an epoch. The checkpoint of the last finite epoch stays; nothing non-finite is
  written as a checkpoint, a figure or a metric. metrics.jsonl is always valid
  JSON: a non-finite evaluation metric is written as null and listed under
  "nonfinite".
- --resume checks the checkpoint before using it (mg.load checks the file; the CLI
  checks epoch, history, state, random streams and values: a finite float weight
  for every float weight of the model, positive learning rates). The model options
  come from the checkpoint; one given on the command line that differs from it is
  refused, not silently dropped. --epochs is the total: more than the checkpoint's
  epoch trains on; the checkpoint's epoch (the command of a run killed after its
  last checkpoint) or 0 only evaluates (and exports) the checkpoint; anything in
  between is refused.
- A mistake the user can fix (a bad flag, missing or malformed data, no GPU, a bad
  checkpoint, an unwritable folder) prints one line and exits with status 2, no
  traceback; Ctrl-C keeps the checkpoint of the last finished epoch and says how to
  resume from it.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import pathlib
import sys
import time

import numpy as np  # host-side: data sets and their shuffling live on the host

import minigrad as mg
from minigrad.backend import BACKEND_NAMES, BackendError, get_backend
from minigrad.data import DataError, DataLoader, TensorDataset, load_dataset
from minigrad.serialization import process_alive, remove_stale_temporaries

__all__ = ["Experiment", "Run", "run_cli", "train_epoch", "UsageError", "NonFinite", "number",
           "positive_int", "non_negative_int", "positive_float", "non_negative_float",
           "default_folder"]

DEFAULT_DATASET = "mnist-10k"


class UsageError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class NonFinite(Exception):
    """Training produced a non-finite number: printed as one line, exit status 3."""


# flags that change where or how a run runs, not what it computes: free to differ on --resume
# (--export-samples and the metrics' --scorer judge a model, they do not train it)
_RUNTIME_FLAGS = {"help", "backend", "data_dir", "out", "resume", "quiet", "epochs",
                  "overwrite", "export_samples", "scorer"}


class Experiment:
    """A model run; see the module docstring for what a subclass defines."""

    name = "experiment"
    defaults: dict = {}
    checkpoint: tuple = ()
    epochs_help = "number of training epochs"
    lr_help = "learning rate"

    def __init__(self, args, run):
        self.args = args
        self.run = run

    @staticmethod
    def add_arguments(parser):
        """The model's own flags."""

    def train_step(self, x, y) -> dict:
        raise NotImplementedError

    def evaluate(self, epoch) -> dict:
        return {}

    def final(self) -> dict:
        return {}

    def figures(self, epoch, history, final):
        pass

    sample = None     # a generative model: def sample(self, n) -> {"images": ..., ...}


class Run:
    """What a model sees of its run: the flags, the output folder, the backend, the
    data set (host arrays), a host random generator and a few helpers."""

    def __init__(self, args, name, data):
        self.args = args
        self.name = name
        self.out = pathlib.Path(args.out)
        self.backend = get_backend()
        self.quiet = args.quiet
        self.rng = np.random.default_rng(args.seed)
        self.data = data
        self._train_loader = None

    def tensor(self, host_array, dtype=None):
        """A host (NumPy) array as a Tensor on the run's backend; float64 becomes
        float32 unless ``dtype`` says otherwise."""
        a = np.asarray(host_array)
        if dtype is None and a.dtype == np.float64:
            a = a.astype(np.float32)
        return mg.Tensor._make(self.backend.from_numpy(np.ascontiguousarray(a), dtype),
                               self.backend, False, None)

    def loader(self, split="train", batch_size=None):
        """Batches (x, y) of a split as Tensors. "train": the shuffled loader of the
        run's epochs (one object, so its order is checkpointed); "test": in order."""
        if split == "train" and batch_size is None:
            if self._train_loader is None:
                self._train_loader = DataLoader(
                    TensorDataset(self.data.train_x, self.data.train_y),
                    batch_size=self.args.batch_size, shuffle=True, seed=self.args.seed)
            return self._train_loader
        if split not in ("train", "test"):
            raise ValueError(f"loader: split must be 'train' or 'test', got {split!r}")
        x, y = (self.data.train_x, self.data.train_y) if split == "train" else \
            (self.data.test_x, self.data.test_y)
        return DataLoader(TensorDataset(x, y), batch_size=batch_size or self.args.batch_size)

    def savefig(self, fig, filename):
        """Write a matplotlib figure as <out>/<filename> and close it."""
        import matplotlib.pyplot as plt  # host-side: figures
        path = self.out / filename
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    def print(self, *a, **kw):
        if not self.quiet:
            print(*a, **kw, flush=True)


# ----------------------------------------------------------------------------- flag types
def number(kind, minimum=None, above=None, below=None):
    """An argparse ``type``: a ``kind`` (int or float) >= ``minimum``, > ``above`` and
    < ``below`` (each bound optional). A bad value is a one-line usage error naming
    the flag (argparse puts "argument --flag:" in front of the message)."""
    bounds = [f"{op} {v}" for op, v in ((">=", minimum), (">", above), ("<", below))
              if v is not None]
    what = ("an integer" if kind is int else "a finite number") + \
        "".join((" " if i == 0 else " and ") + b for i, b in enumerate(bounds))

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or (minimum is not None and not value >= minimum) or \
                (above is not None and not value > above) or \
                (below is not None and not value < below):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


positive_int = number(int, minimum=1)
non_negative_int = number(int, minimum=0)
positive_float = number(float, above=0)
non_negative_float = number(float, minimum=0)


# ----------------------------------------------------------------------------- the parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2 (argparse's default prints usage too)
        raise UsageError(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (none shown for None or a flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and "%(default)" not in text and \
                action.default is not None and action.default is not False and \
                action.default is not argparse.SUPPRESS:
            text += " (default: %(default)s)"
        return text


# options that do not change what a run computes, so its folder name leaves them out
_NOT_IN_FOLDER_NAME = {"help", "backend", "data_dir", "out", "resume", "quiet", "overwrite",
                       "export_samples", "scorer"}


def build_parser(exp_cls):
    d = dict(epochs=10, batch_size=128, lr=1e-3, seed=0, dataset=DEFAULT_DATASET)
    d.update(exp_cls.defaults)
    p = _Parser(prog=_prog(exp_cls), description=inspect.cleandoc(exp_cls.__doc__ or ""),
                formatter_class=_HelpFormatter)
    g = p.add_argument_group("common options (every model)")
    g.add_argument("--backend", default=os.environ.get("MINIGRAD_BACKEND", "numpy"),
                   choices=["numpy", "cupy", "strict"], metavar="{numpy,cupy}",
                   help="array backend: numpy (CPU) or cupy (NVIDIA GPU)")
    g.add_argument("--dataset", default=d["dataset"],
                   choices=["mnist-10k", "mnist", "fashion-mnist"],
                   help="mnist-10k ships with minigrad (8,000 train / 2,000 test); mnist and "
                        "fashion-mnist are the full sets")
    g.add_argument("--data-dir", default=None,
                   help="directory holding the official IDX .gz files of --dataset")
    g.add_argument("--epochs", type=non_negative_int, default=d["epochs"],
                   help=exp_cls.epochs_help)
    g.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                   help="training examples per step")
    g.add_argument("--lr", type=positive_float, default=d["lr"], help=exp_cls.lr_help)
    g.add_argument("--seed", type=non_negative_int, default=d["seed"],
                   help="seeds every random stream of the run")
    g.add_argument("--out", default=None,
                   help=f"output folder (default: runs/{exp_cls.name}, followed by each option "
                        f"that differs from its default, e.g. runs/{exp_cls.name}-seed1; "
                        "with --resume, the checkpoint's folder)")
    g.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue from a checkpoint.npz written by an earlier run")
    g.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="use only the first N training (and at most N test) examples")
    g.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    g.add_argument("--overwrite", action="store_true",
                   help="delete an earlier run's files in --out instead of moving them into "
                        "<out>/previous/")
    if exp_cls.sample is not None:
        g.add_argument("--export-samples", type=non_negative_int, default=0, metavar="N",
                       help="write N samples of the final model to <out>/samples.npz: "
                            "'images' float32 (N, 1, 28, 28) in [0, 1] (with --resume CKPT "
                            "--epochs 0: of the checkpoint, without training)")
    exp_cls.add_arguments(p.add_argument_group(f"{exp_cls.name} options"))
    return p


def default_folder(name, dataset=DEFAULT_DATASET):
    """The folder that ``python -m models.<name> [--dataset DATASET]`` writes by
    default (where other models look for its results)."""
    return os.path.join("runs", name if dataset == DEFAULT_DATASET else f"{name}-{dataset}")


def _folder_name(parser, args, name):
    """runs/<name>-<one part per option that differs from its default>: a choice is
    its value (triplet), a switch its name (no-vae), a number its name and value
    (latent-dim2), a list its name and values (labels-per-class10_100)."""
    parts = [name]
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_IN_FOLDER_NAME:
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[-1].lstrip("-")
        if isinstance(value, bool):
            parts.append(flag)
        elif action.choices:
            parts.append(str(value))
        elif isinstance(value, (list, tuple)):
            parts.append(flag + "_".join(f"{v:g}" if isinstance(v, float) else str(v)
                                         for v in value))
        else:
            parts.append(flag + (f"{value:g}" if isinstance(value, float) else str(value)))
    return os.path.join("runs", "-".join(parts))


# ----------------------------------------------------------------------------- running
def run_cli(exp_cls, argv=None) -> int:
    """Parse flags, train, evaluate, write metrics, checkpoints and figures.
    Returns the exit status (0; 2 for a usage error; 3 when training went non-finite;
    130 after Ctrl-C). The caller's current backend is current again afterwards (a
    run switches to --backend)."""
    try:
        caller_backend = get_backend()
    except (BackendError, ValueError):      # a bad $MINIGRAD_BACKEND: --backend decides
        caller_backend = None
    try:
        parser = build_parser(exp_cls)
        args = parser.parse_args(argv)
        args.given = _given_flags(exp_cls, argv)
        return _run(exp_cls, args, parser)
    except UsageError as e:
        print(f"{_prog(exp_cls)}: error: {e}", file=sys.stderr)
        return 2
    except NonFinite as e:
        print(f"{_prog(exp_cls)}: stopped: {e}", file=sys.stderr)
        return 3
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    finally:
        if caller_backend is not None:
            mg.set_backend(caller_backend.name)


def _given_flags(exp_cls, argv):
    """The options the command line names explicitly (not left at their defaults)."""
    quiet = build_parser(exp_cls)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_args(argv)))


def _prog(exp_cls):
    return f"python -m models.{exp_cls.name}"


def _setup(exp_cls, args, parser):
    """Everything that can fail because of what the user asked for."""
    checkpoint = None
    if args.resume:
        try:
            checkpoint = mg.load(args.resume, backend="numpy")
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--resume: {e}") from None
        _check_checkpoint(checkpoint, exp_cls, args)
        _take_checkpoint_options(checkpoint, args, parser)
    if args.out is None and args.resume:
        args.out = os.path.dirname(args.resume) or "."      # continue in the run's folder
    elif args.out is None:
        args.out = _folder_name(parser, args, exp_cls.name)
    if args.backend not in BACKEND_NAMES:   # argparse checks the flag, not its default
        raise UsageError(f"MINIGRAD_BACKEND={args.backend!r} is not a backend: set it to "
                         "numpy or cupy, or unset it")
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
    out = pathlib.Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {args.out}: cannot write there ({e.strerror}); choose "
                         "another --out") from None
    run = Run(args, exp_cls.name, data)
    try:
        exp = exp_cls(args, run)
    except (ValueError, TypeError) as e:
        if isinstance(e, TypeError) and "argument" not in str(e):
            raise
        raise UsageError(str(e)) from None
    missing = [k for k in exp.checkpoint if not hasattr(exp, k)]
    if missing:
        raise AttributeError(f"{exp_cls.__name__}.checkpoint names {missing}, which "
                             "__init__ did not set")
    return run, exp, checkpoint


def _check_checkpoint(ckpt, exp_cls, args):
    """The structure a checkpoint of this CLI has, and values a run can continue from."""
    where = f"--resume {args.resume}"
    if not isinstance(ckpt, dict):
        raise UsageError(f"{where}: not a checkpoint of this CLI (its root is a "
                         f"{type(ckpt).__name__})")
    if "model" in ckpt and ckpt["model"] != exp_cls.name:
        raise UsageError(f"{where} is a checkpoint of {ckpt['model']!r}, not "
                         f"{exp_cls.name!r}")
    for key, kind in (("model", str), ("epoch", int), ("history", list), ("args", dict),
                      ("state", dict), ("rng", dict)):
        if key not in ckpt:
            raise UsageError(f"{where}: the checkpoint has no {key!r}; was it written by "
                             "this CLI?")
        if not isinstance(ckpt[key], kind) or isinstance(ckpt[key], bool):
            raise UsageError(f"{where}: {key!r} is a {type(ckpt[key]).__name__}, expected "
                             f"a {kind.__name__}")
    epoch = ckpt["epoch"]
    if epoch < 0:
        raise UsageError(f"{where}: epoch {epoch} is negative")
    records = [h for h in ckpt["history"] if isinstance(h, dict) and not h.get("final")]
    if len(records) != len(ckpt["history"]) or len(records) != epoch or any(
            h.get("epoch") != i + 1 for i, h in enumerate(records)):
        raise UsageError(f"{where}: the history does not hold one record per epoch 1..{epoch}")
    rng = ckpt["rng"]
    if not all(isinstance(rng.get(k), dict) for k in ("backend", "run", "loader")):
        raise UsageError(f"{where}: the random-stream states ('rng') are incomplete")
    given = args.given
    # --epochs equal to the checkpoint's finishes a run killed after its last epoch's
    # checkpoint: the same command again, with --resume, evaluates and draws it
    if "epochs" in given and 0 < args.epochs < epoch:
        raise UsageError(f"--epochs {args.epochs}: the checkpoint already holds {epoch} "
                         f"epochs; --epochs counts the total, so pass {epoch} or more (or "
                         "0 to evaluate the checkpoint without training)")
    if "epochs" not in given:
        args.epochs = max(args.epochs, epoch)


def _take_checkpoint_options(ckpt, args, parser):
    """A resumed run continues the run that wrote the checkpoint: its model options come
    from the checkpoint, and one given again that differs is refused."""
    saved = ckpt["args"]
    for action in parser._actions:
        dest = action.dest
        if dest in _RUNTIME_FLAGS or not action.option_strings:
            continue
        if dest not in saved:
            raise UsageError(f"--resume: the checkpoint's options ('args') lack "
                             f"{action.option_strings[-1]}: it was not written by this "
                             "model's command; start a new run without --resume")
        value = saved[dest]
        if dest in args.given and getattr(args, dest) != value:
            flag = action.option_strings[-1]
            raise UsageError(f"{flag} {getattr(args, dest)} differs from the checkpoint's "
                             f"{value}: a resumed run continues with the checkpoint's "
                             f"settings; drop {flag}, or start a new run without --resume")
        if isinstance(value, list) and isinstance(getattr(args, dest), tuple):
            value = tuple(value)
        setattr(args, dest, value)


class _FolderLock:
    """<out>/.lock holds the running process's pid: one run per folder. A lock whose
    process is gone (kill -9) is taken over."""

    def __init__(self, folder):
        self.path = pathlib.Path(folder) / ".lock"

    def __enter__(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and process_alive(pid):
                    raise UsageError(f"--out {self.path.parent} is in use by another run "
                                     f"(pid {pid}); wait for it to end, or choose another "
                                     "--out") from None
                try:
                    self.path.unlink()          # its holder is gone
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise UsageError(f"--out {self.path.parent}: could not take {self.path}")

    def __exit__(self, *exc):
        try:
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        except OSError:
            pass


_RUN_FILES = ("metrics.jsonl", "checkpoint.npz")


def _clear_earlier_run(run, overwrite):
    """A new run into a folder that holds an earlier run: move that run's outputs into
    <out>/previous/<time>/ (or delete them with --overwrite); returns where they went."""
    out = run.out
    if not any((out / f).exists() for f in _RUN_FILES):
        return None
    files = [f for f in out.iterdir() if f.is_file() and f.name not in (".lock",) and
             (f.name in _RUN_FILES or f.suffix in (".png", ".npz", ".jsonl"))]
    if overwrite:
        for f in files:
            f.unlink()
        return "deleted"
    target = out / "previous" / time.strftime("%Y%m%d-%H%M%S")
    while target.exists():
        target = target.with_name(target.name + "_")
    target.mkdir(parents=True)
    for f in files:
        f.rename(target / f.name)
    return target


def _run(exp_cls, args, parser):
    import matplotlib
    matplotlib.use("Agg")
    run, exp, checkpoint = _setup(exp_cls, args, parser)
    # NumPy's overflow warnings would only repeat what the non-finite check says
    with _FolderLock(run.out), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            return _train(exp, run, args, checkpoint)
        except PermissionError as e:
            raise UsageError(f"--out {run.out}: cannot write {e.filename} ({e.strerror})") \
                from None


def _train(exp, run, args, checkpoint):
    removed = remove_stale_temporaries(run.out)
    if removed:
        run.print(f"removed {len(removed)} temporary file(s) a killed run left in {run.out}")
    history, start = [], 1
    loader = run.loader("train")
    moved = None
    if checkpoint is not None:
        _restore(exp, run, loader, checkpoint, args)
        history, start = list(checkpoint["history"]), int(checkpoint["epoch"]) + 1
        run.print(f"resumed from {args.resume} after epoch {start - 1}")
    else:
        moved = _clear_earlier_run(run, args.overwrite)
        if moved is not None:
            run.print(f"an earlier run's files in {run.out} were "
                      + ("deleted (--overwrite)" if moved == "deleted" else f"moved to {moved}"))
    ckpt_path = run.out / "checkpoint.npz"
    metrics_path = run.out / "metrics.jsonl"
    # metrics.jsonl describes THIS run: a fresh run starts it anew, a resumed one
    # rewrites it from the checkpoint's history (dropping lines of later epochs)
    with open(metrics_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)
    epoch = completed = start - 1
    # the file that holds epoch `completed`: none yet in a fresh run
    holder = args.resume
    try:
        for epoch in range(start, args.epochs + 1):
            t0 = time.perf_counter()
            record = {"epoch": epoch}
            try:
                record.update(train_epoch(exp.train_step, loader,
                                          _progress_bar(run, loader, epoch)))
            except NonFinite as e:
                raise NonFinite(f"{e} in epoch {epoch}; " + _kept(holder, completed)) from None
            bad = _nonfinite_weights(exp)
            if bad:
                raise NonFinite(f"the weights {bad} are not finite after epoch {epoch}; "
                                + _kept(holder, completed))
            train_time = time.perf_counter() - t0
            record["train_time_s"] = round(train_time, 3)
            n = len(loader.dataset)
            record["examples_per_s"] = round(n / train_time, 1) if train_time > 0 else None
            record.update(_floats(exp.evaluate(epoch)))
            record["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(record)
            _append(metrics_path, record)
            mg.save(_state(exp, run, loader, epoch, history), ckpt_path)
            completed, holder = epoch, ckpt_path
            _figures(exp, run, epoch, history, False)
            run.print(_summary(record))
        final = {"epoch": epoch, "final": True}
        final.update(_floats(exp.final()))
        history.append(final)
        _append(metrics_path, final)
        exported = _export_samples(exp, run, getattr(args, "export_samples", 0))
        if exported is not None:
            run.print(f"wrote {args.export_samples} samples to {exported}")
        _figures(exp, run, epoch, history, True)
        if len(final) > 2:
            run.print(_summary(final))
        if start > args.epochs:
            run.print(f"evaluated {args.resume} (epoch {completed}) without training; wrote "
                      f"{metrics_path} and figures in {run.out}/")
        else:
            run.print(f"wrote {metrics_path}, {ckpt_path} and figures in {run.out}/")
    except KeyboardInterrupt:
        # the checkpoint of the last COMPLETED epoch is already on disk; keep it
        if holder is None:
            where = f"; the earlier run's files are in {moved}" if moved not in (None,
                                                                                 "deleted") \
                else ""
            print(f"\ninterrupted in epoch {epoch}, before any epoch finished: "
                  f"no checkpoint was written{where}", file=sys.stderr)
        else:
            print(f"\ninterrupted: {holder} holds the state after epoch {completed}; "
                  f"continue with --resume {holder}", file=sys.stderr)
        return 130
    return 0


def _export_samples(exp, run, n):
    """<out>/samples.npz from ``exp.sample(n)``, drawn with the backend's generator
    seeded with --seed; every random stream is put back afterwards."""
    if not n:
        return None
    saved = run.backend.rng_state(), run.rng.bit_generator.state
    run.backend.seed(run.args.seed)
    try:
        arrays = {k: v.numpy() if isinstance(v, mg.Tensor) else np.asarray(v)
                  for k, v in exp.sample(n).items()}
    finally:
        run.backend.set_rng_state(saved[0])
        run.rng.bit_generator.state = saved[1]
    images = arrays["images"].astype(np.float32).reshape(n, 1, 28, 28)
    if not np.isfinite(images).all():
        raise NonFinite("the exported samples are not finite; samples.npz was not written")
    arrays["images"] = images
    path = run.out / "samples.npz"
    tmp = run.out / f".tmp-{os.getpid()}-samples.npz"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _kept(holder, completed):
    if holder is None:
        return "no epoch had finished, so no checkpoint was written; try a smaller --lr"
    return (f"{holder} keeps the state after epoch {completed}; try a smaller --lr "
            f"(continue with --resume {holder})")


def _nonfinite_weights(exp):
    """Names of floating tensors in the declared state that hold nan or inf."""
    bad = []
    for k in exp.checkpoint:
        obj = getattr(exp, k)
        if isinstance(obj, mg.nn.Module):
            for name, t in obj.state_dict().items():
                if t.dtype.is_floating_point and not bool(t.isfinite().all()):
                    bad.append(f"{k}.{name}")
    return bad


def train_epoch(train_step, batches, bar=None):
    """The training loop: ``train_step(x, y)`` on every batch (x, y) of ``batches``;
    returns each float it reported, averaged over the examples (a batch that
    reports nothing still counts its examples). A non-finite float stops it
    (``NonFinite``, naming the step and the term)."""
    sums, n = {}, 0
    for step, (x, y) in enumerate(batches, 1):
        out = train_step(x, y)
        b = x.shape[0]
        n += b
        for k, v in out.items():
            v = float(v)
            if not math.isfinite(v):
                raise NonFinite(f"the loss term {k!r} is {v} at step {step}")
            sums[k] = sums.get(k, 0.0) + v * b
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{sums[k] / n:.4g}" for k in list(sums)[:2]})
    if bar is not None:
        bar.close()
    return {k: v / max(n, 1) for k, v in sums.items()}


def _progress_bar(run, loader, epoch):
    if run.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=len(loader), desc=f"epoch {epoch}/{run.args.epochs}", leave=False,
                unit="batch")


def _figures(exp, run, epoch, history, final):
    before = run.backend.rng_state(), run.rng.bit_generator.state
    exp.figures(epoch, history, final)
    if (run.backend.rng_state(), run.rng.bit_generator.state) != before:
        raise RuntimeError(f"{type(exp).__name__}.figures drew from the run's random streams "
                           "after the checkpoint was written, so a resumed run would differ; "
                           "draw figure noise from np.random.default_rng(args.seed)")


def _floats(d):
    """A record of plain JSON values: a non-finite number becomes None and is listed
    under "nonfinite" (JSON has no nan or infinity)."""
    out, bad = {}, []
    for k, v in (d or {}).items():
        if isinstance(v, mg.Tensor):
            v = v.item()
        if not isinstance(v, (str, bool, int, type(None), list, dict)):
            v = float(v)
            if not math.isfinite(v):
                v = None
                bad.append(k)
        out[k] = v
    if bad:
        out["nonfinite"] = bad
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


# ----------------------------------------------------------------------------- checkpoints
def _state(exp, run, loader, epoch, history):
    """Everything --resume needs: the declared attributes, the random streams, the
    data order, the epoch and the history."""
    state = {}
    for k in exp.checkpoint:
        obj = getattr(exp, k)
        state[k] = obj.state_dict() if hasattr(obj, "state_dict") else obj
    return {
        "model": exp.name,
        "epoch": epoch,
        "history": history,
        "args": {k: list(v) if isinstance(v, (list, tuple)) else v
                 for k, v in vars(run.args).items() if _is_option_value(v)},
        "state": state,
        "rng": {"backend": run.backend.rng_state(), "run": run.rng.bit_generator.state,
                "loader": loader.state_dict()},
    }


def _is_option_value(v):
    """A flag's value as a checkpoint keeps it: a scalar, or a list of them (nargs)."""
    scalar = (int, float, str, bool, type(None))
    return isinstance(v, scalar) or (isinstance(v, (list, tuple)) and
                                     all(isinstance(x, scalar) for x in v))


def _restore(exp, run, loader, ckpt, args):
    where = f"--resume {args.resume}"
    missing = set(exp.checkpoint) - set(ckpt["state"])
    if missing:
        raise UsageError(f"{where}: the checkpoint has no state for {sorted(missing)}; "
                         "was it written with other model options?")
    for k in exp.checkpoint:
        obj, saved = getattr(exp, k), ckpt["state"][k]
        if hasattr(obj, "state_dict"):
            problem = _bad_values(obj.state_dict(), saved, k)
            if problem:
                raise UsageError(f"{where}: {problem}")
    try:
        for k in exp.checkpoint:
            obj = getattr(exp, k)
            if hasattr(obj, "load_state_dict"):
                obj.load_state_dict(ckpt["state"][k])
            else:
                setattr(exp, k, ckpt["state"][k])
        run.backend.set_rng_state(ckpt["rng"]["backend"])
        run.rng.bit_generator.state = ckpt["rng"]["run"]
        loader.load_state_dict(ckpt["rng"]["loader"])
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        detail = " ".join(str(e).split())      # load_state_dict's lists span lines
        raise UsageError(f"{where}: the checkpoint does not fit this model ({detail}); "
                         "use the same model options as the run that wrote it") from None


def _bad_values(mine, saved, where):
    """What is wrong with the saved values for state ``mine`` (a module's, an
    optimizer's or a scheduler's state_dict), or None: a float weight must be a finite
    float array, a learning rate a positive number."""
    if isinstance(mine, dict):
        if not isinstance(saved, dict):
            return f"{where} is a {type(saved).__name__}, expected a dict"
        for k, v in mine.items():
            if k in saved:
                problem = _bad_values(v, saved[k], f"{where}.{k}")
                if problem:
                    return problem
        return None
    if isinstance(mine, list) and isinstance(saved, list):
        for i, (a, b) in enumerate(zip(mine, saved)):
            problem = _bad_values(a, b, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(mine, mg.Tensor):
        if not isinstance(saved, mg.Tensor) or tuple(saved.shape) != mine.shape:
            return (f"{where} should be an array of shape {mine.shape}, got "
                    f"{getattr(saved, 'shape', type(saved).__name__)}")
        if mine.dtype.is_floating_point:
            if not saved.dtype.is_floating_point:
                return f"{where} is {saved.dtype.name}, expected a float array"
            if not bool(saved.isfinite().all()):
                return f"{where} holds nan or inf"
        return None
    if where.endswith(".lr") or where.endswith(".initial_lr"):
        if isinstance(saved, bool) or not isinstance(saved, (int, float)) or not saved > 0:
            return f"{where} is {saved!r}, expected a positive number"
    return None
