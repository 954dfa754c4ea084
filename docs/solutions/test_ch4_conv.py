"""Chapter 4 (convolution): exercises 4.1 `conv_loops` and 4.2 `col2im_adjoint`."""
import numpy as np

import minigrad as mg
import minigrad.functional as F
from minigrad.conv import col2im, im2col


# ----------------------------------------------------------------------------- 4.1 conv_loops
def conv2d_loops(x, w, stride=1, padding=0):
    """One channel in, one out, in plain Python: x (H, W) and w (k, k) as nested lists.
    y[r][c] = sum_{i,j} xpad[r*s + i][c*s + j] * w[i][j]  (cross-correlation, as in
    PyTorch: the kernel is not flipped)."""
    h, wd, k = len(x), len(x[0]), len(w)
    xpad = [[0.0] * (wd + 2 * padding) for _ in range(h + 2 * padding)]
    for r in range(h):
        for c in range(wd):
            xpad[r + padding][c + padding] = x[r][c]
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    return [[sum(xpad[r * stride + i][c * stride + j] * w[i][j]
                 for i in range(k) for j in range(k)) for c in range(wo)] for r in range(ho)]


def test_conv_loops_match_conv2d():
    rng = np.random.default_rng(0)
    for (h, wd, k, s, p) in [(5, 5, 3, 1, 0), (7, 6, 3, 2, 1), (6, 6, 4, 2, 1), (4, 5, 2, 3, 0)]:
        x, w = rng.standard_normal((h, wd)), rng.standard_normal((k, k))
        got = F.conv2d(mg.tensor(x).reshape(1, 1, h, wd), mg.tensor(w).reshape(1, 1, k, k),
                       stride=s, padding=p).numpy()[0, 0]
        want = np.array(conv2d_loops(x.tolist(), w.tolist(), s, p))
        assert got.shape == want.shape, (h, wd, k, s, p)
        assert np.allclose(got, want, rtol=0, atol=1e-12), (h, wd, k, s, p)


def test_conv_loops_input_gradient_against_finite_differences():
    """The loops differentiated numerically = conv2d's backward (col2im of gy @ W^T)."""
    rng = np.random.default_rng(1)
    x, w, gy = rng.standard_normal((6, 6)), rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    xt = mg.tensor(x).reshape(1, 1, 6, 6).requires_grad_(True)
    (F.conv2d(xt, mg.tensor(w).reshape(1, 1, 3, 3), stride=2) * mg.tensor(gy).reshape(1, 1, 2, 2)
     ).sum().backward()
    eps, fd = 1e-6, np.zeros_like(x)
    for r in range(6):
        for c in range(6):
            up, down = x.copy(), x.copy()
            up[r, c] += eps
            down[r, c] -= eps
            fd[r, c] = (np.sum(np.array(conv2d_loops(up.tolist(), w.tolist(), 2)) * gy)
                        - np.sum(np.array(conv2d_loops(down.tolist(), w.tolist(), 2)) * gy)) / (2 * eps)
    assert np.allclose(xt.grad.numpy()[0, 0], fd, rtol=1e-6, atol=1e-8)
    assert np.all(fd[5, :] == 0) and np.all(fd[:, 5] == 0)   # 6 - 3 is odd: row 5 in no window


# ----------------------------------------------------------------------------- 4.2 col2im_adjoint
def adjoint_gap(shape, k, stride, padding, seed=0):
    """|<im2col(x), c> - <x, col2im(c)>| for random x and c: zero (to rounding) exactly
    when col2im is im2col's adjoint, i.e. adds every window back where it came from."""
    rng = np.random.default_rng(seed)
    x = mg.tensor(rng.standard_normal(shape)).data
    cols = im2col(x, k, stride, padding)
    c = mg.tensor(rng.standard_normal(tuple(cols.shape))).data
    lhs = float(np.sum(mg.tensor(cols).numpy() * mg.tensor(c).numpy()))
    rhs = float(np.sum(mg.tensor(x).numpy() * mg.tensor(col2im(c, shape, k, stride, padding)).numpy()))
    return abs(lhs - rhs)


def test_col2im_adjoint():
    for shape, k, s, p in [((2, 3, 6, 6), 3, 1, 1), ((1, 2, 7, 5), 3, 2, 0), ((1, 1, 28, 28), 4, 2, 1),
                           ((2, 1, 8, 8), 2, 3, 1)]:
        assert adjoint_gap(shape, k, s, p) < 1e-9, (shape, k, s, p)


def test_col2im_adjoint_keeps_the_input_shape():
    cols = im2col(mg.zeros(1, 1, 28, 28, dtype="float64").data, 3, 2)   # 25 = 28 - 3: not even
    back = col2im(mg.ones(*cols.shape, dtype="float64").data, (1, 1, 28, 28), 3, 2)
    assert tuple(back.shape) == (1, 1, 28, 28)
    assert float(mg.tensor(back).numpy()[0, 0, 27].sum()) == 0.0      # row 27: in no window
