"""GAN losses of models/losses.py against direct NumPy evaluations, their gradients
against finite differences (the gradient penalty through mg.grad(create_graph=True)),
and the models/gan.py command."""
import numpy as np  # host-side: references and test data built on the host
import pytest

import minigrad as mg
import minigrad.functional as F
from models import losses as L


def _t(a, dtype="float64", requires_grad=False):
    t = mg.from_numpy(np.asarray(a, dtype=dtype))
    return t.requires_grad_(True) if requires_grad else t


def _softplus(x):
    return np.logaddexp(0.0, x)


LOGITS = np.array([-300.0, -30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 40.0, 300.0])


# ----------------------------------------------------------------------------- BCE GAN losses
def test_discriminator_loss_matches_numpy_including_saturated_logits(backend_name):
    rng = np.random.default_rng(0)
    real = np.concatenate([LOGITS, rng.normal(size=7)])
    fake = np.concatenate([LOGITS[::-1], rng.normal(size=7)])
    # -mean log sigmoid(real) - mean log(1 - sigmoid(fake))
    ref = _softplus(-real).mean() + _softplus(fake).mean()
    out = L.gan_discriminator_loss(_t(real), _t(fake))
    assert out.shape == ()
    assert out.item() == pytest.approx(ref, rel=1e-12)
    # float32 stays finite and exact at |logit| = 300 (log(sigmoid) would give inf)
    out32 = L.gan_discriminator_loss(_t(real, "float32"), _t(fake, "float32")).item()
    assert out32 == pytest.approx(ref, rel=1e-5)


def test_generator_losses_match_numpy(backend_name):
    fake = LOGITS
    ns = L.gan_generator_loss(_t(fake)).item()
    assert ns == pytest.approx(_softplus(-fake).mean(), rel=1e-12)
    sat = L.gan_generator_loss(_t(fake), saturating=True).item()
    assert sat == pytest.approx(-_softplus(fake).mean(), rel=1e-12)


def test_gan_loss_gradients_wrt_logits(backend_name):
    rng = np.random.default_rng(1)
    real = _t(rng.normal(scale=3.0, size=(4, 1)), requires_grad=True)
    fake = _t(rng.normal(scale=3.0, size=(4, 1)), requires_grad=True)
    assert mg.gradcheck(L.gan_discriminator_loss, (real, fake))
    assert mg.gradcheck(L.gan_generator_loss, (fake,))
    assert mg.gradcheck(lambda f: L.gan_generator_loss(f, saturating=True), (fake,))
    assert mg.gradcheck(L.wgan_critic_loss, (real, fake))
    assert mg.gradcheck(L.wgan_generator_loss, (fake,))


def test_gan_loss_gradients_at_saturated_logits(backend_name):
    # d/dl softplus(-l) = sigmoid(l) - 1: exactly -1 at l = -300 (a confident D
    # rejecting a fake), the gradient the non-saturating loss keeps alive; the
    # saturating loss's gradient there is -sigmoid(-300) ~ 0.
    fake = _t(LOGITS, requires_grad=True)
    L.gan_generator_loss(fake).backward()
    sig = 1.0 / (1.0 + np.exp(-LOGITS))
    np.testing.assert_allclose(fake.grad.numpy(), (sig - 1.0) / LOGITS.size, rtol=1e-12, atol=1e-16)
    assert np.isfinite(fake.grad.numpy()).all()
    fake2 = _t(LOGITS, requires_grad=True)
    L.gan_generator_loss(fake2, saturating=True).backward()
    # atol: the engine's sigmoid is accurate to ~1e-18 absolute (not relative) in the far tail
    np.testing.assert_allclose(fake2.grad.numpy(), -sig / LOGITS.size, rtol=1e-12, atol=1e-16)
    assert abs(fake2.grad.numpy()[0]) < 1e-16 and abs(fake.grad.numpy()[0]) > 0.1


def test_wgan_losses_match_numpy(backend_name):
    rng = np.random.default_rng(2)
    r, f = rng.normal(size=(6, 1)), rng.normal(size=(6, 1)) - 1.0
    assert L.wgan_critic_loss(_t(r), _t(f)).item() == pytest.approx(f.mean() - r.mean(), rel=1e-12)
    assert L.wgan_generator_loss(_t(f)).item() == pytest.approx(-f.mean(), rel=1e-12)


# ----------------------------------------------------------------------------- gradient penalty
def _mlp_critic(w1, b1, w2):
    return lambda x: (x.reshape(x.shape[0], -1) @ w1 + b1).tanh() @ w2


def _mlp_penalty_numpy(real, fake, eps, w1, b1, w2):
    """Direct evaluation: grad_x tanh(x W1 + b1) w2 = W1 ((1 - tanh^2) * w2)."""
    x = (eps * real + (1 - eps) * fake).reshape(real.shape[0], -1)
    h = np.tanh(x @ w1 + b1)
    g = ((1 - h ** 2) * w2[:, 0]) @ w1.T                  # (B, D)
    norms = np.sqrt((g ** 2).sum(1) + 1e-12)
    return ((norms - 1) ** 2).mean()


def _mlp_problem(rng, b=3, shape=(1, 2, 3), hidden=5):
    d = int(np.prod(shape))
    real = rng.normal(size=(b,) + shape)
    fake = rng.normal(size=(b,) + shape)
    eps = rng.uniform(size=(b,) + (1,) * len(shape))
    w1 = rng.normal(scale=0.8, size=(d, hidden))
    b1 = rng.normal(scale=0.3, size=(hidden,))
    w2 = rng.normal(size=(hidden, 1))
    return real, fake, eps, w1, b1, w2


def test_gradient_penalty_value_matches_numpy(backend_name):
    rng = np.random.default_rng(3)
    real, fake, eps, w1, b1, w2 = _mlp_problem(rng)
    ref = _mlp_penalty_numpy(real, fake, eps, w1, b1, w2)
    assert ref > 0.05
    gp = L.gradient_penalty(_mlp_critic(_t(w1), _t(b1), _t(w2)), _t(real), _t(fake), eps=_t(eps))
    assert gp.item() == pytest.approx(ref, rel=1e-10)


def test_gradient_penalty_of_linear_critic_is_closed_form(backend_name):
    # f(x) = <w, x>: grad_x f = w everywhere, so GP = (||w|| - 1)^2 for any real/fake/eps
    rng = np.random.default_rng(4)
    w = rng.normal(size=(12, 1))
    real, fake = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3, 4))
    gp = L.gradient_penalty(lambda x: x.reshape(5, 12) @ _t(w), _t(real), _t(fake))
    assert gp.item() == pytest.approx((np.linalg.norm(w) - 1) ** 2, rel=1e-9)
    w_unit = w / np.linalg.norm(w)
    gp1 = L.gradient_penalty(lambda x: x.reshape(5, 12) @ _t(w_unit), _t(real), _t(fake))
    assert abs(gp1.item()) < 1e-10


def test_gradient_penalty_gradient_mlp_critic(backend_name):
    # gradient wrt the critic's parameters AND the real/fake inputs, through
    # mg.grad(create_graph=True): a check of double backward through matmul/tanh
    rng = np.random.default_rng(5)
    real, fake, eps, w1, b1, w2 = _mlp_problem(rng)
    inputs = [_t(a, requires_grad=True) for a in (real, fake, w1, b1, w2)]
    e = _t(eps)

    def penalty(real, fake, w1, b1, w2):
        return L.gradient_penalty(_mlp_critic(w1, b1, w2), real, fake, eps=e)

    assert mg.gradcheck(penalty, inputs)


def test_gradient_penalty_gradient_conv_critic(backend_name):
    # a strided conv + leaky ReLU-free (smooth) critic: double backward through conv2d
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(2, 1, 6, 6)), rng.normal(size=(2, 1, 6, 6))
    eps = rng.uniform(size=(2, 1, 1, 1))
    w = rng.normal(scale=0.5, size=(3, 1, 3, 3))
    b = rng.normal(scale=0.1, size=(3,))
    v = rng.normal(size=(3 * 2 * 2, 1))
    e = _t(eps)

    def penalty(w, b, v, real):
        def critic(x):
            h = F.conv2d(x, w, b, stride=2, padding=0).tanh()       # (B, 3, 2, 2)
            return h.reshape(h.shape[0], -1) @ v
        return L.gradient_penalty(critic, real, _t(fake), eps=e)

    inputs = [_t(a, requires_grad=True) for a in (w, b, v, real)]
    assert penalty(*inputs).item() > 0.01
    assert mg.gradcheck(penalty, inputs)


def test_gradient_penalty_shape_error(backend_name):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        L.gradient_penalty(lambda x: x, mg.zeros(2, 3), mg.zeros(2, 4))


# ----------------------------------------------------------------------------- R1
def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm(backend_name):
    # l(x) = w . flatten(x) + b has grad_x l = w for every x, so E||grad||^2 = ||w||^2
    mg.manual_seed(2)
    w, b = _t(np.random.default_rng(2).normal(size=(12, 1)), requires_grad=True), _t(0.3)
    x = mg.randn(5, 1, 3, 4).double()
    logits, r1 = L.r1_penalty(lambda inp: inp.reshape(5, 12) @ w + b, x)
    np.testing.assert_allclose(logits.numpy(), x.numpy().reshape(5, 12) @ w.numpy() + 0.3)
    np.testing.assert_allclose(r1.item(), (w.numpy() ** 2).sum(), rtol=1e-12)
    r1.backward()                             # the penalty reaches D's weights: 2 w
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.numpy(), rtol=1e-12)
    assert x.grad is None                     # and not the real images


def test_r1_penalty_differentiates_through_a_conv_discriminator(backend_name):
    # double backward through conv and LeakyReLU, against central differences
    rng = np.random.default_rng(3)
    x, bias = _t(rng.normal(size=(2, 1, 5, 5))), _t(rng.normal(size=2))

    def penalty(weight):
        def d(inp):
            h = F.leaky_relu(F.conv2d(inp, weight, bias), 0.2)
            return (h * h).sum(axis=(1, 2, 3))
        return L.r1_penalty(d, x)[1]
    assert mg.gradcheck(penalty, (_t(rng.normal(size=(2, 1, 3, 3)), requires_grad=True),))


# ----------------------------------------------------------------------------- models/gan.py
import argparse  # noqa: E402
import json  # noqa: E402

from models.cli import run_cli  # noqa: E402


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _finite(records, keys):
    for r in records:
        for k in keys:
            assert k in r and np.isfinite(r[k]), (k, r)


def _gan_args(**kw):
    a = dict(z_dim=8, width=4, n_critic=None, metric_samples=0, beta1=None, beta2=None,
             lr=None, loss="bce", gp_weight=10.0, seed=0, init="pytorch", label_smoothing=0.0,
             ema=0.0, lr_d=None, d_batchnorm=False, r1=None, r1_every=4, clusters=0)
    a.update(kw)
    return argparse.Namespace(**a)


def test_wgan_gp_defaults_are_algorithm_1_of_the_paper():
    """Gulrajani et al.'s Algorithm 1: Adam lr 1e-4, betas (0, 0.9), 5 critic steps per
    generator step; bce has StyleGAN2's betas (0, 0.99) and one D step."""
    from models.gan import GAN
    wgan, bce = GAN(_gan_args(loss="wgan-gp"), run=None), GAN(_gan_args(), run=None)
    for opt in (wgan.opt_g, wgan.opt_d):
        assert opt.param_groups[0]["lr"] == 1e-4 and opt.param_groups[0]["betas"] == (0.0, 0.9)
    assert wgan.n_critic == 5 and bce.n_critic == 1
    for opt in (bce.opt_g, bce.opt_d):
        assert opt.param_groups[0]["lr"] == GAN.adam["bce"][0]
        assert opt.param_groups[0]["betas"] == (0.0, 0.99)
    given = GAN(_gan_args(loss="wgan-gp", lr=3e-4, beta1=0.5, beta2=0.99), run=None)
    assert given.opt_d.param_groups[0]["lr"] == 3e-4
    assert given.opt_d.param_groups[0]["betas"] == (0.5, 0.99)


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_the_generator_step_draws_fresh_noise(loss):
    """Algorithm 1 of both papers: the generator's step samples its own minibatch of
    noise; it does not reuse the fakes the critic's last step saw."""
    from models.gan import GAN
    exp = GAN(_gan_args(loss=loss, n_critic=2), run=None)
    calls, judged = [], []
    forward = exp.generator.forward

    def spy_forward(z, k=None):
        out = forward(z, k)
        calls.append((z.numpy().copy(), out))
        return out

    g_loss = exp.g_loss
    exp.generator.forward = spy_forward
    exp.g_loss = lambda fake, k=None: judged.append(fake) or g_loss(fake, k)
    x = mg.rand(6, 1, 28, 28)
    exp.train_step(x, None)               # the first step: D, then G (no G loss yet)
    assert len(calls) == 2 and len(judged) == 1
    assert judged[0] is calls[1][1]       # G's loss judges the second draw
    assert not np.allclose(calls[0][0], calls[1][0])
    exp.train_step(x, None)               # D step 2 of n_critic = 2: then G, on fresh z
    assert len(calls) == 4 and len(judged) == 2 and judged[1] is calls[3][1]
    assert not np.allclose(calls[2][0], calls[3][0])
    exp.train_step(x, None)               # D step 3: a D step only
    assert len(calls) == 5 and len(judged) == 2


def test_r1_is_added_on_every_kth_d_step_with_k_times_its_weight():
    """L_D + gamma/2 k E||grad_x l(x)||^2 on D steps 0, k, 2k, ... (lazy R1), plain L_D
    on the others; the logged r1 is k times the penalty, so its epoch mean is its mean."""
    from models.gan import GAN
    mg.manual_seed(4)
    exp = GAN(_gan_args(r1=3.0, r1_every=2), run=None)
    D = exp.discriminator
    real, fake = mg.rand(6, 1, 28, 28) * 2.0 - 1.0, mg.rand(6, 1, 28, 28) * 2.0 - 1.0
    plain = (L.gan_bce(D(real), 1.0) + L.gan_bce(D(fake), 0.0)).item()
    penalty = L.r1_penalty(D, real)[1].item()
    loss, extra = exp.d_loss(real, fake)
    assert loss.item() == pytest.approx(plain + 0.5 * 3.0 * 2 * penalty, rel=1e-5)
    assert extra["r1"] == pytest.approx(2 * penalty, rel=1e-5) and penalty > 0
    exp.steps = 1
    loss, extra = exp.d_loss(real, fake)
    assert loss.item() == pytest.approx(plain, rel=1e-6) and extra == {}
    assert GAN(_gan_args(), run=None).r1 == GAN.r1_default            # bce's default
    assert GAN(_gan_args(r1=0.0), run=None).r1 == 0.0                 # the lecture's L_D
    assert GAN(_gan_args(loss="wgan-gp"), run=None).r1 == 0.0         # its own penalty
    with pytest.raises(ValueError, match="--gp-weight"):
        GAN(_gan_args(loss="wgan-gp", r1=1.0), run=None)


def test_lr_d_sets_only_the_discriminators_learning_rate():
    from models.gan import GAN
    exp = GAN(_gan_args(lr=2e-4, lr_d=8e-4), run=None)
    assert exp.opt_g.param_groups[0]["lr"] == 2e-4 and exp.opt_d.param_groups[0]["lr"] == 8e-4
    same = GAN(_gan_args(lr=2e-4), run=None)
    assert same.opt_d.param_groups[0]["lr"] == 2e-4


def test_discriminator_batchnorm_is_dcgans_and_never_with_the_gradient_penalty():
    """--d-batchnorm: DCGAN's D, BatchNorm after the second conv and none after the
    first; without it D has none, and with the gradient penalty (per example) asking
    for it is a usage error."""
    from minigrad import nn
    from models.gan import GAN

    def kinds(**kw):
        return [type(m) for m in GAN(_gan_args(**kw), run=None).discriminator.body]

    assert kinds(d_batchnorm=True) == [nn.Conv2d, nn.LeakyReLU, nn.Conv2d, nn.BatchNorm2d,
                                       nn.LeakyReLU]
    assert kinds() == kinds(loss="wgan-gp") == [nn.Conv2d, nn.LeakyReLU, nn.Conv2d,
                                                nn.LeakyReLU]
    with pytest.raises(ValueError, match="per example"):
        GAN(_gan_args(d_batchnorm=True, loss="wgan-gp"), run=None)


def test_generator_and_discriminator_update_only_their_own_parameters(backend_name):
    from models.gan import GAN
    exp = GAN(_gan_args(lr=1e-3), run=None)
    g_params, d_params = list(exp.generator.parameters()), list(exp.discriminator.parameters())
    assert g_params and d_params
    assert not {id(p) for p in g_params} & {id(p) for p in d_params}
    assert {id(p) for p in exp.opt_g.param_groups[0]["params"]} == {id(p) for p in g_params}
    assert {id(p) for p in exp.opt_d.param_groups[0]["params"]} == {id(p) for p in d_params}

    def snapshot(ps):
        return [p.numpy().copy() for p in ps]

    real = mg.rand(6, 1, 28, 28) * 2.0 - 1.0
    fake = exp.generator(mg.randn(6, 8))
    g0, d0 = snapshot(g_params), snapshot(d_params)
    loss_d, _ = exp.d_loss(real, fake.detach())
    exp.opt_d.zero_grad()
    loss_d.backward()
    assert all(p.grad is None for p in g_params)           # detached fakes: nothing reaches G
    exp.opt_d.step()
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(g0, g_params))
    assert all(not np.array_equal(a, p.numpy()) for a, p in zip(d0, d_params))

    d1 = snapshot(d_params)
    loss_g = exp.g_loss(fake)
    exp.opt_g.zero_grad()
    loss_g.backward()                                      # D's params get grads too...
    exp.opt_g.step()                                       # ...but only G's optimizer steps
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(d1, d_params))
    assert all(not np.array_equal(a, p.numpy()) for a, p in zip(g0, g_params))


def _gan_argv(out, backend, *extra):
    return ["--backend", backend, "--epochs", "1", "--limit", "96", "--batch-size", "32",
            "--width", "4", "--z-dim", "8", "--metric-samples", "40", "--quiet",
            "--out", str(out), *extra]


def test_gan_cli_runs_writes_and_resumes(backend_name, tmp_path, shipped_scorer):
    from models.gan import GAN
    out = tmp_path / "gan"
    assert run_cli(GAN, _gan_argv(out, backend_name)) == 0
    recs = _records(out)
    assert [r.get("final", False) for r in recs] == [False, True]
    _finite(recs[:1], ["loss_d", "loss_g", "fid", "inception_score"])
    _finite(recs[1:], ["gan_fid", "gan_inception_score", "real_fid", "real_inception_score"])
    assert recs[1]["real_fid"] < recs[1]["gan_fid"]       # real images beat an untrained G
    assert sum(recs[1]["gan_class_histogram"]) == 40 and 0 <= recs[1]["gan_rarest_class_share"]
    for f in ("gan_samples.png", "gan_samples_progress.png", "gan_curves.png",
              "gan_class_histogram.png", "checkpoint.npz"):
        assert (out / f).stat().st_size > 0, f
    argv = _gan_argv(out, backend_name, "--resume", str(out / "checkpoint.npz"))
    argv[argv.index("--epochs") + 1] = "2"
    assert run_cli(GAN, argv) == 0
    recs = _records(out)
    assert [r["epoch"] for r in recs if not r.get("final")] == [1, 2]
    # the progress strip's samples are checkpointed: one row of 12 per epoch
    progress = mg.load(out / "checkpoint.npz")["state"]["progress"]
    assert [e for e, _ in progress] == [1, 2] and all(s.shape == (12, 1, 28, 28)
                                                      for _, s in progress)


def test_wgan_gp_trains_without_nans(tmp_path):
    from models.gan import GAN
    out = tmp_path / "wgan"
    argv = _gan_argv(out, "numpy", "--loss", "wgan-gp", "--n-critic", "2",
                     "--metric-samples", "0")
    assert run_cli(GAN, argv) == 0
    rec = _records(out)[0]
    _finite([rec], ["loss_d", "loss_g", "wasserstein", "gp"])
    assert rec["gp"] > 0


@pytest.mark.parametrize("bad", [["--loss", "hinge"], ["--width", "0"], ["--n-critic", "0"],
                                 ["--metric-samples", "1"], ["--epochs", "-1"], ["--lr-d", "0"],
                                 ["--loss", "wgan-gp", "--d-batchnorm"], ["--r1", "-1"],
                                 ["--loss", "wgan-gp", "--r1", "1"], ["--r1-every", "0"],
                                 ["--clusters", "-1"], ["--clusters", "8001"]])
def test_gan_cli_bad_arguments_exit_2(bad, tmp_path, capsys):
    from models.gan import GAN
    assert run_cli(GAN, ["--out", str(tmp_path / "x"), "--quiet", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


# ----------------------------------------------------------------------------- models/vaegan.py
def _vaegan_argv(out, backend, *extra):
    return ["--backend", backend, "--epochs", "1", "--limit", "96", "--batch-size", "32",
            "--width", "4", "--latent-dim", "4", "--metric-samples", "40", "--quiet",
            "--out", str(out), *extra]


def test_vaegan_cli_runs_writes_and_resumes(backend_name, tmp_path, shipped_scorer):
    from models.vaegan import VAEGAN
    out = tmp_path / "vaegan"
    assert run_cli(VAEGAN, _vaegan_argv(out, backend_name)) == 0
    recs = _records(out)
    _finite(recs[:1], ["loss_dis", "kl", "llike", "gan_g", "vae_loss", "vaegan_fid",
                       "vae_fid", "vaegan_test_pixel_mse"])
    _finite(recs[1:], ["vaegan_fid", "vae_fid", "real_fid", "vaegan_inception_score"])
    for f in ("vaegan_samples.png", "vaegan_reconstructions.png", "vaegan_curves.png",
              "vaegan_class_histogram.png"):
        assert (out / f).stat().st_size > 0, f
    argv = _vaegan_argv(out, backend_name, "--resume", str(out / "checkpoint.npz"))
    argv[argv.index("--epochs") + 1] = "2"
    assert run_cli(VAEGAN, argv) == 0
    assert [r["epoch"] for r in _records(out) if not r.get("final")] == [1, 2]


def test_vaegan_lr_d_sets_only_the_discriminators_learning_rate():
    from models.vaegan import VAEGAN
    base = dict(latent_dim=4, width=4, gamma=0.1, beta=1.0, metric_samples=0, no_vae=True,
                lr=5e-4, seed=0)
    exp = VAEGAN(argparse.Namespace(**base, lr_d=1e-4), run=None)
    assert [o.param_groups[0]["lr"] for o in (exp.opt_enc, exp.opt_dec, exp.opt_dis)] == \
        [5e-4, 5e-4, 1e-4]
    same = VAEGAN(argparse.Namespace(**base, lr_d=None), run=None)
    assert same.opt_dis.param_groups[0]["lr"] == 5e-4


def test_vaegan_train_step_gives_each_network_its_own_loss(monkeypatch):
    """VAEGAN.train_step itself: Dis steps first, on detached fakes (no gradient reaches
    Enc or Dec); then, through the updated Dis, Enc's gradient is that of
    beta KL + L_llike (no GAN term) and Dec's that of gamma L_llike + 0.5 (BCE(Dis(x~), 1)
    + BCE(Dis(x_p), 1)) (no KL); neither reaches Dis."""
    import models.vaegan as V
    args = argparse.Namespace(latent_dim=4, width=4, gamma=0.3, beta=2.0, metric_samples=0,
                              no_vae=True, lr=1e-3, lr_d=None, seed=0)
    with mg.backend("numpy"):
        mg.manual_seed(0)
        run = argparse.Namespace(data=None)
        exp = V.VAEGAN(args, run)
        enc = list(exp.vaegan.encoder.parameters())
        dec = list(exp.vaegan.decoder.parameters())
        dis = list(exp.discriminator.parameters())
        order, seen, grads = [], {}, []
        real_grad = mg.grad

        def spy_grad(output, inputs, **kw):
            if not grads:      # before Enc and Dec step: each term's gradient on its own
                kl, llike = terms["kl"].mean(), terms["llike"]
                gan_dec = 0.5 * (terms["bce"][3] + terms["bce"][4])  # after Dis's three
                for key, loss, params in (
                        ("enc", args.beta * kl + llike, enc),
                        ("enc_with_gan", args.beta * kl + llike + gan_dec, enc),
                        ("dec", args.gamma * llike + gan_dec, dec),
                        ("dec_twice", args.gamma * llike + 2 * gan_dec, dec),
                        ("kl_dec", kl, dec)):
                    seen[key] = real_grad(loss, params, retain_graph=True, allow_unused=True)
            g = real_grad(output, inputs, **kw)
            grads.append(([id(p) for p in inputs], g))
            order.append("grad")
            return g

        def spy_step(name, opt):
            step = opt.step

            def wrapped():
                order.append(name)
                if name == "dis":               # what Dis's loss reached, and Dis's weights
                    seen["enc_dec_grads"] = [p.grad for p in enc + dec]
                    seen["dis_grad"] = [p.grad.numpy().copy() for p in dis]
                step()
                if name == "dis":
                    seen["dis_after"] = [p.numpy().copy() for p in dis]
            opt.step = wrapped

        for name in ("dis", "enc", "dec"):
            spy_step(name, getattr(exp, f"opt_{name}"))
        terms = {"bce": []}
        for fn, key in ((V.feature_nll, "llike"), (V.gaussian_kl, "kl")):
            monkeypatch.setattr(V, fn.__name__, lambda *a, _f=fn, _k=key: terms.setdefault(
                _k, _f(*a)))
        monkeypatch.setattr(V, "gan_bce", lambda *a: terms["bce"].append(L.gan_bce(*a))
                            or terms["bce"][-1])
        monkeypatch.setattr(mg, "grad", spy_grad)
        exp.train_step(mg.rand(6, 1, 28, 28), None)
        monkeypatch.setattr(mg, "grad", real_grad)

        assert order == ["dis", "grad", "grad", "enc", "dec"]   # Dis first, then Enc and Dec
        assert all(g is None for g in seen["enc_dec_grads"])    # detached fakes
        # Dis's gradient came from its own loss only: the later losses left it alone
        for p, g, w in zip(dis, seen["dis_grad"], seen["dis_after"]):
            np.testing.assert_array_equal(p.grad.numpy(), g)
            np.testing.assert_array_equal(p.numpy(), w)         # and Dis did not move again
        (enc_ids, g_enc), (dec_ids, g_dec) = grads
        assert enc_ids == [id(p) for p in enc] and dec_ids == [id(p) for p in dec]

        def close(a, b):
            return all(np.allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-8)
                       for x, y in zip(a, b))

        # (a GAN term would change Enc's gradient, so its absence is seen)
        assert close(g_enc, seen["enc"]) and not close(g_enc, seen["enc_with_gan"])
        assert close(g_dec, seen["dec"]) and not close(g_dec, seen["dec_twice"])  # the 0.5
        assert all(g is None for g in seen["kl_dec"])            # KL does not reach Dec


@pytest.mark.parametrize("bad", [["--gamma", "-1"], ["--latent-dim", "0"]])
def test_vaegan_cli_bad_arguments_exit_2(bad, tmp_path, capsys):
    from models.vaegan import VAEGAN
    assert run_cli(VAEGAN, ["--out", str(tmp_path / "x"), "--quiet", *bad]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_moving_average_of_g_draws_nothing_and_follows_its_formula():
    from models.blocks import averaged_copy, dcgan_init, ema_update
    from models.gan import Generator
    with mg.backend("numpy"):
        mg.manual_seed(0)
        g = Generator(4, 2)
        g.apply(dcgan_init)
        state = mg.get_backend().rng_state()
        avg = averaged_copy(g, Generator, 4, 2)
        assert mg.get_backend().rng_state() == state        # the run's noise is unchanged
        start = [p.numpy().copy() for p in avg.parameters()]
        assert all(np.array_equal(a, p.numpy()) for a, p in zip(start, g.parameters()))
        w = next(g.parameters())
        assert abs(float(w.numpy().std()) - 0.02) < 0.01     # DCGAN's N(0, 0.02)
        for p in g.parameters():
            p.data = p.data + 1.0
        ema_update(avg, g, 0.9)
        for a, p, s in zip(avg.parameters(), g.parameters(), start):
            np.testing.assert_allclose(a.numpy(), 0.9 * s + 0.1 * p.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- --clusters
def _blobs(rng, k=4, per=30, d=6, spread=0.3):
    centres = 20.0 * np.eye(k, d)                   # 20 apart, against a spread of 0.3
    labels = np.repeat(np.arange(k), per)
    return (centres[labels] + spread * rng.normal(size=(k * per, d))).astype(np.float64), labels


def test_kmeans_ends_at_lloyds_fixed_point_and_finds_separated_blobs(backend_name):
    """Every centre is the mean of the rows nearest to it (Lloyd's fixed point, checked
    with loops on the host), and four well-separated blobs come out as the four
    clusters (k-means++ seeds one centre per blob)."""
    from models.blocks import kmeans
    x, labels = _blobs(np.random.default_rng(1))
    mg.manual_seed(0)
    c = kmeans(_t(x), 4).numpy()
    d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    nearest = d.argmin(axis=1)
    for j in range(4):
        np.testing.assert_allclose(c[j], x[nearest == j].mean(axis=0), rtol=1e-10, atol=1e-10)
    pairs = {(a, b) for a, b in zip(labels, nearest)}
    assert len(pairs) == 4 and len({b for _, b in pairs}) == 4    # one cluster per blob
    with pytest.raises(ValueError, match="between 1 and"):
        kmeans(_t(x), len(x) + 1)


def test_kmeans_one_round_is_one_lloyd_update_of_kmeans_plus_plus_seeds():
    """iters=1: the seeds' assignment, then each centre the mean of its rows; the seeds
    are rows of x, pairwise distinct on these data (k-means++ never picks a row twice
    where the distance is 0)."""
    from models.blocks import kmeans
    x, _ = _blobs(np.random.default_rng(2), k=3, per=20)
    mg.manual_seed(3)
    seeds = kmeans(_t(x), 5, iters=0).numpy()
    assert all(any(np.array_equal(s, r) for r in x) for s in seeds)
    assert len({tuple(s) for s in seeds}) == 5
    mg.manual_seed(3)
    once = kmeans(_t(x), 5, iters=1).numpy()
    nearest = ((x[:, None, :] - seeds[None]) ** 2).sum(axis=2).argmin(axis=1)
    want = np.array([x[nearest == j].mean(axis=0) if (nearest == j).any() else seeds[j]
                     for j in range(5)])
    np.testing.assert_allclose(once, want, rtol=1e-10, atol=1e-10)


def test_clusters_assign_the_nearest_centre_and_sample_with_the_counts_shares():
    from models.blocks import Clusters
    x, _ = _blobs(np.random.default_rng(4))
    mg.manual_seed(0)
    clusters = Clusters(_t(x.reshape(len(x), 1, 2, 3)), 4)
    c = clusters.centres.numpy()
    brute = np.array([min(range(4), key=lambda j: ((row - c[j]) ** 2).sum()) for row in x])
    np.testing.assert_array_equal(clusters.assign(_t(x)).numpy(), brute)
    np.testing.assert_array_equal(clusters.counts.numpy(), np.bincount(brute, minlength=4))
    clusters.counts = _t([0.0, 1.0, 3.0, 0.0])
    mg.manual_seed(5)
    draws = clusters.sample(40000).numpy()
    shares = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(shares, [0.0, 0.25, 0.75, 0.0], atol=0.01)
    assert shares[0] == shares[3] == 0.0                    # an empty cluster is never drawn
    assert set(Clusters(_t(x), 4).state_dict()) == {"centres", "counts"}


def test_projection_discriminator_adds_the_clusters_embedding_dotted_with_its_features():
    """D(x, k) = Linear(phi(x)) + e_k . phi(x), with e = 0 at the start (D(x, k) = D(x));
    its input gradient against central differences (float64)."""
    from models.blocks import Discriminator
    mg.manual_seed(0)
    D = Discriminator(2, n_clusters=3).double()
    x = mg.rand(4, 1, 28, 28, dtype="float64")
    k = mg.from_numpy(np.array([0, 2, 2, 1]))
    np.testing.assert_array_equal(D(x, k).numpy(), D(x).numpy())
    D.embed.weight.data = mg.randn(3, 2 * 2 * 7 * 7, dtype="float64").data
    phi = D.features(x).numpy().reshape(4, -1)
    want = D(x).numpy()[:, 0] + (D.embed.weight.numpy()[k.numpy()] * phi).sum(axis=1)
    np.testing.assert_allclose(D(x, k).numpy()[:, 0], want, rtol=1e-10)
    assert mg.gradcheck(lambda inp: D(inp, k), (x.requires_grad_(True),))


def test_with_clusters_the_fakes_take_the_real_batchs_clusters_in_both_steps():
    """train_step: k = the nearest centres of the real batch; G draws the D step's fakes
    and the G step's fresh fakes for those k, and D judges real and fake with them."""
    from models.blocks import Clusters
    from models.gan import GAN
    mg.manual_seed(0)
    images = mg.rand(40, 1, 28, 28).numpy()
    run = argparse.Namespace(data=argparse.Namespace(train_x=images),
                             tensor=lambda a: mg.from_numpy(np.asarray(a)))
    exp = GAN(_gan_args(clusters=5), run)
    assert isinstance(exp.clusters, Clusters) and "clusters" in exp.checkpoint
    assert exp.generator.net[0].in_features == 8 + 5
    seen = {"G": [], "D": []}
    g_forward, d_forward = exp.generator.forward, exp.discriminator.forward
    exp.generator.forward = lambda z, k=None: seen["G"].append(k.numpy()) or g_forward(z, k)
    exp.discriminator.forward = lambda x, k=None: seen["D"].append(k.numpy()) or d_forward(x, k)
    x = mg.from_numpy(images[:6])
    exp.train_step(x, None)
    want = exp.clusters.assign(x).numpy()
    assert len(seen["G"]) == 2 and len(seen["D"]) == 3      # D: real, fake; then G's fake
    for k in seen["G"] + seen["D"]:
        np.testing.assert_array_equal(k, want)
    z, k = exp.fixed_noise
    assert z.shape == (64, 8) and k.shape == (64,) and exp.samples(64, z, k).shape == \
        (64, 1, 28, 28)
    assert exp.samples(7).shape == (7, 1, 28, 28)
