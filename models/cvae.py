"""Conditional variational autoencoder: ``python -m models.cvae``.

The VAE of models/vae.py with the label y given to both networks, as a learned
embedding c = E[y] concatenated to the encoder's input and to the code:

    Q(h|x, y) = N(mu(x, c), diag sigma^2(x, c)),   P(x|h, y) = Bernoulli(sigmoid(f(h, c)))

    -ELBO(x, y) = E_{h~Q(h|x,y)}[-log P(x|h, y)] + KL[Q(h|x, y) || N(0, I)]

(--likelihood gaussian: the slide's N(x | sigmoid(f(h, c)), sigma^2 I) instead, as
in models/vae.py; --binarize: binarised MNIST.) Since the decoder is told the
class, the code h only needs what the label does not say: the handwriting style
(slant, thickness, width). That gives STYLE TRANSFER: encode a test digit with
its own label, decode the code with every label 0-9, and the same hand writes
every digit.

Label fidelity (the fraction of generated digits that the shipped scorer,
models/scorer/mnist-10k.npz, assigns the requested label) is reported next to the
ELBO, because the two can pull apart: a larger code improves the ELBO, and its
decoder may read the class from h and ignore c. It does with a one-hot c, whose
weight in the decoder's input is small at the start; the learned embedding
(--label-dim) weighs as much as the code from the first step, and the decoder
follows it (the README has the measurements).
"""
from __future__ import annotations

import numpy as np  # host-side: figure noise and drawing (arrays from Tensor.numpy())

import minigrad as mg
from minigrad import nn, optim
from models.blocks import (N_PIXELS, PixelLikelihood, add_likelihood_arguments,
                           likelihood_from_args, mlp_decoder, mlp_encoder)
from models.cli import Experiment, non_negative_int, positive_int, run_cli
from models.evaluation import (accuracy, add_iw_samples_argument, binarized_data, evaluate_elbo,
                               evaluate_iw_log_likelihood, evaluating, likelihood_record,
                               load_scorer)
from models.figures import draw_curves, draw_rows
from models.losses import reparameterize, vae_loss
from models.metrics import (add_sample_quality_argument, draw_class_histograms,
                            final_sample_quality, report_sample_quality, sample_quality)

LABEL_DIM = 64     # the label embedding's size; see --label-dim


# ----------------------------------------------------------------------------- the model
class CVAEModel(nn.Module):
    """Encoder [x, c] -> (mu, logvar); decoder [h, c] -> pixel logits (B, 1, 28, 28),
    with c = E[y] a learned embedding of the label (``label_dim`` numbers, N(0, 1)
    at the start, as nn.Embedding) and the decoder's P(x|h, y) a
    blocks.PixelLikelihood."""

    def __init__(self, latent_dim=2, hidden=400, n_classes=10, label_dim=LABEL_DIM,
                 likelihood=None):
        super().__init__()
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.label = nn.Embedding(n_classes, label_dim)                       # E
        self.encoder = mlp_encoder(2 * latent_dim, hidden, in_features=N_PIXELS + label_dim)
        self.decoder = mlp_decoder(latent_dim + label_dim, hidden)
        self.likelihood = likelihood or PixelLikelihood()

    def encode(self, x, y):
        out = self.encoder(mg.cat([x.reshape(x.shape[0], N_PIXELS), self.label(y)], axis=1))
        d = self.latent_dim
        return out[:, :d], out[:, d:]                 # mu, logvar

    def decode(self, h, y):
        return self.decoder(mg.cat([h, self.label(y)], axis=1))

    def forward(self, x, y, eps=None):
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar, eps), y), mu, logvar


# ----------------------------------------------------------------------------- training
class CVAE(Experiment):
    """Conditional VAE: encoder Q(h|x, y) and decoder P(x|h, y) both see the label's
    embedding; -ELBO = E_Q[-log P(x|h, y)] + KL[Q(h|x, y) || N(0, I)]. Draws samples
    per class and style transfer, and reports label fidelity next to the ELBO."""

    name = "cvae"
    defaults = dict(epochs=10, batch_size=128, lr=1e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.model = CVAEModel(args.latent_dim, args.hidden, run.data.n_classes,
                               args.label_dim, likelihood_from_args(args))
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)
        self.binarize = binarized_data(run, args)    # --binarize: fixed test set, and
        if self.binarize:                            # training draws that resume exactly
            self.checkpoint += ("binarize",)

    def train_step(self, x, y):
        if self.binarize:
            x = self.binarize(x)                     # x ~ Bernoulli(pixels), anew each epoch
        mu, logvar = self.model.encode(x, y)         # Q(h|x, y)
        h = reparameterize(mu, logvar)               # h = mu + sigma * eps
        logits = self.model.decode(h, y)             # P(x|h, y)
        lik = self.model.likelihood
        elbo = vae_loss(logits, x, mu, logvar, 1.0, lik.kind, lik.current_log_sigma())
        self.opt.zero_grad()
        elbo.loss.backward()
        self.opt.step()
        return {"loss": elbo.loss.item(), "recon": elbo.recon.item(), "kl": elbo.kl.item()}

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--latent-dim", type=positive_int, default=2,
                            help="size of the code h: a larger one improves the ELBO; the "
                                 "label embedding keeps its decoder listening to the label")
        parser.add_argument("--hidden", type=positive_int, default=400, help="hidden units")
        parser.add_argument("--label-dim", type=positive_int, default=LABEL_DIM,
                            help="size of the learned label embedding c = E[y] that both "
                                 "networks see: the label then weighs as much as the code "
                                 "from the first step, so the decoder listens to it even "
                                 "with a large code (a one-hot c, which weighs little, "
                                 "is ignored by a 20-D code's decoder)")
        add_likelihood_arguments(parser)
        parser.add_argument("--fidelity-samples", type=non_negative_int, default=100,
                            help="prior samples per class for label fidelity after the last "
                                 "epoch, judged by the shipped scorer (0 skips it)")
        add_iw_samples_argument(parser, default=0)
        add_sample_quality_argument(parser)

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch):
        with evaluating(self.model):
            return evaluate_elbo(self.run, self.model, self.model.likelihood.nll)

    def prior_samples(self, per_class, seed):
        """``per_class`` samples of each class from h ~ N(0, I), the same h in every
        class (column j of the grid is one style): (probabilities, labels)."""
        k, d = self.model.n_classes, self.args.latent_dim
        h = np.random.default_rng(seed).standard_normal((per_class, d)).astype(np.float32)
        h = np.tile(h, (k, 1))
        labels = np.repeat(np.arange(k), per_class)
        with mg.no_grad():
            x = self.model.decode(self.run.tensor(h), self.run.tensor(labels)).sigmoid()
        return x, self.run.tensor(labels)

    def sample(self, n):
        """--export-samples: n prior samples, labels 0, 1, ..., 9, 0, 1, ... (every class
        alike), each decoded from its own h ~ N(0, I)."""
        labels = self.run.tensor(np.arange(n) % self.model.n_classes)
        with evaluating(self.model):
            images = self.model.decode(mg.randn(n, self.args.latent_dim), labels).sigmoid()
        return {"images": images, "labels": labels}

    def final(self):
        out, args, run = {}, self.args, self.run
        with evaluating(self.model):
            clf = load_scorer(run) if args.fidelity_samples else None
            if clf is not None:
                x, labels = self.prior_samples(args.fidelity_samples, args.seed + 1)
                out["label_fidelity"] = accuracy(clf, x, labels)
                tx, ty = run.tensor(run.data.test_x[:100]), run.tensor(run.data.test_y[:100])
                k = self.model.n_classes
                want = mg.broadcast_to(mg.arange(k, backend=tx.backend).reshape(1, k),
                                       (tx.shape[0], k)).reshape(-1)
                moved = style_transfer(self.model, tx, ty).reshape(-1, 1, 28, 28)
                out["transfer_fidelity"] = accuracy(clf, moved, want)
                run.print(f"label fidelity: {100 * out['label_fidelity']:.1f}% of prior samples, "
                          f"{100 * out['transfer_fidelity']:.1f}% of style transfers are "
                          "classified as the requested digit")
            quality = sample_quality(run, args.metric_samples)
            if quality is not None:
                k = self.model.n_classes
                x, _ = self.prior_samples(-(-quality.n // k), args.seed + 2)  # every class
                out.update(final_sample_quality(quality, {"": x[:quality.n]}))
                report_sample_quality(run, out)
            values = {"test_neg_elbo": self.evaluate(args.epochs)["test_loss"]}
            if args.iw_samples:   # log p(x) >= this (importance-weighted, K samples)
                values["test_iw_log_likelihood"] = evaluate_iw_log_likelihood(
                    run, self.model.encode, self.model.decode, args.iw_samples,
                    self.model.likelihood.nll)
            out.update(likelihood_record(run, self.model.likelihood, args.binarize, **values))
            out["iw_samples"] = args.iw_samples
        return out

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        if not final:  # only at the end: figures cost about as much as an epoch here
            return
        run, k, code = self.run, self.model.n_classes, f"{self.args.latent_dim}-D code"
        names = [str(c) for c in (run.data.class_names or range(k))]
        test_x, test_y = run.data.test_x, run.data.test_y
        with evaluating(self.model):
            samples = self.prior_samples(12, self.args.seed)[0].numpy()
            moved = style_transfer(self.model, run.tensor(test_x[:8]),
                                   run.tensor(test_y[:8])).numpy()
            y16 = run.tensor(test_y[:16])
            mu = self.model.encode(run.tensor(test_x[:16]), y16)[0]
            recon = self.model.decode(mu, y16).sigmoid().numpy()
        draw_rows(run, "cvae_samples.png", [samples[c * 12:(c + 1) * 12] for c in range(k)],
                  [f"y = {n}" for n in names],
                  f"cvae ({code}): one row per label y; each column decodes one h ~ N(0, I)")
        draw_rows(run, "cvae_style_transfer.png",
                  [np.concatenate([test_x[i:i + 1], moved[i]]) for i in range(len(moved))],
                  title=f"cvae style transfer ({code}): each test digit (left) encoded with its "
                        "label, decoded with every label", col_labels=["input"] + names)
        draw_rows(run, "cvae_reconstructions.png", [test_x[:16], recon], ["input", "output"],
                  f"cvae ({code}): test digits and their decoded means mu(x, y)")
        draw_class_histograms(run, "cvae_class_histogram.png", history[-1], [("", "cvae")])
        draw_curves(run, "cvae_loss.png", history, [
            ([("loss", "train -ELBO"), ("test_loss", "test -ELBO")], "nats per image"),
            ([("test_recon", "test recon"), ("test_kl", "test KL")], "nats per image")],
            title=f"cvae ({code}): loss curves")


def style_transfer(model, x, y):
    """Encode each x with its own label y (h = mu(x, y)) and decode h with every label:
    pixel probabilities of shape (B, n_classes, 1, 28, 28), [i, c] = digit i written as c."""
    b, k = x.shape[0], model.n_classes
    mu, _ = model.encode(x, y)
    h = mg.broadcast_to(mu.reshape(b, 1, -1), (b, k, mu.shape[1])).reshape(b * k, mu.shape[1])
    labels = mg.arange(k, backend=x.backend)
    labels = mg.broadcast_to(labels.reshape(1, k), (b, k)).reshape(b * k)
    return model.decode(h, labels).sigmoid().reshape(b, k, 1, 28, 28)


if __name__ == "__main__":
    raise SystemExit(run_cli(CVAE))
