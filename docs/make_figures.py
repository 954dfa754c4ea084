"""Draw the guide's own figures (the ones no model run makes): ``python -m docs.make_figures``.

    docs/figures/chain_rule_graph.svg     chapter 1: L = (x*y + x)^2, drawn by mg.viz
    docs/figures/chain_rule_backward.svg  chapter 3: the graph create_graph=True builds for it
    docs/figures/im2col.png               chapter 4: a 4x4 image, its 3x3 windows, the column
                                          matrix and the one GEMM

The graphs need Graphviz's ``dot`` (apt-get install graphviz); the im2col picture only
matplotlib. The numbers in the im2col picture come from minigrad.conv.im2col itself,
so the figure cannot disagree with the code. Figures of the models come from
``python -m benchmarks.figures``.
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # also runs as `python docs/make_figures.py`
    sys.path.insert(0, str(ROOT))

import minigrad as mg  # noqa: E402
from minigrad.conv import im2col  # noqa: E402

FIGURES = ROOT / "docs" / "figures"


def chain_rule_example():
    """Chapter 1's graph: x = 2, y = 3, u = x*y, v = u + x, L = v^2 (x is used twice)."""
    x = mg.tensor(2.0, requires_grad=True)
    y = mg.tensor(3.0, requires_grad=True)
    u = x * y
    v = u + x
    L = v ** 2
    return {"x": x, "y": y, "u": u, "v": v, "L": L}


def draw_graphs():
    t = chain_rule_example()
    names = {"x": t["x"], "y": t["y"], "L": t["L"]}
    mg.viz.draw(t["L"], path=FIGURES / "chain_rule_graph.svg", names=names)
    mg.viz.draw(t["L"], path=FIGURES / "chain_rule_backward.svg", names=names, backward=True)


def draw_im2col():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = mg.arange(16).reshape(1, 1, 4, 4).float()
    cols = mg.tensor(im2col(image.data, 3)).reshape(4, 9).numpy()    # one window per row
    img = image.numpy()[0, 0]
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(11, 3.4),
                                  gridspec_kw={"width_ratios": [4, 9, 2.6]})
    # the image and its four 3x3 windows (stride 1, no padding)
    a.imshow(img, cmap="Greys", vmin=-8, vmax=30)
    for (r, q), v in zip([(r, q) for r in range(4) for q in range(4)], img.ravel()):
        a.text(q, r, f"{v:.0f}", ha="center", va="center", fontsize=11)
    for k, (r, q) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        off = 0.06 * (k - 1.5)
        a.add_patch(Rectangle((q - 0.5 + off, r - 0.5 + off), 3, 3, fill=False,
                              edgecolor=colours[k], linewidth=2.2))
    a.set_title("x (1, 1, 4, 4): four 3x3 windows", fontsize=10)
    # the column matrix: window k is row k
    b.imshow(cols, cmap="Greys", vmin=-8, vmax=30, aspect="equal")
    for r in range(4):
        for q in range(9):
            b.text(q, r, f"{cols[r, q]:.0f}", ha="center", va="center", fontsize=10)
        b.add_patch(Rectangle((-0.5, r - 0.5), 9, 1, fill=False, edgecolor=colours[r],
                              linewidth=2.2))
    b.set_xticks(range(9), [f"{i}{j}" for i in range(3) for j in range(3)], fontsize=8)
    b.set_xlabel("kernel offset (i, j): column i*3 + j is ONE strided slice of x", fontsize=9)
    b.set_title("im2col(x, 3): (N*Ho*Wo, kh*kw*C) = (4, 9), a window per row", fontsize=10)
    # the GEMM and the output
    c.axis("off")
    c.text(0.0, 0.62, "cols (4, 9) @ W (9, O)\n= y (4, O)\n\nreshape (N, Ho, Wo, O)\n"
           "= (1, 2, 2, O):\nrow k is output\npixel k", fontsize=10, va="center")
    for ax in (a, b):
        ax.set_yticks([])
    a.set_xticks([])
    fig.tight_layout()
    fig.savefig(FIGURES / "im2col.png", dpi=110)
    plt.close(fig)


def main():
    FIGURES.mkdir(parents=True, exist_ok=True)
    draw_im2col()
    draw_graphs()
    for name in ("chain_rule_graph.svg", "chain_rule_backward.svg", "im2col.png"):
        print(FIGURES / name)


if __name__ == "__main__":
    main()
