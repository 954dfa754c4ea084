"""Backward of the fused losses and batch norm on arrays.

The reference backward (``minigrad/functional.py``) is written in Tensor ops, so
that ``create_graph=True`` can differentiate it again. When no graph of the
backward is recorded, nothing needs to be differentiable: these compute the same
gradients directly on arrays, in fewer passes and, for batch norm, in place.
"""
from __future__ import annotations

from .. import functional as F, ops as _ops
from ..tensor import Tensor, is_grad_enabled
from . import not_recording, override, writes_in_place


def _const(array, be):
    return Tensor._make(array, be, False, None)


@override(F.CrossEntropy, "backward", when=not_recording)
def cross_entropy_backward(self, gy):
    """dx = gy (softmax(x) sum_c M - M), softmax computed on the arrays."""
    xp = self.xp
    x = self.inputs[0].data
    probs = xp.exp(x - xp.max(x, axis=1, keepdims=True))
    probs /= xp.sum(probs, axis=1, keepdims=True)
    g = probs * self.msum - self.mask
    g *= xp.expand_dims(gy.data, axis=1)
    return _const(g, self._backend)


@override(F.BinaryCrossEntropy, "backward", when=not_recording)
def binary_cross_entropy_backward(self, gy):
    """dx = gy (x - t) / max(x (1 - x), 1e-12);  dt = gy (log(1 - x) - log(x)), on arrays."""
    xp, be = self.xp, self._backend
    x, t = self.inputs[0].data, self.inputs[1].data
    g = gy.data
    gx = gt = None
    if self.needs_input_grad[0]:
        gx = _const(g * (x - t) / xp.maximum(x * (1.0 - x), 1e-12), be)
    if self.needs_input_grad[1]:
        gt = _const(g * (F.clamped_log(xp, 1.0 - x) - F.clamped_log(xp, x)), be)
    return gx, gt


def _float32_in_place(node, x, t):
    return (writes_in_place(node._backend, x) and x.dtype == node._backend.dtype("float32")
            and t.dtype == x.dtype)


@override(F.BCEWithLogits, "forward", when=_float32_in_place)
def binary_cross_entropy_with_logits_forward(self, x, t):
    """max(x, 0) - x t + log1p(e), e = exp(-|x|), with log1p(e) as log(u) e / (u - 1),
    u = 1 + e (and e where u rounds to 1): accurate to a few units of rounding, and
    NumPy's float32 log is vectorised where its log1p is not (in float64 log1p is
    the faster, so this is for float32 only)."""
    xp = self.xp
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)                 # e = exp(-|x|), in (0, 1]
    u = e + 1.0
    d = u - 1.0
    rounds_to_one = u == 1.0
    d += rounds_to_one               # no 0 / 0 where u == 1; those get e below
    xp.log(u, out=u)
    u *= e
    u /= d
    e *= rounds_to_one
    u += e                           # u = log1p(exp(-|x|))
    y = xp.maximum(x, 0.0)
    xp.multiply(x, t, out=d)
    y -= d
    y += u
    return y


def _not_recording_one_dtype(node, gy):
    x, t = node.inputs
    return not is_grad_enabled() and x.dtype == t.dtype == gy.dtype


@override(F.BCEWithLogits, "backward", when=_not_recording_one_dtype)
def binary_cross_entropy_with_logits_backward(self, gy):
    """dx = gy (sigmoid(x) - t);  dt = -gy x, on arrays, sigmoid by its own kernel."""
    x, t = self.inputs
    g = gy.data
    gx = gt = None
    if self.needs_input_grad[0]:
        p = _ops.sigmoid(x).data       # a fresh array: the arithmetic below is in place
        p -= t.data
        p *= g
        gx = _const(p, self._backend)
    if self.needs_input_grad[1]:
        gt = _const(-(g * x.data), self._backend)
    return gx, gt


@override(F.BatchNormTrain, "backward", when=not_recording)
def batch_norm_backward(self, gy):
    """dx = (g - mean(g) - xhat mean(g xhat)) rstd with g = gy gamma, from the batch
    statistics forward kept, in place in one work array."""
    xp, be = self.xp, self._backend
    x = self.inputs[0]
    shape, axes = F._bn_shape(x), self.axes
    has_w = len(self.inputs) > 1
    need = self.needs_input_grad
    rstd = 1.0 / xp.sqrt(self.batch_var + self.eps)
    xhat = x.data - self.batch_mean
    xhat *= rstd
    gy = gy.data
    g = gy * xp.reshape(self.inputs[1].data, shape) if has_w else gy
    gx = gw = gb = None
    if need[0]:
        t = g * xhat
        mean_gx = xp.mean(t, axis=axes, keepdims=True)
        mean_g = xp.mean(g, axis=axes, keepdims=True)
        t[...] = xhat             # t = mean(g) + xhat mean(g xhat) - g
        t *= mean_gx
        t += mean_g
        t -= g
        t *= -rstd                # dx = (g - mean(g) - xhat mean(g xhat)) rstd
        gx = _const(t, be)
    if has_w and need[1]:
        gw = _const(xp.reshape(xp.sum(gy * xhat, axis=axes), (-1,)), be)
    if len(self.inputs) > 2 and need[2]:
        gb = _const(xp.reshape(xp.sum(gy, axis=axes), (-1,)), be)
    return gx, gw, gb
