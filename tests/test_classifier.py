"""Classifier smoke test: a short training reaches far-better-than-chance accuracy;
the shipped sample scorer and the loading of classifiers."""
import types

import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from minigrad.data import DataLoader, TensorDataset, load_dataset
from models.blocks import ConvNet
from models.evaluation import SCORER_PATH, accuracy, load_classifier, load_scorer


def test_short_training_beats_chance_by_far():
    d = load_dataset("mnist-10k")
    mg.manual_seed(0)
    model = ConvNet(width=8, hidden=32)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    test_x, test_y = mg.tensor(d.test_x[:1000]), mg.tensor(d.test_y[:1000])
    before = accuracy(model, test_x, test_y)
    for x, y in DataLoader(TensorDataset(d.train_x[:6400], d.train_y[:6400]), 64,
                           shuffle=True, seed=0):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = accuracy(model, test_x, test_y)
    # chance is 10%; 100 steps of a correct gradient reach ~87%, a broken one stays near chance
    assert before < 0.3 and after > 0.75, (before, after)
    assert model.features(test_x[:5]).shape == (5, 32)


def test_the_shipped_scorer_is_small_and_accurate():
    """models/scorer/mnist-10k.npz: well under 1 MB, LeNet-5 size or smaller, and the
    test accuracy the README states (96.95% of mnist-10k's 2,000 test digits)."""
    assert SCORER_PATH.stat().st_size < 300_000
    scorer = load_classifier(SCORER_PATH, "numpy")
    assert not scorer.training and not any(p.requires_grad for p in scorer.parameters())
    assert sum(p.numel() for p in scorer.parameters()) < 61_706       # LeNet-5's count
    d = load_dataset("mnist-10k")
    acc = accuracy(scorer, mg.tensor(d.test_x), mg.tensor(d.test_y))
    assert acc == pytest.approx(0.9695, abs=1e-9)
    assert scorer.features(mg.tensor(d.test_x[:3])).shape == (3, 64)


def test_load_scorer_picks_the_shipped_one_or_the_given_one_or_none(tmp_path):
    run = types.SimpleNamespace(args=types.SimpleNamespace(dataset="mnist", scorer=None),
                                backend=mg.get_backend("numpy"))
    assert load_scorer(run) is load_classifier(SCORER_PATH, "numpy")
    run.args.dataset = "fashion-mnist"
    assert load_scorer(run) is None                   # no digit scorer for clothes
    with mg.backend("numpy"):
        mg.manual_seed(0)
        mg.save({"state": ConvNet(10, 2, 8).state_dict()}, tmp_path / "mine.npz")
    run.args.scorer = str(tmp_path / "mine.npz")
    assert load_scorer(run).features(mg.zeros(1, 1, 28, 28)).shape == (1, 8)


def test_train_scorer_is_the_default_run_only(tmp_path, capsys):
    from models import classifier
    assert classifier.run_cli(classifier.Classifier, [
        "--train-scorer", "--epochs", "1", "--quiet", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "drop --epochs" in err


def test_a_classifier_from_a_backend_name_and_a_cli_checkpoint(tmp_path, backend_name):
    """``load_classifier(path, backend)``: the CLI's checkpoint.npz and its weights file
    give the same network, on the backend asked for."""
    from models import classifier
    out = tmp_path / "clf"
    assert classifier.run_cli(classifier.Classifier, [
        "--backend", backend_name, "--epochs", "1", "--limit", "64", "--width", "2",
        "--hidden", "16", "--quiet", "--out", str(out)]) == 0
    # issue 9: the CLI runs on every backend and writes metrics, checkpoint and figure
    assert '"test_accuracy"' in (out / "metrics.jsonl").read_text()
    assert (out / "classifier_accuracy.png").stat().st_size > 1000
    from_ckpt = load_classifier(out / "checkpoint.npz", backend_name)
    from_weights = load_classifier(out / "classifier-mnist-10k.npz", backend_name)
    x = mg.tensor(load_dataset("mnist-10k").test_x[:3])
    assert not from_ckpt.training and x.backend == backend_name
    a, b = from_ckpt.features(x), from_weights.features(x)
    assert a.shape == (3, 16) and a.backend == backend_name
    assert (a - b).abs().max().item() == 0.0
