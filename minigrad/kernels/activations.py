"""The sigmoid and ReLU in fewer passes.

The reference (``ops.Sigmoid``) reads as the formula: with e = exp(-|x|),
y = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, chosen by ``where``.
NumPy's ``where`` on float arrays is slower than the exp itself. The numerator
is 1 where x >= 0 and e (which is at most 1) elsewhere, so it is also
max(e, [x >= 0]): one cheap pass instead of two divisions and a ``where``. Same
numbers, bit for bit, nan included.

ReLU's reference picks x or 0 with ``where``, forward and backward. max(x, 0)
gives the same values (nan stays nan; adding +0 turns max's -0 into +0), and
where no graph of the backward is recorded and gy is finite, gy [x > 0] is
gy * mask, but for the sign of a zero: a negative gy masked gives -0 (an inf or
nan of gy where the mask is false would make a nan that ``where`` drops: then
the reference runs).

LeakyReLU's reference is where(x > 0, x, a x), and gy or a gy by the same mask.
For a slope 0 <= a <= 1, max(x, a x) is the same number everywhere (signed
zeros, infinities and nan included), and where no graph of the backward is
recorded, gy f with f = 1 on the mask and a off it gives gy or a gy exactly,
since f holds exactly those two numbers (checked for the slope and dtype).
"""
from __future__ import annotations

from .. import ops
from ..tensor import Tensor, is_grad_enabled
from . import override, writes_in_place


def _in_place_backend(self, x):
    return writes_in_place(self._backend, x)


@override(ops.Sigmoid, "forward", when=_in_place_backend)
def sigmoid_forward(self, x):
    """y = max(e, [x >= 0]) / (1 + e), e = exp(-|x|), built in two arrays."""
    xp = self.xp
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    y = xp.maximum(e, x >= 0)
    e += 1.0
    y /= e
    return self.save_output(y)


def _not_0d(self, x):
    return x.ndim > 0      # NumPy gives a 0-d array's results as scalars


@override(ops.ReLU, "forward", when=_not_0d)
def relu_forward(self, x):
    """y = max(x, 0) + 0 (the + 0 makes max(-0, 0) the reference's +0)."""
    xp = self.xp
    self.mask = x > 0
    y = xp.maximum(x, xp.zeros_like(x))
    y += 0.0
    return y


def _not_recording_finite(self, gy):
    xp = self.xp
    return (not is_grad_enabled() and gy.ndim > 0
            and bool(self._backend.to_numpy(xp.all(xp.isfinite(gy.data)))))


@override(ops.ReLU, "backward", when=_not_recording_finite)
def relu_backward(self, gy):
    """dx = gy * [x > 0] on arrays (for a finite gy, what ``where`` gives)."""
    g = gy.data
    return Tensor._make(g * self.xp.astype(self.mask, g.dtype), self._backend, False, None)


def _slope_in_unit_interval(self, x, negative_slope=0.01):
    return writes_in_place(self._backend, x) and 0.0 <= negative_slope <= 1.0


@override(ops.LeakyReLU, "forward", when=_slope_in_unit_interval)
def leaky_relu_forward(self, x, negative_slope=0.01):
    """y = max(x, a x), built in the array of a x."""
    self.mask = x > 0
    self.slope = negative_slope
    y = x * negative_slope
    self.xp.maximum(x, y, out=y)
    return y


_EXACT_FACTORS: dict = {}    # (slope, dtype) -> whether 1 - a + a is 1 in that dtype


def _factor(xp, mask, slope, dtype):
    """1 where ``mask``, ``slope`` elsewhere: [mask] (1 - a) + a, in three passes."""
    f = xp.astype(mask, dtype)
    f *= 1.0 - slope
    f += slope
    return f


def _not_recording_exact_factor(self, gy):
    if is_grad_enabled() or gy.ndim == 0:
        return False
    key = (self.slope, str(gy.data.dtype))
    if key not in _EXACT_FACTORS:
        xp = self.xp
        one = _factor(xp, xp.ones((1,), dtype=xp.bool), self.slope, gy.data.dtype)
        _EXACT_FACTORS[key] = bool(self._backend.to_numpy(one == 1.0)[0])
    return _EXACT_FACTORS[key]


@override(ops.LeakyReLU, "backward", when=_not_recording_exact_factor)
def leaky_relu_backward(self, gy):
    """dx = gy f, f = 1 on x > 0 and a elsewhere, on arrays."""
    f = _factor(self.xp, self.mask, self.slope, gy.data.dtype)
    f *= gy.data
    return Tensor._make(f, self._backend, False, None)
