"""Variational autoencoder (Kingma & Welling 2014): ``python -m models.vae``.

A generative model p(x) = integral P(x|h) p(h) dh with prior p(h) = N(0, I) and a
decoder over the 784 pixels, P(x|h) = Bernoulli(sigmoid(f(h))) (--likelihood
bernoulli, the PyTorch example's) or the slide's Gaussian N(x | sigmoid(f(h)),
sigma^2 I) (--likelihood gaussian; --sigma fixed or learned per pixel). The encoder gives
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
Grey levels are not Bernoulli outcomes, so these numbers are not those of the
literature's binarised MNIST; --binarize trains on images resampled as
Bernoulli(pixel) every epoch and tests on one fixed binarisation, which are.

The networks are models/blocks.py's VAEModel: --arch mlp (default) is the PyTorch
example's 784-400-20 model, with its module names (fc1, fc21, fc22, fc3, fc4);
--arch conv a convolutional encoder and a transposed-convolution decoder. The
losses are models/losses.py's.
"""
from __future__ import annotations

import numpy as np  # host-side: figure noise and drawing (arrays from Tensor.numpy())

from minigrad import optim
from models.blocks import (VAEModel, add_architecture_arguments, add_likelihood_arguments,
                           likelihood_from_args)
from models.cli import Experiment, non_negative_float, run_cli
from models.evaluation import (add_iw_samples_argument, binarized_data, embed, evaluate_elbo,
                               evaluate_iw_log_likelihood, evaluating, generate,
                               likelihood_record)
from models.figures import draw_curves, draw_manifold, draw_rows
from models.losses import reparameterize, vae_loss
from models.metrics import (add_sample_quality_argument, draw_class_histograms,
                            final_sample_quality, report_sample_quality, sample_quality)


# ----------------------------------------------------------------------------- training
class VAE(Experiment):
    """Variational autoencoder: maximise ELBO = E_Q[log P(x|h)] - KL[Q(h|x) || N(0, I)],
    Q = N(mu(x), diag sigma^2(x)), h = mu + sigma * eps (reparameterisation); reports the
    test -ELBO (nats/image) per epoch and an importance-weighted log p(x) at the end."""

    name = "vae"
    defaults = dict(epochs=10, batch_size=128, lr=1e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.model = VAEModel(args.arch, args.latent_dim, args.hidden,
                              likelihood_from_args(args))
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)
        self.binarize = binarized_data(run, args)    # --binarize: fixed test set, and
        if self.binarize:                            # training draws that resume exactly
            self.checkpoint += ("binarize",)

    def train_step(self, x, y):
        if self.binarize:
            x = self.binarize(x)                     # x ~ Bernoulli(pixels), anew each epoch
        mu, logvar = self.model.encode(x)            # Q(h|x) = N(mu, diag exp(logvar))
        h = reparameterize(mu, logvar)               # h = mu + sigma * eps, eps ~ N(0, I)
        logits = self.model.decode(h)                # P(x|h) from the decoder's f(h)
        lik = self.model.likelihood                  # Bernoulli, or N(sigmoid(f(h)), sigma^2)
        elbo = vae_loss(logits, x, mu, logvar, self.args.beta, lik.kind,
                        lik.current_log_sigma())     # recon + beta * KL
        self.opt.zero_grad()
        elbo.loss.backward()
        self.opt.step()
        return {"loss": elbo.loss.item(), "recon": elbo.recon.item(), "kl": elbo.kl.item()}

    @staticmethod
    def add_arguments(parser):
        add_architecture_arguments(parser, latent_dim=20)
        parser.add_argument("--beta", type=non_negative_float, default=1.0,
                            help="weight of the KL term (1: the VAE; > 1: a beta-VAE)")
        add_likelihood_arguments(parser)
        add_iw_samples_argument(parser, default=100)
        add_sample_quality_argument(parser)

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch):
        with evaluating(self.model):
            return evaluate_elbo(self.run, lambda x, y: self.model(x),
                                 self.model.likelihood.nll)

    def final(self):
        args, model = self.args, self.model
        with evaluating(model):
            values = {"test_neg_elbo": self.evaluate(args.epochs)["test_loss"]}
            if args.iw_samples:   # log p(x) >= this (importance-weighted, K samples)
                values["test_iw_log_likelihood"] = evaluate_iw_log_likelihood(
                    self.run, lambda x, y: model.encode(x), lambda h, y: model.decode(h),
                    args.iw_samples, model.likelihood.nll)
            out = likelihood_record(self.run, model.likelihood, args.binarize, **values)
            out["iw_samples"] = args.iw_samples
            quality = sample_quality(self.run, args.metric_samples)
            if quality is not None:
                samples = generate(self.decode_mean, quality.n, args.latent_dim,
                                   batch_size=quality.n)
                out.update(final_sample_quality(quality, {"": samples}))
                report_sample_quality(self.run, out)
        return out

    def sample(self, n):
        """--export-samples: decoded means of n prior codes h ~ N(0, I)."""
        with evaluating(self.model):
            return {"images": generate(self.decode_mean, n, self.args.latent_dim)}

    def decode_mean(self, h):
        """The decoder's mean sigmoid(f(h)): the Bernoulli's pixel probabilities or the
        Gaussian's mean (what the figures draw)."""
        return self.model.decode(h).sigmoid()

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        if not final:  # only at the end: figures cost about as much as an epoch here
            return
        run, name, d = self.run, self.name, self.args.latent_dim
        test_x, test_y = run.data.test_x, run.data.test_y
        encode_mean = lambda x: self.model.encode(x)[0]     # noqa: E731
        with evaluating(self.model):
            noise = np.random.default_rng(self.args.seed).standard_normal((6 * 12, d))
            samples = self.decode_mean(run.tensor(noise.astype(np.float32))).numpy()
            draw_rows(run, f"{name}_samples.png", [samples[i * 12:(i + 1) * 12] for i in range(6)],
                      title=f"{name}: decoded samples of the prior, h ~ N(0, I)")
            recon = self.decode_mean(encode_mean(run.tensor(test_x[:16]))).numpy()
            draw_rows(run, f"{name}_reconstructions.png", [test_x[:16], recon],
                      ["input", "output"], f"{name}: test digits and their decoded means mu(x)")
            t = np.linspace(0.0, 1.0, 11, dtype=np.float32)[:, None]
            rows = []
            for a, b in interpolation_pairs(test_y):
                mu = encode_mean(run.tensor(test_x[[a, b]])).numpy()
                strip = self.decode_mean(run.tensor((1 - t) * mu[0] + t * mu[1])).numpy()
                rows.append(np.concatenate([test_x[a:a + 1], strip, test_x[b:b + 1]]))
            draw_rows(run, f"{name}_interpolation.png", rows,
                      col_labels=["a"] + [f"{v:.1f}" for v in t[:, 0]] + ["b"],
                      title=f"{name}: decoding (1 - t) mu(a) + t mu(b) between two test digits "
                            "a and b, t = 0 .. 1")
            if d == 2:
                codes = embed(encode_mean, test_x, run).numpy()
                draw_manifold(run, f"{name}_manifold.png", codes, test_y, self.decode_mean,
                              title=f"{name}: the 2-D latent space (codes: mu(x) of test digits)",
                              names=run.data.class_names)
        draw_class_histograms(run, f"{name}_class_histogram.png", history[-1], [("", name)])
        draw_curves(run, f"{name}_loss.png", history, [
            ([("loss", "train loss (recon + beta KL)"), ("test_loss", "test -ELBO")],
             "nats per image"),
            ([("test_recon", "test recon"), ("test_kl", "test KL")], "nats per image")],
            title=f"{name}: loss curves")


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


if __name__ == "__main__":
    raise SystemExit(run_cli(VAE))
