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
# (mu, logvar = log sigma^2), and a decoder P(x|h) whose logits l come from the
# decoder network: Bernoulli(sigmoid(l)), or the slide's Gaussian
# N(x | sigmoid(l), sigma^2 I). Everything below returns values PER EXAMPLE (summed
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


def gaussian_nll(mean, x, log_sigma=0.0):
    """-log N(x | mean, sigma^2 I) for a Gaussian decoder, per example, in nats: the
    slide's P(X|h) = N(X | f(h), sigma^2 I) as a true density over the D pixels,

        sum_i (x_i - mean_i)^2 / (2 sigma_i^2) + log sigma_i + 0.5 log(2 pi)
        = ||x - mean||^2 / (2 sigma^2) + D/2 log(2 pi sigma^2)      (one sigma)

    ``log_sigma`` is a float (one fixed sigma) or a Tensor broadcasting against x
    (e.g. one learned sigma per pixel, shape (1, 28, 28)). The constant is kept, so
    the value is the log-density of a continuous x, comparable across sigma (not
    with a Bernoulli decoder's log-probability of discrete pixels)."""
    if mean.shape != x.shape:
        raise ValueError(f"gaussian_nll: mean of shape {mean.shape} and x of shape "
                         f"{x.shape} must have the same shape")
    z = x - mean
    if isinstance(log_sigma, (int, float)):
        per_pixel = z * z * (0.5 * _math.exp(-2.0 * log_sigma)) + \
            (log_sigma + 0.5 * _math.log(2 * _math.pi))
    else:
        per_pixel = z * z * (log_sigma * -2.0).exp() * 0.5 + log_sigma + \
            0.5 * _math.log(2 * _math.pi)
        if per_pixel.shape != x.shape:
            raise ValueError(f"gaussian_nll: log_sigma of shape {log_sigma.shape} must "
                             f"broadcast against x of shape {x.shape}")
    return _sum_event(per_pixel)


def reconstruction_nll(logits, x, likelihood="bernoulli", log_sigma=None):
    """-log P(x|h) per example (nats) from the decoder's output ``logits``:
    ``bernoulli``: Bernoulli(sigmoid(logits)), i.e. bernoulli_nll; ``gaussian``:
    N(x | sigmoid(logits), sigma^2 I), i.e. gaussian_nll with mean f(h) =
    sigmoid(logits) (pixels lie in [0, 1], so the mean does too) and ``log_sigma``."""
    if likelihood == "bernoulli":
        return bernoulli_nll(logits, x)
    if likelihood == "gaussian":
        if log_sigma is None:
            raise ValueError("reconstruction_nll: a gaussian likelihood needs log_sigma")
        return gaussian_nll(logits.sigmoid(), x, log_sigma)
    raise ValueError(f"reconstruction_nll: likelihood must be 'bernoulli' or 'gaussian', "
                     f"got {likelihood!r}")


class ELBO(_NamedTuple):
    """Batch means in nats per example: ``loss = recon + beta * kl`` (what training
    minimises), ``recon`` = E_Q[-log P(x|h)] (one sample), ``kl`` = KL[Q || N(0, I)].
    The negative ELBO itself is ``recon + kl`` (beta = 1)."""
    loss: object
    recon: object
    kl: object


def vae_loss(logits, x, mu, logvar, beta=1.0, likelihood="bernoulli", log_sigma=None):
    """The (beta-weighted) negative ELBO of a VAE, mean over the batch:

        -ELBO(x) = E_{h~Q(h|x)}[-log P(x|h)] + beta * KL[Q(h|x) || N(0, I)]

    estimated with the one reparameterised sample h that produced ``logits``;
    -log P(x|h) is reconstruction_nll (Bernoulli by default, or Gaussian)."""
    recon = reconstruction_nll(logits, x, likelihood, log_sigma).mean()
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
#
# A Siamese network applies ONE encoder F to every input of a pair (x1, x2) or a
# triplet (anchor A, positive P of A's class, negative N of another class) and
# learns an embedding in which distances mean "same class or not".
#
# Label convention (the lecture's and Keras'): Y = 1 for a pair of the SAME class,
# Y = 0 for different classes. Hadsell, Chopra & LeCun (2006) use the opposite
# (Y = 0 similar), so their formula has the two terms swapped.
#
# Stability: d/da ||a - b|| = (a - b) / ||a - b|| is 0/0 at a == b. The distances
# below are sqrt(||a - b||^2 + eps), whose gradient (a - b) / sqrt(. + eps) is 0
# there; wherever the formula allows, the squared distance is used directly.
DISTANCE_EPS = 1e-12


def _reduce(loss, reduction, name):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_embeddings(name, *ts):
    first = ts[0]
    for t in ts:
        if t.ndim != 2 or t.shape != first.shape:
            raise ValueError(f"{name}: embeddings must all have one shape (batch, dim), got "
                             + ", ".join(str(u.shape) for u in ts))


def squared_distance(a, b):
    """||a - b||^2 = sum_j (a_j - b_j)^2 over the last axis (exact, smooth everywhere)."""
    d = a - b
    return (d * d).sum(axis=-1)


def euclidean_distance(a, b, eps=DISTANCE_EPS):
    """D = ||a - b|| computed as sqrt(||a - b||^2 + eps) over the last axis, so
    that the gradient at a == b is 0 instead of NaN (0/0)."""
    return (squared_distance(a, b) + eps).sqrt()


def pairwise_squared_distances(x, y=None):
    """All squared distances between the rows of x (N, d) and y (M, d) (y = x when
    None), as an (N, M) matrix, without a loop over pairs:

        ||x_i - y_j||^2 = ||x_i||^2 + ||y_j||^2 - 2 x_i . y_j

    clamped at 0 (the expansion can round below 0 for near-equal rows). Memory is
    O(N M), not the O(N M d) of broadcasting the differences."""
    y_is_x = y is None
    y = x if y_is_x else y
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"pairwise_squared_distances: x {x.shape} and y {y.shape} must be "
                         f"(N, d) and (M, d)")
    xx = (x * x).sum(axis=1, keepdims=True)                   # (N, 1)
    yy = xx if y_is_x else (y * y).sum(axis=1, keepdims=True)
    d2 = xx + yy.reshape(1, -1) - (x @ y.transpose()) * 2.0
    return d2.clamp(min=0.0)


def pairwise_distances(x, y=None, eps=DISTANCE_EPS):
    """All Euclidean distances sqrt(||x_i - y_j||^2 + eps), (N, M); see
    pairwise_squared_distances."""
    return (pairwise_squared_distances(x, y) + eps).sqrt()


def contrastive_loss(x1, x2, y, margin=1.0, reduction="mean", eps=DISTANCE_EPS):
    """The lecture's contrastive loss for embedded pairs F(x1), F(x2) of shape (B, d):

        L = Y * D^2 + (1 - Y) * max(margin - D, 0)^2,   D = ||F(x1) - F(x2)||

    with Y = 1 for a SAME-class pair (pulled together) and Y = 0 for a
    different-class pair (pushed apart until it is at least ``margin`` away).
    This is Keras' convention; Hadsell et al. (2006) write Y = 0 for similar.
    ``y`` is a (B,) tensor of 0/1 (any dtype); ``reduction`` 'mean' | 'sum' | 'none'.
    D^2 is the exact squared distance; only the hinge term uses the eps-stabilised
    D, so the gradient is finite at D = 0."""
    _check_embeddings("contrastive_loss", x1, x2)
    if y.shape != (x1.shape[0],):
        raise ValueError(f"contrastive_loss: y must have shape ({x1.shape[0]},) for embeddings "
                         f"of shape {x1.shape}, got {y.shape}")
    if margin <= 0:
        raise ValueError(f"contrastive_loss: margin must be > 0, got {margin}")
    y = y.detach().astype(x1.dtype.name)
    d2 = squared_distance(x1, x2)
    hinge = (margin - (d2 + eps).sqrt()).clamp(min=0.0)
    loss = y * d2 + (1.0 - y) * hinge * hinge
    return _reduce(loss, reduction, "contrastive_loss")


# FaceNet's margin (Schroff et al. 2015), chosen there for L2-normalised embeddings,
# whose squared distances lie in [0, 4]; the default of triplet_loss, of
# batch_triplet_loss and of ``python -m models.siamese --alpha``. Without the
# normalisation the embedding's scale is free, and any margin only sets that scale.
TRIPLET_ALPHA = 0.2


def triplet_loss(anchor, positive, negative, alpha=TRIPLET_ALPHA, reduction="mean"):
    """The lecture's (FaceNet's) triplet loss for embedded triplets, each (B, d):

        L = max(||F(A) - F(P)||^2 - ||F(A) - F(N)||^2 + alpha, 0)

    zero (with zero gradient) once the negative is farther than the positive by
    at least the margin alpha in squared distance. Squared distances only: no sqrt.
    alpha defaults to FaceNet's 0.2 (TRIPLET_ALPHA), meant for unit-length
    embeddings (F.normalize)."""
    _check_embeddings("triplet_loss", anchor, positive, negative)
    if alpha < 0:
        raise ValueError(f"triplet_loss: alpha must be >= 0, got {alpha}")
    loss = (squared_distance(anchor, positive) - squared_distance(anchor, negative)
            + alpha).clamp(min=0.0)
    return _reduce(loss, reduction, "triplet_loss")


# -- online triplet mining inside a batch (FaceNet 2015; Hermans et al. 2017)
# The miners only CHOOSE indices: they see the distances as constants (no graph)
# and return index tensors (a, p, n); the loss is then triplet_loss(e[a], e[p], e[n])
# on the embeddings, whose gradient flows through the indexing.
def same_class_masks(labels):
    """For int labels (B,): boolean (B, B) backend arrays ``positive`` (same class,
    not the same example) and ``negative`` (different class)."""
    xp = labels._backend.xp
    lab = labels.data
    same = lab[:, None] == lab[None, :]
    n = lab.shape[0]
    not_self = ~xp.astype(labels._backend.eye(n, dtype="int64"), xp.bool)
    return same & not_self, ~same          # positive mask (no self-pairs), negative mask


def _index_tensor(arr, be):
    from minigrad.tensor import Tensor
    return Tensor._make(be.xp.astype(arr, be.dtype("int64")), be, False, None)


def _mining_inputs(embeddings, labels, name):
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"{name}: embeddings must be (B, d) and labels (B,), got "
                         f"{embeddings.shape} and {labels.shape}")
    if labels._backend is not embeddings._backend:
        raise ValueError(f"{name}: labels are on backend {labels.backend!r}, embeddings on "
                         f"{embeddings.backend!r}")
    d2 = pairwise_squared_distances(embeddings.detach()).data
    return (d2,) + same_class_masks(labels)


def mine_batch_hard(embeddings, labels):
    """Batch-hard mining (Hermans et al. 2017): for every anchor a with at least one
    positive and one negative in the batch, the hardest positive
    p = argmax_{y_p = y_a, p != a} ||e_a - e_p||^2 and the hardest negative
    n = argmin_{y_n != y_a} ||e_a - e_n||^2. Returns index tensors (a, p, n)."""
    d2, pos, neg = _mining_inputs(embeddings, labels, "mine_batch_hard")
    be = embeddings._backend
    xp = be.xp
    inf = float("inf")
    p = xp.argmax(xp.where(pos, d2, -inf), axis=1)
    n = xp.argmin(xp.where(neg, d2, inf), axis=1)
    (a,) = xp.nonzero(xp.any(pos, axis=1) & xp.any(neg, axis=1))
    return (_index_tensor(a, be), _index_tensor(xp.take(p, a), be),
            _index_tensor(xp.take(n, a), be))


def mine_semihard(embeddings, labels):
    """Semi-hard mining (FaceNet, Schroff et al. 2015): EVERY anchor-positive pair
    (a, p) of the batch, with the closest negative that is farther than the
    positive,

        n = argmin { ||e_a - e_n||^2 : y_n != y_a, ||e_a - e_n||^2 > ||e_a - e_p||^2 },

    which is FaceNet's semi-hard negative whenever one lies inside the margin
    (d_ap < d_an < d_ap + alpha). When no negative is farther than the positive,
    the farthest negative (the least hard of the hard ones; TF-Addons' fallback).
    Anchors without a negative are skipped. Returns index tensors (a, p, n)."""
    d2, pos, neg = _mining_inputs(embeddings, labels, "mine_semihard")
    be = embeddings._backend
    xp = be.xp
    inf = float("inf")
    a, p = xp.nonzero(pos & xp.any(neg, axis=1)[:, None])
    d_ap = xp.take(xp.reshape(d2, (-1,)), a * d2.shape[1] + p)[:, None]   # (P, 1)
    d_an = xp.take(d2, a, axis=0)                                         # (P, B)
    neg_a = xp.take(neg, a, axis=0)
    farther = neg_a & (d_an > d_ap)
    closest_farther = xp.argmin(xp.where(farther, d_an, inf), axis=1)
    farthest = xp.argmax(xp.where(neg_a, d_an, -inf), axis=1)
    n = xp.where(xp.any(farther, axis=1), closest_farther, farthest)
    return _index_tensor(a, be), _index_tensor(p, be), _index_tensor(n, be)


def mine_random(embeddings, labels):
    """Random triplets: for every anchor with a positive and a negative in the batch,
    one positive and one negative drawn uniformly from the backend's seeded
    generator (the embeddings are not looked at). Returns (a, p, n)."""
    _, pos, neg = _mining_inputs(embeddings, labels, "mine_random")
    be = embeddings._backend
    xp = be.xp
    p, n = random_partners(pos, be), random_partners(neg, be)
    (a,) = xp.nonzero(xp.any(pos, axis=1) & xp.any(neg, axis=1))
    return (_index_tensor(a, be), _index_tensor(xp.take(p, a), be),
            _index_tensor(xp.take(n, a), be))


def random_partners(mask, be):
    """For every row of a boolean (B, B) backend array, the column of one True
    entry drawn uniformly (argmax of uniform noise on the True entries; rows with
    no True entry get an arbitrary column: filter them with any(mask, axis=1))."""
    xp = be.xp
    u = be.uniform(mask.shape, dtype="float32")
    return xp.argmax(xp.where(mask, u, -1.0), axis=1)


def balanced_pairs(labels):
    """In-batch balanced pairs for the contrastive loss: every anchor i that has
    another example of its class and one of another class in the batch gets one
    random same-class partner (Y = 1) and one random other-class partner (Y = 0),
    drawn with the backend's seeded generator. Returns index tensors (first,
    second) and the float 0/1 labels Y, with as many positive as negative pairs."""
    pos, neg = same_class_masks(labels)
    be = labels._backend
    xp = be.xp
    pos_partner, neg_partner = random_partners(pos, be), random_partners(neg, be)
    (anchor,) = xp.nonzero(xp.any(pos, axis=1) & xp.any(neg, axis=1))
    first = xp.concat([anchor, anchor])
    second = xp.concat([xp.take(pos_partner, anchor), xp.take(neg_partner, anchor)])
    n = anchor.shape[0]
    same = xp.concat([be.ones((n,), "float32"), be.zeros((n,), "float32")])
    return (mg.Tensor(first, backend=be), mg.Tensor(second, backend=be),
            mg.Tensor(same, backend=be))


MINERS = {"hard": mine_batch_hard, "semihard": mine_semihard, "random": mine_random}


def batch_triplet_loss(embeddings, labels, alpha=TRIPLET_ALPHA, mining="semihard",
                       reduction="mean"):
    """triplet_loss on the triplets that ``mining`` ('hard' | 'semihard' | 'random')
    picks inside the batch. Returns (loss, number of triplets)."""
    if mining not in MINERS:
        raise ValueError(f"batch_triplet_loss: mining must be one of {sorted(MINERS)}, "
                         f"got {mining!r}")
    a, p, n = MINERS[mining](embeddings, labels)
    if a.shape[0] == 0:
        raise ValueError("batch_triplet_loss: the batch has no anchor with both a positive "
                         "and a negative (needs two classes, one with two examples)")
    return triplet_loss(embeddings[a], embeddings[p], embeddings[n], alpha, reduction), a.shape[0]



# ============================================================================ GANs
# (discriminator / generator losses, gradient penalty)
#
# The lecture's GAN: a discriminator D(x) = sigmoid(l(x)) (the network outputs
# the LOGIT l) and a generator G(z). With BCE(l, t) = -t log sigmoid(l) - (1 - t) log(1 - sigmoid(l))
# the two losses of Goodfellow et al. (2014) are
#
#     L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))] = E BCE(l_real, 1) + E BCE(l_fake, 0)
#     L_G = -E_z[log D(G(z))] = E BCE(l_fake, 1)      (non-saturating generator loss)
#
# computed from logits with binary_cross_entropy_with_logits, i.e. softplus(-l)
# and softplus(l): log(sigmoid(l)) is never formed, so a saturated D (|l| ~ 100)
# gives finite losses and gradients. The minimax generator loss E_z[log(1 - D(G(z)))]
# (whose gradient vanishes when D confidently rejects fakes, why the
# non-saturating one is used) is there for comparison.
#
# WGAN-GP (Gulrajani et al. 2017): a critic f with unbounded scores,
#
#     L_f = E_z[f(G(z))] - E_x[f(x)] + lambda * E_xhat[(||grad_xhat f(xhat)||_2 - 1)^2]
#     L_G = -E_z[f(G(z))]
#
# with xhat = eps x + (1 - eps) G(z), eps ~ U(0, 1) per example. The penalty
# differentiates through the critic's input gradient: mg.grad(..., create_graph=True)
# and double backward through every layer of f (conv included).
#
# R1 (Mescheder et al. 2018) regularises the BCE discriminator the same way, on
# real images only and towards a zero gradient: L_D + gamma/2 E_x[||grad_x l(x)||^2].
import minigrad.functional as _F


def gan_bce(logits, target_value):
    """Mean BCE of discriminator logits against one target for the whole batch
    (1.0: "real", 0.0: "fake"), from logits."""
    target = _gan_full_like(logits, target_value)
    return _F.binary_cross_entropy_with_logits(logits, target, reduction="mean")


def _gan_full_like(t, value):
    return mg.full(t.shape, float(value), dtype=t.dtype.name, backend=t._backend.name)


def gan_discriminator_loss(real_logits, fake_logits):
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))] = mean BCE(real, 1) + mean BCE(fake, 0),
    from logits (stable for any logit). Returns a scalar Tensor."""
    return gan_bce(real_logits, 1.0) + gan_bce(fake_logits, 0.0)


def gan_generator_loss(fake_logits, saturating=False):
    """Non-saturating L_G = -E[log D(G(z))] = mean BCE(fake, 1) (default), or with
    ``saturating=True`` the minimax form E[log(1 - D(G(z)))] = -mean BCE(fake, 0)."""
    if saturating:
        return -gan_bce(fake_logits, 0.0)
    return gan_bce(fake_logits, 1.0)


def wgan_critic_loss(real_scores, fake_scores):
    """Wasserstein critic loss E[f(G(z))] - E[f(x)] (add the gradient penalty)."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores):
    """Wasserstein generator loss -E[f(G(z))]."""
    return -fake_scores.mean()


def gradient_penalty(critic, real, fake, eps=None, norm_eps=1e-12):
    """E_xhat[(||grad_xhat critic(xhat)||_2 - 1)^2] on xhat = eps real + (1 - eps) fake.

    ``eps`` (shape (B, 1, ..., 1), U(0, 1) per example by default) is an input so
    tests can fix it. The gradient is taken with create_graph=True, so the penalty
    can be back-propagated into the critic's parameters (and into real/fake if
    they require grad). ``norm_eps`` inside the square root keeps the norm's
    gradient finite where the input gradient vanishes (d sqrt(u)/du at u = 0)."""
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real of shape {real.shape} and fake of shape "
                         f"{fake.shape} must have the same shape")
    if eps is None:
        eps = mg.rand(real.shape[0], *([1] * (real.ndim - 1)), dtype=real.dtype.name,
                      backend=real._backend.name)
    x_hat = eps * real + (1.0 - eps) * fake
    if not x_hat.requires_grad:
        x_hat = x_hat.detach().requires_grad_(True)
    scores = critic(x_hat)
    (g,) = mg.grad(scores.sum(), x_hat, create_graph=True)
    norms = ((g * g).reshape(g.shape[0], -1).sum(axis=1) + norm_eps).sqrt()
    return ((norms - 1.0) ** 2).mean()


def r1_penalty(discriminator, real):
    """R1 (Mescheder et al. 2018): E_x[||grad_x l(x)||^2] of D's logits l on real images.

    Returns (l(real), the penalty): D's one forward serves both its BCE term and the
    penalty. The input gradient is taken with create_graph=True, as in
    gradient_penalty, so that the penalty trains D's parameters (double backward
    through D). D is pushed to be flat where the data are, which damps the
    oscillation of a GAN near its equilibrium."""
    real = real.detach().requires_grad_(True)
    logits = discriminator(real)
    (g,) = mg.grad(logits.sum(), real, create_graph=True)
    return logits, (g * g).reshape(g.shape[0], -1).sum(axis=1).mean()
