"""Deterministic autoencoder: ``python -m models.autoencoder``.

An encoder g maps an image to a code and a decoder f maps the code back:

    h = g(x),   x' = f(h),   minimise  E = L(x, f(g(x)))

over the training images. The slide writes h = g(x) and x = f(h), but its error
as E = ||x - g(f(x))||, with g and f swapped: read literally, that decodes first
and encodes second, which does not type-check (f takes a code, not an image).
The code follows the slide's definitions h = g(x), x' = f(h), hence f(g(x)).

The decoder outputs logits l, x' = sigmoid(l); the reconstruction error per
image is

    L(x, l) = sum_i softplus(l_i) - x_i l_i      (--loss bce, default: BCE in nats)
    L(x, l) = ||x - sigmoid(l)||^2               (--loss squared-norm: the slide's
                                                  norm, squared, summed over pixels)

A small code (--latent-dim) forces g to keep only what f needs to redraw the
digit; with ``--latent-dim 2`` the code plane can be drawn: the test digits'
codes coloured by class, and the decoder's output over a grid of that plane (the
"manifold").

Architectures (--arch, models/blocks.py): ``mlp``  784 -> hidden -> d -> hidden
-> 784; ``conv``  two stride-2 convolutions (28 -> 14 -> 7) then a linear layer,
and the mirror image with transposed convolutions.
"""
from __future__ import annotations

from minigrad import nn, optim
from models.blocks import add_architecture_arguments, decoder, encoder
from models.cli import Experiment, run_cli
from models.evaluation import embed, evaluating
from models.figures import draw_curves, draw_manifold, draw_rows
from models.losses import bernoulli_nll


# ----------------------------------------------------------------------------- the model
class Autoencoder(nn.Module):
    def __init__(self, arch="mlp", latent_dim=2, hidden=None):
        super().__init__()
        self.encoder = encoder(arch, latent_dim, hidden)     # g
        self.decoder = decoder(arch, latent_dim, hidden)     # f

    def forward(self, x):
        return self.decoder(self.encoder(x))


# ----------------------------------------------------------------------------- the loss
def reconstruction_error(logits, x, loss="bce"):
    """Per-image reconstruction error of x' = sigmoid(logits): the BCE summed over
    pixels (nats), or the slide's squared norm ||x - x'||^2 (--loss squared-norm)."""
    if loss == "bce":
        return bernoulli_nll(logits, x)
    if loss == "squared-norm":
        d = x - logits.sigmoid()
        return (d * d).reshape(d.shape[0], -1).sum(axis=1)
    raise ValueError(f"reconstruction_error: loss must be 'bce' or 'squared-norm', got {loss!r}")


# ----------------------------------------------------------------------------- training
class AutoencoderExperiment(Experiment):
    """Deterministic autoencoder: h = g(x), x' = f(h), minimising the reconstruction
    error of f(g(x)) (BCE summed over pixels, nats per image, or the slide's squared
    norm). --latent-dim 2 draws the code plane."""

    name = "autoencoder"
    defaults = dict(epochs=5, batch_size=128, lr=1e-3)
    checkpoint = ("model", "opt")

    def __init__(self, args, run):
        super().__init__(args, run)
        self.model = Autoencoder(args.arch, args.latent_dim, args.hidden)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        loss = reconstruction_error(self.model(x), x, self.args.loss).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    @staticmethod
    def add_arguments(parser):
        add_architecture_arguments(parser, latent_dim=2)
        parser.add_argument("--loss", choices=("bce", "squared-norm"), default="bce",
                            help="reconstruction error per image: bce, the binary "
                                 "cross-entropy of f(g(x))'s logits (nats); squared-norm, the "
                                 "slide's ||x - f(g(x))||^2 summed over pixels")

    # ------------------------------------------------------------------------- evaluation
    def evaluate(self, epoch):
        total, n = 0.0, 0
        with evaluating(self.model):
            for x, _ in self.run.loader("test", batch_size=500):
                total += reconstruction_error(self.model(x), x, self.args.loss).sum().item()
                n += x.shape[0]
        return {"test_loss": total / n}

    # ------------------------------------------------------------------------- figures
    def figures(self, epoch, history, final):
        if not final:
            return
        run, name = self.run, self.name
        test_x, test_y = run.data.test_x, run.data.test_y
        with evaluating(self.model):
            recon = self.model(run.tensor(test_x[:16])).sigmoid().numpy()
            draw_rows(run, f"{name}_reconstructions.png", [test_x[:16], recon],
                      ["input", "output"], f"{name}: test digits and their reconstructions")
            draw_curves(run, f"{name}_loss.png", history,
                        [([("loss", "train"), ("test_loss", "test")],
                          f"reconstruction error ({self.args.loss}, per image)")],
                        title=f"{name}: loss curves")
            if self.args.latent_dim == 2:
                codes = embed(self.model.encoder, test_x, run).numpy()
                draw_manifold(run, f"{name}_manifold.png", codes, test_y,
                              lambda h: self.model.decoder(h).sigmoid(),
                              title=f"{name}: the 2-D code plane h = g(x)",
                              names=run.data.class_names)


if __name__ == "__main__":
    raise SystemExit(run_cli(AutoencoderExperiment))
