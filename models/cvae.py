"""Conditional variational autoencoder: ``python -m models.cvae``.

The VAE of models/vae.py with the label y given to both networks (as a one-hot
vector c concatenated to the encoder's input and to the code):

    Q(h|x, y) = N(mu(x, c), diag sigma^2(x, c)),   P(x|h, y) = Bernoulli(sigmoid(f(h, c)))

    -ELBO(x, y) = E_{h~Q(h|x,y)}[-log P(x|h, y)] + KL[Q(h|x, y) || N(0, I)]

Since the decoder is told the class, the code h only needs what the label does not
say: the handwriting style (slant, thickness, width). That gives STYLE TRANSFER:
encode a test digit with its own label, decode the code with every label 0-9, and
the same hand writes every digit.

Label fidelity (the fraction of generated digits that models/classifier.py's
pretrained classifier assigns the requested label) is reported next to the ELBO,
because the two pull apart: a larger code improves the ELBO, but the decoder can
then read the class from h and ignore c. Measured on the bundled mnist-10k sample
(design notes): 2-D code about 134 nats and 99% fidelity; 20-D code about 106 nats
and only 67%. The default --latent-dim is therefore 2.
"""
from __future__ import annotations

import numpy as np  # host-side: figure noise and drawing (arrays from Tensor.numpy())

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from models.autoencoder import (N_PIXELS, draw_loss_curves, draw_rows, mlp_decoder,
                                mlp_encoder)
from models.cli import Experiment, run_cli
from models.losses import reparameterize, vae_loss
from models.metrics import (SampleQuality, add_sample_quality_argument,
                            check_sample_quality_argument, final_sample_quality,
                            report_sample_quality)
from models.vae import evaluate_elbo, evaluate_iw_log_likelihood


# ----------------------------------------------------------------------------- the model
class CVAEModel(nn.Module):
    """Encoder [x, c] -> (mu, logvar); decoder [h, c] -> pixel logits (B, 1, 28, 28)."""

    def __init__(self, latent_dim=2, hidden=400, n_classes=10):
        super().__init__()
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.encoder = mlp_encoder(2 * latent_dim, hidden, in_features=N_PIXELS + n_classes)
        self.decoder = mlp_decoder(latent_dim + n_classes, hidden)

    def one_hot(self, y):
        return F.one_hot(y, self.n_classes).float()

    def encode(self, x, y):
        out = self.encoder(mg.cat([x.reshape(x.shape[0], N_PIXELS), self.one_hot(y)], axis=1))
        d = self.latent_dim
        return out[:, :d], out[:, d:]                 # mu, logvar

    def decode(self, h, y):
        return self.decoder(mg.cat([h, self.one_hot(y)], axis=1))

    def forward(self, x, y, eps=None):
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar, eps), y), mu, logvar


def style_transfer(model, x, y):
    """Encode each x with its own label y (h = mu(x, y)) and decode h with every label:
    pixel probabilities of shape (B, n_classes, 1, 28, 28), [i, c] = digit i written as c."""
    b, k = x.shape[0], model.n_classes
    mu, _ = model.encode(x, y)
    h = mg.broadcast_to(mu.reshape(b, 1, -1), (b, k, mu.shape[1])).reshape(b * k, mu.shape[1])
    labels = mg.arange(k, backend=x.backend)
    labels = mg.broadcast_to(labels.reshape(1, k), (b, k)).reshape(b * k)
    return model.decode(h, labels).sigmoid().reshape(b, k, 1, 28, 28)


def label_fidelity(classify, images, labels):
    """Fraction of ``images`` that ``classify`` (x -> class scores) assigns ``labels``."""
    pred = mg.argmax(classify(images), axis=1)
    return (pred == labels).float().mean().item()


# ----------------------------------------------------------------------------- experiment
class CVAE(Experiment):
    """Conditional VAE: encoder Q(h|x, y) and decoder P(x|h, y) both see the one-hot
    label; -ELBO = E_Q[-log P(x|h, y)] + KL[Q(h|x, y) || N(0, I)]. Draws samples per
    class and style transfer, and reports label fidelity next to the ELBO."""

    name = "cvae"
    defaults = dict(epochs=10, batch_size=128, lr=1e-3)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--latent-dim", type=int, default=2,
                            help="size of the code h (default: 2, which keeps label "
                                 "fidelity >= 95%%; 20 gives a better ELBO but ~67%%)")
        parser.add_argument("--hidden", type=int, default=400, help="hidden units (default: 400)")
        parser.add_argument("--fidelity-samples", type=int, default=100,
                            help="prior samples per class for label fidelity after the last "
                                 "epoch, judged by models.classifier (default: 100; 0 skips)")
        parser.add_argument("--iw-samples", type=int, default=0,
                            help="K for an importance-weighted test log-likelihood after the "
                                 "last epoch (default: 0, skipped)")
        add_sample_quality_argument(parser)

    def __init__(self, args, run):
        super().__init__(args, run)
        check_sample_quality_argument(args)
        for flag in ("latent_dim", "hidden"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, "
                                 f"got {getattr(args, flag)}")
        for flag in ("fidelity_samples", "iw_samples"):
            if getattr(args, flag) < 0:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, "
                                 f"got {getattr(args, flag)}")
        self.model = CVAEModel(args.latent_dim, args.hidden, run.data.n_classes)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        logits, mu, logvar = self.model(x, y)
        elbo = vae_loss(logits, x, mu, logvar)
        self.opt.zero_grad()
        elbo.loss.backward()
        self.opt.step()
        return {"loss": elbo.loss.item(), "recon": elbo.recon.item(), "kl": elbo.kl.item()}

    def evaluate(self, epoch):
        return evaluate_elbo(self.run, self.model)

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

    def final(self):
        out = {}
        if self.args.fidelity_samples:
            from models.classifier import load_pretrained_classifier
            clf = load_pretrained_classifier(self.run)
            with mg.no_grad():
                x, labels = self.prior_samples(self.args.fidelity_samples, self.args.seed + 1)
                out["label_fidelity"] = label_fidelity(clf, x, labels)
                tx = self.run.tensor(self.run.data.test_x[:100])
                ty = self.run.tensor(self.run.data.test_y[:100])
                moved = style_transfer(self.model, tx, ty)
                k = self.model.n_classes
                want = mg.broadcast_to(mg.arange(k, backend=tx.backend).reshape(1, k),
                                       (tx.shape[0], k)).reshape(-1)
                out["transfer_fidelity"] = label_fidelity(
                    clf, moved.reshape(-1, 1, 28, 28), want)
            self.run.print(f"label fidelity: {100 * out['label_fidelity']:.1f}% of prior samples, "
                           f"{100 * out['transfer_fidelity']:.1f}% of style transfers are "
                           "classified as the requested digit")
        if self.args.metric_samples:
            quality = SampleQuality(self.run, n=self.args.metric_samples)
            k = self.model.n_classes
            x, _ = self.prior_samples(-(-quality.n // k), self.args.seed + 2)  # every class
            out.update(final_sample_quality(quality, {"": x[:quality.n]}))
            report_sample_quality(self.run, out)
        if self.args.iw_samples:
            out["test_iw_log_likelihood"] = evaluate_iw_log_likelihood(
                self.run, self.model.encode, self.model.decode, self.args.iw_samples)
            out["iw_samples"] = self.args.iw_samples
        return out

    def figures(self, epoch, history, final):
        if not final:  # only at the end: figures cost about as much as an epoch here
            return
        run, k = self.run, self.model.n_classes
        names = [str(c) for c in (run.data.class_names or range(k))]
        test_x, test_y = run.data.test_x, run.data.test_y
        with mg.no_grad():
            samples = self.prior_samples(12, self.args.seed)[0].numpy()
            moved = style_transfer(self.model, run.tensor(test_x[:8]),
                                   run.tensor(test_y[:8])).numpy()
            y16 = run.tensor(test_y[:16])
            mu = self.model.encode(run.tensor(test_x[:16]), y16)[0]
            recon = self.model.decode(mu, y16).sigmoid().numpy()
        draw_rows(run, "cvae_samples.png", [samples[c * 12:(c + 1) * 12] for c in range(k)],
                  names, "cvae: one row per class; each column shares one h ~ N(0, I)")
        draw_rows(run, "cvae_style_transfer.png",
                  [np.concatenate([test_x[i:i + 1], moved[i]]) for i in range(len(moved))],
                  title="cvae style transfer: encode the test digit (left) with its label, "
                        "decode with every label", col_labels=["input"] + names)
        draw_rows(run, "cvae_reconstructions.png", [test_x[:16], recon], ["input", "output"],
                  "cvae: test digits (top) and decoded mu(x, y) (bottom)")
        draw_loss_curves(run, "cvae_loss.png", history, [
            ([("loss", "train -ELBO"), ("test_loss", "test -ELBO")], "nats per image"),
            ([("test_recon", "test recon"), ("test_kl", "test KL")], "nats per image")],
            title=f"cvae ({self.args.latent_dim}-D code): loss curves")

if __name__ == "__main__":
    raise SystemExit(run_cli(CVAE))
