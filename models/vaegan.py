"""VAE-GAN (Larsen, Sonderby, Larochelle & Winther 2016): ``python -m models.vaegan``.

A VAE's decoder is also a GAN's generator, and the GAN's discriminator supplies the
VAE's reconstruction error. Pixel-wise likelihoods (the plain VAE's Bernoulli
decoder) make samples blurry: a digit shifted by one pixel is a large pixel error.
VAE-GAN measures reconstructions in the feature space of the discriminator's l-th
layer instead ("Dis_l"), where such differences are small, and adds the GAN loss
so the decoder must also fool the discriminator.

Networks (models/blocks.py): encoder Enc x -> (mu, logvar) and decoder Dec h ->
image logits (pixels = sigmoid), the conv VAEModel; discriminator Dis x -> logit,
the GAN's Discriminator, with Dis_l(x) = its conv features (2w x 7 x 7). With
h ~ Q(h|x) = N(mu, sigma^2) (reparameterised), x~ = Dec(h) the reconstruction and
x_p = Dec(h_p), h_p ~ N(0, I) a prior sample:

    L_prior    = KL[Q(h|x) || N(0, I)]                             (per example, nats)
    L_llike    = -E_Q[log N(Dis_l(x); Dis_l(x~), I)] = 0.5 ||Dis_l(x) - Dis_l(x~)||^2 + const
    L_GAN      = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p))

and each network gets its own loss (the paper's Algorithm 1), with weights. On each
batch, ``train_step`` first draws x~ and x_p, then

1. updates Dis, on x~ and x_p detached (nothing reaches Enc or Dec):

    Dis:  -L_GAN = BCE(Dis(x), 1) + 0.5 [BCE(Dis(x~), 0) + BCE(Dis(x_p), 0)]

   the 0.5 weighs the two kinds of fake as one batch against the real one;

2. then, through the UPDATED Dis (whose parameters these losses do not change),
   takes each of Enc's and Dec's gradient of its own loss from one graph
   (``mg.grad`` with respect to that network's parameters only):

    Enc:  beta L_prior + L_llike                           (beta = --beta)
    Dec:  gamma L_llike + 0.5 [BCE(Dis(x~), 1) + BCE(Dis(x_p), 1)]   (gamma = --gamma)

   Dec minimises L_GAN (it wants Dis fooled); its GAN term is the non-saturating
   stand-in for L_GAN's two fake terms (fakes labelled real, as in training
   practice), with the same 0.5 as Dis's.

So the GAN loss never reaches the encoder, and neither L_llike nor Dec's GAN term
reaches the discriminator (the paper found both harmful).

All three use Adam with DCGAN's betas (0.5, 0.999); Dis learns more slowly than
Enc and Dec (--lr-d against --lr): with Dis as fast as they are, or faster,
Dec's prior samples stayed fragments, and a much slower Dis was worse again
(the README's VAE-GAN lever table).

For comparison the run also trains a plain VAE with the same encoder and decoder
(Bernoulli pixel likelihood) on the same batches; figures put their
reconstructions and samples side by side, and the classifier-FID / inception
score of both (models/metrics.py) are logged per epoch.
"""
from __future__ import annotations

import numpy as np  # host-side: the figures' fixed noise (arrays from Tensor.numpy())

import minigrad as mg
from minigrad import optim
from models.blocks import Discriminator, VAEModel
from models.cli import Experiment, non_negative_float, number, positive_int, run_cli
from models.evaluation import evaluating, generate
from models.figures import draw_curves, draw_rows
from models.losses import gan_bce, gaussian_kl, reparameterize, vae_loss
from models.metrics import (add_sample_quality_argument, draw_class_histograms,
                            final_sample_quality, sample_quality)


# ----------------------------------------------------------------------------- the loss
def feature_nll(f_real, f_rec):
    """0.5 ||Dis_l(x) - Dis_l(x~)||^2 per example (the Gaussian Dis_l likelihood), batch mean."""
    d = (f_rec - f_real).reshape(f_real.shape[0], -1)
    return (d * d).sum(axis=1).mean() * 0.5


# ----------------------------------------------------------------------------- training
class VAEGAN(Experiment):
    """VAE-GAN (Larsen et al. 2016): Enc minimises KL + L_llike^{Dis_l}; Dec minimises
    gamma L_llike^{Dis_l} + L_GAN (it wants Dis fooled); Dis maximises L_GAN over real,
    reconstructed and prior samples; a plain VAE with the same networks is trained
    alongside for comparison."""

    name = "vaegan"
    defaults = dict(epochs=16, batch_size=64, lr=5e-4)

    def __init__(self, args, run):
        super().__init__(args, run)
        betas = (0.5, 0.999)
        self.vaegan = VAEModel("conv", args.latent_dim, args.width)          # Enc, Dec
        self.discriminator = Discriminator(args.width)                        # Dis
        self.opt_enc = optim.Adam(self.vaegan.encoder.parameters(), lr=args.lr, betas=betas)
        self.opt_dec = optim.Adam(self.vaegan.decoder.parameters(), lr=args.lr, betas=betas)
        self.opt_dis = optim.Adam(self.discriminator.parameters(), lr=args.lr_d or args.lr,
                                  betas=betas)
        self.checkpoint = ("vaegan", "discriminator", "opt_enc", "opt_dec", "opt_dis")
        if not args.no_vae:
            self.vae = VAEModel("conv", args.latent_dim, args.width)
            self.opt_vae = optim.Adam(self.vae.parameters(), lr=1e-3)
            self.checkpoint += ("vae", "opt_vae")
        self.quality = sample_quality(run, args.metric_samples)
        # the figures' fixed noise (a host generator of its own: the same on every backend)
        self.fixed_noise = np.random.default_rng(args.seed).standard_normal(
            (48, args.latent_dim)).astype(np.float32)

    def dis_loss(self, x, x_rec, x_p):
        """Dis's -L_GAN = BCE(Dis(x), 1) + 0.5 [BCE(Dis(x~), 0) + BCE(Dis(x_p), 0)], with
        the values to log beside it (none here)."""
        dis = self.discriminator
        return gan_bce(dis(x), 1.0) + 0.5 * (gan_bce(dis(x_rec), 0.0)
                                             + gan_bce(dis(x_p), 0.0)), {}

    def train_step(self, x, y):
        m, dis = self.vaegan, self.discriminator
        mu, logvar = m.encode(x)
        x_rec = m.decode(reparameterize(mu, logvar)).sigmoid()
        x_p = m.decode(mg.randn(x.shape[0], m.latent_dim)).sigmoid()

        # Dis: maximise L_GAN on real vs (detached) reconstructions and prior samples
        loss_dis, extra = self.dis_loss(x, x_rec.detach(), x_p.detach())
        self.opt_dis.zero_grad()
        loss_dis.backward()
        self.opt_dis.step()

        # Enc and Dec, through the updated Dis: one graph, each network's gradient of its
        # own loss (Dis's parameters are not among the inputs of mg.grad)
        with mg.no_grad():
            f_real = dis.features(x)
        f_rec = dis.features(x_rec)
        llike = feature_nll(f_real, f_rec)
        kl = gaussian_kl(mu, logvar).mean()
        gan_g = 0.5 * (gan_bce(dis.head(f_rec), 1.0) + gan_bce(dis(x_p), 1.0))
        enc_params = list(m.encoder.parameters())
        dec_params = list(m.decoder.parameters())
        g_enc = mg.grad(self.args.beta * kl + llike, enc_params, retain_graph=True)
        g_dec = mg.grad(self.args.gamma * llike + gan_g, dec_params)
        for p, g in zip(enc_params + dec_params, g_enc + g_dec):
            p.grad = g
        self.opt_enc.step()
        self.opt_dec.step()
        out = {"loss_dis": loss_dis.item(), "kl": kl.item(), "llike": llike.item(),
               "gan_g": gan_g.item(), **extra}

        if not self.args.no_vae:          # the plain VAE, for comparison
            logits, vmu, vlogvar = self.vae(x)
            elbo = vae_loss(logits, x, vmu, vlogvar)
            self.opt_vae.zero_grad()
            elbo.loss.backward()
            self.opt_vae.step()
            out["vae_loss"] = elbo.loss.item()
        return out

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--latent-dim", type=positive_int, default=32,
                            help="size of the code h")
        parser.add_argument("--width", type=positive_int, default=16,
                            help="channels of the first conv of Enc and Dis (and of Dec's last)")
        parser.add_argument("--gamma", type=non_negative_float, default=0.1,
                            help="weight of L_llike in the decoder's loss (against the GAN loss)")
        parser.add_argument("--lr-d", type=number(float, above=0), default=1e-4,
                            help="Dis's learning rate, apart from Enc's and Dec's --lr "
                                 "(slower by default; the README's 'VAE-GAN levers' say why)")
        parser.add_argument("--beta", type=non_negative_float, default=1.0,
                            help="weight of the prior KL in the encoder's loss")
        add_sample_quality_argument(parser)
        parser.add_argument("--no-vae", action="store_true",
                            help="do not train the plain VAE for comparison")

    # ------------------------------------------------------------------------- evaluation
    def models(self):
        """(name, VAEModel) of the VAE-GAN and, unless --no-vae, the plain VAE."""
        return [("vaegan", self.vaegan)] + ([] if self.args.no_vae else [("vae", self.vae)])

    def evaluate(self, epoch):
        out = {}
        x = self.run.tensor(self.run.data.test_x[:500])
        for name, model in self.models():
            with evaluating(model):
                mu, _ = model.encode(x)
                d = model.decode(mu).sigmoid() - x
                out[f"{name}_test_pixel_mse"] = (d * d).sum().item() / x.shape[0]
                if self.quality is not None:
                    q = self.quality(self.samples(model, self.quality.n))
                    out.update({f"{name}_{k}": v for k, v in q.items()
                                if k != "class_histogram"})     # the counts once, at the end
        return out

    def samples(self, model, n, noise=None):
        return generate(lambda h: model.decode(h).sigmoid(), n, self.args.latent_dim, noise)

    def sample(self, n):
        """--export-samples: n VAE-GAN samples Dec(h), h ~ N(0, I)."""
        with evaluating(self.vaegan):
            return {"images": self.samples(self.vaegan, n)}

    def final(self):
        if self.quality is None:
            return {}
        samples = {}
        for name, model in self.models():
            with evaluating(model):
                samples[f"{name}_"] = self.samples(model, self.quality.n)
        return final_sample_quality(self.quality, samples)

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        run = self.run
        noise = run.tensor(self.fixed_noise)
        x_host = run.data.test_x[:12]
        x = run.tensor(x_host)
        rec_rows, rec_labels, sample_rows, sample_labels = [x_host], ["test digits"], [], []
        for name, model in self.models():
            label = "VAE-GAN" if name == "vaegan" else "plain VAE"
            with evaluating(model):
                rec_rows.append(model.decode(model.encode(x)[0]).sigmoid().numpy())
                s = self.samples(model, 24, noise=noise).numpy()
            rec_labels.append(label)
            sample_rows += [s[:12], s[12:24]]
            sample_labels += [label, label]
        draw_rows(run, f"{self.name}_reconstructions.png", rec_rows, rec_labels,
                  title=f"{self.name}: test digits and their reconstructions Dec(mu(x)) "
                        f"after epoch {epoch}")
        draw_rows(run, f"{self.name}_samples.png", sample_rows, sample_labels,
                  title=f"{self.name}: samples Dec(h), h ~ N(0, I), the same 24 h for both "
                        f"models, after epoch {epoch}")
        if not final:
            return                            # the curves once, at the end
        panels = [([("loss_dis", "Dis loss"), ("gan_g", "Dec GAN loss")], "loss"),
                  ([("llike", "L_llike (Dis_l)"), ("kl", "KL")], "nats")]
        if self.quality is not None:
            panels.append(([(f"{n}_fid", f"{n} classifier-FID") for n, _ in self.models()],
                           "classifier-FID", "log"))
        draw_class_histograms(run, f"{self.name}_class_histogram.png", history[-1],
                              [(f"{n}_", "VAE-GAN" if n == "vaegan" else "plain VAE")
                               for n, _ in self.models()])
        draw_curves(run, f"{self.name}_curves.png", history, panels,
                    title=f"{self.name} training curves")


if __name__ == "__main__":
    raise SystemExit(run_cli(VAEGAN))
