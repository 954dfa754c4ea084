"""The VAE family of models/losses.py: closed forms against Monte-Carlo and SciPy,
gradients against finite differences, the sampler's moments, and the importance-
weighted log-likelihood on a model whose log p(x) is known exactly."""
import math

import numpy as np  # host-side: references and test data built on the host
import pytest
from scipy import stats  # host-side: reference densities

import minigrad as mg
from models import losses as L


def _t(a, dtype="float64", requires_grad=False):
    """A tensor on the current backend from a host array."""
    t = mg.from_numpy(np.asarray(a, dtype=dtype))
    return t.requires_grad_(True) if requires_grad else t


# ----------------------------------------------------------------------------- Gaussian KL
def test_gaussian_kl_matches_monte_carlo(backend_name):
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(3, 4))
    logvar = rng.normal(scale=0.7, size=(3, 4))
    kl = L.gaussian_kl(_t(mu), _t(logvar)).numpy()
    assert kl.shape == (3,)
    # E_q[log q(h) - log p(h)] with h ~ q, 200k samples per row
    n = 200_000
    sigma = np.exp(0.5 * logvar)
    h = mu + sigma * rng.standard_normal((n, 3, 4))
    log_ratio = (stats.norm.logpdf(h, mu, sigma) - stats.norm.logpdf(h)).sum(-1)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
    assert np.all(np.abs(kl - mc) < 5 * se + 1e-6), (kl, mc, se)
    # and it is not trivially close: the values are far from 0
    assert np.all(kl > 0.1)


def test_gaussian_kl_zero_at_prior_and_positive_elsewhere(backend_name):
    z = mg.zeros(5, 3, dtype="float64")
    assert np.allclose(L.gaussian_kl(z, z).numpy(), 0.0)
    rng = np.random.default_rng(2)
    kl = L.gaussian_kl(_t(rng.normal(size=(50, 3))), _t(rng.normal(size=(50, 3)))).numpy()
    assert np.all(kl > 0)


def test_gaussian_kl_shape_error(backend_name):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        L.gaussian_kl(mg.zeros(2, 3), mg.zeros(2, 4))


def test_gaussian_log_prob_matches_scipy(backend_name):
    rng = np.random.default_rng(3)
    h, mu, logvar = rng.normal(size=(3, 6, 5))
    want = stats.norm.logpdf(h, mu, np.exp(0.5 * logvar)).sum(-1)
    got = L.gaussian_log_prob(_t(h), _t(mu), _t(logvar)).numpy()
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.allclose(L.gaussian_log_prob(_t(h)).numpy(), stats.norm.logpdf(h).sum(-1))


# ----------------------------------------------------------------------------- reconstruction
def test_bernoulli_nll_matches_direct_formula_and_is_stable(backend_name):
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3, size=(4, 1, 3, 3))
    x = rng.uniform(size=(4, 1, 3, 3))
    p = 1 / (1 + np.exp(-logits))
    want = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(4, -1).sum(1)
    got = L.bernoulli_nll(_t(logits), _t(x)).numpy()
    assert got.shape == (4,)
    assert np.allclose(got, want, rtol=1e-10)
    # logits far beyond where sigmoid saturates: exact, finite values
    big = np.array([[200.0, -200.0, 200.0, -200.0]])
    tgt = np.array([[1.0, 0.0, 0.0, 1.0]])
    got = L.bernoulli_nll(_t(big, "float32"), _t(tgt, "float32")).numpy()
    assert np.isfinite(got).all() and np.allclose(got, [400.0], rtol=1e-6)


def test_bernoulli_nll_shape_error(backend_name):
    with pytest.raises(ValueError, match=r"\(2, 784\).*\(2, 1, 28, 28\)"):
        L.bernoulli_nll(mg.zeros(2, 784), mg.zeros(2, 1, 28, 28))


def test_gaussian_nll_is_the_true_density_of_scipy(backend_name):
    """-log N(x | mean, sigma^2 I) with the -D/2 log(2 pi sigma^2) constant: equal to
    scipy's norm.logpdf summed over pixels, for one fixed sigma and for one sigma
    per pixel broadcast over the batch; and the closed form with one sigma."""
    rng = np.random.default_rng(41)
    mean, x = rng.uniform(size=(2, 4, 1, 3, 3))
    for sigma in (0.1, 1.0, 2.5):
        want = -stats.norm.logpdf(x, mean, sigma).reshape(4, -1).sum(1)
        got = L.gaussian_nll(_t(mean), _t(x), math.log(sigma)).numpy()
        assert got.shape == (4,) and np.allclose(got, want, rtol=1e-12)
        d = 9
        closed = ((x - mean) ** 2).reshape(4, -1).sum(1) / (2 * sigma ** 2) + \
            d / 2 * math.log(2 * math.pi * sigma ** 2)
        assert np.allclose(got, closed, rtol=1e-12)
    log_sigma = rng.normal(scale=0.5, size=(1, 3, 3))
    want = -stats.norm.logpdf(x, mean, np.exp(log_sigma)).reshape(4, -1).sum(1)
    got = L.gaussian_nll(_t(mean), _t(x), _t(log_sigma)).numpy()
    assert np.allclose(got, want, rtol=1e-12)
    # a narrow density on a good fit is a density above 1: a positive log-density
    assert L.gaussian_nll(_t(x), _t(x), math.log(0.01)).numpy().max() < 0


def test_gaussian_nll_gradcheck_and_errors(backend_name):
    rng = np.random.default_rng(42)
    mean = _t(rng.uniform(size=(3, 5)), requires_grad=True)
    x = _t(rng.uniform(size=(3, 5)))
    log_sigma = _t(rng.normal(scale=0.3, size=(5,)), requires_grad=True)
    assert mg.gradcheck(lambda m, s: L.gaussian_nll(m, x, s), (mean, log_sigma))
    assert mg.gradcheck(lambda m: L.gaussian_nll(m, x, -1.2), (mean,))
    # through the sigmoid mean of reconstruction_nll, against the closed-form gradient
    logits = _t(rng.normal(size=(3, 5)), requires_grad=True)
    assert mg.gradcheck(lambda lg, s: L.reconstruction_nll(lg, x, "gaussian", s),
                        (logits, log_sigma))
    L.reconstruction_nll(logits, x, "gaussian", log_sigma).sum().backward()
    p = 1 / (1 + np.exp(-logits.numpy()))
    s2 = np.exp(2 * log_sigma.numpy())
    assert np.allclose(logits.grad.numpy(), (p - x.numpy()) / s2 * p * (1 - p), rtol=1e-10)
    assert np.allclose(log_sigma.grad.numpy(),
                       (1 - (x.numpy() - p) ** 2 / s2).sum(0), rtol=1e-10)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        L.gaussian_nll(mg.zeros(2, 3), mg.zeros(2, 4))
    with pytest.raises(ValueError, match="log_sigma of shape"):
        L.gaussian_nll(mg.zeros(2, 3), mg.zeros(2, 3), mg.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="'bernoulli' or 'gaussian'"):
        L.reconstruction_nll(mg.zeros(2, 3), mg.zeros(2, 3), "poisson")


def test_vae_loss_with_a_gaussian_decoder(backend_name):
    rng = np.random.default_rng(43)
    logits, x = rng.normal(size=(6, 10)), rng.uniform(size=(6, 10))
    mu, logvar = rng.normal(size=(6, 3)), rng.normal(scale=0.5, size=(6, 3))
    mean = 1 / (1 + np.exp(-logits))
    recon = -stats.norm.logpdf(x, mean, 0.3).sum(1).mean()
    kl = (0.5 * (np.exp(logvar) + mu ** 2 - 1 - logvar).sum(1)).mean()
    out = L.vae_loss(_t(logits), _t(x), _t(mu), _t(logvar), beta=2.0, likelihood="gaussian",
                     log_sigma=math.log(0.3))
    assert np.isclose(out.recon.item(), recon, rtol=1e-12)
    assert np.isclose(out.loss.item(), recon + 2.0 * kl, rtol=1e-12)


# ----------------------------------------------------------------------------- ELBO
def test_vae_loss_terms_and_beta(backend_name):
    rng = np.random.default_rng(5)
    logits, x = rng.normal(size=(8, 10)), rng.uniform(size=(8, 10))
    mu, logvar = rng.normal(size=(8, 3)), rng.normal(scale=0.5, size=(8, 3))
    p = 1 / (1 + np.exp(-logits))
    recon = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1).mean()
    kl = (0.5 * (np.exp(logvar) + mu ** 2 - 1 - logvar).sum(1)).mean()
    for beta in (1.0, 4.0, 0.0):
        out = L.vae_loss(_t(logits), _t(x), _t(mu), _t(logvar), beta=beta)
        assert np.isclose(out.recon.item(), recon, rtol=1e-12)
        assert np.isclose(out.kl.item(), kl, rtol=1e-12)
        assert np.isclose(out.loss.item(), recon + beta * kl, rtol=1e-12)


def test_elbo_gradcheck_wrt_decoder_and_encoder_outputs(backend_name):
    """Gradients of the negative ELBO wrt the decoder logits and the encoder's
    (mu, logvar), through the reparameterised sample and a small linear decoder;
    the encoder outputs are non-contiguous views."""
    rng = np.random.default_rng(6)
    b, d, n = 5, 3, 7
    eps = _t(rng.standard_normal((b, d)))
    w = _t(rng.normal(size=(d, n)) * 0.5, requires_grad=True)
    x = _t(rng.uniform(size=(b, n)))
    mu = mg.from_numpy(rng.normal(size=(d, b))).transpose(0, 1).detach().requires_grad_(True)
    logvar = mg.from_numpy(rng.normal(scale=0.5, size=(b, 2 * d)))[:, ::2].detach() \
        .requires_grad_(True)
    logits = _t(rng.normal(size=(b, n)), requires_grad=True)

    def neg_elbo(mu, logvar, w):
        h = L.reparameterize(mu, logvar, eps)
        return L.vae_loss(h @ w, x, mu, logvar, beta=1.5).loss

    assert mg.gradcheck(neg_elbo, (mu, logvar, w))
    assert mg.gradcheck(lambda lg, mu, lv: L.vae_loss(lg, x, mu, lv).loss, (logits, mu, logvar))
    # per-example terms too (a non-scalar output with a random upstream gradient)
    assert mg.gradcheck(lambda lg: L.bernoulli_nll(lg, x), (logits,))
    assert mg.gradcheck(L.gaussian_kl, (mu, logvar))
    assert mg.gradgradcheck(L.gaussian_kl, (mu, logvar))


# ----------------------------------------------------------------------------- sampler
def test_reparameterize_has_the_right_mean_and_variance(backend_name):
    """sigma = exp(0.5 logvar): with logvar = log 4 the samples have variance 4 (the
    exp(logvar) bug would give 16)."""
    n = 20_000
    mu_h = np.array([[-1.0, 0.5, 3.0]])
    var_h = np.array([[4.0, 0.25, 1.0]])
    mu = mg.broadcast_to(_t(mu_h), (n, 3))
    logvar = mg.broadcast_to(_t(np.log(var_h)), (n, 3))
    h = L.reparameterize(mu, logvar).numpy()
    assert h.shape == (n, 3)
    se_mean = np.sqrt(var_h / n)
    se_var = var_h * np.sqrt(2 / (n - 1))
    assert np.all(np.abs(h.mean(0) - mu_h) < 5 * se_mean)
    assert np.all(np.abs(h.var(0, ddof=1) - var_h) < 5 * se_var)


def test_reparameterize_gradients_flow_to_mu_and_logvar(backend_name):
    rng = np.random.default_rng(7)
    eps_h = rng.standard_normal((4, 2))
    mu = _t(rng.normal(size=(4, 2)), requires_grad=True)
    logvar = _t(rng.normal(size=(4, 2)), requires_grad=True)
    L.reparameterize(mu, logvar, _t(eps_h)).sum().backward()
    assert np.allclose(mu.grad.numpy(), 1.0)
    assert np.allclose(logvar.grad.numpy(), 0.5 * np.exp(0.5 * logvar.numpy()) * eps_h)


# ----------------------------------------------------------------------------- IW bound
def _linear_gaussian(x_h, s2):
    """p(h) = N(0, I), p(x|h) = N(h, s2 I): log p(x) = log N(x; 0, (1 + s2) I), and the
    exact posterior is N(x / (1 + s2), s2 / (1 + s2) I)."""
    log_px = stats.norm.logpdf(x_h, 0, np.sqrt(1 + s2)).sum(-1)
    x = _t(x_h)

    def log_likelihood(h):
        z = x - h
        return (z * z).sum(axis=-1) * (-0.5 / s2) - 0.5 * x_h.shape[-1] * math.log(2 * math.pi * s2)
    return log_px, log_likelihood


def test_iw_estimate_is_exact_with_the_true_posterior(backend_name):
    rng = np.random.default_rng(8)
    s2 = 0.5
    x_h = rng.normal(scale=np.sqrt(1 + s2), size=(6, 2))
    log_px, log_likelihood = _linear_gaussian(x_h, s2)
    mu = _t(x_h / (1 + s2))
    logvar = _t(np.full_like(x_h, np.log(s2 / (1 + s2))))
    for k in (1, 7):
        est = L.iw_log_likelihood(log_likelihood, mu, logvar, k=k).numpy()
        assert est.shape == (6,)
        assert np.allclose(est, log_px, rtol=0, atol=1e-10)


def test_iw_estimate_beats_the_elbo_with_a_wrong_posterior(backend_name):
    """With an imperfect Q, E[IW_K] >= ELBO, increasing in K and below log p(x). The
    ELBO's gap is KL[Q || posterior] in closed form, a reference for the K = 1 case."""
    rng = np.random.default_rng(9)
    s2, b = 0.5, 400
    x_h = rng.normal(scale=np.sqrt(1 + s2), size=(b, 2))
    log_px, log_likelihood = _linear_gaussian(x_h, s2)
    post_mu, post_var = x_h / (1 + s2), s2 / (1 + s2)
    q_mu, q_var = post_mu + 0.4, np.full_like(x_h, 0.6 * post_var)
    mu, logvar = _t(q_mu), _t(np.log(q_var))
    gap = 0.5 * (q_var / post_var + (q_mu - post_mu) ** 2 / post_var - 1
                 - np.log(q_var / post_var)).sum(-1)
    elbo = log_px - gap
    iw1 = L.iw_log_likelihood(log_likelihood, mu, logvar, k=1).numpy()
    iw100 = L.iw_log_likelihood(log_likelihood, mu, logvar, k=100).numpy()
    # K = 1 is an unbiased estimate of the ELBO (standard error ~ 0.03 here)
    assert abs(iw1.mean() - elbo.mean()) < 0.1
    # K = 100 closes most of the gap (mean gap ~0.3 nats) and stays below log p(x)
    assert iw100.mean() > elbo.mean() + 0.6 * gap.mean()
    assert (iw100 > elbo).mean() > 0.9
    assert iw100.mean() <= log_px.mean() + 0.01


def test_iw_rejects_a_likelihood_of_the_wrong_shape(backend_name):
    mu = mg.zeros(3, 2)
    with pytest.raises(ValueError, match=r"\(K, batch\)"):
        L.iw_log_likelihood(lambda h: h.sum(axis=-1).sum(axis=0), mu, mu, k=4)
