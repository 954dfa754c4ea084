"""Deterministic autoencoder: ``python -m models.autoencoder``.

An encoder g maps an image to a code and a decoder f maps the code back:

    h = g(x),   x' = f(h),   minimise  L(x, f(g(x)))

over the training images. The decoder outputs logits l; the reconstruction error
is the binary cross-entropy summed over pixels (nats per image),

    L(x, l) = sum_i softplus(l_i) - x_i l_i          (--loss bce, default)

or the squared error sum_i (x_i - sigmoid(l_i))^2 (--loss mse). A small code
(--latent-dim) forces g to keep only what f needs to redraw the digit; with
``--latent-dim 2`` the code plane can be drawn: the test digits' codes coloured
by class, and the decoder's output over a grid of that plane (the "manifold").

Architectures (--arch): ``mlp``   784 -> hidden -> d -> hidden -> 784;
``conv``  two stride-2 convolutions (28 -> 14 -> 7) then a linear layer, and the
mirror image with transposed convolutions.

The building blocks and figure helpers here are shared by models/vae.py and
models/cvae.py.
"""
from __future__ import annotations

import numpy as np  # host-side: figures only (arrays that came out through Tensor.numpy())

import minigrad as mg
from minigrad import nn, optim
from models.cli import Experiment, run_cli
from models.losses import bernoulli_nll

IMAGE_SHAPE = (1, 28, 28)
N_PIXELS = 28 * 28


# ----------------------------------------------------------------------------- architectures
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


def build_encoder(arch, out_features, hidden):
    return mlp_encoder(out_features, hidden) if arch == "mlp" else conv_encoder(out_features,
                                                                                hidden)


def build_decoder(arch, in_features, hidden):
    return mlp_decoder(in_features, hidden) if arch == "mlp" else conv_decoder(in_features,
                                                                               hidden)


def add_architecture_arguments(parser, latent_dim, hidden_help="hidden units (mlp) or "
                               "channels of the first conv (conv)"):
    parser.add_argument("--arch", choices=("mlp", "conv"), default="mlp",
                        help="encoder/decoder architecture (default: mlp)")
    parser.add_argument("--latent-dim", type=int, default=latent_dim,
                        help=f"size of the code h (default: {latent_dim})")
    parser.add_argument("--hidden", type=int, default=None,
                        help=hidden_help + " (default: 400 for mlp, 32 for conv)")


def check_architecture_arguments(args):
    """Argument errors as ValueError (the CLI turns them into one line, exit 2)."""
    if args.latent_dim < 1:
        raise ValueError(f"--latent-dim must be >= 1, got {args.latent_dim}")
    if args.hidden is None:
        args.hidden = 400 if args.arch == "mlp" else 32
    if args.hidden < 1:
        raise ValueError(f"--hidden must be >= 1, got {args.hidden}")


def reconstruction_error(logits, x, loss="bce"):
    """Per-image reconstruction error in the units of --loss (nats for bce)."""
    if loss == "bce":
        return bernoulli_nll(logits, x)
    d = logits.sigmoid() - x
    return (d * d).reshape(d.shape[0], -1).sum(axis=1)


# ----------------------------------------------------------------------------- the model
class Autoencoder(nn.Module):
    def __init__(self, arch="mlp", latent_dim=2, hidden=400):
        super().__init__()
        self.encoder = build_encoder(arch, latent_dim, hidden)     # g
        self.decoder = build_decoder(arch, latent_dim, hidden)     # f

    def forward(self, x):
        return self.decoder(self.encoder(x))


class AutoencoderExperiment(Experiment):
    """Deterministic autoencoder: h = g(x), x' = f(h), minimising the reconstruction
    error sum_i BCE(x'_i, x_i) (nats per image). --latent-dim 2 draws the code plane."""

    name = "autoencoder"
    defaults = dict(epochs=5, batch_size=128, lr=1e-3)

    @staticmethod
    def add_arguments(parser):
        add_architecture_arguments(parser, latent_dim=2)
        parser.add_argument("--loss", choices=("bce", "mse"), default="bce",
                            help="reconstruction error (default: bce)")

    def __init__(self, args, run):
        super().__init__(args, run)
        check_architecture_arguments(args)
        self.model = Autoencoder(args.arch, args.latent_dim, args.hidden)
        self.opt = optim.Adam(self.model.parameters(), lr=args.lr)

    def train_step(self, x, y):
        loss = reconstruction_error(self.model(x), x, self.args.loss).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def evaluate(self, epoch):
        total, n = 0.0, 0
        with mg.no_grad():
            for x, _ in self.run.loader("test", batch_size=500, shuffle=False):
                total += reconstruction_error(self.model(x), x, self.args.loss).sum().item()
                n += x.shape[0]
        return {"test_loss": total / n}

    def figures(self, epoch, history, final):
        if not final:
            return
        test_x, test_y = self.run.data.test_x, self.run.data.test_y
        with mg.no_grad():
            x = self.run.tensor(test_x[:16])
            recon = self.model(x).sigmoid().numpy()
            draw_rows(self.run, f"{self.name}_reconstructions.png",
                      [test_x[:16], recon], ["input", "output"],
                      f"{self.name}: test digits (top) and their reconstructions (bottom)")
            draw_loss_curves(self.run, f"{self.name}_loss.png", history,
                             [([("loss", "train"), ("test_loss", "test")],
                               f"reconstruction error ({self.args.loss}, per image)")])
            if self.args.latent_dim == 2:
                codes = encode_all(self.run, lambda x: self.model.encoder(x))
                draw_manifold(self.run, f"{self.name}_manifold.png", codes, test_y,
                              lambda h: self.model.decoder(h).sigmoid(),
                              grid=code_grid_from(codes), title=f"{self.name}: 2-D codes")


def encode_all(run, encode, batch_size=500):
    """Codes of every test image (host array (N, d)); ``encode`` maps x to codes."""
    out = []
    n = run.data.test_x.shape[0]
    for i in range(0, n, batch_size):
        out.append(encode(run.tensor(run.data.test_x[i:i + batch_size])).numpy())
    return np.concatenate(out)


def code_grid_from(codes, n=15):
    """An n x n grid spanning the 1st-99th percentiles of the codes: (axis0, axis1) values."""
    lo, hi = np.percentile(codes, [1, 99], axis=0)
    return np.linspace(lo[0], hi[0], n), np.linspace(hi[1], lo[1], n)


# ----------------------------------------------------------------------------- figures
# Everything below draws host (NumPy) arrays that came out through Tensor.numpy().
def image_grid(rows, pad=1):
    """Rows of images (each a sequence of (28, 28) or (1, 28, 28) arrays) -> one 2-D array."""
    rows = [np.asarray(r, dtype=np.float32).reshape(len(r), 28, 28) for r in rows]
    ncol = max(len(r) for r in rows)
    out = np.ones((len(rows) * (28 + pad) + pad, ncol * (28 + pad) + pad), np.float32)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            y, x = pad + i * (28 + pad), pad + j * (28 + pad)
            out[y:y + 28, x:x + 28] = img
    return out


def _figure(w, h):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100)


def draw_rows(run, filename, rows, row_labels=None, title=None, col_labels=None):
    """Rows of digits as one grey image, optional labels on the left and on top."""
    grid = image_grid(rows)
    h, w = grid.shape
    px = 40.0                                   # grid pixels per inch of figure
    left = 0.2 + 0.07 * max(len(str(r)) for r in row_labels) if row_labels else 0.05
    top = (0.3 if title else 0.05) + (0.2 if col_labels else 0.0)
    fw, fh = left + w / px + 0.05, top + h / px + 0.05
    if title:                                   # room for the title's width
        fw = max(fw, 0.075 * len(title) + 0.2)
    x0 = left + (fw - (left + w / px + 0.05)) / 2  # centred under a wide title
    fig = _figure(fw, fh)
    ax = fig.add_axes([x0 / fw, 0.05 / fh, (w / px) / fw, (h / px) / fh])
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([29 * j + 15 for j in range(len(col_labels))] if col_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=8)
        ax.xaxis.tick_top()
    ax.set_yticks([29 * i + 15 for i in range(len(rows))] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=8)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.04 / fh, va="top")
    run.savefig(fig, filename)


def draw_loss_curves(run, filename, history, panels, title=None):
    """One panel per (keys, ylabel) in ``panels``; one line per (metric key, label)
    over the epochs in ``history`` (the metrics.jsonl records)."""
    fig = _figure(4.2 * len(panels), 3.2)
    for i, (keys, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, label in keys:
            pts = [(h["epoch"], h[key]) for h in history
                   if key in h and "epoch" in h and not h.get("final")]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    run.savefig(fig, filename)


def draw_manifold(run, filename, codes, labels, decode, grid, title):
    """Left: the 2-D codes of the test set coloured by class. Right: the decoder's
    images over a grid of the code plane (``grid`` = the two axes' values)."""
    g0, g1 = grid
    hs = np.array([[a, b] for b in g1 for a in g0], dtype=np.float32)
    imgs = decode(run.tensor(hs)).numpy().reshape(len(g1), len(g0), 28, 28)
    fig = _figure(10, 4.8)
    ax = fig.add_subplot(1, 2, 1)
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="class")
    ax.set_xlabel("h[0]")
    ax.set_ylabel("h[1]")
    ax.set_title("test codes")
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.imshow(image_grid(list(imgs), pad=0), cmap="gray", vmin=0, vmax=1, aspect="auto",
               extent=(g0[0], g0[-1], g1[-1], g1[0]))
    ax2.set_title("decoded grid")
    ax2.set_xlabel("h[0]")
    fig.suptitle(title)
    fig.tight_layout()
    run.savefig(fig, filename)


if __name__ == "__main__":
    raise SystemExit(run_cli(AutoencoderExperiment))
