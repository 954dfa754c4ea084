"""Chapter 6 (the lecture's models): exercises 6.1 `kl_matrix`, 6.2 `elbo_identity`,
6.3 `margin`, 6.4 `saturating` and 6.5 `entropy_floor`."""
import math

import numpy as np

import minigrad as mg
from minigrad import optim
from minigrad.data import load_dataset
from models import losses as L


def _trapezoid(y, x, axis=-1):
    return np.trapezoid(y, x, axis=axis)


# ----------------------------------------------------------------------------- 6.1 kl_matrix
def kl_matrix(mu, sigma):
    """The slide's KL[N(mu, Sigma) || N(0, I)] = 0.5 (tr Sigma + mu^T mu - k - log det Sigma)
    for a full covariance Sigma (k x k), on NumPy arrays."""
    k = mu.shape[0]
    return 0.5 * (np.trace(sigma) + mu @ mu - k - np.linalg.slogdet(sigma)[1])


def _normal_pdf(h, mean, var):
    return np.exp(-(h - mean) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)


def test_kl_matrix_diagonal_is_gaussian_kl():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal(5), rng.standard_normal(5)
    want = L.gaussian_kl(mg.tensor(mu[None]), mg.tensor(logvar[None])).item()
    assert abs(kl_matrix(mu, np.diag(np.exp(logvar))) - want) < 1e-12


def test_kl_matrix_against_numerical_integration():
    """KL = integral q log(q / p): on a grid, in 1-D and for a correlated 2-D Gaussian."""
    h = np.linspace(-12, 12, 4001)
    for m, v in [(0.0, 1.0), (1.5, 0.3), (-0.7, 2.5)]:
        q = _normal_pdf(h, m, v)
        numeric = _trapezoid(q * (np.log(q) - np.log(_normal_pdf(h, 0.0, 1.0))), h)
        assert abs(numeric - kl_matrix(np.array([m]), np.array([[v]]))) < 1e-8, (m, v)
    mu, sigma = np.array([0.5, -1.0]), np.array([[1.2, 0.6], [0.6, 0.8]])
    g = np.linspace(-9, 9, 801)
    H = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1) - mu
    prec = np.linalg.inv(sigma)
    log_q = -0.5 * np.einsum("...i,ij,...j->...", H, prec, H) - 0.5 * np.log(
        (2 * np.pi) ** 2 * np.linalg.det(sigma))
    X = H + mu
    log_p = -0.5 * (X ** 2).sum(-1) - np.log(2 * np.pi)
    numeric = _trapezoid(_trapezoid(np.exp(log_q) * (log_q - log_p), g), g)
    assert abs(numeric - kl_matrix(mu, sigma)) < 1e-6


# ----------------------------------------------------------------------------- 6.2 elbo_identity
def elbo_terms(x, m, v, a=2.0, s2=0.5):
    """A model small enough for every term in closed form: h ~ N(0, 1), x | h ~ N(a h, s2),
    so p(x) = N(0, a^2 + s2) and P(h|x) = N(mp, vp) with vp = s2 / (s2 + a^2), mp = vp a x / s2.
    For Q = N(m, v): (log p(x), KL[Q || P(h|x)], E_Q log P(x|h), KL[Q || P(h)])."""
    log_px = -0.5 * (math.log(2 * math.pi * (a * a + s2)) + x * x / (a * a + s2))
    vp = s2 / (s2 + a * a)
    mp = vp * a * x / s2
    kl_post = 0.5 * (v / vp + (m - mp) ** 2 / vp - 1 + math.log(vp / v))
    e_log_lik = -0.5 * math.log(2 * math.pi * s2) - ((x - a * m) ** 2 + a * a * v) / (2 * s2)
    kl_prior = L.gaussian_kl(mg.tensor([[m]], dtype="float64"),
                             mg.tensor([[math.log(v)]], dtype="float64")).item()
    return log_px, kl_post, e_log_lik, kl_prior


def test_elbo_identity_holds_for_every_q():
    for x, m, v in [(1.3, 0.0, 1.0), (1.3, 0.5, 0.2), (-2.0, -0.8, 0.05), (0.4, 3.0, 4.0)]:
        log_px, kl_post, e_log_lik, kl_prior = elbo_terms(x, m, v)
        assert abs((log_px - kl_post) - (e_log_lik - kl_prior)) < 1e-12
        assert e_log_lik - kl_prior <= log_px                # a lower bound: KL >= 0


def test_elbo_identity_tight_at_the_true_posterior():
    x, a, s2 = 1.3, 2.0, 0.5
    vp = s2 / (s2 + a * a)
    log_px, kl_post, e_log_lik, kl_prior = elbo_terms(x, vp * a * x / s2, vp, a, s2)
    assert abs(kl_post) < 1e-12 and abs(e_log_lik - kl_prior - log_px) < 1e-12


def test_elbo_identity_expectation_by_quadrature():
    """E_Q log P(x|h) in closed form = its integral on a grid (the formula is not assumed)."""
    x, m, v, a, s2 = 0.9, 0.3, 0.4, 2.0, 0.5
    h = np.linspace(m - 12 * math.sqrt(v), m + 12 * math.sqrt(v), 20001)
    integrand = _normal_pdf(h, m, v) * np.log(_normal_pdf(x, a * h, s2))
    assert abs(_trapezoid(integrand, h) - elbo_terms(x, m, v, a, s2)[2]) < 1e-8


# ----------------------------------------------------------------------------- 6.3 margin
def train_linear_embedding(w0, x1, x2, same, margin, steps=30, lr=0.05):
    """A linear encoder F(x) = x W^T (no bias) trained by SGD on the contrastive loss."""
    w = mg.tensor(w0, dtype="float64", requires_grad=True)
    opt = optim.SGD([w], lr=lr)
    for _ in range(steps):
        loss = L.contrastive_loss(x1 @ w.transpose(), x2 @ w.transpose(), same, margin=margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.numpy()


def test_margin_doubled_doubles_the_embedding():
    """Prediction: L(2F; 2m) = 4 L(F; m), so its gradient in W' = 2W is 2 dL/dW and a plain
    SGD step keeps W' = 2W: doubling the margin (and the start) doubles the whole embedding."""
    rng = np.random.default_rng(0)
    x1, x2 = mg.tensor(rng.standard_normal((32, 4))), mg.tensor(rng.standard_normal((32, 4)))
    same = mg.tensor((np.arange(32) % 2).astype(np.float64))
    w0 = rng.standard_normal((2, 4)) * 0.3
    w1 = train_linear_embedding(w0, x1, x2, same, margin=1.0)
    w2 = train_linear_embedding(2 * w0, x1, x2, same, margin=2.0)
    assert not np.allclose(w1, w0)                           # it did train
    assert np.allclose(w2, 2 * w1, rtol=1e-9, atol=1e-9)


def test_margin_pairs_beyond_it_are_not_pushed():
    a = mg.zeros(1, 2, dtype="float64")
    for dist, pushed in [(0.5, True), (0.99, True), (1.01, False), (3.0, False)]:
        b = mg.tensor([[dist, 0.0]], dtype="float64", requires_grad=True)
        L.contrastive_loss(a, b, mg.tensor([0]), margin=1.0).backward()
        assert (abs(b.grad.numpy()[0, 0]) > 0) == pushed, dist


# ----------------------------------------------------------------------------- 6.4 saturating
def generator_logit_grads(logit):
    """d L_G / d l for D's logit l on a fake: non-saturating -log sigmoid(l) gives
    sigmoid(l) - 1 (about -1 when D rejects the fake); the minimax log(1 - sigmoid(l))
    gives -sigmoid(l) (about 0 there: the saturating loss stops teaching G)."""
    s = 1.0 / (1.0 + math.exp(-logit))
    return s - 1.0, -s


def test_saturating_vs_non_saturating():
    for logit in (-10.0, -2.0, 0.0, 3.0):
        want_ns, want_sat = generator_logit_grads(logit)
        for saturating, want in ((False, want_ns), (True, want_sat)):
            l = mg.tensor([[logit]], dtype="float64", requires_grad=True)
            L.gan_generator_loss(l, saturating=saturating).backward()
            assert abs(l.grad.item() - want) < 1e-12, (logit, saturating)
    ns, sat = generator_logit_grads(-10.0)
    assert abs(ns) > 0.99 and abs(sat) < 1e-4


# ----------------------------------------------------------------------------- 6.5 entropy_floor
def entropy_floor(x):
    """The BCE a perfect Bernoulli decoder pays on grey-level targets x in [0, 1]: the sum
    of the binary entropies H(x_i) = -x_i log x_i - (1 - x_i) log(1 - x_i) (0 log 0 = 0),
    per image; zero only when every pixel is exactly 0 or 1."""
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(x > 0, x * np.log(x), 0.0) - np.where(x < 1, (1 - x) * np.log(1 - x), 0.0)
    return h.sum(axis=1)


def test_entropy_floor_is_what_the_best_logits_pay():
    x = load_dataset("mnist-10k").test_x[:100].astype(np.float64)
    best = np.log(np.clip(x, 1e-15, None)) - np.log(np.clip(1 - x, 1e-15, None))   # logit(x)
    paid = L.bernoulli_nll(mg.tensor(best), mg.tensor(x)).numpy()
    floor = entropy_floor(x)
    assert np.allclose(paid, floor, rtol=0, atol=1e-9)
    assert floor.min() > 1.0                                   # grey edges: never 0 nats
    worse = L.bernoulli_nll(mg.tensor(best + 0.1), mg.tensor(x)).numpy()
    assert np.all(worse > paid)


def test_entropy_floor_vanishes_for_binarised_targets():
    x = (load_dataset("mnist-10k").test_x[:20] > 0.5).astype(np.float64)
    assert np.all(entropy_floor(x) == 0.0)
