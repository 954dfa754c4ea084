"""Generative adversarial network (Goodfellow et al. 2014), DCGAN-style (Radford et
al. 2016): ``python -m models.gan``.

A generator G maps noise z ~ N(0, I) to an image; a discriminator D(x) = sigmoid(l(x))
tells real from fake. They play

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

trained by alternating gradient steps (one D step, then one G step per batch):

    L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]       (BCE with logits: real -> 1, fake -> 0)
    L_G = -E_z[log D(G(z))]                            (non-saturating: BCE of fakes -> 1)

Both come from D's logits through binary_cross_entropy_with_logits, never as
log(sigmoid(.)) of a saturated value (models/losses.py, "GANs").

``--loss wgan-gp`` (Gulrajani et al. 2017): D is a critic with unbounded scores f,

    L_D = E_z[f(G(z))] - E_x[f(x)] + lambda E_xhat[(||grad_xhat f(xhat)||_2 - 1)^2]
    L_G = -E_z[f(G(z))]

with xhat on lines between real and fake images; the penalty differentiates through
the critic's input gradient (mg.grad(create_graph=True): double backward through
conv). The critic takes --n-critic steps per generator step (5 by default).

Architecture (--width w, default 32; DCGAN's MNIST setting is w = 64, i.e. G's
Linear goes to 128 x 7 x 7):
    G: z (--z-dim) -> Linear -> BN -> ReLU -> (2w, 7, 7) -> ConvT 4x4/2 -> BN -> ReLU
       -> (w, 14, 14) -> ConvT 4x4/2 -> (1, 28, 28) -> tanh        (images scaled to [-1, 1])
    D: (1, 28, 28) -> Conv 4x4/2 -> LeakyReLU(0.2) -> (w, 14, 14) -> Conv 4x4/2 -> LeakyReLU
       -> (2w, 7, 7) -> Linear -> 1 logit                           (no BatchNorm: the
       gradient penalty is per example, and BN would couple the examples of a batch)
Separate Adam optimizers for G and D with DCGAN's betas (0.5, 0.999); lr 5e-4, not
DCGAN's 2e-4: on mnist-10k, after 12 epochs at width 32, classifier-FID 62 vs 78
(measured), since a short run needs the faster start.

Sample quality per epoch and at the end (models/metrics.py): Frechet distance on
the toolkit classifier's features ("classifier-FID", NOT comparable with Inception
FID numbers from papers) and the classifier's inception score, on --metric-samples
generated images against as many real test images; the final record also scores
real training images (the floor a perfect generator would reach) and, if
runs/vae/checkpoint.npz exists, the VAE's prior samples.

The default run (all 8,000 training images of mnist-10k, 16 epochs of batch 64 =
2,000 steps per network, width 32) takes about 4 minutes on a 2-core CPU and draws
rough but recognisable digits (width 16 and 1,000 steps: blobs, FID ~110). Better:
``--epochs 40 --width 64``, or ``--dataset mnist --backend cupy`` on a GPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np  # host-side: figures and fixed noise (arrays from Tensor.numpy())

import minigrad as mg
from minigrad import nn, optim
from models.autoencoder import draw_loss_curves, draw_rows
from models.cli import Experiment, run_cli
from models.losses import (gan_discriminator_loss, gan_generator_loss, gradient_penalty,
                           wgan_critic_loss, wgan_generator_loss)
from models.metrics import (SampleQuality, add_sample_quality_argument,
                            check_sample_quality_argument, final_sample_quality)


# ----------------------------------------------------------------------------- networks
class Generator(nn.Module):
    """z (B, z_dim) -> images (B, 1, 28, 28) in [-1, 1] (tanh)."""

    def __init__(self, z_dim=64, width=32):
        super().__init__()
        self.z_dim = z_dim
        c = 2 * width
        self.net = nn.Sequential(
            nn.Linear(z_dim, c * 7 * 7, bias=False), nn.BatchNorm1d(c * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (c, 7, 7)),
            nn.ConvTranspose2d(c, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    """images (B, 1, 28, 28) in [-1, 1] -> one logit (or critic score) per image, (B, 1)."""

    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))

    def forward(self, x):
        return self.net(x)


def to_pixels(images):
    """G's tanh output in [-1, 1] -> pixel intensities in [0, 1]."""
    return (images + 1.0) * 0.5


def generate(generator, n, z_dim, batch_size=500, noise=None):
    """n images in [0, 1] (a Tensor) from G, without a graph.

    G stays in training mode, as in PyTorch's DCGAN example: its BatchNorm layers
    normalise with the statistics of the noise batch itself. (The running averages
    lag behind a generator that changes quickly in a short run: in eval mode the
    samples of the first epochs came out washed out.) Training-mode BN updates the
    running averages, which nothing uses, so sampling does not change training."""
    was_training = generator.training
    generator.train()
    out = []
    with mg.no_grad():
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            z = mg.randn(b, z_dim) if noise is None else noise[start:start + b]
            out.append(to_pixels(generator(z)))
    generator.train(was_training)
    return mg.cat(out, axis=0)


# ----------------------------------------------------------------------------- VAE comparison
def host_array(a):
    """A checkpointed array back as a host float32 array."""
    return a.numpy() if isinstance(a, mg.Tensor) else np.asarray(a, np.float32)


def load_vae(run, path="runs/vae/checkpoint.npz"):
    """The VAE of ``python -m models.vae`` (its checkpoint holds the arguments it was
    made with), in eval mode on the run's backend, or None if there is none or it
    does not load (the comparison is optional: never fail a run over it)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        from models.vae import VAEModel
        ckpt = mg.load(path, backend=run.backend)
        if ckpt.get("model") != "vae":
            return None
        a = ckpt["args"]
        hidden = a.get("hidden") or (400 if a.get("arch", "mlp") == "mlp" else 32)
        model = VAEModel(a.get("arch", "mlp"), a.get("latent_dim", 20), hidden)
        model.load_state_dict(ckpt["state"]["model"])
        model.eval()
        return model
    except Exception as e:  # noqa: BLE001 (a comparison only)
        run.print(f"(VAE comparison skipped: {path}: {type(e).__name__}: {e})")
        return None


def vae_samples(run, n, path="runs/vae/checkpoint.npz"):
    """n prior samples sigmoid(decoder(h)), h ~ N(0, I), of runs/vae's VAE, or None."""
    model = load_vae(run, path)
    if model is None:
        return None
    with mg.no_grad():
        return model.decode(mg.randn(n, model.latent_dim)).sigmoid()


# ----------------------------------------------------------------------------- experiment
class GAN(Experiment):
    """DCGAN on MNIST: L_D = -E[log D(x)] - E[log(1 - D(G(z)))], non-saturating
    L_G = -E[log D(G(z))] (from logits); --loss wgan-gp for the Wasserstein loss with
    gradient penalty. Reports classifier-FID and inception score per epoch."""

    name = "gan"
    defaults = dict(epochs=16, batch_size=64, lr=5e-4)

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--loss", choices=["bce", "wgan-gp"], default="bce",
                            help="bce: the lecture's GAN losses (default); wgan-gp: "
                                 "Wasserstein critic with gradient penalty")
        parser.add_argument("--z-dim", type=int, default=64, help="noise dimension")
        parser.add_argument("--width", type=int, default=32,
                            help="channels of the first conv (DCGAN: 64)")
        parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (DCGAN: 0.5)")
        parser.add_argument("--gp-weight", type=float, default=10.0,
                            help="lambda of the gradient penalty (wgan-gp)")
        parser.add_argument("--n-critic", type=int, default=None,
                            help="D steps per G step (default 1 for bce, 5 for wgan-gp)")
        add_sample_quality_argument(parser)

    def __init__(self, args, run):
        super().__init__(args, run)
        for flag in ("z_dim", "width"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(args, flag)}")
        if args.n_critic is None:
            args.n_critic = 5 if args.loss == "wgan-gp" else 1
        if args.n_critic < 1:
            raise ValueError(f"--n-critic must be >= 1, got {args.n_critic}")
        check_sample_quality_argument(args)
        if not 0.0 <= args.beta1 < 1.0:
            raise ValueError(f"--beta1 must be in [0, 1), got {args.beta1}")
        self.generator = Generator(args.z_dim, args.width)
        self.discriminator = Discriminator(args.width)
        betas = (args.beta1, 0.999)
        self.opt_g = optim.Adam(self.generator.parameters(), lr=args.lr, betas=betas)
        self.opt_d = optim.Adam(self.discriminator.parameters(), lr=args.lr, betas=betas)
        # the fixed noise of the progress figures (host RNG from --seed: same on every backend)
        self.fixed_noise = np.random.default_rng(args.seed).standard_normal(
            (64, args.z_dim)).astype(np.float32)
        self.steps = 0
        self.last_g = {}
        self.progress = []                   # fixed-noise samples (12 per epoch), host arrays
        self._quality = None

    # -- checkpointed extras
    def state_dict_extra(self):
        return {"steps": self.steps, "last_g": self.last_g, "progress": list(self.progress)}

    def load_state_dict_extra(self, d):
        self.steps = int(d.get("steps", 0))
        self.last_g = dict(d.get("last_g") or {})
        self.progress = [host_array(p) for p in d.get("progress", [])]

    # -- one batch
    def d_loss(self, real, fake):
        """Discriminator / critic loss on a real and a (detached) fake batch."""
        if self.args.loss == "bce":
            return gan_discriminator_loss(self.discriminator(real), self.discriminator(fake)), {}
        real_s, fake_s = self.discriminator(real), self.discriminator(fake)
        gp = gradient_penalty(self.discriminator, real, fake)
        return wgan_critic_loss(real_s, fake_s) + self.args.gp_weight * gp, {
            "wasserstein": (real_s.mean() - fake_s.mean()).item(), "gp": gp.item()}

    def g_loss(self, fake):
        logits = self.discriminator(fake)
        if self.args.loss == "bce":
            return gan_generator_loss(logits)
        return wgan_generator_loss(logits)

    def train_step(self, x, y):
        real = x * 2.0 - 1.0                                  # [0, 1] -> G's tanh range
        fake = self.generator(mg.randn(x.shape[0], self.args.z_dim))
        loss_d, extra = self.d_loss(real, fake.detach())
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        self.steps += 1
        if self.steps % self.args.n_critic == 0 or not self.last_g:
            loss_g = self.g_loss(fake)       # D just moved; G follows (D's grads cleared next step)
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
            self.last_g = {"loss_g": loss_g.item()}
        return {"loss_d": loss_d.item(), **self.last_g, **extra}

    # -- evaluation
    @property
    def quality(self):
        if self._quality is None:
            self._quality = SampleQuality(self.run, n=self.args.metric_samples)
        return self._quality

    def samples(self, n):
        return generate(self.generator, n, self.args.z_dim)

    def evaluate(self, epoch):
        noise = self.run.tensor(self.fixed_noise)
        grid = generate(self.generator, 64, self.args.z_dim, noise=noise).numpy()
        self.progress.append(grid[:12])
        self._grid = grid
        if not self.args.metric_samples:
            return {}
        q = self.quality(self.samples(self.args.metric_samples))
        return {"fid": q["fid"], "inception_score": q["inception_score"]}

    def final(self):
        if not self.args.metric_samples:
            return {}
        samples = {"gan_": self.samples(self.args.metric_samples)}
        vae = vae_samples(self.run, self.quality.n)
        if vae is not None:
            samples["vae_"] = vae
        out = final_sample_quality(self.quality, samples)
        self.run.print("classifier-FID / inception score at n = %d: " % self.quality.n
                       + ", ".join(f"{k} {v:.3f}" for k, v in out.items() if k != "metric_samples"))
        return out

    def figures(self, epoch, history, final):
        """Per epoch: the fixed-noise grid (gan_samples_epochNNN.png). At the end: the
        last grid as gan_samples.png, the progress strip and the curves (drawn once:
        matplotlib, not training, is the slow part of a tiny run)."""
        grid = getattr(self, "_grid", None)
        if grid is None:                      # (a resumed run with no epoch left)
            grid = generate(self.generator, 64, self.args.z_dim,
                            noise=self.run.tensor(self.fixed_noise)).numpy()
        rows = [grid[i * 8:(i + 1) * 8] for i in range(8)]
        title = f"{self.name} ({self.args.loss}): fixed noise after epoch {epoch}"
        if not final:
            draw_rows(self.run, f"{self.name}_samples_epoch{epoch:03d}.png", rows, title=title)
            return
        draw_rows(self.run, f"{self.name}_samples.png", rows, title=title)
        if self.progress:
            first = max(0, len(self.progress) - 12)
            draw_rows(self.run, f"{self.name}_progress.png", self.progress[first:],
                      row_labels=[f"epoch {first + i + 1}" for i in range(len(self.progress) - first)],
                      title=f"{self.name}: the same 12 noise vectors after each epoch")
        panels = [([("loss_d", "D loss"), ("loss_g", "G loss")], "loss")]
        if self.args.metric_samples:
            panels.append(([("fid", "classifier-FID (lower is better)")], "FID"))
            panels.append(([("inception_score", "inception score (higher is better)")], "IS"))
        draw_loss_curves(self.run, f"{self.name}_curves.png", history, panels,
                         title=f"{self.name} ({self.args.loss}) training curves")


if __name__ == "__main__":
    raise SystemExit(run_cli(GAN))
