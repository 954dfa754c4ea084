"""Classifier smoke test: a short training reaches far-better-than-chance accuracy,
and the pretrained-classifier helper saves and reloads it."""
import types

import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import optim
from minigrad.data import DataLoader, TensorDataset, load_dataset
from models.blocks import ConvNet
from models.evaluation import accuracy, load_pretrained_classifier


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


def test_pretrained_classifier_is_saved_and_reloaded(tmp_path, monkeypatch):
    from models import evaluation
    monkeypatch.setattr(evaluation, "_CACHE", {})
    d = load_dataset("mnist-10k")
    d.train_x, d.train_y = d.train_x[:256], d.train_y[:256]
    monkeypatch.setattr("minigrad.data.load_dataset", lambda name, data_dir=None: d)
    run = types.SimpleNamespace(args=types.SimpleNamespace(dataset="mnist-10k", data_dir=None),
                                backend=mg.get_backend("numpy"), data=d, print=lambda *a: None)
    path = tmp_path / "clf.npz"
    model = load_pretrained_classifier(run, path=path, epochs=1)
    assert path.is_file() and not model.training
    evaluation._CACHE.clear()
    again = load_pretrained_classifier(run, path=path, train_if_missing=False)
    x = mg.tensor(d.test_x[:4])
    assert (again(x) - model(x)).abs().max().item() == 0.0
    with pytest.raises(FileNotFoundError, match="python -m models.classifier"):
        load_pretrained_classifier(run, path=tmp_path / "none.npz", train_if_missing=False)


def test_pretrained_classifier_from_a_backend_name_and_a_cli_checkpoint(tmp_path, monkeypatch,
                                                                         backend_name):
    """The contract's ``load_pretrained_classifier(run_or_backend, path)``: a backend name
    and the CLI's checkpoint.npz give the same network as the run's weights file."""
    from models import classifier, evaluation
    monkeypatch.setattr(evaluation, "_CACHE", {})
    out = tmp_path / "clf"
    assert classifier.run_cli(classifier.Classifier, [
        "--backend", backend_name, "--epochs", "1", "--limit", "64", "--width", "2",
        "--quiet", "--out", str(out)]) == 0
    # issue 9: the CLI runs on every backend and writes metrics, checkpoint and figure
    assert '"test_accuracy"' in (out / "metrics.jsonl").read_text()
    assert (out / "classifier_accuracy.png").stat().st_size > 1000
    from_ckpt = load_pretrained_classifier(backend_name, path=out / "checkpoint.npz",
                                           train_if_missing=False)
    from_weights = load_pretrained_classifier(backend_name, path=out / "classifier-mnist-10k.npz",
                                              train_if_missing=False)
    x = mg.tensor(load_dataset("mnist-10k").test_x[:3])
    assert not from_ckpt.training and x.backend == backend_name
    a, b = from_ckpt.features(x), from_weights.features(x)
    assert a.shape == (3, 128) and a.backend == backend_name
    assert (a - b).abs().max().item() == 0.0
