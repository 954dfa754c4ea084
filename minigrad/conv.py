"""2-D convolution, transposed convolution, pooling and upsampling (NCHW).

Everything here is written once against the backend's Array-API namespace
``be.xp``, so the same code runs on NumPy, CuPy and the strict GPU stand-in.

im2col: a convolution as one matrix product
-------------------------------------------
Output pixel (n, o, y, x) of a convolution is a dot product of the weights
with one window of the (zero-padded) input. ``im2col`` copies every window
into one row of a matrix, and the whole batch becomes ONE GEMM:

    cols (N*Ho*Wo, kh*kw*C)  @  W (kh*kw*C, O)  ->  (N*Ho*Wo, O)

The copy is done with kh*kw strided slices, one per kernel offset, not one
per window. Along one axis (k = 3, stride s = 2, dilation d = 1, Ho = 3):

    padded input:   0  1  2  3  4  5  6
    window o=0     [a  b  c]
    window o=1           [c  d  e]
    window o=2                 [e  f  g]

    kernel offset i takes element  i*d + s*o  of every window o:
      i=0 -> a c e  = xpad[0 : 0 + s*(Ho-1) + 1 : s]
      i=1 -> b d f  = xpad[1 : 1 + s*(Ho-1) + 1 : s]
      i=2 -> c e g  = xpad[2 : 2 + s*(Ho-1) + 1 : s]

so ``cols[:, :, :, i, j, :] = xpad[:, i*dh : i*dh + sh*(Ho-1)+1 : sh,
j*dw : j*dw + sw*(Wo-1)+1 : sw, :]``: a slice with a step, which the Array
API standard has. ``col2im`` is the adjoint: the same kh*kw slices, ADDED
into a zero buffer (windows overlap when the stride is smaller than the
kernel). Rows or columns that no window reaches (when H + 2p - d(k-1) - 1 is
not a multiple of the stride) simply stay zero, and the result is cropped to
exactly the input's shape.

Layout: the padded input is copied once to NHWC and the columns are
(N, Ho, Wo, kh, kw, C), so each slice copy moves runs of C contiguous numbers
in both source and destination. The GEMM output (N*Ho*Wo, O) is returned as an
NCHW view of NHWC memory (a free ``permute_dims``), which the next conv reads
contiguously.

Sizes (PyTorch's formulas, floor division):

    conv2d:            Ho = (H + 2p - d(k-1) - 1) // s + 1
    conv_transpose2d:  Ho = (H - 1) s - 2p + d(k-1) + output_padding + 1

Gradients: convolution is bilinear in (x, w). Three ops call each other:

    y  = conv2d(x, w)               the forward:  im2col(x) @ W
    gx = conv_transpose2d(gy, w)    d<y, gy>/dx:  col2im(gy @ W^T)
    gw = conv2d_weight(x, gy)       d<y, gy>/dw:  gy^T @ im2col(x)

and the backward of each is made of the other two, so gradients of
gradients (WGAN-GP, gradgradcheck) are just more convolutions.

Faster versions of ``im2col``, ``input_grad`` and ``weight_grad`` for some
backends and shapes live in ``minigrad/kernels/conv.py``; they compute the same
numbers and this file never calls them directly.
"""
from __future__ import annotations

import builtins
import math
from typing import NamedTuple

from .backend import backend_of as _backend_of
from .dtypes import dtype_of
from .tensor import Function, Tensor
from . import ops as _ops

__all__ = ["im2col", "col2im", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
           "adaptive_avg_pool2d", "interpolate", "upsample_nearest2d", "conv_output_size",
           "conv_transpose_output_size"]


# ----------------------------------------------------------------------------- geometry
class Geom(NamedTuple):
    """Kernel size, stride, dilation and padding (top, bottom, left, right)."""
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    groups: int = 1


def int_pair(v, name, fn, minimum=0):
    """``3`` or ``(3, 3)`` -> (3, 3), checked: the error names ``fn`` and ``name``."""
    if isinstance(v, Tensor) or isinstance(v, bool):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int):
        v = (v, v)
    try:
        a, b = (int(t) for t in v)
        if (a, b) != tuple(v):
            raise ValueError
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}") from None
    if a < minimum or b < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v!r}")
    return a, b


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Ho = (H + 2p - d(k-1) - 1) // s + 1  (one axis, PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride=1, padding=0, output_padding=0, dilation=1):
    """Ho = (H - 1) s - 2p + d(k-1) + output_padding + 1  (one axis)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def output_hw(h, w, g: Geom):
    """(Ho, Wo) of a convolution with geometry ``g`` over an H x W input."""
    return ((h + g.pt + g.pb - g.dh * (g.kh - 1) - 1) // g.sh + 1,
            (w + g.pl + g.pr - g.dw * (g.kw - 1) - 1) // g.sw + 1)


def _window(a, i, j, g: Geom, ho, wo, channels_last):
    """The strided slice of (padded) ``a`` that kernel offset (i, j) sees in every window."""
    rows = slice(i * g.dh, i * g.dh + g.sh * (ho - 1) + 1, g.sh)
    cols = slice(j * g.dw, j * g.dw + g.sw * (wo - 1) + 1, g.sw)
    return a[:, rows, cols, :] if channels_last else a[:, :, rows, cols]


# ----------------------------------------------------------------------------- array functions
def padded_nhwc(be, x, g: Geom):
    """One contiguous NHWC copy of x (N, C, H, W) with the zero padding around it."""
    n, c, h, w = x.shape
    buf = be.zeros((n, h + g.pt + g.pb, w + g.pl + g.pr, c), x.dtype)
    buf[:, g.pt:g.pt + h, g.pl:g.pl + w, :] = be.xp.permute_dims(x, (0, 2, 3, 1))
    return buf


def im2col_nhwc(be, xpad, g: Geom, ho, wo):
    """Columns (N*Ho*Wo, kh*kw*C) from a padded NHWC array: kh*kw strided copies."""
    n, hp, wp, c = xpad.shape
    cols = be.zeros((n, ho, wo, g.kh, g.kw, c), xpad.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, :, :, i, j, :] = _window(xpad, i, j, g, ho, wo, True)
    return be.xp.reshape(cols, (n * ho * wo, g.kh * g.kw * c))


def col2im_nhwc(be, cols, shape, g: Geom):
    """Adjoint of ``im2col_nhwc``: sum columns (N, Ho, Wo, kh, kw, C) back into an
    (N, C, H, W) array of the given ``shape``; padding is cropped off."""
    n, c, h, w = shape
    _, ho, wo = cols.shape[:3]
    buf = be.zeros((n, h + g.pt + g.pb, w + g.pl + g.pr, c), cols.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            buf[:, i * g.dh:i * g.dh + g.sh * (ho - 1) + 1:g.sh,
                j * g.dw:j * g.dw + g.sw * (wo - 1) + 1:g.sw, :] += cols[:, :, :, i, j, :]
    return be.xp.permute_dims(buf[:, g.pt:g.pt + h, g.pl:g.pl + w, :], (0, 3, 1, 2))


def rows_nhwc(xp, a):
    """(N, C, H, W) -> (N*H*W, C): free when ``a`` is an NCHW view of NHWC memory."""
    n, c, h, w = a.shape
    return xp.reshape(xp.permute_dims(a, (0, 2, 3, 1)), (n * h * w, c))


class _ChannelsLast(Function):
    """y = x (N, C, H, W), with its memory laid out channels-last (N, H, W, C). Both of
    conv's backward GEMMs read gy as (N*H*W, C) rows: laid out once, each reads them
    without a copy (free when gy is laid out so already)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        xp = self.xp
        n, c, h, w = x.shape
        return xp.permute_dims(xp.reshape(rows_nhwc(xp, x), (n, h, w, c)), (0, 3, 1, 2))

    def backward(self, gy):
        return gy


def _grouped(xp, a, groups):
    """(M, G*K) -> (G, M, K): the columns of each group as its own matrix."""
    m = a.shape[0]
    return xp.permute_dims(xp.reshape(a, (m, groups, -1)), (1, 0, 2))


def _weight_matrix(xp, w, groups):
    """Weight (O, C/G, kh, kw) -> (G, kh*kw*C/G, O/G), rows ordered (i, j, c) like cols."""
    o, cg, kh, kw = w.shape
    return xp.reshape(xp.permute_dims(xp.reshape(w, (groups, o // groups, cg, kh, kw)),
                                      (0, 3, 4, 2, 1)), (groups, kh * kw * cg, o // groups))


def _cols_by_group(xp, cols, kh, kw, groups):
    """Columns (M, kh*kw*C) -> (G, M, kh*kw*C/G): each group's channels, offsets first."""
    m = cols.shape[0]
    return xp.reshape(xp.permute_dims(xp.reshape(cols, (m, kh * kw, groups, -1)), (2, 0, 1, 3)),
                      (groups, m, -1))


def forward_gemm(be, cols, w, groups):
    """y = cols @ W per group: (M, kh*kw*C) and weight (O, C/G, kh, kw) -> (M, O)."""
    xp = be.xp
    o, _, kh, kw = w.shape
    y = xp.matmul(_cols_by_group(xp, cols, kh, kw, groups), _weight_matrix(xp, w, groups))
    return xp.reshape(xp.permute_dims(y, (1, 0, 2)), (cols.shape[0], o))


def input_grad(be, gy, w, x_shape, g: Geom):
    """d<conv2d(x, w), gy>/dx = col2im(gy @ W^T): the transposed convolution of gy,
    onto an input of shape ``x_shape`` (N, C, H, W)."""
    xp = be.xp
    n, o, ho, wo = gy.shape
    kh, kw, groups = g.kh, g.kw, g.groups
    wmat = xp.permute_dims(_weight_matrix(xp, w, groups), (0, 2, 1))         # (G, O/G, kh*kw*C/G)
    gcols = xp.matmul(_grouped(xp, rows_nhwc(xp, gy), groups), wmat)   # (G, M, kh*kw*C/G)
    gcols = xp.reshape(gcols, (groups, n * ho * wo, kh * kw, -1))
    gcols = xp.reshape(xp.permute_dims(gcols, (1, 2, 0, 3)), (n, ho, wo, kh, kw, x_shape[1]))
    return col2im_nhwc(be, gcols, x_shape, g)


def weight_grad(be, gy_rows, cols, w_shape, groups):
    """d<conv2d(x, w), gy>/dw = gy^T @ im2col(x), from gy as (N*Ho*Wo, O) rows and the
    columns (N*Ho*Wo, kh*kw*C), shaped like the weight (O, C/G, kh, kw)."""
    xp = be.xp
    o, cg, kh, kw = w_shape
    cols_g = xp.permute_dims(_cols_by_group(xp, cols, kh, kw, groups), (0, 2, 1))  # (G, K, M)
    gw = xp.matmul(cols_g, _grouped(xp, gy_rows, groups))                   # (G, K, O/G)
    gw = xp.reshape(gw, (groups, kh, kw, cg, o // groups))
    return xp.reshape(xp.permute_dims(gw, (0, 4, 3, 1, 2)), (o, cg, kh, kw))


# ----------------------------------------------------------------------------- public array API
def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Columns of an (N, C, H, W) array: shape (N, Ho, Wo, kh, kw, C), where
    ``cols[n, y, x, i, j, c] = xpad[n, c, y*sh + i*dh, x*sw + j*dw]`` and
    Ho = (H + 2p - d(k-1) - 1) // s + 1. Works on arrays (not Tensors)."""
    be = _backend_of(x)
    g = _geom(kernel_size, stride, padding, dilation, "im2col")
    n, c, h, w = x.shape
    ho, wo = output_hw(h, w, g)
    if ho < 1 or wo < 1:
        raise ValueError(f"im2col: kernel {(g.kh, g.kw)} (dilation {(g.dh, g.dw)}) is larger "
                         f"than the padded input {(h + g.pt + g.pb, w + g.pl + g.pr)}")
    cols = im2col_nhwc(be, padded_nhwc(be, x, g), g, ho, wo)
    return be.xp.reshape(cols, (n, ho, wo, g.kh, g.kw, c))


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Adjoint of ``im2col``: columns (N, Ho, Wo, kh, kw, C) summed back into an array of
    exactly ``input_shape`` (N, C, H, W); positions no window covers get 0."""
    be = _backend_of(cols)
    g = _geom(kernel_size, stride, padding, dilation, "col2im")
    n, c, h, w = input_shape
    ho, wo = output_hw(h, w, g)
    want = (n, ho, wo, g.kh, g.kw, c)
    if tuple(cols.shape) != want:
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not match input_shape "
                         f"{tuple(input_shape)} (expected {want})")
    return col2im_nhwc(be, cols, input_shape, g)


def _geom(kernel_size, stride, padding, dilation, fn, groups=1):
    kh, kw = int_pair(kernel_size, "kernel_size", fn, 1)
    sh, sw = int_pair(stride, "stride", fn, 1)
    ph, pw = int_pair(padding, "padding", fn, 0)
    dh, dw = int_pair(dilation, "dilation", fn, 1)
    return Geom(kh, kw, sh, sw, dh, dw, ph, ph, pw, pw, groups)


# ----------------------------------------------------------------------------- Functions
class _Conv2d(Function):
    """y = conv2d(x, w) + b = im2col(x) @ W + b.

    ``out_hw`` crops the output to the first Ho x Wo windows (the transposed conv's
    backward needs that when output_padding made its output larger); ``cols`` passes
    im2col(x) when the caller has it already."""

    def forward(self, x, w, b=None, geom=None, out_hw=None, cols=None):
        be, xp = self._backend, self.xp
        n, _, h, wd = x.shape
        ho, wo = out_hw or output_hw(h, wd, geom)
        if cols is None:
            cols = im2col_nhwc(be, padded_nhwc(be, x, geom), geom, ho, wo)
        y = forward_gemm(be, cols, w, geom.groups)
        if b is not None:
            y += b
        self.geom, self.cols = geom, cols      # backward's weight gradient reuses the columns
        return xp.permute_dims(xp.reshape(y, (n, ho, wo, w.shape[0])), (0, 3, 1, 2))

    def backward(self, gy):
        x, w = self.inputs[:2]
        need = self.needs_input_grad
        if need[0] and need[1]:
            gy = _ChannelsLast.apply(gy)
        gx = _ConvTranspose2d.apply(gy, w, geom=self.geom, x_hw=x.shape[2:]) if need[0] else None
        gw = _Conv2dWeight.apply(x, gy, geom=self.geom, w_shape=w.shape,
                                 cols=self.cols) if need[1] else None
        gb = _ops.sum(gy, axis=(0, 2, 3)) if len(need) > 2 and need[2] else None
        return gx, gw, gb


class _ConvTranspose2d(Function):
    """y = conv_transpose2d(gy, w) + b = col2im(gy @ W^T) + b: the adjoint of conv2d
    in x, onto an output of spatial size ``x_hw``."""

    def forward(self, gy, w, b=None, geom=None, x_hw=None):
        n = gy.shape[0]
        c = w.shape[1] * geom.groups
        gx = input_grad(self._backend, gy, w, (n, c) + tuple(x_hw), geom)
        if b is not None:
            gx = gx + self.xp.reshape(b, (1, c, 1, 1))
        self.geom = geom
        return gx

    def backward(self, g):
        gy, w = self.inputs[:2]
        need = self.needs_input_grad
        cols = None
        if need[0] and need[1]:  # both gradients read im2col(g): build it once
            be = self._backend
            cols = im2col_nhwc(be, padded_nhwc(be, g.data, self.geom), self.geom, *gy.shape[2:])
        dgy = _Conv2d.apply(g, w, geom=self.geom, out_hw=gy.shape[2:], cols=cols) \
            if need[0] else None
        dw = _Conv2dWeight.apply(g, gy, geom=self.geom, w_shape=w.shape, cols=cols) \
            if need[1] else None
        db = _ops.sum(g, axis=(0, 2, 3)) if len(need) > 2 and need[2] else None
        return dgy, dw, db


class _Conv2dWeight(Function):
    """gw = d<conv2d(x, w), gy>/dw = gy^T @ im2col(x), shaped like the weight.
    ``cols`` passes im2col(x) when the caller has it already."""

    def forward(self, x, gy, geom=None, w_shape=None, cols=None):
        be = self._backend
        if cols is None:
            cols = im2col_nhwc(be, padded_nhwc(be, x, geom), geom, *gy.shape[2:])
        self.geom = geom
        return weight_grad(be, rows_nhwc(self.xp, gy), cols, w_shape, geom.groups)

    def backward(self, g):
        x, gy = self.inputs
        need = self.needs_input_grad
        dx = _ConvTranspose2d.apply(gy, g, geom=self.geom, x_hw=x.shape[2:]) if need[0] else None
        dgy = _Conv2d.apply(x, g, geom=self.geom, out_hw=gy.shape[2:]) if need[1] else None
        return dx, dgy


# ----------------------------------------------------------------------------- checks
def _check_tensors(fn, x, weight, bias):
    for name, t in (("input", x), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {name} must be a Tensor, got {type(t).__name__}")
    if weight.ndim != 4:
        raise ValueError(f"{fn}: weight must be 4-D, got shape {weight.shape}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{x.shape}")
    if not x.dtype.is_floating_point or x.dtype != weight.dtype or \
            (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"{fn}: input ({x.dtype.name}), weight ({weight.dtype.name})"
                        + (f" and bias ({bias.dtype.name})" if bias is not None else "")
                        + " must have the same floating-point dtype")


def _check_channels(fn, x, weight, bias, groups, transposed):
    """The channel counts of input, weight and bias fit together for ``groups``.
    conv2d's weight is (O, C/G, kh, kw); conv_transpose2d's is (C, O/G, kh, kw)."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{fn}: groups={groups!r} must be a positive int")
    c = x.shape[1]
    a, b = weight.shape[:2]
    split, role = (a, "in_channels") if transposed else (a, "out_channels")
    if split % groups:
        raise ValueError(f"{fn}: groups={groups} must divide {role} = weight.shape[0] = "
                         f"{split} (weight shape {weight.shape})")
    expected = a if transposed else b * groups
    if c != expected:
        raise ValueError(f"{fn}: input has {c} channels (shape {x.shape}) but weight of shape "
                         f"{weight.shape} with groups={groups} expects "
                         f"{'weight.shape[0]' if transposed else 'weight.shape[1] * groups'} "
                         f"= {expected}")
    out = b * groups if transposed else a
    if bias is not None and bias.shape != (out,):
        raise ValueError(f"{fn}: bias must have shape ({out},) for weight {weight.shape} and "
                         f"groups={groups}, got {bias.shape}")


def _conv_args(fn, x, weight, bias, stride, dilation):
    """Checked tensors, x made 4-D (``unbatched`` says if it was 3-D), and the kernel,
    stride and dilation pairs: what conv2d and conv_transpose2d both start with."""
    _check_tensors(fn, x, weight, bias)
    x, unbatched = _batched(x)
    return (x, unbatched, tuple(weight.shape[2:]), int_pair(stride, "stride", fn, 1),
            int_pair(dilation, "dilation", fn, 1))


def _batched(x):
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation (PyTorch's ``F.conv2d``).

    x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) -> (N, O, Ho, Wo) with
    ``y[n,o,y,x] = b[o] + sum_{c,i,j} w[o,c,i,j] xpad[n, g*C/G + c, y*sh + i*dh, x*sw + j*dw]``
    (g the group of o) and Ho = (H + 2p - d(kh-1) - 1) // s + 1.
    ``padding`` is an int, a pair, ``"valid"`` (0) or ``"same"`` (stride 1; output size =
    input size; an odd total padding puts the extra row/column at the bottom/right).
    """
    fn = "conv2d"
    x, unbatched, (kh, kw), (sh, sw), (dh, dw) = _conv_args(fn, x, weight, bias, stride,
                                                            dilation)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"{fn}: padding='same' needs stride 1, got stride {stride!r}")
            th, tw = dh * (kh - 1), dw * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"{fn}: padding must be an int, a pair, 'same' or 'valid', "
                             f"got {padding!r}")
    else:
        ph, pw = int_pair(padding, "padding", fn, 0)
        pads = (ph, ph, pw, pw)
    _check_channels(fn, x, weight, bias, groups, transposed=False)
    g = Geom(kh, kw, sh, sw, dh, dw, *pads, groups)
    h, w = x.shape[2:]
    ho, wo = output_hw(h, w, g)
    if ho < 1 or wo < 1:
        raise ValueError(f"{fn}: kernel {(kh, kw)} with dilation {(dh, dw)} spans "
                         f"{(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}, larger than the padded "
                         f"input {(h + pads[0] + pads[1], w + pads[2] + pads[3])} (input shape "
                         f"{x.shape}, padding {padding!r})")
    args = (x, weight) if bias is None else (x, weight, bias)
    y = _Conv2d.apply(*args, geom=g)
    return y.squeeze(0) if unbatched else y


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-D transposed convolution (PyTorch's ``F.conv_transpose2d``): the adjoint of
    ``conv2d`` in its input, i.e. conv2d's input gradient.

    x (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw), bias (C_out,) ->
    (N, C_out, Ho, Wo) with Ho = (H-1) sh - 2 ph + dh (kh-1) + output_padding_h + 1.
    For every y: <conv2d(z, weight), x> == <z, conv_transpose2d(x, weight)>.
    ``output_padding`` (< stride or < dilation) adds rows/columns at the bottom/right
    that no input pixel reaches (they hold the bias only).
    """
    fn = "conv_transpose2d"
    x, unbatched, (kh, kw), (sh, sw), (dh, dw) = _conv_args(fn, x, weight, bias, stride,
                                                            dilation)
    if isinstance(padding, str):
        raise ValueError(f"{fn}: padding must be an int or a pair (no strings for the "
                         f"transposed conv), got {padding!r}")
    ph, pw = int_pair(padding, "padding", fn, 0)
    oph, opw = int_pair(output_padding, "output_padding", fn, 0)
    for name, op, s, d in (("height", oph, sh, dh), ("width", opw, sw, dw)):
        if op >= s and op >= d:
            raise ValueError(f"{fn}: output_padding {output_padding!r} must be smaller than "
                             f"stride {stride!r} or dilation {dilation!r} ({name}: "
                             f"{op} >= {s} and {op} >= {d})")
    _check_channels(fn, x, weight, bias, groups, transposed=True)
    h, w = x.shape[2:]
    ho = conv_transpose_output_size(h, kh, sh, ph, oph, dh)
    wo = conv_transpose_output_size(w, kw, sw, pw, opw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"{fn}: output size {(ho, wo)} is not positive for input {x.shape}, "
                         f"weight {weight.shape}, stride {stride!r}, padding {padding!r}")
    g = Geom(kh, kw, sh, sw, dh, dw, ph, ph, pw, pw, groups)
    args = (x, weight) if bias is None else (x, weight, bias)
    y = _ConvTranspose2d.apply(*args, geom=g, x_hw=(ho, wo))
    return y.squeeze(0) if unbatched else y


# ----------------------------------------------------------------------------- pooling
def _pool_geom(fn, x, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    """The pooling geometry and output size. PyTorch's rules: stride defaults to the
    kernel size, padding is at most half the (dilated) kernel, and ``ceil_mode`` rounds
    the output size up, with one more window as long as it starts inside the input or
    its left padding; the extra rows/columns it reaches are added to pb/pr."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{x.shape}")
    kh, kw = int_pair(kernel_size, "kernel_size", fn, 1)
    sh, sw = int_pair(kernel_size if stride is None or stride == [] else stride, "stride", fn, 1)
    ph, pw = int_pair(padding, "padding", fn, 0)
    dh, dw = int_pair(dilation, "dilation", fn, 1)
    if 2 * ph > dh * (kh - 1) + 1 or 2 * pw > dw * (kw - 1) + 1:
        raise ValueError(f"{fn}: padding {padding!r} must be at most half the kernel size "
                         f"{kernel_size!r}")
    h, w = x.shape[-2:]
    sizes = []
    for n, k, s, p, d in ((h, kh, sh, ph, dh), (w, kw, sw, pw, dw)):
        span = n + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1              # the last window would start in the right padding
        sizes.append(out)
    ho, wo = sizes
    if ho < 1 or wo < 1:
        raise ValueError(f"{fn}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input shape {x.shape}, padding "
                         f"{padding!r})")
    extra_h = builtins.max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
    extra_w = builtins.max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    return Geom(kh, kw, sh, sw, dh, dw, ph, ph + extra_h, pw, pw + extra_w), (ho, wo)


def _pad_nchw(be, a, g: Geom, value):
    if g.pt == g.pb == g.pl == g.pr == 0:
        return a
    n, c, h, w = a.shape
    buf = be.full((n, c, h + g.pt + g.pb, w + g.pl + g.pr), value, a.dtype)
    buf[:, :, g.pt:g.pt + h, g.pl:g.pl + w] = a
    return buf


def _spread_nchw(be, parts, shape, g: Geom, dtype):
    """Sum ``parts(i, j)`` (N, C, Ho, Wo) back onto the windows' positions: col2im in NCHW."""
    n, c, h, w = shape
    buf = be.zeros((n, c, h + g.pt + g.pb, w + g.pl + g.pr), dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            p = parts(i, j)
            buf[:, :, i * g.dh:i * g.dh + g.sh * (p.shape[2] - 1) + 1:g.sh,
                j * g.dw:j * g.dw + g.sw * (p.shape[3] - 1) + 1:g.sw] += p
    return buf[:, :, g.pt:g.pt + h, g.pl:g.pl + w]


class _MaxPool2d(Function):
    """y = max over each window (padding is -inf); the gradient goes to the first
    maximum of the window (``self.arg``, the kernel offset i*kw + j)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, geom=None, out_hw=None):
        be, xp = self._backend, self.xp
        xpad = _pad_nchw(be, x, geom, -math.inf)
        ho, wo = out_hw
        y = _window(xpad, 0, 0, geom, ho, wo, False)
        arg = be.zeros(y.shape, "int32")
        for k in range(1, geom.kh * geom.kw):
            v = _window(xpad, k // geom.kw, k % geom.kw, geom, ho, wo, False)
            better = v > y
            y = xp.where(better, v, y)
            arg = xp.where(better, be.asarray(k, "int32"), arg)
        self.geom, self.arg, self.x_shape = geom, arg, x.shape
        return y

    def backward(self, gy):
        return _MaxUnpool.apply(gy, arg=self.arg, geom=self.geom, x_shape=self.x_shape)


class _MaxUnpool(Function):
    """The max-pool gradient: each gy goes to its window's argmax (a fixed routing, so
    linear in gy; its adjoint is ``_MaxGather``)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, gy, arg=None, geom=None, x_shape=None):
        be, xp = self._backend, self.xp
        self.arg, self.geom = arg, geom
        zero = be.zeros((), gy.dtype)
        kw = geom.kw
        return _spread_nchw(be, lambda i, j: xp.where(arg == i * kw + j, gy, zero),
                            x_shape, geom, gy.dtype)

    def backward(self, g):
        return _MaxGather.apply(g, arg=self.arg, geom=self.geom)


class _MaxGather(Function):
    """x -> x at each window's (fixed) argmax: the adjoint of ``_MaxUnpool``."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, arg=None, geom=None):
        be, xp = self._backend, self.xp
        self.arg, self.geom, self.x_shape = arg, geom, x.shape
        xpad = _pad_nchw(be, x, geom, 0.0)
        ho, wo = arg.shape[2:]
        zero = be.zeros((), x.dtype)
        y = be.zeros(arg.shape, x.dtype)
        for k in range(geom.kh * geom.kw):
            v = _window(xpad, k // geom.kw, k % geom.kw, geom, ho, wo, False)
            y = y + xp.where(arg == k, v, zero)
        return y

    def backward(self, gy):
        return _MaxUnpool.apply(gy, arg=self.arg, geom=self.geom, x_shape=self.x_shape)


class _AvgPool2d(Function):
    """y = sum over each window / divisor: kh*kw (zero padding counted), or per window
    the count of the positions it covers (an array), as ``avg_pool2d``'s options say."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, geom=None, out_hw=None, divisor=None):
        be = self._backend
        xpad = _pad_nchw(be, x, geom, 0)
        ho, wo = out_hw
        y = be.zeros((x.shape[0], x.shape[1], ho, wo), x.dtype)
        for i in range(geom.kh):
            for j in range(geom.kw):
                y += _window(xpad, i, j, geom, ho, wo, False)
        self.geom, self.x_shape, self.divisor = geom, x.shape, divisor
        if dtype_of(y).is_floating_point:
            return y / divisor
        # integer input: PyTorch divides in integers, rounding toward zero
        xp = self.xp
        d = xp.astype(divisor, y.dtype) if be.is_array(divisor) else divisor
        return xp.sign(y) * (xp.abs(y) // d)

    def backward(self, gy):
        return _AvgUnpool.apply(gy, geom=self.geom, x_shape=self.x_shape, divisor=self.divisor)


class _AvgUnpool(Function):
    """The avg-pool gradient: gy / divisor spread over each window (col2im)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, gy, geom=None, x_shape=None, divisor=None):
        be = self._backend
        self.geom, self.divisor = geom, divisor
        part = gy / divisor
        return _spread_nchw(be, lambda i, j: part, x_shape, geom, gy.dtype)

    def backward(self, g):
        return _AvgPool2d.apply(g, geom=self.geom, out_hw=self.inputs[0].shape[2:],
                                divisor=self.divisor)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over kh x kw windows (PyTorch's ``F.max_pool2d``): stride defaults to the
    kernel size, padding counts as -inf and is at most half the kernel, ``dilation``
    spaces the taps, ``ceil_mode`` rounds the output size up. Ho = (H + 2p - d(k-1) -
    1) // s + 1. Ties send the gradient to the first maximum. ``return_indices=True``
    also returns, per output, the flat index h*W + w of its maximum in the input."""
    g, out_hw = _pool_geom("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    x, unbatched = _batched(x)
    y = _MaxPool2d.apply(x, geom=g, out_hw=out_hw)
    if return_indices:
        idx = _max_indices(x, g, y)
        return (y.squeeze(0), idx.squeeze(0)) if unbatched else (y, idx)
    return y.squeeze(0) if unbatched else y


def _max_indices(x, g, y):
    """Flat input positions h*W + w of each window's maximum, from the kernel offset
    the pooling kept: h = oh*sh + i*dh - pt, w = ow*sw + j*dw - pl."""
    be = x._backend
    xp = be.xp
    arg = y._ctx.arg if y._ctx is not None else _argmax_offsets(x, g, y)
    ho, wo = y.shape[2:]
    i, j = arg // g.kw, arg % g.kw
    oh = xp.reshape(be.arange(ho, dtype="int32"), (1, 1, ho, 1))
    ow = xp.reshape(be.arange(wo, dtype="int32"), (1, 1, 1, wo))
    h = oh * g.sh + i * g.dh - g.pt
    w = ow * g.sw + j * g.dw - g.pl
    return Tensor._make(xp.astype(h * x.shape[3] + w, xp.int64), be, False, None)


def _argmax_offsets(x, g, y):
    """The kept kernel offsets when no graph recorded them (no input required grad)."""
    node = _MaxPool2d()
    node._backend, node.xp = x._backend, x._backend.xp
    node.forward(x.data, geom=g, out_hw=y.shape[2:])
    return node.arg


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over kh x kw windows (PyTorch's ``F.avg_pool2d``). Each window divides by
    ``divisor_override``, or by kh*kw counting the zero padding
    (``count_include_pad=True``), or by the number of input positions it covers;
    windows that ``ceil_mode`` adds past the padding count only what they cover.
    Integer inputs stay integer (the mean rounded toward zero), as in PyTorch."""
    g, out_hw = _pool_geom("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    x, unbatched = _batched(x)
    if divisor_override is not None:
        if not isinstance(divisor_override, int) or divisor_override < 1:
            raise ValueError(f"avg_pool2d: divisor_override must be a positive int, got "
                             f"{divisor_override!r}")
        divisor = divisor_override
    elif (count_include_pad or g.pt == g.pl == 0) and g.pb == g.pt and g.pr == g.pl:
        divisor = g.kh * g.kw
    else:
        divisor = _window_counts(x, g, out_hw, count_include_pad)
    y = _AvgPool2d.apply(x, geom=g, out_hw=out_hw, divisor=divisor)
    return y.squeeze(0) if unbatched else y


def _window_counts(x, g, out_hw, count_pad):
    """(1, 1, Ho, Wo): how many positions each window covers, of the input and (with
    ``count_pad``) its symmetric zero padding, not of what ceil_mode adds beyond."""
    be = x._backend
    h, w = x.shape[2:]
    cover = be.zeros((1, 1, h + g.pt + g.pb, w + g.pl + g.pr), x.data.dtype
                     if dtype_of(x.data).is_floating_point else "float32")
    if count_pad:
        cover[:, :, :h + 2 * g.pt, :w + 2 * g.pl] = 1.0
    else:
        cover[:, :, g.pt:g.pt + h, g.pl:g.pl + w] = 1.0
    ho, wo = out_hw
    counts = be.zeros((1, 1, ho, wo), cover.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            counts += _window(cover, i, j, g, ho, wo, False)
    return counts


def _adaptive_matrix(be, size, out, dtype):
    """(out, size) averaging matrix of PyTorch's adaptive pooling: row i averages
    input positions floor(i*size/out) .. ceil((i+1)*size/out) - 1."""
    rows = []
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        rows.append([1.0 / (end - start) if start <= k < end else 0.0 for k in range(size)])
    return Tensor._make(be.asarray(rows, dtype), be, False, None)


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (PyTorch's ``F.adaptive_avg_pool2d``).
    Output cell i averages rows floor(i H / Ho) .. ceil((i+1) H / Ho) - 1 (likewise
    columns); any sizes, computed as  P_h @ x @ P_w^T  with constant averaging matrices.
    ``output_size`` is an int, a pair, or a pair with None (keep that input size)."""
    fn = "adaptive_avg_pool2d"
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{x.shape}")
    h, w = x.shape[-2:]
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        output_size = (output_size, output_size)
    try:
        oh, ow = output_size
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: output_size must be an int or a pair, got "
                        f"{output_size!r}") from None
    oh, ow = h if oh is None else oh, w if ow is None else ow
    if not all(isinstance(v, int) and v >= 1 for v in (oh, ow)):
        raise ValueError(f"{fn}: output_size must be positive ints, got {output_size!r}")
    if (oh, ow) == (1, 1):
        return _ops.mean(x, axis=(-2, -1), keepdims=True)
    y = x
    if oh != h:
        y = _ops.matmul(_adaptive_matrix(x._backend, h, oh, x.data.dtype), y)
    if ow != w:
        y = _ops.matmul(y, _adaptive_matrix(x._backend, w, ow, x.data.dtype).transpose(0, 1))
    return y


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Resize the last two dims (PyTorch's ``F.interpolate``, same argument order), to
    ``size`` (Ho, Wo) or by ``scale_factor`` (Ho = floor(H * s)).

    ``mode="nearest"``: y[i] = x[floor(i * r)] with r = H / Ho (1 / s for a scale
    factor); an integer scale is a broadcast copy, whose gradient sums each source
    pixel's copies. ``mode="bilinear"``: each output is the weighted mean of the two
    nearest rows (and columns), at source position (i + 0.5) r - 0.5 clamped at 0, or
    i (H - 1) / (Ho - 1) with ``align_corners=True``; computed as P_h @ x @ P_w^T with
    constant interpolation matrices, so its gradient is P_h^T @ gy @ P_w."""
    fn = "interpolate"
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a Tensor, got {type(x).__name__}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"{fn}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"{fn}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{fn}: align_corners only applies to mode='bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: give exactly one of size and scale_factor")
    n, c, h, w = x.shape
    if size is not None:
        (oh, ow), ratios = int_pair(size, "size", fn, 1), (None, None)
    else:
        sh, sw = scale_factor if isinstance(scale_factor, (tuple, list)) else \
            (scale_factor, scale_factor)
        if not all(isinstance(v, (int, float)) and v > 0 for v in (sh, sw)):
            raise ValueError(f"{fn}: scale_factor must be positive, got {scale_factor!r}")
        oh, ow = int(math.floor(h * sh)), int(math.floor(w * sw))
        ratios = (1.0 / sh, 1.0 / sw)
        if mode == "nearest" and float(sh).is_integer() and float(sw).is_integer():
            sh, sw = int(sh), int(sw)
            y = x.reshape(n, c, h, 1, w, 1).broadcast_to((n, c, h, sh, w, sw))
            return y.reshape(n, c, h * sh, w * sw)
    be = x._backend
    if mode == "nearest":
        rows = be.asarray([builtins.min(int(math.floor(i * (ratios[0] or h / oh))), h - 1)
                           for i in range(oh)], "int64")
        cols = be.asarray([builtins.min(int(math.floor(j * (ratios[1] or w / ow))), w - 1)
                           for j in range(ow)], "int64")
        return x[:, :, rows, :][:, :, :, cols]
    dtype = x.data.dtype
    p_h = _linear_weights(be, h, oh, ratios[0], align_corners, dtype)
    p_w = _linear_weights(be, w, ow, ratios[1], align_corners, dtype)
    return _ops.matmul(_ops.matmul(p_h, x), p_w.transpose(0, 1))


def _linear_weights(be, size, out, ratio, align_corners, dtype):
    """(out, size) matrix of linear interpolation along one axis (PyTorch's source
    positions; ``ratio`` is 1/scale_factor when one was given, else size/out)."""
    rows = []
    for i in range(out):
        if align_corners:
            src = i * (size - 1) / (out - 1) if out > 1 else 0.0
        else:
            src = builtins.max((i + 0.5) * (ratio or size / out) - 0.5, 0.0)
        i0 = builtins.min(int(math.floor(src)), size - 1)
        i1 = builtins.min(i0 + 1, size - 1)
        frac = src - i0
        row = [0.0] * size
        row[i0] += 1.0 - frac
        row[i1] += frac
        rows.append(row)
    return Tensor._make(be.asarray(rows, dtype), be, False, None)


def upsample_nearest2d(x, scale_factor=2):
    """``interpolate(x, scale_factor=scale_factor, mode="nearest")``."""
    return interpolate(x, scale_factor=scale_factor, mode="nearest")
