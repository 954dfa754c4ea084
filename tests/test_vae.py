"""The autoencoder family (models/autoencoder.py, vae.py, cvae.py): short training
runs through the shared CLI that must lower their loss, write every figure,
metrics.jsonl and a checkpoint, and resume from it; argument errors; the CVAE's
style-transfer shape and its label conditioning judged by a classifier."""
import json
import types

import numpy as np  # host-side: test data and metrics on the host
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from minigrad.data import load_dataset
from models.autoencoder import Autoencoder, AutoencoderExperiment
from models.cli import run_cli
from models.blocks import VAEModel
from models.cvae import CVAE, CVAEModel, style_transfer
from models.evaluation import accuracy
from models.losses import vae_loss
from models.vae import VAE

FIGURES = {
    AutoencoderExperiment: ["autoencoder_reconstructions.png", "autoencoder_loss.png",
                            "autoencoder_manifold.png"],
    VAE: ["vae_samples.png", "vae_reconstructions.png", "vae_interpolation.png",
          "vae_manifold.png", "vae_loss.png"],
    CVAE: ["cvae_samples.png", "cvae_style_transfer.png", "cvae_reconstructions.png",
           "cvae_loss.png"],
}
# tiny, quick settings: 320 training images, 2 epochs of 10 steps, small widths
COMMON = ["--limit", "320", "--batch-size", "32", "--lr", "3e-3", "--quiet"]
RUNS = {
    "autoencoder-mlp": (AutoencoderExperiment, ["--hidden", "32", "--latent-dim", "2"]),
    "autoencoder-squared-norm": (AutoencoderExperiment, ["--hidden", "32", "--latent-dim", "2",
                                                         "--loss", "squared-norm"]),
    "vae-mlp": (VAE, ["--hidden", "32", "--latent-dim", "2", "--iw-samples", "4",
                      "--metric-samples", "40"]),
    "vae-gaussian-learned-sigma": (VAE, ["--hidden", "32", "--latent-dim", "2", "--iw-samples",
                                         "4", "--metric-samples", "40", "--likelihood",
                                         "gaussian", "--sigma", "learned"]),
    "vae-conv": (VAE, ["--arch", "conv", "--hidden", "4", "--latent-dim", "3",
                       "--iw-samples", "2", "--metric-samples", "40"]),
    "cvae": (CVAE, ["--hidden", "32", "--fidelity-samples", "0", "--iw-samples", "2",
                    "--metric-samples", "40"]),
}


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", RUNS)
def test_short_run_learns_writes_figures_and_resumes(name, tmp_path, shipped_scorer):
    cls, flags = RUNS[name]
    figures = [f for f in FIGURES[cls] if "manifold" not in f or "--latent-dim" in flags
               and flags[flags.index("--latent-dim") + 1] == "2"]
    out = tmp_path / name
    assert run_cli(cls, COMMON + flags + ["--epochs", "2", "--out", str(out)]) == 0
    records = _records(out)
    epochs = [r for r in records if not r.get("final")]
    assert [r["epoch"] for r in epochs] == [1, 2]
    first, last = epochs[0], epochs[-1]
    # a clear margin: the test loss falls by >= 10% within two short epochs
    assert last["test_loss"] < 0.9 * first["test_loss"], (first, last)
    assert last["loss"] < first["loss"]
    if cls is not AutoencoderExperiment:
        # the -ELBO is split into its two terms
        assert last["test_loss"] == pytest.approx(last["test_recon"] + last["test_kl"])
        assert last["test_kl"] > 0
    final = [r for r in records if r.get("final")]
    assert len(final) == 1
    if cls is not AutoencoderExperiment:
        # the generative models' sample quality, next to real images' floor
        for k in ("fid", "inception_score", "real_fid", "real_inception_score"):
            assert np.isfinite(final[0][k]) and final[0][k] >= 0, k
        assert final[0]["metric_samples"] == 40
        assert final[0]["real_fid"] < final[0]["fid"]
    if "--iw-samples" in flags:
        # the IW estimate is a bound on log p(x), typically tighter than the ELBO
        lik = "gaussian_learned_sigma" if "gaussian" in flags else "bernoulli"
        iw = final[0][f"test_iw_log_likelihood_{lik}"]
        assert final[0]["likelihood"] == lik.split("_")[0] and final[0]["binarized"] is False
        assert np.isfinite(iw) and -iw < 1.05 * last["test_loss"]
    for f in figures:
        assert (out / f).stat().st_size > 1000, f
    ckpt = out / "checkpoint.npz"
    assert ckpt.exists()
    # resume for one more epoch: continues at epoch 3 from the saved state
    assert run_cli(cls, COMMON + flags + ["--epochs", "3", "--out", str(out),
                                          "--resume", str(ckpt)]) == 0
    epochs = [r for r in _records(out) if not r.get("final")]
    assert [r["epoch"] for r in epochs][-1] == 3
    assert epochs[-1]["test_loss"] < first["test_loss"]


STRICT_RUNS = {
    "autoencoder-mlp": (AutoencoderExperiment, ["--hidden", "16", "--latent-dim", "2"]),
    "autoencoder-conv": (AutoencoderExperiment, ["--arch", "conv", "--hidden", "4",
                                                 "--latent-dim", "2"]),
    "vae-mlp": (VAE, ["--hidden", "16", "--latent-dim", "2", "--iw-samples", "2",
                      "--metric-samples", "20"]),
    "cvae": (CVAE, ["--hidden", "16", "--latent-dim", "2", "--fidelity-samples", "2",
                    "--iw-samples", "2", "--metric-samples", "20"]),
    "cvae-binarized-gaussian": (CVAE, ["--hidden", "16", "--fidelity-samples", "2",
                                       "--iw-samples", "2", "--metric-samples", "20",
                                       "--binarize", "--likelihood", "gaussian",
                                       "--sigma", "0.3"]),
}


@pytest.mark.parametrize("name", STRICT_RUNS)
def test_cli_runs_on_the_strict_backend(name, tmp_path, shipped_scorer):
    """The GPU stand-in: every figure, metric and checkpoint goes through the
    backend's explicit host transfer, or this run raises."""
    cls, flags = STRICT_RUNS[name]
    out = tmp_path / name
    assert run_cli(cls, ["--backend", "strict", "--limit", "128", "--epochs", "1",
                         "--batch-size", "64", "--quiet", "--out", str(out)] + flags) == 0
    assert (out / "checkpoint.npz").exists()
    records = _records(out)
    assert records[0]["test_loss"] > 0 and np.isfinite(records[0]["test_loss"])
    for f in FIGURES[cls]:
        assert (out / f).stat().st_size > 1000, f


@pytest.mark.parametrize("cls, argv", [
    (VAE, ["--latent-dim", "0"]),
    (VAE, ["--beta", "-1"]),
    (VAE, ["--iw-samples", "-5"]),
    (VAE, ["--arch", "transformer"]),
    (VAE, ["--likelihood", "poisson"]),
    (VAE, ["--sigma", "0.3"]),                           # without --likelihood gaussian
    (VAE, ["--likelihood", "gaussian", "--sigma", "0"]),
    (CVAE, ["--likelihood", "gaussian", "--sigma", "learnt"]),
    (CVAE, ["--label-dim", "0"]),
    (AutoencoderExperiment, ["--hidden", "0"]),
    (AutoencoderExperiment, ["--loss", "l7"]),
    (CVAE, ["--latent-dim", "-2"]),
    (CVAE, ["--fidelity-samples", "-1"]),
    (VAE, ["--metric-samples", "1"]),
    (CVAE, ["--metric-samples", "-3"]),
])
def test_bad_arguments_exit_2_with_one_line(cls, argv, tmp_path, capsys):
    try:
        code = run_cli(cls, argv + ["--limit", "64", "--quiet", "--out", str(tmp_path)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or (len(err) == 2 and err[0].startswith("usage:")), err
    assert "Traceback" not in "\n".join(err)


# ----------------------------------------------------------------------------- model pieces
def test_model_shapes(backend_name):
    x = mg.rand(3, 1, 28, 28)
    logits, mu, logvar = VAEModel("mlp", 5, 16)(x)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 5)
    logits, mu, logvar = VAEModel("conv", 4, 4)(x)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == (3, 4)
    assert Autoencoder("conv", 2, 4)(x).shape == (3, 1, 28, 28)
    y = mg.from_numpy(np.array([0, 9, 3]))
    logits, mu, logvar = CVAEModel(2, 16)(x, y)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == (3, 2)


def test_autoencoder_losses_are_the_bce_and_the_slides_squared_norm(backend_name):
    from models.autoencoder import reconstruction_error
    rng = np.random.default_rng(9)
    logits, x = rng.normal(size=(3, 1, 4, 4)), rng.uniform(size=(3, 1, 4, 4))
    p = 1 / (1 + np.exp(-logits))
    lt, xt = mg.from_numpy(logits), mg.from_numpy(x)
    assert np.allclose(reconstruction_error(lt, xt, "squared-norm").numpy(),
                       ((x - p) ** 2).reshape(3, -1).sum(1), rtol=1e-12)
    assert np.allclose(reconstruction_error(lt, xt, "bce").numpy(),
                       -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(3, -1).sum(1))
    with pytest.raises(ValueError, match="'bce' or 'squared-norm'"):
        reconstruction_error(lt, xt, "mse")


def test_style_transfer_shape_and_labels(backend_name):
    """Row i of the style transfer is digit i's code decoded with labels 0..9, so the
    decoder must see label c in column c: check against decoding one label at a time."""
    model = CVAEModel(2, 16).eval()
    x = mg.rand(4, 1, 28, 28)
    y = mg.from_numpy(np.array([1, 7, 7, 0]))
    with mg.no_grad():
        out = style_transfer(model, x, y)
        assert out.shape == (4, 10, 1, 28, 28)
        mu = model.encode(x, y)[0]
        for c in (0, 3, 9):
            want = model.decode(mu, mg.from_numpy(np.full(4, c))).sigmoid().numpy()
            assert np.allclose(out.numpy()[:, c], want, atol=1e-6)
    assert out.numpy().min() >= 0 and out.numpy().max() <= 1


@pytest.mark.parametrize("latent_dim", [2, 20])
def test_cvae_decodes_the_requested_label(backend_name, latent_dim):
    """After a short training on digits 0, 1 and 2, a classifier (trained here for a
    few steps) assigns most CVAE samples decoded with label y to class y: far above
    the 1/3 of chance, with a 20-D code too (whose decoder ignored a one-hot label)."""
    data = load_dataset("mnist-10k")
    k, n = 3, 900
    keep = data.train_y < k
    x_all, y_all = data.train_x[keep][:n], data.train_y[keep][:n]
    rng = np.random.default_rng(0)

    def batches(epochs, size=50):
        for _ in range(epochs):
            perm = rng.permutation(n)
            for i in range(0, n, size):
                j = perm[i:i + size]
                yield mg.from_numpy(np.ascontiguousarray(x_all[j])), mg.from_numpy(y_all[j])

    clf = nn.Sequential(nn.Flatten(), nn.Linear(784, k))
    opt = optim.Adam(clf.parameters(), lr=1e-2)
    for x, y in batches(2):
        loss = F.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = data.test_y < k
    tx, ty = mg.from_numpy(data.test_x[test][:300]), mg.from_numpy(data.test_y[test][:300])
    with mg.no_grad():
        assert accuracy(clf, tx, ty) > 0.9        # the judge itself is good

    model = CVAEModel(latent_dim=latent_dim, hidden=64, n_classes=k)
    opt = optim.Adam(model.parameters(), lr=5e-3)
    for x, y in batches(8):
        logits, mu, logvar = model(x, y)
        loss = vae_loss(logits, x, mu, logvar).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with mg.no_grad():
        h = mg.from_numpy(rng.standard_normal((300, latent_dim)).astype(np.float32))
        labels = mg.from_numpy(np.repeat(np.arange(k), 100))
        fidelity = accuracy(clf, model.decode(h, labels).sigmoid(), labels)
    assert fidelity > 0.6, fidelity


# ----------------------------------------------------------------------------- PyTorch layout
def test_mlp_vae_loads_a_state_dict_of_pytorch_examples_layout(backend_name):
    """pytorch/examples' vae/main.py names its layers fc1 (784->400), fc21 and fc22
    (400->20: mu, logvar), fc3 (20->400), fc4 (400->784), weights (out, in): a
    state_dict of that layout loads, and the model computes that model's formula."""
    rng = np.random.default_rng(7)
    shapes = {"fc1": (400, 784), "fc21": (20, 400), "fc22": (20, 400), "fc3": (400, 20),
              "fc4": (784, 400)}
    host = {}
    for name, (o, i) in shapes.items():
        host[f"{name}.weight"] = rng.normal(scale=i ** -0.5, size=(o, i)).astype(np.float32)
        host[f"{name}.bias"] = rng.normal(scale=0.1, size=(o,)).astype(np.float32)
    model = VAEModel("mlp", 20, 400)
    assert sorted(model.state_dict()) == sorted(host)
    model.load_state_dict({k: mg.from_numpy(v) for k, v in host.items()})
    x = rng.uniform(size=(3, 1, 28, 28)).astype(np.float32)
    eps = rng.standard_normal((3, 20)).astype(np.float32)
    with mg.no_grad():
        logits, mu, logvar = model(mg.from_numpy(x), mg.from_numpy(eps))
    lin = lambda a, n: a @ host[f"{n}.weight"].T + host[f"{n}.bias"]   # noqa: E731
    h1 = np.maximum(lin(x.reshape(3, 784), "fc1"), 0)
    want_mu, want_lv = lin(h1, "fc21"), lin(h1, "fc22")
    z = want_mu + np.exp(0.5 * want_lv) * eps
    want = lin(np.maximum(lin(z, "fc3"), 0), "fc4")
    assert np.allclose(mu.numpy(), want_mu, atol=1e-4)
    assert np.allclose(logvar.numpy(), want_lv, atol=1e-4)
    assert np.allclose(logits.numpy().reshape(3, 784), want, atol=1e-3)


def test_old_mlp_vae_layout_is_refused_with_a_clear_message():
    old = {"encoder.1.weight": mg.zeros(40, 784), "encoder.1.bias": mg.zeros(40)}
    with pytest.raises(ValueError, match="old layout.*fc1, fc21, fc22, fc3, fc4"):
        VAEModel("mlp", 20, 400).load_state_dict(old)


def test_learned_sigma_is_a_parameter_of_the_decoder():
    from models.blocks import MIN_SIGMA
    model = VAEModel("mlp", 2, 8, likelihood="gaussian", sigma="learned")
    assert model.state_dict()["likelihood.log_sigma"].shape == (1, 28, 28)
    assert any(p is model.likelihood.log_sigma for p in model.parameters())
    with mg.no_grad():
        model.likelihood.log_sigma.data[...] = -50.0
    assert np.allclose(model.likelihood.current_log_sigma().numpy(), np.log(MIN_SIGMA))
    assert "likelihood.log_sigma" not in VAEModel("mlp", 2, 8, "gaussian", 0.2).state_dict()
    with pytest.raises(ValueError, match="positive number or 'learned'"):
        VAEModel("mlp", 2, 8, likelihood="gaussian", sigma=-1.0)


# ----------------------------------------------------------------------------- binarised MNIST
def test_binarization_is_binary_dynamic_and_fixed_for_the_test_set():
    from models.evaluation import DynamicBinarization, binarize_fixed
    x = np.random.default_rng(8).uniform(size=(400, 1, 28, 28)).astype(np.float32)
    fixed = binarize_fixed(x)
    assert set(np.unique(fixed)) == {0.0, 1.0}
    assert np.array_equal(fixed, binarize_fixed(x))             # one fixed test set
    assert np.array_equal(fixed[:50], binarize_fixed(x[:50]))   # whatever --limit
    assert abs(fixed.mean() - x.mean()) < 0.01                  # P(1) = the grey level
    run = types.SimpleNamespace(tensor=mg.from_numpy)
    binarize = DynamicBinarization(run, seed=0)
    t = mg.from_numpy(x)
    a, b = binarize(t).numpy(), binarize(t).numpy()
    assert set(np.unique(a)) == {0.0, 1.0} and a.dtype == np.float32
    assert not np.array_equal(a, b)                             # resampled every call
    assert abs(a.mean() - x.mean()) < 0.01
    state = binarize.state_dict()
    c = binarize(t).numpy()
    binarize.load_state_dict(state)
    assert np.array_equal(binarize(t).numpy(), c)               # its state resumes it


def test_binarize_run_trains_on_fresh_binary_images_tests_on_fixed_ones_and_resumes(tmp_path):
    from models.evaluation import binarize_fixed
    flags = COMMON + ["--hidden", "16", "--latent-dim", "2", "--iw-samples", "2",
                      "--metric-samples", "0", "--binarize", "--limit", "64",
                      "--batch-size", "64"]
    seen = []

    class Recording(VAE):
        def __init__(self, args, run):
            super().__init__(args, run)
            seen.append(("test", run.data.test_x.copy()))
            draw = self.binarize

            def recorded(x):
                xb = draw(x)
                seen.append(("train", x.numpy().copy(), xb.numpy().copy()))
                return xb
            self.binarize = recorded
            self.binarize.state_dict, self.binarize.load_state_dict = \
                draw.state_dict, draw.load_state_dict

    assert run_cli(Recording, flags + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    test_x = load_dataset("mnist-10k").test_x[:64]
    assert np.array_equal(seen[0][1], binarize_fixed(test_x))
    (_, x1, b1), (_, x2, b2) = seen[1], seen[2]
    assert set(np.unique(b1)) == set(np.unique(b2)) == {0.0, 1.0}
    # the same 64 images in both epochs (one batch, reshuffled): a new binarisation
    o1, o2 = np.lexsort(x1.reshape(64, -1).T), np.lexsort(x2.reshape(64, -1).T)
    assert np.array_equal(x1[o1], x2[o2]) and not np.array_equal(b1[o1], b2[o2])
    final = _records(tmp_path / "a")[-1]
    assert final["binarized"] is True and "test_iw_log_likelihood_bernoulli_binarized" in final
    # another --seed: other training draws, the same test set
    seen.clear()
    assert run_cli(Recording, flags + ["--epochs", "1", "--seed", "3",
                                       "--out", str(tmp_path / "s")]) == 0
    assert np.array_equal(seen[0][1], binarize_fixed(test_x))
    # exact resume: 1 epoch + --resume 1 epoch = 2 epochs
    assert run_cli(VAE, flags + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert run_cli(VAE, flags + ["--epochs", "2", "--out", str(tmp_path / "b"), "--resume",
                                 str(tmp_path / "b" / "checkpoint.npz")]) == 0
    a = [r for r in _records(tmp_path / "a") if not r.get("final")]
    b = [r for r in _records(tmp_path / "b") if not r.get("final")]
    for k in ("loss", "test_loss", "test_kl"):
        assert [r[k] for r in a] == [r[k] for r in b], k
