"""Linear's backward on arrays.

The reference backward (``functional.Linear``) is written in Tensor ops, so that
``create_graph=True`` can differentiate it again: a matmul, a transpose, two
reshapes and a sum-to, each a graph node with its own checks. Where no graph of
the backward is recorded, the same three products and the same sum run on the
arrays directly, with the same operands in the same layouts, so the numbers are
the reference's bit for bit; what goes is the per-node work around them.
"""
from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from . import not_recording, override


@override(F.Linear, "backward", when=not_recording)
def linear_backward(self, gy):
    """dx = gy @ W;  dW = gy^T x (leading axes flattened);  db = gy summed over them."""
    xp, be = self.xp, self._backend
    x, w = self.inputs[0].data, self.inputs[1].data
    g = gy.data
    need = self.needs_input_grad
    gx = gw = gb = None
    if need[0]:
        gx = Tensor._make(xp.matmul(g, w), be, False, None)
    if need[1]:
        g2 = xp.reshape(g, (-1, g.shape[-1])) if g.ndim != 2 else g
        x2 = xp.reshape(x, (-1, x.shape[-1])) if x.ndim != 2 else x
        gw = Tensor._make(xp.matmul(xp.matrix_transpose(g2), x2), be, False, None)
    if len(self.inputs) > 2 and need[2]:
        gb = Tensor._make(xp.sum(g, axis=tuple(range(g.ndim - 1))) if g.ndim > 1 else g,
                          be, False, None)
    return gx, gw, gb
