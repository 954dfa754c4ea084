"""Convolution kernels: the same im2col, input gradient and weight gradient as
``minigrad/conv.py``, computed with fewer or cheaper copies.

Their measured effect is in the README's performance notes.
"""
from __future__ import annotations

from .. import conv
from . import override, workspace


def _strided(be, xpad, g, ho, wo):
    return "strided_views" in be.capabilities and xpad.shape[3] * g.kw >= 8


@override(conv, "im2col_nhwc", when=_strided)
def im2col_window_view(be, xpad, g, ho, wo):
    """im2col as ONE copy of a zero-copy window view.

    ``be.strided_windows`` gives the (N, Ho, Wo, kh, kw, C) array of windows as a view of
    the padded input (strides: a window step is s rows/columns, a kernel step d),
    and one reshape copies it. The copy's inner loop runs over kw*C contiguous
    numbers (dilation 1) instead of the C of each of the kh*kw slice copies, which
    is what makes it faster for wide inputs; for kw*C < 8 the slices win. The copy
    goes into a work array of an earlier step (``workspace.py``) when one is free."""
    n, hp, wp, c = xpad.shape
    shape = (n, ho, wo, g.kh, g.kw, c)
    view = be.strided_windows(xpad, shape,
                              (hp * wp * c, g.sh * wp * c, g.sw * c, g.dh * wp * c, g.dw * c, 1))
    cols = workspace.empty(be, shape, xpad.dtype)
    cols[...] = view
    return be.xp.reshape(cols, (n * ho * wo, g.kh * g.kw * c))


def _subpixel_applies(be, gy, w, x_shape, g):
    return g.groups == 1 and g.dh == g.dw == 1 and g.sh * g.sw > 1 and x_shape[1] >= 16


@override(conv, "input_grad", when=_subpixel_applies)
def input_grad_subpixel(be, gy, w, x_shape, g):
    """conv2d's input gradient for stride > 1 (dilation 1, one group) without col2im.

    Padded input row u = s*U + a (phase a < s) is reached by the taps i = s*i2 + a
    of the windows U - i2, so every phase is a stride-1 correlation of gy with a
    flipped sub-kernel of k' = ceil(k/s) taps. All s*s phases share one im2col of gy
    and come out of ONE GEMM whose columns are (a, b, c):

        gxpad[n, s*U + a, s*V + b, c] =
            sum_{o, t, t'} gyp[n, U + t, V + t', o] * W[o, c, s(k'-1-t) + a, s(k'-1-t') + b]

    with gyp = gy padded by k'-1 (W is zero beyond k). Same flops as GEMM + col2im,
    but no (N*Ho*Wo, kh*kw*C) buffer and no kh*kw strided read-modify-writes. For
    few channels (C < 16) its GEMM is too narrow (s*s*C columns) to win."""
    xp = be.xp
    n, c, h, wd = x_shape
    _, o, ho, wo = gy.shape
    kqh, kqw = -(-g.kh // g.sh), -(-g.kw // g.sw)
    hq = -(-(h + g.pt + g.pb) // g.sh)
    wq = -(-(wd + g.pl + g.pr) // g.sw)
    gpad = conv.Geom(kqh, kqw, 1, 1, 1, 1, kqh - 1, hq - ho, kqw - 1, wq - wo)
    cols = conv.im2col_nhwc(be, conv.padded_nhwc(be, gy, gpad), gpad, hq, wq)  # (N*Hq*Wq, k'k'O)
    wz = w
    if (kqh * g.sh, kqw * g.sw) != (g.kh, g.kw):
        wz = be.zeros((o, c, kqh * g.sh, kqw * g.sw), w.dtype)
        wz[:, :, :g.kh, :g.kw] = w
    wz = xp.flip(xp.reshape(wz, (o, c, kqh, g.sh, kqw, g.sw)), axis=(2, 4))
    wmat = xp.reshape(xp.permute_dims(wz, (2, 4, 0, 3, 5, 1)), (kqh * kqw * o, g.sh * g.sw * c))
    phases = xp.reshape(xp.matmul(cols, wmat), (n, hq, wq, g.sh, g.sw, c))
    gxpad = xp.reshape(xp.permute_dims(phases, (0, 1, 3, 2, 4, 5)), (n, hq * g.sh, wq * g.sw, c))
    return xp.permute_dims(gxpad[:, g.pt:g.pt + h, g.pl:g.pl + wd, :], (0, 3, 1, 2))


def _narrow_on_cpu(be, gy_rows, cols, w_shape, groups):
    return "cpu_blas" in be.capabilities and groups == 1 and \
        cols.shape[1] * gy_rows.shape[1] <= 4096


@override(conv, "weight_grad", when=_narrow_on_cpu)
def weight_grad_in_row_blocks(be, gy_rows, cols, w_shape, groups):
    """The weight gradient cols^T @ gy summed over blocks of rows.

    A narrow GEMM with a long reduction (K*O small, M = N*Ho*Wo large) is
    memory-bound, and multithreaded OpenBLAS on busy cores stalls on it for
    seconds now and then; blocks of under 2^18 multiply-adds run on one thread."""
    xp = be.xp
    o, cg, kh, kw = w_shape
    m = gy_rows.shape[0]
    rows = max(64, (1 << 18) // (cols.shape[1] * gy_rows.shape[1]) - 1)
    cols_t = xp.permute_dims(cols, (1, 0))
    gw = xp.matmul(cols_t[:, :rows], gy_rows[:rows, :])                      # (K, O)
    for start in range(rows, m, rows):
        gw += xp.matmul(cols_t[:, start:start + rows], gy_rows[start:start + rows, :])
    return xp.permute_dims(xp.reshape(gw, (kh, kw, cg, o)), (3, 2, 0, 1))
