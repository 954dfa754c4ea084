"""Gradient clipping (PyTorch's ``torch.nn.utils``), on the backend, without a host sync."""
from __future__ import annotations

import math

from ..tensor import Tensor, no_grad

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together so that their joint norm is at most ``max_norm``:
    g <- g * min(1, max_norm / (||g|| + 1e-6)). Returns the norm before clipping
    (a 0-d Tensor). Gradients get new arrays (a gradient array may be shared by
    several tensors, so it is never scaled in place)."""
    params = _grads(parameters)
    if not params:
        return None
    be = params[0]._backend
    xp = be.xp
    with no_grad():
        if norm_type == math.inf:
            per = [xp.max(xp.abs(p.grad.data)) for p in params]
            total = per[0]
            for v in per[1:]:
                total = xp.maximum(total, v)
        else:
            total = sum(xp.sum(xp.abs(p.grad.data) ** norm_type) for p in params) \
                ** (1.0 / norm_type)
        coef = xp.clip(max_norm / (total + 1e-6), None, 1.0)
        for p in params:
            p.grad = Tensor._make(p.grad.data * xp.astype(coef, p.grad.data.dtype), be,
                                  False, None)
    return Tensor._make(total, be, False, None)


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element to [-clip_value, clip_value]."""
    for p in _grads(parameters):
        xp = p._backend.xp
        p.grad = Tensor._make(xp.clip(p.grad.data, -clip_value, clip_value), p._backend,
                              False, None)
