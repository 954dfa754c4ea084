"""The lecture's losses, each a few lines of minigrad ops (their gradients come
from the engine; tests/ check them against direct NumPy evaluations and with
gradcheck).
"""
from __future__ import annotations

import minigrad as mg

# ============================================================================ VAE family
# (ELBO, Gaussian KL, reconstruction terms, reparameterisation)
#
# The lecture's VAE maximises the evidence lower bound (ELBO)
#
#     log p(x) >= E_{h~Q(h|x)}[log P(x|h)] - KL[Q(h|x) || N(0, I)]
#
# with a Gaussian encoder Q(h|x) = N(mu(x), diag sigma^2(x)) that outputs
# (mu, logvar = log sigma^2), and a Bernoulli decoder P(x|h) whose logits come
# from the decoder network. Everything below returns values PER EXAMPLE (summed
# over pixels / latent units, in nats) unless it says otherwise; training uses
# the mean over the batch.
import math as _math
from typing import NamedTuple as _NamedTuple


def _sum_event(t):
    """Sum over every axis but the first (batch) one: a per-example total."""
    return t.reshape(t.shape[0], -1).sum(axis=1)


def reparameterize(mu, logvar, eps=None):
    """h = mu + sigma * eps with sigma = exp(0.5 * logvar), eps ~ N(0, I).

    The noise is an input, not a node: gradients flow to mu and logvar (the
    reparameterisation trick). NOT exp(logvar), which is the variance (the bug
    of DeZero's VAE example). ``eps`` (any shape that broadcasts against mu,
    e.g. (K, B, d) for K samples per example) defaults to fresh N(0, I) noise
    from the backend's generator."""
    if eps is None:
        eps = mg.randn(*mu.shape, dtype=mu.dtype, backend=mu._backend.name)
    return mu + (logvar * 0.5).exp() * eps


def gaussian_kl(mu, logvar):
    """KL[N(mu, diag sigma^2) || N(0, I)] = 0.5 * sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2),
    summed over the last axis (the latent units); shape mu.shape[:-1]."""
    if mu.shape != logvar.shape:
        raise ValueError(f"gaussian_kl: mu of shape {mu.shape} and logvar of shape "
                         f"{logvar.shape} must have the same shape")
    return (logvar.exp() + mu * mu - 1.0 - logvar).sum(axis=-1) * 0.5


def gaussian_log_prob(h, mu=None, logvar=None):
    """log N(h; mu, diag exp(logvar)) summed over the last axis; the standard normal
    N(0, I) when mu and logvar are None:

        -0.5 * sum_j ((h_j - mu_j)^2 / sigma_j^2 + log sigma_j^2 + log 2 pi)"""
    d = h.shape[-1]
    if mu is None:
        sq = (h * h).sum(axis=-1)
        return sq * -0.5 - 0.5 * d * _math.log(2 * _math.pi)
    z = h - mu
    return ((z * z) * (-logvar).exp() + logvar).sum(axis=-1) * -0.5 \
        - 0.5 * d * _math.log(2 * _math.pi)


def bernoulli_nll(logits, x):
    """-log P(x|h) for a Bernoulli decoder with the given logits, per example:
    the binary cross-entropy with logits summed over pixels (nats/image),
    sum_i softplus(l_i) - x_i l_i, exact for any logit (no sigmoid is formed).
    x are pixel intensities in [0, 1] used as Bernoulli targets, as in the PyTorch
    example, so the numbers are comparable with it."""
    if logits.shape != x.shape:
        raise ValueError(f"bernoulli_nll: logits of shape {logits.shape} and x of shape "
                         f"{x.shape} must have the same shape")
    return _sum_event(mg.functional.binary_cross_entropy_with_logits(logits, x, reduction="none"))


class ELBO(_NamedTuple):
    """Batch means in nats per example: ``loss = recon + beta * kl`` (what training
    minimises), ``recon`` = E_Q[-log P(x|h)] (one sample), ``kl`` = KL[Q || N(0, I)].
    The negative ELBO itself is ``recon + kl`` (beta = 1)."""
    loss: object
    recon: object
    kl: object


def vae_loss(logits, x, mu, logvar, beta=1.0):
    """The (beta-weighted) negative ELBO of a Bernoulli-decoder VAE, mean over the batch:

        -ELBO(x) = E_{h~Q(h|x)}[-log P(x|h)] + beta * KL[Q(h|x) || N(0, I)]

    estimated with the one reparameterised sample h that produced ``logits``."""
    recon = bernoulli_nll(logits, x).mean()
    kl = gaussian_kl(mu, logvar).mean()
    loss = recon + kl * beta if beta != 1.0 else recon + kl
    return ELBO(loss, recon, kl)


def iw_log_likelihood(log_likelihood, mu, logvar, k=100, eps=None):
    """Importance-weighted estimate of log p(x) (Burda et al. 2015; the number the
    VAE paper reports), per example, with K samples h_k ~ Q(h|x):

        log p(x) ~ logsumexp_k [log P(x|h_k) + log p(h_k) - log Q(h_k|x)] - log K

    It is a lower bound in expectation that tightens as K grows (K = 1 is the ELBO)
    and is exact when Q is the true posterior. ``log_likelihood(h)`` maps samples of
    shape (K, B, d) to log P(x|h) of shape (K, B); ``mu``, ``logvar`` are (B, d)."""
    if eps is None:
        eps = mg.randn(k, *mu.shape, dtype=mu.dtype, backend=mu._backend.name)
    k = eps.shape[0]
    h = reparameterize(mu, logvar, eps)                       # (K, B, d)
    log_px_h = log_likelihood(h)
    if log_px_h.shape != h.shape[:-1]:
        raise ValueError(f"iw_log_likelihood: log_likelihood returned shape {log_px_h.shape}, "
                         f"expected {h.shape[:-1]} (K, batch)")
    log_w = log_px_h + gaussian_log_prob(h) - gaussian_log_prob(h, mu, logvar)
    return mg.logsumexp(log_w, axis=0) - _math.log(k)



# ============================================================================ metric learning
# (contrastive and triplet losses, pairwise distances)


# ============================================================================ GANs
# (discriminator / generator losses, gradient penalty)
