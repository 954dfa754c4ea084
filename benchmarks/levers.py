"""Issue 18's sample-quality levers that were measured and not kept, so that the
README's lever rows can be run again:

    python -m benchmarks.levers gan --spectral-norm            # the GAN's flags, and these
    python -m benchmarks.levers vaegan --decoder-batchnorm --dcgan-init

Each lever is a subclass of the shipped experiment (models/gan.py's GAN,
models/vaegan.py's VAEGAN) with the lever's flags added; with none of them given
the run is the shipped default, number for number. Runs write runs/gan-<flags>/ and
runs/vaegan-<flags>/ as the models do.

GAN levers (measured on the unconditional GAN, before --clusters: add --clusters 0
to rerun the README's rows; --pack needs it):
    --lr-schedule linear   both learning rates fall linearly to 0 over the run's steps
    --g-width W            G's width apart from D's (--width)
    --spectral-norm        D's conv and linear weights divided by their largest singular
                           value, from one power iteration a training step (Miyato et
                           al. 2018; torch.nn.utils.spectral_norm)
    --d-dropout P          dropout after each of D's LeakyReLUs
    --pack K               PacGAN (Lin et al. 2018): D judges K images stacked as channels,
                           real with real and fake with fake, which penalises a G whose
                           samples lack variety
    --extra-emas D1,D2     more moving averages of G with these decays, scored each epoch
                           (ema<D>_fid) beside the --ema one
VAE-GAN levers:
    --decoder-batchnorm    Dec is the GAN's generator without its tanh (the same layers as
                           Dec, with BatchNorm after the first two and no bias before it)
    --dcgan-init           DCGAN's N(0, 0.02) for Enc, Dec and Dis
    --ema DECAY            scores, figures and samples come from an exponential moving average
                           of Enc's and Dec's weights (the GAN's --ema), not the last step's
    --r1 GAMMA             the GAN's R1 penalty on Dis's input gradient at real images, on
                           every --r1-every'th Dis step, weighted that many times
    --betas B1,B2          Adam's betas for Enc, Dec and Dis (the GAN's are 0,0.99)
"""
from __future__ import annotations

import argparse
import math
import sys

import minigrad as mg
from minigrad import nn, optim
from models import gan, vaegan
from models.blocks import Discriminator, averaged_copy, dcgan_init, ema_update
from models.cli import number, positive_int, run_cli
from models.losses import gan_bce, r1_penalty


# ----------------------------------------------------------------------------- spectral norm
def unit(v):
    # not functional.normalize: its norm rounds differently in the last bit now and
    # then, and the README's spectral-norm rows were measured with this formula
    return v / ((v * v).sum() ** 0.5 + 1e-12)


class SpectralNorm(nn.Module):
    """``layer`` (Conv2d or Linear) with its weight W divided by sigma(W), the largest
    singular value of W as an (out, in * k * k) matrix. sigma comes from power
    iteration: each training forward moves the buffer u one step (v = W^T u, u = W v,
    both normalised, with no graph), then sigma = u^T W v is differentiated through W
    only, as torch.nn.utils.spectral_norm does."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.register_buffer("u", unit(mg.randn(layer.weight.shape[0])))

    def sigma(self, weight):
        w = weight.reshape(weight.shape[0], -1)
        with mg.no_grad():
            if self.training:
                self.u = unit(w @ unit(self.u @ w))
            v = unit(self.u @ w)
        return (self.u * (w @ v)).sum()

    def forward(self, x):
        layer = self.layer
        w = layer.weight / self.sigma(layer.weight)
        if isinstance(layer, nn.Linear):
            return mg.functional.linear(x, w, layer.bias)
        return mg.functional.conv2d(x, w, layer.bias, layer.stride, layer.padding,
                                    layer.dilation, layer.groups)


def spectral_norm_layers(seq):
    """``seq`` with each Conv2d and Linear wrapped in SpectralNorm."""
    return nn.Sequential(*[SpectralNorm(m) if isinstance(m, (nn.Conv2d, nn.Linear)) else m
                           for m in seq])


# ----------------------------------------------------------------------------- the GAN's
class GANLevers(gan.GAN):
    def __init__(self, args, run):
        d_width = args.width
        g_width = args.width = args.g_width or d_width
        super().__init__(args, run)             # G (and its averages) at --g-width
        args.width = d_width
        if args.pack > 1 and args.clusters:
            raise ValueError("--pack judges images of different clusters together: use it "
                             "with --clusters 0")
        if args.g_width or args.spectral_norm or args.d_dropout or args.pack > 1:
            d = Discriminator(d_width, gan.discriminator_batchnorm(args), args.clusters)
            if args.pack > 1:           # D's first conv sees --pack images as channels
                d.body[0] = nn.Conv2d(args.pack, d_width, 4, stride=2, padding=1)
            if args.init == "dcgan":
                d.apply(dcgan_init)
            if args.d_dropout:
                d.body = nn.Sequential(*[m for layer in d.body for m in (
                    (layer, nn.Dropout(args.d_dropout)) if isinstance(layer, nn.LeakyReLU)
                    else (layer,))])
            if args.spectral_norm:
                d.body, d.head = spectral_norm_layers(d.body), spectral_norm_layers(d.head)
            group = self.opt_d.param_groups[0]
            self.discriminator = d
            self.opt_d = optim.Adam(d.parameters(), lr=group["lr"], betas=group["betas"])
        self.initial_lrs = [(o, o.param_groups[0]["lr"]) for o in (self.opt_g, self.opt_d)]
        self.total_steps = args.epochs * math.ceil(len(run.data.train_x) / args.batch_size)
        self.extra_emas = {decay: averaged_copy(self.generator, gan.Generator, args.z_dim,
                                                g_width, args.clusters)
                           for decay in args.extra_emas}

    def packed(self, images):
        """(B, 1, 28, 28) -> (B // k, k, 28, 28): k images a D input (PacGAN); a batch
        not divisible by k loses its last images."""
        k = self.args.pack
        b = images.shape[0] // k * k
        return images[:b].reshape(b // k, k, *images.shape[2:])

    def d_loss(self, real, fake, clusters=None):
        if self.args.pack > 1:
            real, fake = self.packed(real), self.packed(fake)
        return super().d_loss(real, fake, clusters)

    def g_loss(self, fake, clusters=None):
        return super().g_loss(self.packed(fake) if self.args.pack > 1 else fake, clusters)

    def train_step(self, x, y):
        if self.args.lr_schedule == "linear":
            for opt, lr in self.initial_lrs:
                opt.param_groups[0]["lr"] = lr * max(0.0, 1.0 - self.steps / self.total_steps)
        out = super().train_step(x, y)
        for decay, average in self.extra_emas.items():   # the --ema schedule, per D step
            ema_update(average, self.generator, min(decay, (1 + self.steps) / (10 + self.steps)))
        return out

    def evaluate(self, epoch):
        out = super().evaluate(epoch)
        if self.quality is not None:
            for decay, average in self.extra_emas.items():
                q = self.quality(self.samples(self.quality.n, generator=average))
                out[f"ema{decay:g}_fid"] = q["fid"]
                out[f"ema{decay:g}_rarest_class_share"] = q["rarest_class_share"]
        return out

    @staticmethod
    def add_arguments(parser):
        gan.GAN.add_arguments(parser)
        parser.add_argument("--lr-schedule", choices=["constant", "linear"], default="constant",
                            help="linear: both learning rates fall to 0 over the run")
        parser.add_argument("--g-width", type=positive_int, default=None,
                            help="G's width, apart from D's --width")
        parser.add_argument("--spectral-norm", action="store_true",
                            help="spectral normalisation of D's weights")
        parser.add_argument("--d-dropout", type=number(float, minimum=0, below=1), default=0.0,
                            help="dropout after D's LeakyReLUs")
        parser.add_argument("--pack", type=positive_int, default=1,
                            help="PacGAN (Lin et al. 2018): D judges this many images at once")
        parser.add_argument("--extra-emas", type=decays, default=(),
                            help="comma-separated decays of more moving averages of G")


def decays(text):
    return tuple(number(float, minimum=0, below=1)(t) for t in text.split(","))


def betas(text):
    pair = decays(text)
    if len(pair) != 2:
        raise argparse.ArgumentTypeError(f"takes two numbers, B1,B2, not {text!r}")
    return pair


# ----------------------------------------------------------------------------- the VAE-GAN's
class VAEGANLevers(vaegan.VAEGAN):
    def __init__(self, args, run):
        super().__init__(args, run)
        m = self.vaegan
        if args.decoder_batchnorm:      # a new decoder needs its optimiser anew
            m.decoder = self.batchnorm_decoder()
            self.opt_dec = optim.Adam(m.decoder.parameters(), lr=args.lr, betas=(0.5, 0.999))
        if args.dcgan_init:             # in place: the optimisers keep their parameters
            m.apply(dcgan_init), self.discriminator.apply(dcgan_init)
        if args.betas:                  # the same optimisers, with other betas
            for name in ("opt_enc", "opt_dec", "opt_dis"):
                opt = getattr(self, name)
                group = opt.param_groups[0]
                setattr(self, name, optim.Adam(group["params"], lr=group["lr"],
                                               betas=args.betas))
        self.steps = 0                  # training steps so far: one Dis step each
        self.checkpoint += ("steps",)
        if args.ema:
            self.vaegan_ema = averaged_copy(m, self.same_model)
            self.checkpoint += ("vaegan_ema",)

    def batchnorm_decoder(self):
        """The GAN's generator without its tanh (Dec gives logits)."""
        return gan.Generator(self.args.latent_dim, self.args.width).net[:-1]

    def same_model(self):
        """A fresh network of Enc and Dec's shape, for the moving average."""
        m = vaegan.VAEModel("conv", self.args.latent_dim, self.args.width)
        if self.args.decoder_batchnorm:
            m.decoder = self.batchnorm_decoder()
        return m

    def dis_loss(self, x, x_rec, x_p):
        every = self.args.r1_every      # as the GAN's d_loss: Dis steps 0, k, 2k, ...
        if not self.args.r1 or self.steps % every:
            return super().dis_loss(x, x_rec, x_p)
        dis = self.discriminator
        real_logits, r1 = r1_penalty(dis, x)
        loss = (gan_bce(real_logits, 1.0) + 0.5 * (gan_bce(dis(x_rec), 0.0)
                                                    + gan_bce(dis(x_p), 0.0))
                + 0.5 * self.args.r1 * every * r1)
        return loss, {"r1": r1.item() * every}

    def train_step(self, x, y):
        out = super().train_step(x, y)
        self.steps += 1
        if self.args.ema:               # the GAN's schedule: a short memory at first
            t = self.steps
            ema_update(self.vaegan_ema, self.vaegan, min(self.args.ema, (1 + t) / (10 + t)))
        return out

    def models(self):
        pairs = super().models()
        if self.args.ema:
            pairs[0] = ("vaegan", self.vaegan_ema)
        return pairs

    def sample(self, n):
        if not self.args.ema:
            return super().sample(n)
        with vaegan.evaluating(self.vaegan_ema):
            return {"images": self.samples(self.vaegan_ema, n)}

    @staticmethod
    def add_arguments(parser):
        vaegan.VAEGAN.add_arguments(parser)
        parser.add_argument("--decoder-batchnorm", action="store_true",
                            help="BatchNorm in Dec, as in the GAN's generator")
        parser.add_argument("--dcgan-init", action="store_true",
                            help="DCGAN's N(0, 0.02) initialisation of every network")
        parser.add_argument("--ema", type=number(float, minimum=0, below=1), default=0.0,
                            help="samples from a moving average of Enc and Dec with this decay")
        parser.add_argument("--r1", type=number(float, minimum=0), default=0.0,
                            help="R1 penalty weight gamma on Dis at real images")
        parser.add_argument("--r1-every", type=positive_int, default=4,
                            help="the R1 penalty on every k-th Dis step only, weighted k times")
        parser.add_argument("--betas", type=betas, default=None,
                            help="Adam's betas B1,B2 for Enc, Dec and Dis")


EXPERIMENTS = {"gan": GANLevers, "vaegan": VAEGANLevers}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in EXPERIMENTS:
        print(f"usage: python -m benchmarks.levers {{{','.join(EXPERIMENTS)}}} [flags]",
              file=sys.stderr)
        return 2
    return run_cli(EXPERIMENTS[argv[0]], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
