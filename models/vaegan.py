"""VAE-GAN (Larsen, Sonderby, Larochelle & Winther 2016): ``python -m models.vaegan``.

A VAE's decoder is also a GAN's generator, and the GAN's discriminator supplies the
VAE's reconstruction error. Pixel-wise likelihoods (the plain VAE's Bernoulli
decoder) make samples blurry: a digit shifted by one pixel is a large pixel error.
VAE-GAN measures reconstructions in the feature space of the discriminator's l-th
layer instead ("Dis_l"), where such differences are small, and adds the GAN loss
so the decoder must also fool the discriminator.

Networks: encoder Enc x -> (mu, logvar); decoder Dec h -> image logits (pixels =
sigmoid); discriminator Dis x -> logit, with Dis_l(x) = the output of its second
conv block (2w x 7 x 7 features). With h ~ Q(h|x) = N(mu, sigma^2) (reparameterised),
x~ = Dec(h) the reconstruction and x_p = Dec(h_p), h_p ~ N(0, I) a prior sample:

    L_prior    = KL[Q(h|x) || N(0, I)]                             (per example, nats)
    L_llike    = -E_Q[log N(Dis_l(x); Dis_l(x~), I)] = 0.5 ||Dis_l(x) - Dis_l(x~)||^2 + const
    L_GAN      = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p))

and each network gets its own loss (the paper's Algorithm 1), with weights:

    Enc:  L_prior + L_llike                         (beta = --beta on L_prior, default 1)
    Dec:  gamma L_llike - L_GAN                     (gamma = --gamma, default 0.1; as in
                                                     training practice, the non-saturating
                                                     form BCE(Dis(x~), 1) + BCE(Dis(x_p), 1))
    Dis:  -L_GAN = BCE(Dis(x), 1) + 0.5 (BCE(Dis(x~), 0) + BCE(Dis(x_p), 0))

Neither the GAN loss reaches the encoder nor L_llike the discriminator (the paper
found both harmful). Gradients for Enc and Dec come from one graph through
``mg.grad`` with respect to each network's parameters; three Adam optimizers.

For comparison the run also trains a plain VAE with the same encoder and decoder
(the conv architecture of models/autoencoder.py, Bernoulli pixel likelihood) on the
same batches; figures put their reconstructions and samples side by side, and the
classifier-FID / inception score (models/metrics.py: features of the toolkit
classifier, NOT comparable with Inception-FID numbers from papers) of both are
logged per epoch.

Default: 8 epochs over mnist-10k's 8,000 training images, width 16 (~4 minutes on
a 2-core CPU with OMP_NUM_THREADS=1); better: ``--epochs 30 --width 32``.
"""
from __future__ import annotations

import numpy as np  # host-side: fixed noise and figures (arrays from Tensor.numpy())

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim
from models.autoencoder import conv_decoder, conv_encoder, draw_loss_curves, draw_rows
from models.cli import Experiment, run_cli
from models.losses import gaussian_kl, reparameterize, vae_loss
from models.metrics import (SampleQuality, add_sample_quality_argument,
                            check_sample_quality_argument, final_sample_quality)
from models.vae import VAEModel


class VAEGANModel(nn.Module):
    """Encoder x -> (mu, logvar) and decoder h -> pixel logits (B, 1, 28, 28)."""

    def __init__(self, latent_dim=32, width=16):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = conv_encoder(2 * latent_dim, width)
        self.decoder = conv_decoder(latent_dim, width)

    def encode(self, x):
        out = self.encoder(x)
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def decode(self, h):
        return self.decoder(h)


class FeatureDiscriminator(nn.Module):
    """Dis: x (B, 1, 28, 28) in [0, 1] -> logit (B, 1); ``features`` is Dis_l."""

    def __init__(self, width=16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def _bce(logits, value):
    return F.binary_cross_entropy_with_logits(
        logits, mg.full(logits.shape, value, dtype=logits.dtype.name))


def feature_nll(f_real, f_rec):
    """0.5 ||Dis_l(x) - Dis_l(x~)||^2 per example (the Gaussian Dis_l likelihood), batch mean."""
    d = (f_rec - f_real).reshape(f_real.shape[0], -1)
    return (d * d).sum(axis=1).mean() * 0.5


class VAEGAN(Experiment):
    """VAE-GAN (Larsen et al. 2016): Enc minimises KL + L_llike^{Dis_l}; Dec minimises
    gamma L_llike^{Dis_l} - L_GAN; Dis maximises L_GAN over real, reconstructed and prior
    samples; a plain VAE with the same networks is trained alongside for comparison."""

    name = "vaegan"
    defaults = dict(epochs=8, batch_size=64, lr=3e-4)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--latent-dim", type=int, default=32)
        parser.add_argument("--width", type=int, default=16, help="channels of the first conv")
        parser.add_argument("--gamma", type=float, default=0.1,
                            help="weight of L_llike in the decoder's loss (vs the GAN loss)")
        parser.add_argument("--beta", type=float, default=1.0,
                            help="weight of the prior KL in the encoder's loss")
        add_sample_quality_argument(parser)
        parser.add_argument("--no-vae", action="store_true",
                            help="do not train the plain VAE for comparison")

    def __init__(self, args, run):
        super().__init__(args, run)
        for flag in ("latent_dim", "width"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(args, flag)}")
        if not (args.gamma >= 0 and args.beta >= 0):
            raise ValueError(f"--gamma and --beta must be >= 0, got {args.gamma}, {args.beta}")
        check_sample_quality_argument(args)
        betas = (0.5, 0.999)
        self.vaegan = VAEGANModel(args.latent_dim, args.width)
        self.discriminator = FeatureDiscriminator(args.width)
        self.opt_enc = optim.Adam(self.vaegan.encoder.parameters(), lr=args.lr, betas=betas)
        self.opt_dec = optim.Adam(self.vaegan.decoder.parameters(), lr=args.lr, betas=betas)
        self.opt_dis = optim.Adam(self.discriminator.parameters(), lr=args.lr, betas=betas)
        if not args.no_vae:
            self.vae = VAEModel("conv", args.latent_dim, args.width)
            self.opt_vae = optim.Adam(self.vae.parameters(), lr=1e-3)
        self.fixed_noise = np.random.default_rng(args.seed).standard_normal(
            (48, args.latent_dim)).astype(np.float32)
        self._quality = None

    def train_step(self, x, y):
        m, dis = self.vaegan, self.discriminator
        mu, logvar = m.encode(x)
        x_rec = m.decode(reparameterize(mu, logvar)).sigmoid()
        x_p = m.decode(mg.randn(x.shape[0], m.latent_dim)).sigmoid()

        # Dis: maximise L_GAN on real vs (detached) reconstructions and prior samples
        loss_dis = _bce(dis(x), 1.0) + 0.5 * (_bce(dis(x_rec.detach()), 0.0)
                                              + _bce(dis(x_p.detach()), 0.0))
        self.opt_dis.zero_grad()
        loss_dis.backward()
        self.opt_dis.step()

        # Enc and Dec: one graph, each network's gradient of its own loss
        with mg.no_grad():
            f_real = dis.features(x)
        f_rec = dis.features(x_rec)
        llike = feature_nll(f_real, f_rec)
        kl = gaussian_kl(mu, logvar).mean()
        gan_g = 0.5 * (_bce(dis.head(f_rec), 1.0) + _bce(dis(x_p), 1.0))
        enc_params = list(m.encoder.parameters())
        dec_params = list(m.decoder.parameters())
        g_enc = mg.grad(self.args.beta * kl + llike, enc_params, retain_graph=True)
        g_dec = mg.grad(self.args.gamma * llike + gan_g, dec_params)
        for p, g in zip(enc_params + dec_params, g_enc + g_dec):
            p.grad = g
        self.opt_enc.step()
        self.opt_dec.step()
        out = {"loss_dis": loss_dis.item(), "kl": kl.item(), "llike": llike.item(),
               "gan_g": gan_g.item()}

        if not self.args.no_vae:
            logits, vmu, vlogvar = self.vae(x)
            elbo = vae_loss(logits, x, vmu, vlogvar)
            self.opt_vae.zero_grad()
            elbo.loss.backward()
            self.opt_vae.step()
            out["vae_loss"] = elbo.loss.item()
        return out

    # -- evaluation
    @property
    def quality(self):
        if self._quality is None:
            self._quality = SampleQuality(self.run, n=self.args.metric_samples)
        return self._quality

    def _samples(self, decode, n, noise=None):
        out = []
        for s in range(0, n, 500):
            b = min(500, n - s)
            h = mg.randn(b, self.args.latent_dim) if noise is None else noise[s:s + b]
            out.append(decode(h).sigmoid())
        return mg.cat(out, axis=0)

    def _models(self):
        models = [("vaegan", self.vaegan)]
        if not self.args.no_vae:
            models.append(("vae", self.vae))
        return models

    def evaluate(self, epoch):
        out = {}
        x = self.run.tensor(self.run.data.test_x[:500])
        for name, model in self._models():
            mu, _ = model.encode(x)
            d = model.decode(mu).sigmoid() - x
            out[f"{name}_test_pixel_mse"] = (d * d).sum().item() / x.shape[0]
            if self.args.metric_samples:
                q = self.quality(self._samples(model.decode, self.quality.n))
                out.update({f"{name}_{k}": v for k, v in q.items()})
        return out

    def final(self):
        if not self.args.metric_samples:
            return {}
        return final_sample_quality(self.quality, {
            f"{name}_": self._samples(model.decode, self.quality.n)
            for name, model in self._models()})

    def figures(self, epoch, history, final):
        run = self.run
        noise = run.tensor(self.fixed_noise)
        x_host = run.data.test_x[:12]
        x = run.tensor(x_host)
        rec_rows, rec_labels, sample_rows, sample_labels = [x_host], ["test digits"], [], []
        for name, model in self._models():
            label = "VAE-GAN" if name == "vaegan" else "plain VAE"
            rec_rows.append(model.decode(model.encode(x)[0]).sigmoid().numpy())
            rec_labels.append(label)
            s = self._samples(model.decode, 24, noise=noise).numpy()
            sample_rows += [s[:12], s[12:24]]
            sample_labels += [label, label]
        draw_rows(run, f"{self.name}_reconstructions.png", rec_rows, rec_labels,
                  title=f"reconstructions Dec(mu(x)) after epoch {epoch}")
        draw_rows(run, f"{self.name}_samples.png", sample_rows, sample_labels,
                  title=f"samples Dec(h), h ~ N(0, I) (same h for both) after epoch {epoch}")
        if not final:
            return                            # the curves once, at the end
        panels = [([("loss_dis", "Dis loss"), ("gan_g", "Dec GAN loss")], "loss"),
                  ([("llike", "L_llike (Dis_l)"), ("kl", "KL")], "nats")]
        if self.args.metric_samples:
            panels.append(([(f"{n}_fid", f"{n} classifier-FID") for n, _ in self._models()],
                           "FID"))
        draw_loss_curves(run, f"{self.name}_curves.png", history, panels,
                         title="VAE-GAN training curves")


if __name__ == "__main__":
    raise SystemExit(run_cli(VAEGAN))
