"""Networks that several models build on, written once.

- the MLP and convolutional encoders and decoders of 28 x 28 digits (the
  autoencoder, the VAE, the VAE-GAN, transfer learning's autoencoder trunk);
- ``VAEModel``: the Gaussian encoder and the decoder of a VAE (the VAE, the
  VAE-GAN and the plain VAE trained beside it, the GAN's comparison);
- ``Discriminator``: strided convolutions to one logit, whose conv features are
  the VAE-GAN's Dis_l (the GAN, the VAE-GAN);
- ``dcgan_init``, ``averaged_copy`` and ``ema_update``: DCGAN's initialisation and a
  moving average of a generator's weights (the GAN);
- ``ConvNet``: the toolkit classifier (the classifier, the sample-quality
  metrics, transfer learning's pretrained trunk).
"""
from __future__ import annotations

from minigrad import nn, no_grad
from minigrad.backend import get_backend
from models.cli import positive_int
from models.losses import reparameterize

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28
DEFAULT_HIDDEN = {"mlp": 400, "conv": 32}


# ----------------------------------------------------------------------------- encoders, decoders
def mlp_encoder(out_features, hidden=400, in_features=N_PIXELS):
    """x (B, 1, 28, 28) -> flatten -> Linear -> ReLU -> Linear -> (B, out_features)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_features))


def mlp_decoder(in_features, hidden=400):
    """h (B, d) -> Linear -> ReLU -> Linear -> pixel logits (B, 1, 28, 28)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Linear(hidden, N_PIXELS), nn.Unflatten(1, IMAGE_SHAPE))


def conv_encoder(out_features, width=32):
    """(B, 1, 28, 28) -> conv 4x4/2 -> (w, 14, 14) -> conv 4x4/2 -> (2w, 7, 7) -> Linear."""
    return nn.Sequential(nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(2 * width * 7 * 7, out_features))


def conv_decoder(in_features, width=32):
    """The mirror image: Linear -> (2w, 7, 7) -> transposed conv 4x4/2 -> (w, 14, 14)
    -> transposed conv 4x4/2 -> pixel logits (B, 1, 28, 28)."""
    return nn.Sequential(nn.Linear(in_features, 2 * width * 7 * 7), nn.ReLU(),
                         nn.Unflatten(1, (2 * width, 7, 7)),
                         nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1))


def encoder(arch, out_features, hidden=None):
    """``mlp_encoder`` or ``conv_encoder``; ``hidden`` (units or first-conv channels)
    defaults to DEFAULT_HIDDEN[arch]."""
    hidden = hidden or DEFAULT_HIDDEN[arch]
    return mlp_encoder(out_features, hidden) if arch == "mlp" else conv_encoder(out_features,
                                                                                hidden)


def decoder(arch, in_features, hidden=None):
    """``mlp_decoder`` or ``conv_decoder`` (see ``encoder``)."""
    hidden = hidden or DEFAULT_HIDDEN[arch]
    return mlp_decoder(in_features, hidden) if arch == "mlp" else conv_decoder(in_features,
                                                                               hidden)


def add_architecture_arguments(parser, latent_dim):
    """--arch, --latent-dim and --hidden, for the models built on ``encoder``/``decoder``."""
    parser.add_argument("--arch", choices=("mlp", "conv"), default="mlp",
                        help="encoder/decoder architecture")
    parser.add_argument("--latent-dim", type=positive_int, default=latent_dim,
                        help="size of the code h")
    parser.add_argument("--hidden", type=positive_int, default=None,
                        help="hidden units (mlp) or channels of the first conv (conv) "
                             f"(default: {DEFAULT_HIDDEN['mlp']} for mlp, "
                             f"{DEFAULT_HIDDEN['conv']} for conv)")


# ----------------------------------------------------------------------------- the VAE's networks
class VAEModel(nn.Module):
    """A Gaussian encoder x -> (mu, logvar) of Q(h|x) = N(mu, diag exp(logvar)) (one
    network with 2d outputs, split in two) and a decoder h -> pixel logits of
    P(x|h) = Bernoulli(sigmoid(logits)), shape (B, 1, 28, 28)."""

    def __init__(self, arch="mlp", latent_dim=20, hidden=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = encoder(arch, 2 * latent_dim, hidden)
        self.decoder = decoder(arch, latent_dim, hidden)

    def encode(self, x):
        out = self.encoder(x)
        d = self.latent_dim
        return out[:, :d], out[:, d:]                 # mu, logvar

    def decode(self, h):
        return self.decoder(h)

    def forward(self, x, eps=None):
        """(logits, mu, logvar), decoding one reparameterised sample h = mu + sigma eps."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, eps)), mu, logvar


# ----------------------------------------------------------------------------- the discriminator
class Discriminator(nn.Module):
    """x (B, 1, 28, 28) -> conv 4x4/2 -> LeakyReLU(0.2) -> (w, 14, 14) -> conv 4x4/2
    -> LeakyReLU -> (2w, 7, 7) = ``features(x)`` -> Linear -> one logit (B, 1).
    No BatchNorm: a gradient penalty is per example, and BN couples a batch."""

    def __init__(self, width=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


# ----------------------------------------------------------------------------- GAN training aids
def dcgan_init(m):
    """DCGAN's initialisation (Radford et al. 2016): conv and linear weights
    N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0 (``module.apply(dcgan_init)``,
    as in PyTorch's DCGAN example)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def averaged_copy(module, cls, *args):
    """``module``'s weights in a fresh ``cls(*args)``, for an exponential moving
    average. The fresh network's initialisation is overwritten, so the backend's
    generator is put back as it was (a run's noise is the same with and without an
    average)."""
    backend = get_backend()
    rng = backend.rng_state()
    copy = cls(*args)
    backend.set_rng_state(rng)
    copy.load_state_dict(module.state_dict())
    return copy


def ema_update(average, module, decay):
    """average <- decay * average + (1 - decay) * module, parameter by parameter; the
    buffers (BatchNorm's running statistics) are the module's own, not averaged."""
    with no_grad():
        for a, p in zip(average.parameters(), module.parameters()):
            a.mul_(decay).add_(p, alpha=1.0 - decay)
        for a, b in zip(average.buffers(), module.buffers()):
            a.data = b.data


# ----------------------------------------------------------------------------- the classifier
class ConvNet(nn.Module):
    """The toolkit classifier (LeNet-like):

        x (1x28x28) -> conv 3x3, w -> ReLU -> max-pool 2    (w x 14 x 14)
                    -> conv 3x3, 2w -> ReLU -> max-pool 2   (2w x 7 x 7) = ``trunk``
                    -> flatten -> linear hidden -> ReLU      = ``features(x)``
                    -> linear n_classes                      (logits)
    """

    def __init__(self, n_classes=10, width=32, hidden=128):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(2 * width * 7 * 7, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x):
        """Penultimate-layer features (N, hidden)."""
        return self.fc(self.trunk(x))

    def forward(self, x):
        return self.head(self.features(x))
