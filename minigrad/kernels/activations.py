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
