"""Every figure of the models, drawn one way.

- Digits are grey images as MNIST stores them (white ink on black), laid out in
  rows with thin white gaps; a title says what the rows are.
- Plots label both axes and, where curves run over epochs, tick whole epochs.
- A model writes ``<model>_<what>.png`` through ``run.savefig``.

Everything here draws host (NumPy) arrays that came out through Tensor.numpy().
"""
from __future__ import annotations

import numpy as np  # host-side: figures draw host arrays

TITLE_SIZE = 9
LABEL_SIZE = 8


def _figure(w, h):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100)


# ----------------------------------------------------------------------------- rows of digits
def image_grid(rows, pad=1):
    """Rows of images (each a sequence of (28, 28) or (1, 28, 28) arrays) -> one 2-D
    array, white (1.0) between the images."""
    rows = [np.asarray(r, dtype=np.float32).reshape(len(r), 28, 28) for r in rows]
    ncol = max(len(r) for r in rows)
    out = np.ones((len(rows) * (28 + pad) + pad, ncol * (28 + pad) + pad), np.float32)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            y, x = pad + i * (28 + pad), pad + j * (28 + pad)
            out[y:y + 28, x:x + 28] = img
    return out


def draw_rows(run, filename, rows, row_labels=None, title=None, col_labels=None, marked=()):
    """Rows of digits as one grey image, optional labels on the left and on top;
    each (row, column) in ``marked`` gets a red frame."""
    from matplotlib.patches import Rectangle
    pad = 1
    grid = image_grid(rows, pad)
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
    step = 28 + pad
    ax.set_xticks([step * j + pad + 13.5 for j in range(len(col_labels))] if col_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=LABEL_SIZE)
        ax.xaxis.tick_top()
    ax.set_yticks([step * i + pad + 13.5 for i in range(len(rows))] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=LABEL_SIZE)
    ax.tick_params(length=0)
    for r, c in marked:
        ax.add_patch(Rectangle((step * c + pad - 0.5, step * r + pad - 0.5), 28, 28,
                               fill=False, edgecolor="red", linewidth=1.5))
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE, y=1 - 0.04 / fh, va="top")
    run.savefig(fig, filename)


def progress_rows(snapshots, most=16):
    """At most ``most`` of the per-epoch ``snapshots`` (epoch, images), evenly spaced
    and always with the first and the last: (rows, row labels)."""
    keep = np.unique(np.linspace(0, len(snapshots) - 1, min(most, len(snapshots)))
                     .round().astype(int))
    return ([snapshots[i][1] for i in keep], [f"epoch {snapshots[i][0]}" for i in keep])


# ----------------------------------------------------------------------------- curves
def draw_curves(run, filename, history, panels, title=None):
    """One panel per (lines, ylabel) or (lines, ylabel, "log") of ``panels``; one line
    per (metric key, label) over the epochs of ``history`` (the metrics.jsonl records).
    "log": a log y axis, for a metric that falls by orders of magnitude."""
    from matplotlib.ticker import MaxNLocator
    epochs = sorted({h["epoch"] for h in history if "epoch" in h and not h.get("final")})
    fig = _figure(4.2 * len(panels), 3.2)
    for i, (keys, ylabel, *scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if scale == ["log"]:
            ax.set_yscale("log")
        for key, label in keys:
            pts = [(h["epoch"], h[key]) for h in history
                   if key in h and "epoch" in h and not h.get("final")]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=label)
        if len(epochs) <= 12:                 # every epoch a tick: whole epochs only
            ax.set_xticks(epochs)
            if len(epochs) == 1:
                ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=LABEL_SIZE)
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE)
    fig.tight_layout()
    run.savefig(fig, filename)


def draw_lines(run, filename, x, series, xlabel, ylabel, title, log_x=False):
    """Lines over shared x values, one per (label, ys, dashed) of ``series``; every x
    value is a labelled tick (on a log axis too)."""
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for label, ys, dashed in series:
        ax.plot(x, ys, marker="o", label=label, linestyle="--" if dashed else "-")
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(list(x))
    ax.set_xticklabels([str(v) for v in x])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    _label_and_save(run, fig, ax, filename, xlabel, ylabel, title, legend_size=LABEL_SIZE)


def _label_and_save(run, fig, ax, filename, xlabel, ylabel, title, legend_size=LABEL_SIZE - 1):
    """The one-panel plots' common end: axis labels, title, legend, then save."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    run.savefig(fig, filename)


def draw_bars(run, filename, categories, series, xlabel, ylabel, title, line=None):
    """Grouped bars: one bar per category for each (label, values) of ``series``; an
    optional horizontal (y, label) ``line`` (e.g. an even share)."""
    fig = _figure(5.6, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(categories))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    if line is not None:
        ax.axhline(line[0], color="black", ls="--", lw=1, label=line[1])
    ax.set_xticks(x)
    ax.set_xticklabels([str(c) for c in categories])
    _label_and_save(run, fig, ax, filename, xlabel, ylabel, title)


def draw_histograms(run, filename, groups, lines, xlabel, ylabel, title, bins=60):
    """Overlaid histograms, one per (values, label) of ``groups``, and vertical lines,
    one per (x, label, colour, style) of ``lines``."""
    fig = _figure(5.6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    top = np.percentile(np.concatenate([v for v, _ in groups]), 99.5)
    edges = np.linspace(0, top, bins)
    for values, label in groups:
        ax.hist(values, bins=edges, alpha=0.6, label=label)
    for x, label, colour, style in lines:
        ax.axvline(x, color=colour, ls=style, lw=1, label=label)
    _label_and_save(run, fig, ax, filename, xlabel, ylabel, title)


# ----------------------------------------------------------------------------- code planes
def _class_scatter(ax, points, labels, names):
    """Points coloured by class, each class's name written at its median point, and a
    legend of the classes beside the axes."""
    import matplotlib
    import matplotlib.patheffects as pe
    cmap = matplotlib.colormaps["tab10"]
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(points[m, 0], points[m, 1], s=3, alpha=0.6, color=cmap(int(c) % 10),
                   label=str(names[int(c)]))
    for c in np.unique(labels):
        x, y = np.median(points[labels == c], axis=0)
        ax.text(x, y, str(names[int(c)]), fontsize=11, weight="bold", ha="center",
                va="center", color="black",
                path_effects=[pe.withStroke(linewidth=3, foreground="white")])
    ax.legend(markerscale=4, fontsize=LABEL_SIZE - 1, title="class", title_fontsize=LABEL_SIZE,
              loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def draw_manifold(run, filename, codes, labels, decode, title, n=15, names=None):
    """Left: the 2-D codes of the test set, coloured by class. Right: the decoder's
    images over an n x n grid spanning the 1st to 99th percentile of the codes on each
    axis (the dashed box on the left). ``decode(h)`` maps a (n*n, 2) Tensor of
    codes to pixel probabilities."""
    from matplotlib.patches import Rectangle
    names = names or [str(c) for c in range(10)]
    lo, hi = np.percentile(codes, [1, 99], axis=0)
    g0, g1 = np.linspace(lo[0], hi[0], n), np.linspace(hi[1], lo[1], n)   # rows: top down
    hs = np.array([[a, b] for b in g1 for a in g0], dtype=np.float32)
    imgs = decode(run.tensor(hs)).numpy().reshape(n, n, 28, 28)
    # cell centres at the grid values: the image reaches half a step beyond them
    s0, s1 = (g0[-1] - g0[0]) / (n - 1), (g1[0] - g1[-1]) / (n - 1)
    box = (g0[0] - s0 / 2, g0[-1] + s0 / 2, g1[-1] - s1 / 2, g1[0] + s1 / 2)
    fig = _figure(11, 4.8)
    ax = fig.add_subplot(1, 2, 1)
    _class_scatter(ax, codes, labels, names)
    ax.add_patch(Rectangle((box[0], box[2]), box[1] - box[0], box[3] - box[2], fill=False,
                           ls="--", lw=1, edgecolor="k", label="decoded region"))
    ax.set_xlabel("h[0]")
    ax.set_ylabel("h[1]")
    ax.set_title("test codes h (dashed: the region decoded on the right)", fontsize=TITLE_SIZE)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.imshow(image_grid(list(imgs), pad=0), cmap="gray", vmin=0, vmax=1, aspect="auto",
               extent=box)
    ax2.set_title(f"decoder output on a {n} x {n} grid of codes", fontsize=TITLE_SIZE)
    ax2.set_xlabel("h[0]")
    ax2.set_ylabel("h[1]")
    fig.suptitle(title)
    fig.tight_layout()
    run.savefig(fig, filename)


def lda_projection(train_points, train_labels, points, dims=2):
    """Host-side: the ``dims`` directions of Fisher's linear discriminant, fitted on
    labelled ``train_points`` (N, d), applied to ``points``: the linear map to ``dims``
    dimensions that best separates the class means relative to the spread inside
    each class (maximises between-class over within-class scatter). Returns
    (M, dims) coordinates."""
    from scipy import linalg  # host-side: a generalised symmetric eigenproblem on host arrays
    x = np.asarray(train_points, np.float64)
    mean = x.mean(axis=0)
    d = x.shape[1]
    within, between = np.zeros((d, d)), np.zeros((d, d))
    for c in np.unique(train_labels):
        xc = x[train_labels == c]
        mc = xc.mean(axis=0)
        within += (xc - mc).T @ (xc - mc)
        between += len(xc) * np.outer(mc - mean, mc - mean)
    within += 1e-6 * np.trace(within) / d * np.eye(d)     # keep it invertible
    _, vectors = linalg.eigh(between, within)              # ascending eigenvalues
    return (np.asarray(points, np.float64) - mean) @ vectors[:, ::-1][:, :dims]


def draw_embedding(run, filename, points, labels, names, title, axis_labels):
    """A 2-D scatter of embedded test points, coloured and labelled by class."""
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    _class_scatter(ax, points, labels, names)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=TITLE_SIZE)
    fig.tight_layout()
    run.savefig(fig, filename)
