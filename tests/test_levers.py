"""benchmarks/levers.py: the README's GAN and VAE-GAN lever rows must rerun, so the
levers are tested like the models: spectral norm against numpy's SVD and central
differences, the lever runs against the shipped runs they extend."""
import json

import numpy as np
import pytest

import minigrad as mg
from benchmarks.levers import GANLevers, SpectralNorm, VAEGANLevers, main
from minigrad import nn
from minigrad.gradcheck import gradcheck
from models.cli import run_cli
from models.gan import GAN
from models.vaegan import VAEGAN


@pytest.mark.parametrize("layer", [lambda: nn.Linear(7, 5), lambda: nn.Conv2d(3, 4, 3)],
                         ids=["linear", "conv"])
def test_spectral_norm_divides_by_the_largest_singular_value(layer):
    mg.manual_seed(0)
    sn = SpectralNorm(layer())
    x = mg.randn(2, 7) if isinstance(sn.layer, nn.Linear) else mg.randn(2, 3, 6, 6)
    for _ in range(60):                 # power iteration: one step per training forward
        sn(x)
    w = sn.layer.weight.numpy()
    top = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
    np.testing.assert_allclose(sn.sigma(sn.layer.weight).item(), top, rtol=1e-4)
    u = sn.u.numpy().copy()
    sn.eval()
    sn(x)
    np.testing.assert_array_equal(sn.u.numpy(), u)          # eval mode leaves u alone
    plain = layer()
    plain.load_state_dict({k: v / top if k == "weight" else v
                           for k, v in sn.layer.state_dict().items()})
    np.testing.assert_allclose(sn(x).numpy(), plain(x).numpy(), rtol=1e-4, atol=1e-6)


def test_spectral_norm_differentiates_through_sigma():
    mg.manual_seed(1)
    sn = SpectralNorm(nn.Linear(4, 3)).double()
    for _ in range(30):
        sn(mg.randn(2, 4).double())
    sn.eval()                                               # u fixed: a function of W
    x = mg.randn(5, 4).double()
    w = sn.layer.weight.detach().clone().requires_grad_(True)
    assert gradcheck(lambda w: x @ (w / sn.sigma(w)).T, (w,))


def _argv(out, *extra):
    return ["--epochs", "1", "--limit", "96", "--batch-size", "32", "--width", "4",
            "--metric-samples", "40", "--quiet", "--out", str(out), *extra]


def _records(out):
    drop = ("train_time_s", "examples_per_s", "time_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("shipped, levers, extra", [
    (GAN, GANLevers, ["--z-dim", "8"]), (VAEGAN, VAEGANLevers, ["--latent-dim", "4"])],
    ids=["gan", "vaegan"])
def test_no_lever_given_is_the_shipped_run_number_for_number(shipped, levers, extra, tmp_path,
                                                           shipped_scorer):
    assert run_cli(shipped, _argv(tmp_path / "shipped", *extra)) == 0
    assert run_cli(levers, _argv(tmp_path / "levers", *extra)) == 0
    assert _records(tmp_path / "levers") == _records(tmp_path / "shipped")


@pytest.mark.parametrize("extra", [
    ["gan", "--z-dim", "8", "--spectral-norm", "--d-dropout", "0.2", "--g-width", "6",
     "--lr-schedule", "linear", "--extra-emas", "0.99,0.995", "--pack", "2", "--r1", "1",
     "--r1-every", "2", "--clusters", "0"],           # as measured: before --clusters
    ["vaegan", "--latent-dim", "4", "--decoder-batchnorm", "--dcgan-init", "--lr-d", "1e-4",
     "--ema", "0.99", "--r1", "1", "--r1-every", "2", "--betas", "0,0.99"]],
    ids=["gan", "vaegan"])
def test_every_lever_trains_and_is_scored(extra, tmp_path, shipped_scorer):
    out = tmp_path / extra[0]
    assert main([extra[0], *_argv(out, *extra[1:])]) == 0
    first, final = _records(out)
    losses = ["loss_d", "loss_g", "r1", "ema0.99_fid", "ema0.995_fid"] if extra[0] == "gan" else \
        ["loss_dis", "llike", "gan_g", "r1", "vaegan_fid"]
    assert all(np.isfinite(first[k]) for k in losses), first
    assert final["final"] and sum(final[f"{extra[0]}_class_histogram"]) == 40


def test_an_unknown_experiment_or_bad_lever_exits_2(tmp_path, capsys):
    assert main([]) == 2 and main(["vae"]) == 2
    assert main(["gan", "--d-dropout", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "--d-dropout" in capsys.readouterr().err
    assert main(["vaegan", "--betas", "0.5", "--out", str(tmp_path / "y")]) == 2
    assert "--betas" in capsys.readouterr().err
    assert main(["gan", "--pack", "2", "--out", str(tmp_path / "z")]) == 2   # with --clusters
    assert "--clusters 0" in capsys.readouterr().err


def test_vaegan_r1_lever_adds_the_penalty_on_every_kth_dis_step_and_betas_reach_all_three():
    import argparse
    from models.losses import gan_bce, r1_penalty
    args = argparse.Namespace(latent_dim=4, width=4, gamma=0.3, beta=1.0, metric_samples=0,
                              no_vae=True, lr=1e-3, lr_d=1e-4, seed=0, decoder_batchnorm=False,
                              dcgan_init=False, ema=0.0, r1=3.0, r1_every=2, betas=(0.0, 0.99))
    mg.manual_seed(5)
    exp = VAEGANLevers(args, argparse.Namespace(data=None))
    for opt, lr in ((exp.opt_enc, 1e-3), (exp.opt_dec, 1e-3), (exp.opt_dis, 1e-4)):
        assert opt.param_groups[0]["betas"] == (0.0, 0.99) and opt.param_groups[0]["lr"] == lr
    dis = exp.discriminator
    x, x_rec, x_p = mg.rand(6, 1, 28, 28), mg.rand(6, 1, 28, 28), mg.rand(6, 1, 28, 28)
    plain = (gan_bce(dis(x), 1.0) + 0.5 * (gan_bce(dis(x_rec), 0.0) + gan_bce(dis(x_p), 0.0)))
    penalty = r1_penalty(dis, x)[1].item()
    loss, extra = exp.dis_loss(x, x_rec, x_p)              # Dis step 0: with the penalty
    assert loss.item() == pytest.approx(plain.item() + 0.5 * 3.0 * 2 * penalty, rel=1e-5)
    assert extra["r1"] == pytest.approx(2 * penalty, rel=1e-5) and penalty > 0
    exp.steps = 1                                           # (train_step counts them)
    loss, extra = exp.dis_loss(x, x_rec, x_p)              # Dis step 1: without
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6) and extra == {}
