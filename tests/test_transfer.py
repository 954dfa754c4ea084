"""models/transfer.py: the raw-pixel 1-NN baseline against a brute-force NumPy
reference, the fine-tuning optimizer's parameter groups, and the command (short
runs on numpy and strict, resume, bad arguments)."""
import json

import numpy as np  # host-side: references and test data built on the host
import pytest

import minigrad as mg
from models.cli import run_cli
from models.evaluation import pixel_knn_accuracy
from models.transfer import Transfer, build_trunk, new_head


class _Run:
    def tensor(self, a):
        return mg.from_numpy(np.ascontiguousarray(a))


def test_raw_pixel_nearest_neighbour_matches_brute_force(backend_name):
    rng = np.random.default_rng(0)
    train_x = rng.uniform(size=(30, 1, 4, 4)).astype(np.float32)
    train_y = rng.integers(0, 3, size=30)
    test_x = rng.uniform(size=(17, 1, 4, 4)).astype(np.float32)
    test_y = rng.integers(0, 3, size=17)
    d = ((test_x.reshape(17, 1, -1) - train_x.reshape(1, 30, -1)) ** 2).sum(-1)
    ref = float((train_y[d.argmin(1)] == test_y).mean())
    got = pixel_knn_accuracy(_Run(), train_x, train_y, test_x, test_y, 1, 3)
    assert got == pytest.approx(ref)
    # the training set classifies itself perfectly
    assert pixel_knn_accuracy(_Run(), train_x, train_y, train_x, train_y, 1, 3) == 1.0


@pytest.mark.parametrize("kind", ["classifier", "autoencoder"])
def test_trunk_outputs_features(backend_name, kind):
    trunk, pretrain = build_trunk(kind, 4, 12)
    assert trunk(mg.rand(3, 1, 28, 28)).shape == (3, 2 * 4 * 7 * 7)   # the conv features
    pre_ids = {id(p) for p in pretrain.parameters()}
    trunk_ids = {id(p) for p in trunk.parameters()}
    assert trunk_ids <= pre_ids                              # the trunk IS part of it
    assert len(trunk_ids) == 4                               # two convs: weights and biases
    assert new_head(4, 12)(trunk(mg.rand(3, 1, 28, 28))).shape == (3, 5)


def _argv(out, backend, *extra):
    return ["--backend", backend, "--epochs", "1", "--limit", "300", "--batch-size", "32",
            "--width", "4", "--feature-dim", "8", "--steps", "3", "--labels-per-class", "2", "500",
            "--quiet", "--out", str(out), *extra]


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["classifier", "autoencoder"])
def test_transfer_cli_runs_writes_and_resumes(backend_name, tmp_path, kind):
    out = tmp_path / kind
    assert run_cli(Transfer, _argv(out, backend_name, "--pretrained", kind)) == 0
    final = _records(out)[-1]
    assert final["final"]
    for m in ("frozen", "finetune", "scratch", "1nn"):
        for k in (2, 500):
            assert 0.0 <= final[f"acc_{m}_{k}"] <= 1.0
    assert final["labels_used_2"] == 2
    assert final["labels_used_500"] < 500               # capped at what 300 images hold
    table = (out / "transfer_table.md").read_text()
    assert "| 2 |" in table and "(only" in table
    assert (out / "transfer_accuracy.png").stat().st_size > 0
    if kind == "autoencoder":
        return                                            # resume: once is enough
    argv = _argv(out, backend_name, "--pretrained", kind, "--resume", str(out / "checkpoint.npz"))
    argv[argv.index("--epochs") + 1] = "2"
    assert run_cli(Transfer, argv) == 0
    assert [r["epoch"] for r in _records(out) if not r.get("final")] == [1, 2]


def test_finetune_uses_a_lower_trunk_learning_rate(monkeypatch, tmp_path):
    # record the optimizers' parameter groups that final() builds
    from minigrad import optim
    seen = []
    real_adam = optim.Adam

    class SpyAdam(real_adam):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            seen.append([(len(g["params"]), g["lr"]) for g in self.param_groups])

    monkeypatch.setattr("models.transfer.optim.Adam", SpyAdam)
    argv = _argv(tmp_path / "spy", "numpy", "--lr", "0.01", "--trunk-lr-factor", "0.25")
    argv[argv.index("--labels-per-class") + 1: argv.index("--labels-per-class") + 3] = ["2"]
    assert run_cli(Transfer, argv) == 0
    two_groups = [g for g in seen if len(g) == 2]
    assert len(two_groups) == 1
    (n_trunk, lr_trunk), (n_head, lr_head) = two_groups[0]
    assert lr_trunk == pytest.approx(0.0025) and lr_head == pytest.approx(0.01)
    assert n_head == 4 and n_trunk == 4       # linear-ReLU-linear head; two convs


@pytest.mark.parametrize("bad", [["--labels-per-class", "0"], ["--pretrained", "mlp"],
                                 ["--steps", "0"], ["--trunk-lr-factor", "0"]])
def test_transfer_cli_bad_arguments_exit_2(bad, tmp_path, capsys):
    assert run_cli(Transfer, ["--out", str(tmp_path / "x"), "--quiet", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
