"""Variational autoencoder (Kingma & Welling 2014): ``python -m models.vae``.

A generative model p(x) = integral P(x|h) p(h) dh with prior p(h) = N(0, I) and a
decoder P(x|h) = Bernoulli(sigmoid(f(h))) over the 784 pixels. The encoder gives
an approximate posterior Q(h|x) = N(mu(x), diag sigma^2(x)) (it outputs mu and
logvar = log sigma^2), and training maximises the evidence lower bound

    log p(x) >= ELBO(x) = E_{h~Q(h|x)}[log P(x|h)] - KL[Q(h|x) || N(0, I)]

    KL = 0.5 * sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2)      (closed form)

The expectation is estimated with one sample drawn by the reparameterisation trick,
h = mu + sigma * eps with eps ~ N(0, I), so gradients reach the encoder through h.
We minimise  -ELBO = recon + beta * KL  (nats per image; beta = 1 is the VAE,
--beta > 1 a beta-VAE). After training, the test log-likelihood is estimated with
K importance samples (Burda et al. 2016), a tighter bound than the ELBO:

    log p(x) ~ logsumexp_k [log P(x|h_k) + log p(h_k) - log Q(h_k|x)] - log K

and the prior samples are scored with the classifier-FID and inception score of
models/metrics.py, next to real images' floor (the lecture's comparison with GANs).

--arch mlp (default) is the PyTorch example's 784-400-20 model; --arch conv uses a
convolutional encoder and a transposed-convolution decoder (models/autoencoder.py).
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np  # host-side: figure noise and drawing (arrays from Tensor.numpy())

import minigrad as mg
from minigrad import nn, optim
from models.autoencoder import (N_PIXELS, add_architecture_arguments, build_decoder,
                                build_encoder, check_architecture_arguments, draw_loss_curves,
                                draw_manifold, draw_rows, encode_all)
from models.cli import Experiment, run_cli
from models.losses import bernoulli_nll, iw_log_likelihood, reparameterize, vae_loss
from models.metrics import (SampleQuality, add_sample_quality_argument,
                            check_sample_quality_argument, final_sample_quality,
                            report_sample_quality)


# ----------------------------------------------------------------------------- the model
class VAEModel(nn.Module):
    """Encoder x -> (mu, logvar) (one network with 2d outputs, split in two) and
    decoder h -> pixel logits (B, 1, 28, 28)."""

    def __init__(self, arch="mlp", latent_dim=20, hidden=400):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = build_encoder(arch, 2 * latent_dim, hidden)
        self.decoder = build_decoder(arch, latent_dim, hidden)

    def encode(self, x):
        out = self.encoder(x)
        d = self.latent_dim
        return out[:, :d], out[:, d:]                 # mu, logvar

    def decode(self, h):
        return self.decoder(h)

    def forward(self, x, eps=None):
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, eps)), mu, logvar


# ----------------------------------------------------------------------------- evaluation
def evaluate_elbo(run, forward, batch_size=500):
    """Test-set negative ELBO (beta = 1) in nats per image, split into the expected
    reconstruction term and the KL term. ``forward(x, y) -> (logits, mu, logvar)``."""
    recon = kl = 0.0
    n = 0
    with mg.no_grad():
        for x, y in run.loader("test", batch_size=batch_size, shuffle=False):
            logits, mu, logvar = forward(x, y)
            elbo = vae_loss(logits, x, mu, logvar)
            b = x.shape[0]
            recon += elbo.recon.item() * b
            kl += elbo.kl.item() * b
            n += b
    return {"test_loss": (recon + kl) / n, "test_recon": recon / n, "test_kl": kl / n}


def evaluate_iw_log_likelihood(run, encode, decode, k, rows=10_000):
    """Mean over the test set of the K-sample importance-weighted estimate of log p(x)
    (nats per image). ``encode(x, y) -> (mu, logvar)``; ``decode(h, y) -> logits`` for
    h of shape (K*B, d) and y the labels repeated K times (B-blocks). Batches hold
    about ``rows`` decoder rows (K * batch) to bound memory."""
    total, n = 0.0, 0
    batch = max(1, rows // k)
    with mg.no_grad():
        for x, y in run.loader("test", batch_size=batch, shuffle=False):
            b = x.shape[0]
            mu, logvar = encode(x, y)
            x_rep = mg.broadcast_to(x.reshape(1, b, N_PIXELS), (k, b, N_PIXELS)) \
                .reshape(k * b, N_PIXELS)
            y_rep = y[run.tensor(np.tile(np.arange(b), k))]

            def log_likelihood(h):  # (K, B, d) -> log P(x|h) of shape (K, B)
                logits = decode(h.reshape(k * b, h.shape[-1]), y_rep).reshape(k * b, N_PIXELS)
                return -bernoulli_nll(logits, x_rep).reshape(k, b)

            total += iw_log_likelihood(log_likelihood, mu, logvar, k=k).sum().item()
            n += b
    return total / n


# ----------------------------------------------------------------------------- figures
def prior_grid(n=15):
    """Evenly spaced quantiles (5%..95%) of N(0, 1): a grid over the prior's code plane."""
    q = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n)]
    return np.array(q), np.array(q[::-1])


def interpolation_pairs(labels, n_pairs=4):
    """Indices (a, b) of test digits of different classes, for interpolation strips."""
    pairs, i = [], 0
    while len(pairs) < n_pairs and i < len(labels) - 1:
        j = i + 1
        while j < len(labels) - 1 and labels[j] == labels[i]:
            j += 1
        pairs.append((i, j))
        i = j + 1
    return pairs


def draw_vae_figures(exp, history, final, decode_mean, encode_mean, prefix, extra_title=""):
    """Reconstructions, prior samples, interpolation strips, the manifold (2-D codes)
    and the loss curves. ``decode_mean(h) -> pixel probabilities``, ``encode_mean(x) -> mu``."""
    if not final:  # only at the end: figures cost about as much as an epoch here
        return
    run, args = exp.run, exp.args
    test_x, test_y = run.data.test_x, run.data.test_y
    d = args.latent_dim
    noise = np.random.default_rng(args.seed).standard_normal((6 * 12, d)).astype(np.float32)
    samples = decode_mean(run.tensor(noise)).numpy()
    draw_rows(run, f"{prefix}_samples.png", [samples[i * 12:(i + 1) * 12] for i in range(6)],
              title=f"{prefix}: samples from the prior, h ~ N(0, I){extra_title}")
    x = run.tensor(test_x[:16])
    draw_rows(run, f"{prefix}_reconstructions.png",
              [test_x[:16], decode_mean(encode_mean(x)).numpy()], ["input", "output"],
              f"{prefix}: test digits (top) and decoded means mu(x) (bottom)")
    pairs = interpolation_pairs(test_y)
    t = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None]
    rows = []
    for a, b in pairs:
        mu = encode_mean(run.tensor(test_x[[a, b]])).numpy()
        strip = decode_mean(run.tensor((1 - t) * mu[0] + t * mu[1])).numpy()
        rows.append(np.concatenate([test_x[a:a + 1], strip, test_x[b:b + 1]]))
    draw_rows(run, f"{prefix}_interpolation.png", rows,
              title=f"{prefix}: decoding (1-t) mu(a) + t mu(b), t = 0..1 "
                    "(outer columns: the two test digits)")
    if d == 2:
        codes = encode_all(run, encode_mean)
        draw_manifold(run, f"{prefix}_manifold.png", codes, test_y, decode_mean,
                      grid=prior_grid(), title=f"{prefix}: 2-D latent space (mu of test digits; "
                                               "decoder over N(0, I) quantiles)")
    draw_loss_curves(run, f"{prefix}_loss.png", history, [
        ([("loss", "train loss (recon + beta KL)"), ("test_loss", "test -ELBO")],
         "nats per image"),
        ([("test_recon", "test recon"), ("test_kl", "test KL")], "nats per image")],
        title=f"{prefix}: loss curves")


# ----------------------------------------------------------------------------- experiment
class VAE(Experiment):
    """Variational autoencoder: maximise ELBO = E_Q[log P(x|h)] - KL[Q(h|x) || N(0, I)],
    Q = N(mu(x), diag sigma^2(x)), h = mu + sigma * eps (reparameterisation); reports the
    test -ELBO (nats/image) per epoch and an importance-weighted log p(x) at the end."""

    name = "vae"
    defaults = dict(epochs=10, batch_size=128, lr=1e-3)

    @staticmethod
    def add_arguments(parser):
        add_architecture_arguments(parser, latent_dim=20)
        parser.add_argument("--beta", type=float, default=1.0,
                            help="weight of the KL term (default: 1, the VAE; >1: beta-VAE)")
        parser.add_argument("--iw-samples", type=int, default=100,
                            help="K for the importance-weighted test log-likelihood after the "
                                 "last epoch (default: 100; 0 skips it)")
        add_sample_quality_argument(parser)

    def __init__(self, args, run):
        super().__init__(args, run)
        check_architecture_arguments(args)
        check_sample_quality_argument(args)
        if not args.beta >= 0:
            raise ValueError(f"--beta must be >= 0, got {args.beta}")
        if args.iw_samples < 0:
            raise ValueError(f"--iw-samples must be >= 0, got {args.iw_samples}")
        self.model = VAEModel(args.arch, args.latent_dim, args.hidden)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        logits, mu, logvar = self.model(x)
        elbo = vae_loss(logits, x, mu, logvar, beta=self.args.beta)
        self.opt.zero_grad()
        elbo.loss.backward()
        self.opt.step()
        return {"loss": elbo.loss.item(), "recon": elbo.recon.item(), "kl": elbo.kl.item()}

    def evaluate(self, epoch):
        return evaluate_elbo(self.run, lambda x, y: self.model(x))

    def final(self):
        out = {}
        if self.args.iw_samples:
            k = self.args.iw_samples
            ll = evaluate_iw_log_likelihood(self.run, lambda x, y: self.model.encode(x),
                                            lambda h, y: self.model.decode(h), k)
            self.run.print(f"test log p(x) >= {ll:.2f} nats/image (importance-weighted, K={k})")
            out.update(test_iw_log_likelihood=ll, iw_samples=k)
        if self.args.metric_samples:
            quality = SampleQuality(self.run, n=self.args.metric_samples)
            with mg.no_grad():
                h = mg.randn(quality.n, self.args.latent_dim)
                out.update(final_sample_quality(quality, {"": self.model.decode(h).sigmoid()}))
            report_sample_quality(self.run, out)
        return out

    def figures(self, epoch, history, final):
        with mg.no_grad():
            draw_vae_figures(self, history, final,
                             decode_mean=lambda h: self.model.decode(h).sigmoid(),
                             encode_mean=lambda x: self.model.encode(x)[0], prefix=self.name)


if __name__ == "__main__":
    raise SystemExit(run_cli(VAE))
