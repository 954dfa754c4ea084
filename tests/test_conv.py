"""Convolution, transposed convolution, pooling and upsampling (minigrad/conv.py).

On every backend (numpy, strict, cupy where present), with hypothesis drawing N, C,
H, W, kernel, stride, padding, dilation, groups and output_padding independently per
axis (so kernels, strides and inputs are non-square):

* forward equals an independent reference: the nested-loop definition of each op,
  run in NumPy on the host (conv2d as a gather, conv_transpose2d as a scatter);
* gradcheck and gradgradcheck pass in float64;
* the adjoint identity <conv2d(x, w), y> == <x, conv_transpose2d(y, w)>;
* col2im / the input gradient at sizes where the last rows get no window;
* pooling and upsampling against references, error messages, and PyTorch as an
  extra oracle when it is installed.
"""
import math

import numpy as np  # host-side: references are computed on host copies
import pytest
from hypothesis import given, settings, strategies as st

import minigrad as mg
from minigrad.conv import (adaptive_avg_pool2d, avg_pool2d, col2im, conv2d, conv_transpose2d,
                           im2col, interpolate, max_pool2d, upsample_nearest2d)

# gradgradcheck runs a backward per perturbed element: fewer, smaller examples there
FEW = max(4, settings().max_examples // 3)


def tensor(a, requires_grad=False):
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def host(t):
    return t.numpy() if isinstance(t, mg.Tensor) else t


def pair_or_int(draw, a, b):
    """Pass an int when both axes agree (and hypothesis says so), else the pair."""
    return a if a == b and draw(st.booleans()) else (a, b)


# ----------------------------------------------------------------------------- references
# the nested-loop definitions, shared with the op registry
from minigrad.testing.registry import ref_conv2d, ref_conv_transpose2d, ref_pool  # noqa: E402


# ----------------------------------------------------------------------------- strategies
@st.composite
def conv_cases(draw, small=False):
    """(x, w, b, kwargs, geometry) for conv2d; small=True for gradgradcheck."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cg, og = draw(st.integers(1, 1 if small else 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    n = draw(st.integers(1, 1 if small else 2))
    extra = 2 if small else 4
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dh * (kh - 1) + 1 - 2 * ph)
                         + extra))
    w_ = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max(1, dw * (kw - 1) + 1 - 2 * pw)
                          + extra))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((n, cg * groups, h, w_))
    wt = rng.standard_normal((og * groups, cg, kh, kw))
    b = rng.standard_normal(og * groups) if draw(st.booleans()) else None
    kwargs = dict(stride=pair_or_int(draw, sh, sw), padding=pair_or_int(draw, ph, pw),
                  dilation=pair_or_int(draw, dh, dw), groups=groups)
    geom = ((sh, sw), (ph, ph, pw, pw), (dh, dw))
    return x, wt, b, kwargs, geom


@st.composite
def conv_transpose_cases(draw, small=False, wide=False):
    """wide=True: 16 output channels, one group, dilation 1 and kernels up to 5, the
    shapes where the transposed conv takes its sub-pixel GEMM path instead of col2im."""
    groups = 1 if wide else draw(st.sampled_from([1, 1, 2]))
    cig, cog = draw(st.integers(1, 1 if small else 2)), 16 if wide else draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 5 if wide else 3)), draw(st.integers(1, 5 if wide else 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = (1, 1) if wide else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    oph = draw(st.integers(0, max(sh, dh) - 1))
    opw = draw(st.integers(0, max(sw, dw) - 1))
    n = draw(st.integers(1, 1 if small else 2))
    h, w_ = draw(st.integers(1, 3 if small else 4)), draw(st.integers(1, 3 if small else 4))
    # padding may eat at most what leaves a positive output
    full_h = (h - 1) * sh + dh * (kh - 1) + oph + 1
    full_w = (w_ - 1) * sw + dw * (kw - 1) + opw + 1
    ph = draw(st.integers(0, min(2, (full_h - 1) // 2)))
    pw = draw(st.integers(0, min(2, (full_w - 1) // 2)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    x = rng.standard_normal((n, cig * groups, h, w_))
    wt = rng.standard_normal((cig * groups, cog, kh, kw))
    b = rng.standard_normal(cog * groups) if draw(st.booleans()) else None
    kwargs = dict(stride=pair_or_int(draw, sh, sw), padding=pair_or_int(draw, ph, pw),
                  output_padding=pair_or_int(draw, oph, opw), groups=groups,
                  dilation=pair_or_int(draw, dh, dw))
    geom = ((sh, sw), (ph, pw), (oph, opw), (dh, dw))
    return x, wt, b, kwargs, geom


def _args(x, w, b, requires_grad=True):
    ts = [tensor(x, requires_grad), tensor(w, requires_grad)]
    if b is not None:
        ts.append(tensor(b, requires_grad))
    return ts


def _fn(op, kwargs):
    def f(x, w, b=None):
        return op(x, w, b, **kwargs)
    return f


# ----------------------------------------------------------------------------- conv2d
def test_conv2d_forward_matches_nested_loops(backend_name):
    @given(conv_cases(), st.sampled_from(["contiguous", "channels_last", "strided"]))
    def check(case, layout):
        x, w, b, kwargs, geom = case
        xt = tensor(x)
        if layout == "channels_last":  # a non-contiguous NCHW view of NHWC memory
            xt = tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
        elif layout == "strided":      # every other column of a wider array
            wide = np.repeat(x, 2, axis=3)
            xt = tensor(wide)[:, :, :, ::2]
        y = conv2d(xt, tensor(w), None if b is None else tensor(b), **kwargs)
        expected = ref_conv2d(x, w, b, *geom, kwargs["groups"])
        assert y.backend == backend_name and y.dtype == mg.float64
        assert y.shape == expected.shape
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    check()


def test_conv2d_gradcheck(backend_name):
    @settings(max_examples=FEW * 2)
    @given(conv_cases())
    def check(case):
        x, w, b, kwargs, _ = case
        assert mg.gradcheck(_fn(conv2d, kwargs), _args(x, w, b))
    check()


def test_conv2d_gradgradcheck(backend_name):
    @settings(max_examples=FEW)
    @given(conv_cases(small=True))
    def check(case):
        x, w, b, kwargs, _ = case
        assert mg.gradgradcheck(_fn(conv2d, kwargs), _args(x, w, b))
    check()


def test_conv2d_padding_same_and_valid(backend_name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 6, 5))
    for kh, kw, dil in [(3, 3, 1), (4, 2, 1), (2, 3, 2), (1, 4, (2, 1))]:
        w = rng.standard_normal((3, 2, kh, kw))
        dh, dw = (dil, dil) if isinstance(dil, int) else dil
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # extra at the bottom/right
        y = conv2d(tensor(x), tensor(w), padding="same", dilation=dil)
        assert y.shape == (2, 3, 6, 5)
        np.testing.assert_allclose(y.numpy(), ref_conv2d(x, w, None, (1, 1), pads, (dh, dw), 1),
                                   atol=1e-10)
        assert mg.gradcheck(lambda a, b_: conv2d(a, b_, padding="same", dilation=dil),
                            _args(x[:1], w, None))
    w = rng.standard_normal((3, 2, 3, 2))
    np.testing.assert_allclose(conv2d(tensor(x), tensor(w), padding="valid").numpy(),
                               ref_conv2d(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1),
                               atol=1e-10)


def test_conv2d_unbatched_float32_and_gradient_layouts(backend_name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    xt = mg.tensor(x, requires_grad=True)
    wt = mg.tensor(w, requires_grad=True)
    y = conv2d(xt, wt, stride=(2, 1), padding=1)
    assert y.dtype == mg.float32 and y.shape == (4, 4, 7)
    np.testing.assert_allclose(y.numpy(), ref_conv2d(x[None].astype(np.float64), w, None,
                                                     (2, 1), (1, 1, 1, 1), (1, 1), 1)[0],
                               rtol=1e-5, atol=1e-5)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(mg.tensor(gy))
    assert xt.grad.dtype == mg.float32 and wt.grad.dtype == mg.float32
    assert xt.grad.shape == x.shape and wt.grad.shape == w.shape


@pytest.mark.parametrize("n, c, o, k, s, h", [(1, 16, 16, 4, 1, 10), (3, 8, 56, 3, 2, 11)])
def test_weight_gradient_summed_over_row_blocks(backend_name, n, c, o, k, s, h):
    """Narrow weight-gradient GEMMs are summed over row blocks on NumPy (64 rows for
    K*O = 4096): the sum over all N*Ho*Wo positions must still be exact."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((n, c, h, h))
    w = tensor(rng.standard_normal((o, c, k, k)), True)
    y = conv2d(tensor(x), w, stride=s, padding=1)
    gy = rng.standard_normal(y.shape)
    y.backward(tensor(gy))
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ho = y.shape[2]
    expected = np.zeros((o, c, k, k))
    for i in range(k):
        for j in range(k):
            win = xpad[:, :, i:i + s * (ho - 1) + 1:s, j:j + s * (ho - 1) + 1:s]
            expected[:, :, i, j] = np.einsum("nopq,ncpq->oc", gy, win)
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- conv_transpose2d
def test_conv_transpose2d_forward_matches_scatter_reference(backend_name):
    @given(conv_transpose_cases())
    def check(case):
        x, w, b, kwargs, geom = case
        y = conv_transpose2d(tensor(x), tensor(w), None if b is None else tensor(b), **kwargs)
        expected = ref_conv_transpose2d(x, w, b, *geom[:3], groups=kwargs["groups"],
                                        dilation=geom[3])
        assert y.shape == expected.shape
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)
    check()


def test_conv_transpose2d_gradcheck(backend_name):
    @settings(max_examples=FEW * 2)
    @given(conv_transpose_cases())
    def check(case):
        x, w, b, kwargs, _ = case
        assert mg.gradcheck(_fn(conv_transpose2d, kwargs), _args(x, w, b))
    check()


def test_conv_transpose2d_gradgradcheck(backend_name):
    @settings(max_examples=FEW)
    @given(conv_transpose_cases(small=True))
    def check(case):
        x, w, b, kwargs, _ = case
        assert mg.gradgradcheck(_fn(conv_transpose2d, kwargs), _args(x, w, b))
    check()


def test_wide_transposed_conv_subpixel_path(backend_name):
    """Forward vs the scatter reference, and gradients, on the sub-pixel path (also
    conv2d's input gradient for 16 input channels and stride > 1)."""
    @settings(max_examples=FEW)
    @given(conv_transpose_cases(wide=True))
    def check(case):
        x, w, b, kwargs, geom = case
        y = conv_transpose2d(tensor(x), tensor(w), None if b is None else tensor(b), **kwargs)
        np.testing.assert_allclose(y.numpy(), ref_conv_transpose2d(x, w, b, *geom[:3], dilation=geom[3]),
                                   rtol=1e-10, atol=1e-10)
        assert mg.gradcheck(_fn(conv_transpose2d, kwargs), _args(x[:1], w, b))
        # conv2d with this weight as (out=C_in, in=16): its input gradient is the same op
        z = tensor(np.random.default_rng(0).standard_normal((1,) + y.shape[1:]), True)
        ckw = {k: v for k, v in kwargs.items() if k != "output_padding"}
        assert mg.gradcheck(lambda z_: conv2d(z_, tensor(w), **ckw), (z,))
    check()


def test_adjoint_identity(backend_name):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>, with output_padding restoring
    exactly x's size where (H + 2p - d(k-1) - 1) is not a multiple of the stride."""
    @given(conv_cases())
    def check(case):
        x, w, _, kwargs, ((sh, sw), (ph, _, pw, _), (dh, dw)) = case
        y = conv2d(tensor(x), tensor(w), **kwargs)
        rng = np.random.default_rng(0)
        v = rng.standard_normal(y.shape)
        kh, kw = w.shape[2:]
        rem = ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) % sh,
               (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) % sw)
        xt = conv_transpose2d(tensor(v), tensor(w), stride=kwargs["stride"],
                              padding=kwargs["padding"], output_padding=rem,
                              groups=kwargs["groups"], dilation=kwargs["dilation"])
        assert xt.shape == x.shape
        lhs = float(np.sum(y.numpy() * v))
        rhs = float(np.sum(x * xt.numpy()))
        assert abs(lhs - rhs) <= 1e-9 * (1 + abs(lhs))
    check()


def test_nested_double_backward_wgan_gp_style(backend_name):
    """A gradient penalty: d/dw of ||d conv_net(x)/dx||^2 equals finite differences."""
    rng = np.random.default_rng(3)
    x = tensor(rng.standard_normal((1, 1, 6, 5)), requires_grad=True)
    w1 = tensor(rng.standard_normal((2, 1, 3, 3)), requires_grad=True)
    w2 = tensor(rng.standard_normal((2, 1, 2, 2)), requires_grad=True)

    def penalty(w1, w2):
        h = conv2d(x, w1, stride=2, padding=1).tanh()
        out = conv_transpose2d(h, w2, stride=2).sum()
        (gx,) = mg.grad(out, [x], create_graph=True)
        return (gx * gx).sum()
    assert mg.gradcheck(penalty, (w1, w2))


# ----------------------------------------------------------------------------- im2col / col2im
def test_im2col_col2im_adjoint_and_layout(backend_name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 7))
    k, s, p, d = (3, 2), (2, 3), (1, 0), (1, 2)
    cols = im2col(tensor(x).data, k, s, p, d)
    ho = (8 + 2 - 2 - 1) // 2 + 1
    wo = (7 + 0 - 2 - 1) // 3 + 1
    assert tuple(cols.shape) == (2, ho, wo, 3, 2, 3)
    c = mg.get_backend().to_numpy(cols)
    xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(
                c[:, :, :, i, j, :],
                xpad[:, :, i:i + 2 * (ho - 1) + 1:2, 2 * j:2 * j + 3 * (wo - 1) + 1:3]
                .transpose(0, 2, 3, 1))
    v = rng.standard_normal(c.shape)
    back = col2im(tensor(v).data, x.shape, k, s, p, d)
    assert tuple(back.shape) == x.shape
    lhs, rhs = float(np.sum(c * v)), float(np.sum(x * mg.get_backend().to_numpy(back)))
    assert abs(lhs - rhs) <= 1e-10 * (1 + abs(lhs))


@pytest.mark.parametrize("h, w, k, s, p, d", [
    (8, 9, 3, 2, 0, 1),     # (8 - 3) = 5 and (9 - 3) = 6: last row gets no window, cols do
    (10, 7, 2, 3, 0, 1),    # rows 9 and column 6 are never read
    (9, 9, 3, 4, 1, 2),     # dilation and padding
])
def test_input_gradient_where_no_window_reaches(backend_name, h, w, k, s, p, d):
    """col2im's size pitfall: the gradient has exactly the input's shape, and the rows
    and columns that no window covers get exactly zero."""
    rng = np.random.default_rng(5)
    x = tensor(rng.standard_normal((2, 2, h, w)), requires_grad=True)
    wt = tensor(rng.standard_normal((3, 2, k, k)), requires_grad=True)
    y = conv2d(x, wt, stride=s, padding=p, dilation=d)
    y.backward(tensor(rng.standard_normal(y.shape)))
    g = x.grad.numpy()
    assert g.shape == (2, 2, h, w)
    # rows (columns) that some window reads: o*s + i*d - p for every output o, tap i
    read_h = np.zeros(h, bool)
    read_w = np.zeros(w, bool)
    for read, n_out, size in ((read_h, y.shape[2], h), (read_w, y.shape[3], w)):
        for o in range(n_out):
            for i in range(k):
                if 0 <= o * s + i * d - p < size:
                    read[o * s + i * d - p] = True
    assert not read_h.all() or not read_w.all()  # the case really has unread positions
    reached = read_h[:, None] & read_w[None, :]
    assert np.all(g[:, :, ~reached] == 0)
    assert np.all(g[:, :, reached] != 0)
    assert mg.gradcheck(lambda a, b: conv2d(a, b, stride=s, padding=p, dilation=d),
                        (tensor(x.numpy()[:1, :1], True), tensor(wt.numpy()[:1, :1], True)))


# ----------------------------------------------------------------------------- pooling
@st.composite
def pool_cases(draw, small=False):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    sh, sw = (kh, kw) if stride is None else stride
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), kh - 2 * ph + (2 if small else 4)))
    w = draw(st.integers(max(1, kw - 2 * pw), kw - 2 * pw + (2 if small else 4)))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 1 if small else 3))
    x = np.random.default_rng(draw(st.integers(0, 2 ** 16))).standard_normal((n, c, h, w))
    kernel = kh if kh == kw and draw(st.booleans()) else (kh, kw)
    return x, kernel, stride, (ph, pw), ((kh, kw), (sh, sw), (ph, pw))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_forward_matches_reference(backend_name, mode):
    op = max_pool2d if mode == "max" else avg_pool2d

    @given(pool_cases())
    def check(case):
        x, kernel, stride, padding, geom = case
        y = op(tensor(x), kernel, stride, padding)
        np.testing.assert_allclose(y.numpy(), ref_pool(x, *geom, mode), rtol=1e-12, atol=1e-12)
    check()


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_gradcheck_and_gradgradcheck(backend_name, mode):
    op = max_pool2d if mode == "max" else avg_pool2d

    @settings(max_examples=FEW)
    @given(pool_cases(small=True))
    def check(case):
        x, kernel, stride, padding, _ = case  # continuous random values: no ties in a window

        def f(t):
            return op(t, kernel, stride, padding)
        assert mg.gradcheck(f, (tensor(x, True),))
        assert mg.gradgradcheck(f, (tensor(x, True),))
    check()


def test_max_pool_gradient_goes_to_the_first_maximum(backend_name):
    x = tensor([[[[1.0, 3.0, 3.0], [0.0, 2.0, -1.0]]]], requires_grad=True)
    y = max_pool2d(x, (2, 3))
    assert y.numpy().ravel().tolist() == [3.0]
    y.sum().backward()
    assert x.grad.numpy().ravel().tolist() == [0, 1, 0, 0, 0, 0]


def test_max_pool_padding_is_minus_infinity(backend_name):
    x = -np.ones((1, 1, 2, 2)) * 5
    y = max_pool2d(tensor(x), 2, stride=1, padding=1)
    assert np.all(y.numpy() == -5)                 # padding never wins
    a = avg_pool2d(tensor(x), 2, stride=1, padding=1)
    assert a.numpy()[0, 0, 0, 0] == pytest.approx(-5 / 4)  # zero padding counted


@pytest.mark.parametrize("out", [1, (1, 1), (2, 3), (3, None), 4, (5, 2)])
def test_adaptive_avg_pool2d(backend_name, out):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 5))
    y = adaptive_avg_pool2d(tensor(x), out)
    oh, ow = (out, out) if isinstance(out, int) else out
    oh, ow = 6 if oh is None else oh, 5 if ow is None else ow
    expected = np.zeros((2, 3, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * 6) // oh, math.ceil((i + 1) * 6 / oh)
            c0, c1 = (j * 5) // ow, math.ceil((j + 1) * 5 / ow)
            expected[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    small = tensor(x[:1, :2], True)
    assert mg.gradcheck(lambda t: adaptive_avg_pool2d(t, out), (small,))
    assert mg.gradgradcheck(lambda t: adaptive_avg_pool2d(t, out), (tensor(x[:1, :1], True),))


@pytest.mark.parametrize("scale", [2, 3, (1, 2)])
def test_interpolate_nearest(backend_name, scale):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 3, 4))
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    y = interpolate(tensor(x), scale_factor=scale)
    np.testing.assert_array_equal(y.numpy(), x.repeat(sh, axis=2).repeat(sw, axis=3))
    np.testing.assert_array_equal(upsample_nearest2d(tensor(x), scale).numpy(), y.numpy())
    f = lambda t: interpolate(t, scale_factor=scale)  # noqa: E731
    assert mg.gradcheck(f, (tensor(x, True),))
    assert mg.gradgradcheck(f, (tensor(x[:1, :1], True),))
    # gradient: each source pixel sums its sh*sw copies
    t = tensor(x, True)
    interpolate(t, scale_factor=scale).sum().backward()
    assert np.all(t.grad.numpy() == sh * sw)


def test_interpolate_to_size(backend_name):
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    y = interpolate(tensor(x), size=(5, 6))
    rows, cols = [(i * 3) // 5 for i in range(5)], [(j * 4) // 6 for j in range(6)]
    np.testing.assert_array_equal(y.numpy(), x[:, :, rows][:, :, :, cols])
    assert mg.gradcheck(lambda t: interpolate(t, size=(5, 6)), (tensor(x, True),))


# ----------------------------------------------------------------------------- errors
def _t(*shape):
    return mg.zeros(*shape)


ERRORS = [
    (lambda: conv2d(_t(1, 3, 5, 5), _t(4, 2, 3, 3)), r"conv2d: input has 3 channels.*\(1, 3, 5, "
     r"5\).*\(4, 2, 3, 3\).*groups=1"),
    (lambda: conv2d(_t(1, 4, 5, 5), _t(3, 2, 3, 3), groups=2), r"groups=2 must divide "
     r"out_channels.*3"),
    (lambda: conv2d(_t(1, 3, 5, 5), _t(4, 1, 3, 3), groups=2), r"input has 3 channels.*groups=2"),
    (lambda: conv2d(_t(1, 1, 3, 3), _t(1, 1, 5, 2)), r"kernel \(5, 2\).*larger than the padded "
     r"input \(3, 3\)"),
    (lambda: conv2d(_t(1, 1, 3, 3), _t(1, 1, 3, 3), dilation=2),
     r"dilation \(2, 2\) spans \(5, 5\), larger than the padded input \(3, 3\)"),
    (lambda: conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding="full"), r"padding must be .*'same'"
     r".*'full'"),
    (lambda: conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding="same", stride=2),
     r"padding='same' needs stride 1"),
    (lambda: conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), stride=0), r"stride must be >= 1"),
    (lambda: conv2d(_t(1, 1, 5, 5), _t(2, 1, 3, 3), _t(3)), r"bias must have shape \(2,\)"),
    (lambda: conv2d(_t(1, 5, 5), _t(1, 1, 3)), r"weight must be 4-D, got shape \(1, 1, 3\)"),
    (lambda: conv_transpose2d(_t(1, 3, 4, 4), _t(2, 2, 3, 3)), r"conv_transpose2d: input has 3 "
     r"channels.*\(2, 2, 3, 3\)"),
    (lambda: conv_transpose2d(_t(1, 3, 4, 4), _t(3, 2, 3, 3), groups=2),
     r"groups=2 must divide in_channels.*3"),
    (lambda: conv_transpose2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3), stride=2, output_padding=2),
     r"output_padding 2 must be smaller than stride 2 or dilation 1"),
    (lambda: conv_transpose2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3), output_padding=(0, 1)),
     r"output_padding .* must be smaller than stride"),
    (lambda: conv_transpose2d(_t(1, 1, 1, 1), _t(1, 1, 1, 1), padding=1),
     r"output size \(-1, -1\) is not positive"),
    (lambda: max_pool2d(_t(1, 1, 2, 2), 3), r"max_pool2d: kernel \(3, 3\) is larger than the "
     r"padded input \(2, 2\)"),
    (lambda: max_pool2d(_t(1, 1, 4, 4), 2, padding=2), r"padding 2 must be at most half"),
    (lambda: avg_pool2d(_t(1, 1, 4, 4), (2, 2, 2)), r"kernel_size must be an int or a pair"),
    (lambda: adaptive_avg_pool2d(_t(1, 1, 4, 4), 0), r"output_size must be positive"),
    (lambda: interpolate(_t(1, 1, 4, 4), scale_factor=2, mode="bicubic"),
     r"mode must be 'nearest' or 'bilinear'"),
    (lambda: interpolate(_t(1, 1, 4, 4)), r"give exactly one of size and scale_factor"),
    (lambda: interpolate(_t(1, 1, 4, 4), scale_factor=-1.5), r"scale_factor must be positive"),
    (lambda: interpolate(_t(1, 1, 4, 4), scale_factor=2, align_corners=True),
     r"align_corners only applies to mode='bilinear'"),
    (lambda: max_pool2d(_t(1, 1, 4, 4), 2, padding=1, dilation=0), r"dilation must be >= 1"),
    (lambda: avg_pool2d(_t(1, 1, 4, 4), 2, divisor_override=0), r"divisor_override must be"),
]


@pytest.mark.parametrize("call, message", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_errors_name_the_argument_and_shapes(backend_name, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_dtype_mismatch_is_a_type_error(backend_name):
    with pytest.raises(TypeError, match=r"float32.*float64"):
        conv2d(mg.zeros(1, 1, 4, 4), mg.zeros(1, 1, 3, 3).double())


# ----------------------------------------------------------------------------- PyTorch oracle
TORCH_CASES = [
    # conv2d: stride, padding, dilation, groups
    ("conv", (2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                              groups=2)),
    ("conv", (1, 3, 7, 7), (4, 3, 4, 4), dict(stride=2, padding=1)),
    ("conv", (2, 2, 6, 5), (3, 2, 4, 3), dict(padding="same", dilation=(1, 2))),
    # conv_transpose2d: stride, padding, output_padding, groups, dilation
    ("convT", (2, 4, 4, 3), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 0),
                                              output_padding=(1, 2), groups=2, dilation=1)),
    ("convT", (1, 3, 3, 3), (3, 2, 4, 4), dict(stride=2, padding=1)),
    ("convT", (1, 2, 3, 4), (2, 1, 2, 3), dict(stride=1, output_padding=(1, 0), dilation=(2, 1))),
]


@pytest.mark.parametrize("kind, xs, ws, kwargs", TORCH_CASES)
def test_matches_pytorch(backend_name, kind, xs, ws, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    nb = ws[0] if kind == "conv" else ws[1] * kwargs.get("groups", 1)
    b = rng.standard_normal(nb)
    top = torch.nn.functional.conv2d if kind == "conv" else torch.nn.functional.conv_transpose2d
    mop = conv2d if kind == "conv" else conv_transpose2d
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = top(tx, tw, tb, **kwargs)
    mx, mw, mb = _args(x, w, b)
    my = mop(mx, mw, mb, **kwargs)
    np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gy))
    my.backward(tensor(gy))
    for m, t in ((mx, tx), (mw, tw), (mb, tb)):
        np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-10)
