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

D's loss adds the R1 penalty (Mescheder et al. 2018) on real images,

    L_D + gamma/2 E_x[||grad_x l(x)||^2]                 (--r1 gamma; --r1 0: L_D alone)

which keeps D flat where the data are, so that D and G settle instead of circling
their equilibrium. It differentiates through D's input gradient, as WGAN-GP's
penalty does; it is added on every --r1-every'th D step only, weighted that many
times (StyleGAN2's lazy regularisation), since that second pass through D is
what the penalty costs.

Both networks are told which k-means cluster of the training images an image
belongs to (--clusters K, 50 by default; 0 gives the lecture's unconditional GAN),
as in the self-conditioned GAN of Liu et al. 2020, with clusters fitted once, to
the pixels, before training (models/blocks.py's kmeans; no labels are used). With
c(x) the cluster of image x and p(k) the clusters' shares of the training images,
the game is the same one, played on pairs (image, cluster):

    min_G max_D  E_x[log D(x, c(x))] + E_{k~p(k), z}[log(1 - D(G(z, k), k))]

G(z, k) reads k as a one-hot vector beside z, and D(x, k) is a projection
discriminator (Miyato & Koyama 2018): its logit plus e_k . phi(x), for D's
features phi(x) and a learned embedding e_k. Its optimum is the same too: G(z, k)
draws the images of cluster k, so G draws every part of the data in its share.
Why it helps: D judges one image at a time, so it tells G only weakly that G
draws some digit too rarely (the unconditional GAN's D rated real 6s no higher
than other digits while G drew too few 6s: README); told the cluster, it judges
"is this a good member of cluster k" for clusters that G must all draw. In
training the fakes take the real batch's clusters (a draw from p(k)); samples
draw k ~ p(k).

``--loss wgan-gp`` (Gulrajani et al. 2017): D is a critic with unbounded scores f,

    L_D = E_z[f(G(z))] - E_x[f(x)] + lambda E_xhat[(||grad_xhat f(xhat)||_2 - 1)^2]
    L_G = -E_z[f(G(z))]

with xhat on lines between real and fake images; the penalty differentiates through
the critic's input gradient (mg.grad(create_graph=True): double backward through
conv). The critic takes --n-critic steps per generator step, and the optimiser is
Algorithm 1's by default: Adam lr 1e-4, betas (0, 0.9), n_critic = 5.

Each generator step draws its own noise z, as Algorithm 1 of both papers does,
rather than reusing the fakes that the discriminator's step saw.

Architecture (--width w; DCGAN's MNIST setting is w = 64):
    G: z (--z-dim) -> Linear -> BN -> ReLU -> (2w, 7, 7) -> ConvT 4x4/2 -> BN -> ReLU
       -> (w, 14, 14) -> ConvT 4x4/2 -> (1, 28, 28) -> tanh        (images scaled to [-1, 1])
    G(z, k): the one-hot cluster k (--clusters entries) beside z at the Linear's input
    D: models/blocks.py's Discriminator: two strided convs with LeakyReLU(0.2), then a
       linear layer to one logit, plus the cluster's projection; no BatchNorm by
       default (--d-batchnorm: DCGAN's after the second conv, for bce only: the
       gradient penalty is per example)
Separate Adam optimizers for G and D; for bce the betas (0, 0.99) that StyleGAN2
trains with beside R1 (Karras et al. 2020): without momentum each step follows
the gradient of the game as it is now, not an average of gradients taken while
the other network stood elsewhere (DCGAN's (0.5, 0.999) trained worse with the
penalty: README, GAN levers). The learning
rate is higher than DCGAN's 2e-4, because a short run needs the faster start
(--lr-d gives D its own, for two time-scales). The weights start from
DCGAN's N(0, 0.02) (--init pytorch: the layers' defaults), and the samples come
from an exponential moving average of G's weights (--ema, the decay; 0 samples G
itself), which smooths out the last steps' oscillation of an adversarial game;
each epoch's record scores G itself too (g_fid, ...). --label-smoothing s sets
D's target for real images to 1 - s.

Sample quality per epoch and at the end (models/metrics.py, on the shipped
scorer): the classifier-FID, inception score and rarest class's share of
--metric-samples generated images; the final record adds real training images
(the floor a perfect generator reaches) and the class histogram
(gan_class_histogram.png). --export-samples N writes N samples to samples.npz.
"""
from __future__ import annotations

from functools import partial

import numpy as np  # host-side: the figures' fixed noise (arrays from Tensor.numpy())

import minigrad as mg
from minigrad import nn, optim
from models.blocks import Clusters, Discriminator, averaged_copy, dcgan_init, ema_update
from models.cli import (Experiment, non_negative_float, non_negative_int, number, positive_int,
                        run_cli)
from models.evaluation import generate
from models.figures import draw_curves, draw_rows, progress_rows
from models.losses import (gan_bce, gan_generator_loss, gradient_penalty, r1_penalty,
                           wgan_critic_loss, wgan_generator_loss)
from models.metrics import (add_sample_quality_argument, draw_class_histograms,
                            final_sample_quality, sample_quality)


# ----------------------------------------------------------------------------- the model
class Generator(nn.Module):
    """z (B, z_dim) -> images (B, 1, 28, 28) in [-1, 1] (tanh); G(z, k) with n_clusters
    reads cluster k as a one-hot vector beside z (a conditional GAN's generator)."""

    def __init__(self, z_dim=64, width=32, n_clusters=0):
        super().__init__()
        c, self.n_clusters = 2 * width, n_clusters
        self.net = nn.Sequential(
            nn.Linear(z_dim + n_clusters, c * 7 * 7, bias=False), nn.BatchNorm1d(c * 7 * 7),
            nn.ReLU(), nn.Unflatten(1, (c, 7, 7)),
            nn.ConvTranspose2d(c, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, z, k=None):
        if k is not None:
            z = mg.cat([z, nn.functional.one_hot(k, self.n_clusters).astype(z.dtype)], axis=1)
        return self.net(z)


# ----------------------------------------------------------------------------- training
class GAN(Experiment):
    """DCGAN on MNIST, G and D told the image's k-means cluster: the BCE losses from
    logits, D's with the R1 penalty and G's non-saturating; --loss wgan-gp:
    Wasserstein loss, gradient penalty."""

    name = "gan"
    defaults = dict(epochs=16, batch_size=32, lr=None)
    adam = {"bce": (1e-3, 0.0, 0.99), "wgan-gp": (1e-4, 0.0, 0.9)}     # lr, betas by --loss
    r1_default = 10.0                                                   # gamma, for bce
    lr_help = f"learning rate (default: {adam['bce'][0]:g} for bce; 1e-4 for wgan-gp)"
    checkpoint = ("generator", "discriminator", "opt_g", "opt_d", "steps", "last_g", "progress")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.n_critic, self.r1, lr, betas = settings_by_loss(args)
        self.clusters = training_clusters(args, run)   # the training images' k-means clusters
        if self.clusters is not None:
            self.checkpoint += ("clusters",)
        g_args = (args.z_dim, args.width, args.clusters)
        self.generator = Generator(*g_args)
        self.discriminator = Discriminator(args.width, discriminator_batchnorm(args), args.clusters)
        if args.init == "dcgan":
            self.generator.apply(dcgan_init), self.discriminator.apply(dcgan_init)
        if args.ema:      # the samples' generator: an exponential moving average of G's weights
            self.generator_ema = averaged_copy(self.generator, Generator, *g_args)
            self.checkpoint += ("generator_ema",)
        self.opt_g = optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.opt_d = optim.Adam(self.discriminator.parameters(), lr=args.lr_d or lr, betas=betas)
        self.steps, self.last_g, self.progress = 0, {}, []   # D steps, G's last loss, figures
        self.quality = sample_quality(run, args.metric_samples)

    def train_step(self, x, y):
        real = x * 2.0 - 1.0                                  # [0, 1] -> G's tanh range
        k = self.clusters.assign(x) if self.args.clusters else None  # the fakes' clusters too
        fake = self.generator(mg.randn(x.shape[0], self.args.z_dim), k)
        loss_d, extra = self.d_loss(real, fake.detach(), k)   # no gradient reaches G
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        self.steps += 1
        if self.steps % self.n_critic == 0 or not self.last_g:
            # G follows the D that just moved, on fresh z (D's grads: cleared next step)
            loss_g = self.g_loss(self.generator(mg.randn(x.shape[0], self.args.z_dim), k), k)
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
            self.last_g = {"loss_g": loss_g.item()}      # logged until G steps again
            if self.args.ema:
                t = self.steps // self.n_critic          # G steps so far: a short early memory
                ema_update(self.generator_ema, self.generator,
                           min(self.args.ema, (1 + t) / (10 + t)))
        return {"loss_d": loss_d.item(), **self.last_g, **extra}

    def d_loss(self, real, fake, clusters=None):
        """Discriminator / critic loss on a real and a (detached) fake batch of the same
        clusters (none without --clusters)."""
        D, k = partial(self.discriminator, k=clusters), self.args.r1_every
        if self.args.loss == "bce":       # R1 lazily: on D steps 0, k, 2k, ..., weighted k
            with_r1 = self.r1 and self.steps % k == 0
            real_logits, r1 = r1_penalty(D, real) if with_r1 else (D(real), None)
            loss = gan_bce(real_logits, 1.0 - self.args.label_smoothing) + gan_bce(D(fake), 0.0)
            if not with_r1:               # (one-sided label smoothing: real -> 1 - s)
                return loss, {}
            return loss + 0.5 * self.r1 * k * r1, {"r1": r1.item() * k}  # k x: the mean is r1's
        real_s, fake_s, gp = D(real), D(fake), gradient_penalty(D, real, fake)
        return wgan_critic_loss(real_s, fake_s) + self.args.gp_weight * gp, {
            "wasserstein": (real_s.mean() - fake_s.mean()).item(), "gp": gp.item()}

    def g_loss(self, fake, clusters=None):
        loss = gan_generator_loss if self.args.loss == "bce" else wgan_generator_loss
        return loss(self.discriminator(fake, clusters))

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--loss", choices=["bce", "wgan-gp"], default="bce",
                            help="bce: the lecture's GAN losses; wgan-gp: Wasserstein critic "
                                 "with gradient penalty")
        parser.add_argument("--z-dim", type=positive_int, default=64, help="noise dimension")
        parser.add_argument("--width", type=positive_int, default=32,
                            help="channels of D's first conv and of G's last hidden layer "
                                 "(DCGAN's MNIST setting: 64)")
        parser.add_argument("--lr-d", type=number(float, above=0), default=None,
                            help="D's learning rate, when it should differ from G's --lr "
                                 "(two time-scales, Heusel et al. 2017)")
        parser.add_argument("--d-batchnorm", action="store_true",
                            help="BatchNorm after D's second conv, as in DCGAN's D (bce only: "
                                 "it couples the examples of a batch)")
        parser.add_argument("--beta1", type=number(float, minimum=0, below=1), default=None,
                            help="Adam's beta1 for both networks (default: 0, StyleGAN2's for "
                                 "bce and Algorithm 1's for wgan-gp)")
        parser.add_argument("--beta2", type=number(float, minimum=0, below=1), default=None,
                            help="Adam's beta2 for both networks (default: 0.99 for bce; 0.9 "
                                 "for wgan-gp, Algorithm 1's)")
        parser.add_argument("--init", choices=["pytorch", "dcgan"], default="dcgan",
                            help="weight initialisation: PyTorch's layer defaults, or DCGAN's "
                                 "N(0, 0.02)")
        parser.add_argument("--label-smoothing", type=number(float, minimum=0, below=1),
                            default=0.0, help="one-sided label smoothing: D's target for real "
                                              "images is 1 - this (bce)")
        parser.add_argument("--ema", type=number(float, minimum=0, below=1), default=0.999,
                            help="samples come from an exponential moving average of G's "
                                 "weights with this decay (0: from G itself)")
        parser.add_argument("--r1", type=non_negative_float, default=None,
                            help=f"gamma of the R1 penalty on D's input gradient at real "
                                 f"images (default: {GAN.r1_default:g} for bce; 0 gives the "
                                 f"lecture's L_D alone; wgan-gp has --gp-weight instead)")
        parser.add_argument("--r1-every", type=positive_int, default=4,
                            help="the R1 penalty on every k-th D step only, weighted k times "
                                 "(1: every step)")
        parser.add_argument("--gp-weight", type=non_negative_float, default=10.0,
                            help="lambda of the gradient penalty (wgan-gp)")
        parser.add_argument("--n-critic", type=positive_int, default=None,
                            help="D steps per G step (default: 1 for bce, 5 for wgan-gp)")
        parser.add_argument("--clusters", type=non_negative_int, default=50,
                            help="G and D are told which of this many k-means clusters of the "
                                 "training images (no labels) an image belongs to, and G's "
                                 "clusters are drawn with their shares of the data, so G "
                                 "cannot leave a part of the data out (0: the lecture's "
                                 "unconditional GAN)")
        add_sample_quality_argument(parser)

    # ------------------------------------------------------------------------- evaluation
    @property
    def fixed_noise(self):
        """The figures' 64 noise vectors and, with --clusters, their 64 clusters (drawn
        with the clusters' shares), the same at every epoch: from a host generator of
        the seed's own, so the same on every backend."""
        rng = np.random.default_rng(self.args.seed)
        z = rng.standard_normal((64, self.args.z_dim)).astype(np.float32)
        if self.clusters is None:
            return self.run.tensor(z), None
        counts = self.clusters.counts.numpy()
        k = rng.choice(len(counts), size=64, p=counts / counts.sum())
        return self.run.tensor(z), self.run.tensor(k)

    def samples(self, n, noise=None, clusters=None, generator=None):
        """n images of G in [0, 1], without a graph, from ``noise`` (or z ~ N(0, I)); with
        --clusters, from ``clusters`` (n of them, or clusters drawn with their shares of
        the training images). G samples in training mode, as in PyTorch's DCGAN example:
        BatchNorm normalises with the noise batch's own statistics, since the running
        averages lag behind a generator that changes quickly in a short run (in eval
        mode the early samples came out washed out)."""
        g = generator if generator is not None else \
            (self.generator_ema if self.args.ema else self.generator)
        if clusters is not None:             # given: one batch, so they stay with their z
            return generate(lambda z: (g(z, clusters) + 1.0) * 0.5, n, self.args.z_dim,
                            noise, batch_size=n)
        draw = self.clusters.sample if self.clusters is not None else lambda n: None
        return generate(lambda z: (g(z, draw(z.shape[0])) + 1.0) * 0.5, n, self.args.z_dim,
                        noise)

    def evaluate(self, epoch):
        self._grid = self.samples(64, *self.fixed_noise).numpy()
        self.progress.append([epoch, self._grid[:12]])
        if self.quality is None:
            return {}
        keys = ("fid", "inception_score", "rarest_class_share")
        q = self.quality(self.samples(self.quality.n))
        out = {k: q[k] for k in keys}
        if self.args.ema:        # what the average buys: G's own samples, scored alike
            q = self.quality(self.samples(self.quality.n, generator=self.generator))
            out.update({f"g_{k}": q[k] for k in keys})
        return out

    def sample(self, n):
        """--export-samples: n images G(z), z ~ N(0, I)."""
        return {"images": self.samples(n)}

    def final(self):
        if self.quality is None:
            return {}
        out = final_sample_quality(self.quality, {"gan_": self.samples(self.quality.n)})
        self.run.print("classifier-FID / inception score at n = %d: " % self.quality.n
                       + ", ".join(f"{k} {v:.3f}" for k, v in out.items()
                                   if isinstance(v, float)))
        return out

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        """Every epoch: the fixed noise's samples (gan_samples.png). At the end also the
        same 12 noise vectors epoch by epoch (gan_samples_progress.png) and the curves."""
        run, name = self.run, self.name
        grid = getattr(self, "_grid", None)
        if grid is None:                      # a resumed run with no epoch left
            grid = self.samples(64, *self.fixed_noise).numpy()
        draw_rows(run, f"{name}_samples.png", [grid[i * 8:(i + 1) * 8] for i in range(8)],
                  title=f"{name} ({self.args.loss}): G(z) of 64 fixed z after epoch {epoch}")
        if not final:
            return
        if self.progress:
            rows, labels = progress_rows(self.progress)
            shown = "each epoch" if len(rows) == len(self.progress) else \
                f"{len(rows)} of the {len(self.progress)} epochs"
            draw_rows(run, f"{name}_samples_progress.png", rows, labels,
                      title=f"{name}: G(z) of the same 12 z after {shown}")
        panels = [([("loss_d", "D loss"), ("loss_g", "G loss")], "loss")]
        if self.quality is not None:
            panels.append(([("fid", "classifier-FID (lower is better)")], "classifier-FID",
                           "log"))
            panels.append(([("inception_score", "inception score (higher is better)")],
                           "inception score"))
            panels.append(([("rarest_class_share", "rarest class's share of the samples")],
                           "share (0.1 = even)"))
        draw_class_histograms(run, f"{name}_class_histogram.png", history[-1], [("gan_", name)])
        draw_curves(run, f"{name}_curves.png", history, panels,
                    title=f"{name} ({self.args.loss}) training curves")


def settings_by_loss(args):
    """What defaults by --loss, unless given: (D steps per G step, R1's gamma, Adam's
    lr, Adam's betas). bce: 1, GAN.r1_default and GAN.adam["bce"]; wgan-gp: Algorithm
    1's 5 critic steps and optimiser, and no R1 (its critic has --gp-weight instead,
    so --r1 with it is refused)."""
    wgan = args.loss == "wgan-gp"
    if wgan and args.r1:
        raise ValueError("--r1 is for --loss bce: the wgan-gp critic has its own "
                         "penalty, set by --gp-weight")
    r1 = 0.0 if wgan else (GAN.r1_default if args.r1 is None else args.r1)
    lr, b1, b2 = (d if a is None else a for a, d in zip((args.lr, args.beta1, args.beta2),
                                                        GAN.adam[args.loss]))
    return args.n_critic or (5 if wgan else 1), r1, lr, (b1, b2)


def training_clusters(args, run):
    """--clusters k: the k-means clusters of the training images (None for 0)."""
    if not args.clusters:
        return None
    n = len(run.data.train_x)
    if args.clusters > n:
        raise ValueError(f"--clusters {args.clusters} is more than the {n} training images: "
                         f"ask for at most {n} (0: none)")
    return Clusters(run.tensor(run.data.train_x), args.clusters)


def discriminator_batchnorm(args):
    """--d-batchnorm, refused with wgan-gp: BatchNorm couples the examples of a batch,
    and the gradient penalty is per example."""
    if args.d_batchnorm and args.loss == "wgan-gp":
        raise ValueError("--d-batchnorm couples the examples of a batch, and the gradient "
                         "penalty is per example: use it with --loss bce")
    return args.d_batchnorm


if __name__ == "__main__":
    raise SystemExit(run_cli(GAN))
