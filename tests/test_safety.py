"""Nothing lost, no traceback (issue 16): the NaN guard, one run per folder, earlier
runs kept, checkpoints and flags checked on --resume, every usage error one line
with exit status 2. Each test reproduces a defect of the CLI before these rules."""
import json
import os
import subprocess
import sys
import time

import numpy as np  # host-side: hostile checkpoints and data files
import pytest

import minigrad as mg
from models.cli import run_cli
from test_cli import Tiny, _lines, _run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_BOTH_WAYS = False     # about the CLI's bookkeeping, not the numbers: once is enough


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------------- the NaN guard
def test_a_diverging_run_stops_with_status_3_and_keeps_the_finite_checkpoint(tmp_path,
                                                                           capsys):
    assert _run(tmp_path, "--epochs", "1", "--lr", "1e-3") == 0
    ckpt = tmp_path / "run" / "checkpoint.npz"
    finite = mg.load(ckpt)["state"]["model"]["5.weight"].numpy()
    assert _run(tmp_path, "--epochs", "4", "--lr", "1e30", out="boom") == 3
    line = _err_line(capsys)
    assert "stopped: the loss term 'loss' is" in line and "at step" in line and \
        "in epoch" in line
    boom = tmp_path / "boom"
    for record in _lines(boom / "metrics.jsonl"):          # valid JSON, all finite
        assert all(v is None or not isinstance(v, float) or np.isfinite(v)
                   for v in record.values())
    if (boom / "checkpoint.npz").exists():                 # only ever a finite state
        for t in mg.load(boom / "checkpoint.npz")["state"]["model"].values():
            assert np.all(np.isfinite(t.numpy()))
    assert not list(boom.glob("*.png")) or _lines(boom / "metrics.jsonl")
    np.testing.assert_array_equal(mg.load(ckpt)["state"]["model"]["5.weight"].numpy(), finite)


def test_the_vae_of_the_issue_stops_at_the_first_nan(tmp_path, shipped_scorer):
    from models.vae import VAE
    out = tmp_path / "vae"
    code = run_cli(VAE, ["--limit", "256", "--epochs", "3", "--lr", "1e3", "--quiet",
                         "--out", str(out)])
    assert code == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]      # epoch 1 was still finite
    assert "NaN" not in (out / "metrics.jsonl").read_text()
    assert mg.load(out / "checkpoint.npz")["epoch"] == 1
    assert not list(out.glob("*.png"))    # no figure of the diverged model


def test_non_finite_evaluation_metrics_are_null_and_listed(tmp_path):
    from models.cli import _floats
    record = _floats({"a": 1.5, "b": float("nan"), "c": float("inf"), "d": "x"})
    assert record == {"a": 1.5, "b": None, "c": None, "d": "x", "nonfinite": ["b", "c"]}
    json.loads(json.dumps(record, allow_nan=False))


# ----------------------------------------------------------------------------- one run per folder
def test_a_live_run_holds_its_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run" / ".lock").write_text(f"{holder.pid}\n")
        assert _run(tmp_path) == 2
        line = _err_line(capsys)
        assert f"in use by another run (pid {holder.pid})" in line
    finally:
        holder.kill()
        holder.wait()
    assert _run(tmp_path) == 0                        # a dead holder's lock is taken over
    assert not (tmp_path / "run" / ".lock").exists()  # and released at the end


def test_the_lock_is_released_on_every_exit_path(tmp_path):
    lock = tmp_path / "run" / ".lock"
    Tiny.interrupt_at = 3
    try:
        assert _run(tmp_path, "--epochs", "2") == 130
    finally:
        Tiny.interrupt_at = None
    assert not lock.exists()
    assert _run(tmp_path, "--epochs", "2", "--lr", "1e30", out="run") == 3
    assert not lock.exists()


def test_a_new_run_moves_the_earlier_one_aside_and_overwrite_deletes(tmp_path, capsys):
    assert _run(tmp_path, "--epochs", "1") == 0
    first = (tmp_path / "run" / "metrics.jsonl").read_text()
    Tiny.interrupt_at = 3
    try:
        assert _run(tmp_path, "--epochs", "2") == 130       # Ctrl-C before epoch 1 ends
    finally:
        Tiny.interrupt_at = None
    err = capsys.readouterr().err
    previous = list((tmp_path / "run" / "previous").iterdir())
    assert len(previous) == 1 and str(previous[0]) in err
    assert (previous[0] / "metrics.jsonl").read_text() == first      # nothing lost
    assert (previous[0] / "checkpoint.npz").exists() and (previous[0] / "tiny_loss.png").exists()
    assert _run(tmp_path, "--epochs", "1", "--overwrite") == 0
    assert len(list((tmp_path / "run" / "previous").iterdir())) == 1  # deleted, not moved


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / f".tmp-{dead}-dead.npz"
    stale.write_bytes(b"x" * 1000)
    assert _run(tmp_path, "--epochs", "1") == 0
    assert not stale.exists()


# ----------------------------------------------------------------------------- --resume
def _checkpoint(tmp_path):
    assert _run(tmp_path, "--epochs", "1", out="base") == 0
    return tmp_path / "base" / "checkpoint.npz"


def _edited(tmp_path, name, edit):
    ckpt = mg.load(_checkpoint(tmp_path))
    edit(ckpt)
    path = tmp_path / f"{name}.npz"
    mg.save(ckpt, path)
    return path


def _set(path_keys, value):
    def edit(ckpt):
        d = ckpt
        for k in path_keys[:-1]:
            d = d[k]
        d[path_keys[-1]] = value
    return edit


def _drop(key):
    return lambda ckpt: ckpt.pop(key)


BAD_CHECKPOINTS = [
    ("list root", None, "root is a list"),
    ("missing epoch", _drop("epoch"), "no 'epoch'"),
    ("missing history", _drop("history"), "no 'history'"),
    ("missing state", _drop("state"), "no 'state'"),
    ("missing rng", _drop("rng"), "no 'rng'"),
    ("negative epoch", _set(["epoch"], -1), "negative"),
    ("float epoch", _set(["epoch"], 1.5), "'epoch' is a float"),
    ("history too short", _set(["history"], []), "one record per epoch"),
    ("string lr", _set(["state", "opt", "param_groups", 0, "lr"], "fast"),
     "expected a positive number"),
    ("negative lr", _set(["state", "opt", "param_groups", 0, "lr"], -1.0),
     "expected a positive number"),
    ("bool weights", _set(["state", "model", "2.weight"], mg.ones(16, 49, dtype="bool")),
     "expected a float array"),
    ("int8 weights", _set(["state", "model", "2.weight"], mg.ones(16, 49, dtype="int8")),
     "expected a float array"),
    ("nan weights", _set(["state", "model", "2.weight"], mg.full((16, 49), float("nan"))),
     "holds nan or inf"),
    ("wrong shape", _set(["state", "model", "2.weight"], mg.ones(3, 3)), "shape"),
    ("no model state", _set(["state"], {"opt": {}}), "no state for ['model']"),
    ("broken rng", _set(["rng", "run"], {"state": 5}), "does not fit"),
    ("rng incomplete", _set(["rng"], {"backend": {}}), "incomplete"),
]


@pytest.mark.parametrize("name, edit, message", BAD_CHECKPOINTS,
                         ids=[c[0] for c in BAD_CHECKPOINTS])
def test_a_bad_checkpoint_is_one_line_and_status_2(tmp_path, capsys, name, edit, message):
    if edit is None:
        path = tmp_path / "list.npz"
        mg.save([1, 2, 3], path)
    else:
        path = _edited(tmp_path, name.replace(" ", "_"), edit)
    capsys.readouterr()
    assert _run(tmp_path, "--epochs", "3", "--resume", str(path), out="resumed") == 2
    line = _err_line(capsys)
    assert message in line and "--resume" in line, line


def test_flags_given_with_resume_apply_or_are_refused(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path))
    capsys.readouterr()
    assert _run(tmp_path, "--epochs", "3", "--resume", ckpt, "--lr", "0.5", out="base") == 2
    assert "--lr 0.5 differs from the checkpoint's 0.05" in _err_line(capsys)
    assert _run(tmp_path, "--epochs", "2", "--resume", ckpt, out="two") == 0
    two = str(tmp_path / "two" / "checkpoint.npz")
    capsys.readouterr()
    assert _run(tmp_path, "--epochs", "1", "--resume", two, out="two") == 2
    assert "already holds 2 epochs" in _err_line(capsys)
    # the command of a run killed after its last epoch's checkpoint finishes it: it
    # evaluates without training
    before = mg.load(two)
    assert _run(tmp_path, "--epochs", "2", "--resume", two, out="two") == 0
    after = mg.load(two)
    assert after["epoch"] == 2 and after["history"] == before["history"]
    assert _lines(tmp_path / "two" / "metrics.jsonl")[-1]["final"]
    # the checkpoint's options are used, the same value again is fine, and --epochs 0
    # evaluates the checkpoint without training
    assert _run(tmp_path, "--epochs", "0", "--resume", ckpt, "--lr", "0.05", out="base") == 0
    lines = _lines(tmp_path / "base" / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 1] and lines[-1]["final"]
    assert mg.load(ckpt)["epoch"] == 1


def test_resume_takes_the_model_options_from_the_checkpoint(tmp_path):
    assert _run(tmp_path, "--epochs", "1", "--hidden", "8", out="h8") == 0
    ckpt = str(tmp_path / "h8" / "checkpoint.npz")
    assert _run(tmp_path, "--epochs", "2", "--resume", ckpt, out="h8") == 0   # no --hidden
    assert mg.load(ckpt)["args"]["hidden"] == 8 and mg.load(ckpt)["epoch"] == 2


# ----------------------------------------------------------------------------- usage errors
def test_more_usage_errors_are_one_line(tmp_path, capsys):
    assert _run(tmp_path, "--seed", "-1") == 2
    assert "argument --seed: must be an integer >= 0" in _err_line(capsys)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert run_cli(Tiny, ["--limit", "64", "--quiet", "--out", str(blocker / "sub")]) == 2
    assert "cannot write there" in _err_line(capsys)


def test_bad_data_in_a_data_dir_is_one_line(tmp_path, capsys):
    import gzip
    import struct
    d = tmp_path / "data"
    d.mkdir()
    images = np.zeros((9000, 28, 28), np.uint8)
    for name, a in (("images-idx3-ubyte.gz", images),
                    ("labels-idx1-ubyte.gz", np.full(9000, 12, np.uint8))):
        with gzip.open(d / name, "wb") as f:
            f.write(struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape))
            f.write(a.tobytes())
    assert _run(tmp_path, "--data-dir", str(d)) == 2
    assert "classes 0..9" in _err_line(capsys)


def test_a_bad_minigrad_backend_variable_still_allows_help_and_numpy(tmp_path):
    env = {**os.environ, "MINIGRAD_BACKEND": "cupy", "PYTHONPATH": ROOT}
    if "cupy" in mg.available_backends():
        pytest.skip("a GPU is present: MINIGRAD_BACKEND=cupy works here")
    h = subprocess.run([sys.executable, "-m", "models.classifier", "--backend", "numpy",
                        "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert h.returncode == 0 and "Traceback" not in h.stderr
    r = subprocess.run([sys.executable, "-m", "models.classifier", "--epochs", "0",
                        "--limit", "64", "--quiet", "--out", str(tmp_path / "c")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cupy" in r.stderr


def test_a_misspelt_minigrad_backend_variable_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIGRAD_BACKEND", "nupmy")
    assert _run(tmp_path) == 2
    assert "MINIGRAD_BACKEND='nupmy' is not a backend" in _err_line(capsys)


def test_a_checkpoint_without_its_options_or_with_other_weights_is_one_line(tmp_path,
                                                                          capsys):
    no_args = _edited(tmp_path, "no_args", lambda c: c.__setitem__("args", {}))
    capsys.readouterr()
    assert _run(tmp_path, "--epochs", "2", "--resume", str(no_args), out="a") == 2
    assert "('args') lack --dataset" in _err_line(capsys)
    extra = _edited(tmp_path, "extra", lambda c: c["state"]["model"].__setitem__(
        "9.weight", mg.zeros(2)))
    capsys.readouterr()
    assert _run(tmp_path, "--epochs", "2", "--resume", str(extra), out="b") == 2
    assert 'Unexpected key(s) in state_dict: "9.weight"' in _err_line(capsys)


def test_a_run_started_twice_at_once_does_not_share_the_folder(tmp_path):
    cmd = [sys.executable, "-m", "models.classifier", "--epochs", "2", "--limit", "4000",
           "--quiet", "--out", str(tmp_path / "shared")]
    env = {**os.environ, "PYTHONPATH": ROOT, "MPLBACKEND": "Agg"}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "shared" / ".lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    first.wait(timeout=300)
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr
    assert first.returncode == 0
