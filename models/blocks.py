"""Networks that several models build on, written once.

- the MLP and convolutional encoders and decoders of 28 x 28 digits (the
  autoencoder, the VAE, the VAE-GAN, transfer learning's autoencoder trunk);
- ``VAEModel``: the Gaussian encoder and the decoder of a VAE (the VAE, the
  VAE-GAN and the plain VAE trained beside it, the GAN's comparison): the MLP
  one in pytorch/examples' layout (fc1, fc21, fc22, fc3, fc4), or a conv one;
- ``PixelLikelihood``: the decoder's P(x|h), Bernoulli or the slide's Gaussian;
- ``Discriminator``: strided convolutions to one logit, whose conv features are
  the VAE-GAN's Dis_l (the GAN, the VAE-GAN), optionally a projection
  discriminator of an image and its cluster (the GAN);
- ``dcgan_init``, ``averaged_copy`` and ``ema_update``: DCGAN's initialisation and a
  moving average of a generator's weights (the GAN);
- ``kmeans`` and ``Clusters``: the k-means clusters of the training images that the
  GAN's networks are conditioned on;
- ``ConvNet``: the toolkit classifier (the classifier, the sample-quality
  metrics, transfer learning's pretrained trunk).
"""
from __future__ import annotations

import math

import minigrad as mg
from minigrad import nn, no_grad
from minigrad.backend import get_backend
from models.cli import positive_float, positive_int
from models.losses import reconstruction_nll, reparameterize

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
# The Gaussian decoder's fixed sigma (and a learned one's start). At 0.3 a pixel
# off by a whole stroke costs about 5.6 nats, close to what the Bernoulli decoder
# charges a confidently wrong pixel, so the code carries about as much as the
# Bernoulli VAE's. With sigma = 1 the squared error weighs so little against the
# KL term that the decoder learns to ignore h (posterior collapse); with 0.1 the
# code carries far more than the prior N(0, I) covers, and prior samples get worse.
DEFAULT_SIGMA = 0.3
# A learned sigma is kept above one 8-bit grey level: pixels that are 0 in every
# image would otherwise drive their sigma to 0 and the density to infinity, and a
# density narrower than the data's quantisation step says nothing about digits.
MIN_SIGMA = 1.0 / 255


class PixelLikelihood(nn.Module):
    """The decoder's P(x|h) over pixels, given its output logits l:

        bernoulli   Bernoulli(sigmoid(l))                 (the PyTorch example's)
        gaussian    N(x | sigmoid(l), sigma^2 I)          (the slide's)

    with ``sigma`` a positive float (fixed) or ``"learned"``: one sigma per pixel,
    the parameter ``log_sigma`` of shape (1, 28, 28), starting at DEFAULT_SIGMA and
    kept >= MIN_SIGMA. Only the learned sigma adds a state_dict entry
    (``likelihood.log_sigma``)."""

    def __init__(self, kind="bernoulli", sigma=DEFAULT_SIGMA):
        super().__init__()
        if kind not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {kind!r}")
        self.kind, self.sigma = kind, sigma
        if kind == "gaussian" and sigma == "learned":
            self.log_sigma = nn.Parameter(mg.full(IMAGE_SHAPE, math.log(DEFAULT_SIGMA)))
        elif kind == "gaussian" and not (isinstance(sigma, (int, float)) and sigma > 0):
            raise ValueError(f"--sigma must be a positive number or 'learned', got {sigma!r}")

    def current_log_sigma(self):
        """log sigma: a float, or the learned (1, 28, 28) Tensor (None for bernoulli)."""
        if self.kind != "gaussian":
            return None
        if self.sigma == "learned":
            return self.log_sigma.clamp(min=math.log(MIN_SIGMA))
        return math.log(self.sigma)

    def nll(self, logits, x):
        """-log P(x|h) per example (nats); a density in x for the Gaussian."""
        return reconstruction_nll(logits, x, self.kind, self.current_log_sigma())

    def name(self):
        """What the metrics call this likelihood: bernoulli, gaussian (fixed sigma) or
        gaussian_learned_sigma."""
        return "gaussian_learned_sigma" if self.sigma == "learned" and \
            self.kind == "gaussian" else self.kind


class _VAE(nn.Module):
    def forward(self, x, eps=None):
        """(logits, mu, logvar), decoding one reparameterised sample h = mu + sigma eps."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, eps)), mu, logvar


class MLPVAE(_VAE):
    """pytorch/examples' vae/main.py model, with its module names, so its state_dict
    loads with load_state_dict (weights (out, in), as PyTorch's):

        encoder  h1 = relu(fc1(x))            fc1: 784 -> hidden (400)
                 mu = fc21(h1), logvar = fc22(h1)   fc21, fc22: hidden -> d (20)
        decoder  logits = fc4(relu(fc3(h)))    fc3: d -> hidden, fc4: hidden -> 784
    """

    def __init__(self, latent_dim=20, hidden=400, likelihood=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.fc1 = nn.Linear(N_PIXELS, hidden)
        self.fc21 = nn.Linear(hidden, latent_dim)
        self.fc22 = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, N_PIXELS)
        self.likelihood = likelihood or PixelLikelihood()

    def encode(self, x):
        h1 = self.fc1(x.reshape(x.shape[0], N_PIXELS)).relu()
        return self.fc21(h1), self.fc22(h1)           # mu, logvar

    def decode(self, h):
        return self.fc4(self.fc3(h).relu()).reshape(h.shape[0], *IMAGE_SHAPE)

    def load_state_dict(self, state_dict, strict=True):
        if any(k.startswith("encoder.") for k in state_dict):
            raise ValueError("this state_dict has the MLP VAE's old layout (encoder.1, "
                             "encoder.3, decoder.0, ...), from before its modules were named "
                             "as pytorch/examples' (fc1, fc21, fc22, fc3, fc4); retrain it "
                             "with this version")
        return super().load_state_dict(state_dict, strict)


class ConvVAE(_VAE):
    """A convolutional Gaussian encoder x -> (mu, logvar) (one network with 2d
    outputs, split in two) and a transposed-convolution decoder h -> pixel logits
    (B, 1, 28, 28)."""

    def __init__(self, latent_dim=20, width=32, likelihood=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = conv_encoder(2 * latent_dim, width)
        self.decoder = conv_decoder(latent_dim, width)
        self.likelihood = likelihood or PixelLikelihood()

    def encode(self, x):
        out = self.encoder(x)
        d = self.latent_dim
        return out[:, :d], out[:, d:]                 # mu, logvar

    def decode(self, h):
        return self.decoder(h)


def VAEModel(arch="mlp", latent_dim=20, hidden=None, likelihood="bernoulli",
             sigma=DEFAULT_SIGMA):
    """The VAE's networks, Q(h|x) = N(mu, diag exp(logvar)) and P(x|h) given by
    ``likelihood`` (see PixelLikelihood): ``MLPVAE`` (--arch mlp, pytorch/examples'
    layout) or ``ConvVAE`` (--arch conv). ``likelihood`` is a name (with ``sigma``)
    or a PixelLikelihood."""
    hidden = hidden or DEFAULT_HIDDEN[arch]
    lik = likelihood if isinstance(likelihood, PixelLikelihood) else \
        PixelLikelihood(likelihood, sigma)
    return MLPVAE(latent_dim, hidden, lik) if arch == "mlp" else ConvVAE(latent_dim, hidden, lik)


def add_likelihood_arguments(parser):
    """--likelihood and --sigma, for the VAE and the CVAE."""
    parser.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli",
                        help="the decoder's P(x|h): bernoulli, Bernoulli(sigmoid(f(h))) (the "
                             "PyTorch example's); gaussian, N(x | sigmoid(f(h)), sigma^2 I) "
                             "(the slide's; its log-density in nats)")
    parser.add_argument("--sigma", type=sigma_value, default=DEFAULT_SIGMA,
                        help="the Gaussian decoder's sigma: a positive number (fixed; the "
                             "default weighs a wrong pixel about as the Bernoulli decoder "
                             "does) or 'learned' (one per pixel, a "
                             "parameter of the decoder, kept >= 1/255)")
    parser.add_argument("--binarize", action="store_true",
                        help="binarised MNIST: every training image resampled as "
                             "Bernoulli(pixel) each epoch, the test set binarised once with a "
                             "fixed seed, so log p(x) compares with published binarised-MNIST "
                             "numbers")


def likelihood_from_args(args):
    """The PixelLikelihood of --likelihood and --sigma (ValueError: --sigma given
    without --likelihood gaussian, where it would mean nothing)."""
    if args.likelihood != "gaussian" and "sigma" in getattr(args, "given", ()):
        raise ValueError(f"--sigma is the Gaussian decoder's; add --likelihood gaussian "
                         f"or drop --sigma (--likelihood is {args.likelihood})")
    return PixelLikelihood(args.likelihood, args.sigma)


def sigma_value(text):
    """An argparse ``type`` for --sigma: 'learned' or a positive float."""
    if text == "learned":
        return text
    return positive_float(text)


# ----------------------------------------------------------------------------- the discriminator
class Discriminator(nn.Module):
    """x (B, 1, 28, 28) -> conv 4x4/2 -> LeakyReLU(0.2) -> (w, 14, 14) -> conv 4x4/2
    [-> BatchNorm] -> LeakyReLU -> (2w, 7, 7) = ``features(x)`` -> Linear -> one logit
    (B, 1). ``batchnorm``: as in DCGAN's D, after the second conv only; off by default,
    and for a gradient penalty, which is per example (BatchNorm couples a batch).

    ``n_clusters`` > 0 makes it a projection discriminator (Miyato & Koyama 2018)
    of an image and its cluster k: D(x, k) = Linear(phi(x)) + e_k . phi(x), with
    phi(x) the flattened features and e_k row k of an embedding, zero at the start
    (so D starts as the unconditional one)."""

    def __init__(self, width=32, batchnorm=False, n_clusters=0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            *([nn.BatchNorm2d(2 * width)] if batchnorm else []), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1))
        if n_clusters:
            self.embed = nn.Embedding(n_clusters, 2 * width * 7 * 7)
            nn.init.zeros_(self.embed.weight)

    def features(self, x):
        return self.body(x)

    def forward(self, x, k=None):
        phi = self.body(x)
        if k is None:
            return self.head(phi)
        projection = (self.embed(k) * phi.reshape(phi.shape[0], -1)).sum(axis=1, keepdims=True)
        return self.head(phi) + projection


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


def nearest_centre(x, centres):
    """(n,) int64: the index of each row of x (n, d) nearest to one of the centres
    (k, d), by ||x - c||^2 less ||x||^2, which is the same for every c."""
    return ((centres * centres).sum(axis=1).reshape(1, -1) - 2.0 * (x @ centres.T)).argmin(axis=1)


def kmeans(x, k, iters=50):
    """Lloyd's k-means of the rows of ``x`` (N, d): the centres (k, d).

    Seeding is k-means++ (Arthur & Vassilvitskii 2007): the first centre is a row
    drawn uniformly, each next one a row drawn with probability proportional to its
    squared distance from the nearest centre so far. Then, until no row changes
    cluster (at most ``iters`` rounds), every row joins its nearest centre and every
    centre moves to the mean of its rows (an empty cluster's centre stays). The
    draws come from the backend's generator."""
    n = x.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"kmeans: k must be between 1 and the {n} rows, got {k}")
    with no_grad():
        x = x.detach()
        row_sq = (x * x).sum(axis=1).reshape(n, 1)

        def sq_dists(c):                       # (n, m): ||x_i - c_j||^2
            return (row_sq - 2.0 * (x @ c.T) + (c * c).sum(axis=1).reshape(1, -1)).clamp(min=0.0)

        first = int(mg.randint(0, n, (1,)).item())
        centres = x[first:first + 1]
        nearest = sq_dists(centres).reshape(n)
        for _ in range(1, k):
            cumulative = nearest.cumsum(0)
            i = min(int((mg.rand(1) * cumulative[-1] >= cumulative).sum().item()), n - 1)
            centres = mg.cat([centres, x[i:i + 1]], axis=0)
            nearest = mg.minimum(nearest, sq_dists(x[i:i + 1]).reshape(n))
        assignment = None
        for _ in range(iters):
            new = nearest_centre(x, centres)
            if assignment is not None and bool((new == assignment).all().item()):
                break
            assignment = new
            members = mg.functional.one_hot(assignment, k).astype(x.dtype)   # (n, k)
            counts = members.sum(axis=0).reshape(k, 1)
            means = (members.T @ x) / counts.clamp(min=1.0)
            centres = mg.where(counts > 0, means, centres)
    return centres


class Clusters(nn.Module):
    """The k-means clusters of a set of images, which the GAN's generator and
    discriminator are conditioned on (--clusters): ``assign(x)`` gives each image
    the index of its nearest centre, ``sample(n)`` draws n indices with the shares
    of the images that the clusters were fitted to. The centres and the counts are
    buffers, so a checkpoint holds them."""

    def __init__(self, images, k, iters=50):
        super().__init__()
        self.register_buffer("centres", kmeans(images.reshape(images.shape[0], -1), k, iters))
        counts = mg.functional.one_hot(self.assign(images), k).sum(axis=0)
        self.register_buffer("counts", counts.astype(self.centres.dtype))

    def assign(self, images):
        """(B, ...) images -> (B,) int64: the nearest centre's index."""
        with no_grad():
            return nearest_centre(images.detach().reshape(images.shape[0], -1), self.centres)

    def sample(self, n):
        """(n,) int64 cluster indices, k drawn with probability counts[k] / sum(counts),
        from the backend's generator."""
        with no_grad():
            cumulative = self.counts.cumsum(0)
            u = mg.rand(n, 1, dtype=cumulative.dtype.name) * cumulative[-1]
            return (u >= cumulative.reshape(1, -1)).sum(axis=1)


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
