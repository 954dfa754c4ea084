"""SGD and Adam updates in place.

The reference updates (``minigrad/optim.py``) are the formulas, and every
``a * b + c`` in them allocates a parameter-sized temporary. These do the same
arithmetic, in the same order (so the results are identical), inside the state
arrays and two work arrays kept between steps. On a loaded CPU a fresh
parameter-sized array can cost more (page faults) than the arithmetic done in it.
"""
from __future__ import annotations

import math
import operator

from .. import optim
from . import override


def _always(*args, **kwargs):
    return True  # every backend: in-place arithmetic is part of the Array API


def _work_arrays(opt, p):
    """Two arrays shaped like p, kept on the optimizer between steps (not state)."""
    scratch = opt.__dict__.setdefault("_work_arrays", {})
    pair = scratch.get(p)
    if pair is None or not p._backend.is_array(pair[0]) or \
            pair[0].shape != p.data.shape or pair[0].dtype != p.data.dtype:
        xp = p._backend.xp
        pair = scratch[p] = (xp.empty_like(p.data), xp.empty_like(p.data))
    return pair


_IN_PLACE = {"multiply": operator.imul, "divide": operator.itruediv}


def _fill(be, out, name, a, b=None):
    """out = name(a, b) (``"multiply"``, ``"divide"``) or name(a) (``"sqrt"``) written
    into ``out``: in one pass through ``out=`` where the backend's functions take it
    (``"ufunc_out"``), else as a copy of ``a`` and the operation in place (the
    Array API has in-place operators but no ``out=``). Same arithmetic either way."""
    if "ufunc_out" in be.capabilities:
        if b is None:
            getattr(be.xp, name)(a, out=out)
        else:
            getattr(be.xp, name)(a, b, out=out)
    elif b is None:
        out[...] = getattr(be.xp, name)(a)
    else:
        out[...] = a
        _IN_PLACE[name](out, b)


@override(optim.SGD, "_update", when=_always)
def sgd_update_in_place(self, p, g, group, state):
    """SGD's rule (weight decay, momentum, dampening, Nesterov) in two work arrays."""
    wd, mom, lr = group["weight_decay"], group["momentum"], group["lr"]
    d, tmp = _work_arrays(self, p)      # d: the step direction, built in place
    d[...] = g
    if group["maximize"]:
        d *= -1.0
    if wd:
        _fill(p._backend, tmp, "multiply", p.data, wd)
        d += tmp
    if mom:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = p._backend.xp.asarray(d, copy=True)
        else:
            buf *= mom
            if group["dampening"]:
                _fill(p._backend, tmp, "multiply", d, 1.0 - group["dampening"])
                buf += tmp
            else:
                buf += d
        if group["nesterov"]:
            _fill(p._backend, tmp, "multiply", buf, mom)
            d += tmp
        else:
            d[...] = buf
    d *= lr
    p.data -= d


@override(optim.Adam, "_update", when=_always)
def adam_update_in_place(self, p, g, group, state):
    """Adam's (and AdamW's) rule in the moment arrays and two work arrays."""
    lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    self._init_state(p, group, state)
    be = p._backend
    s, tmp = _work_arrays(self, p)
    s[...] = g
    if group["maximize"]:
        s *= -1.0
    if wd and self.decoupled:
        p.data *= 1.0 - lr * wd
    elif wd:
        _fill(be, tmp, "multiply", p.data, wd)
        s += tmp
    state["step"] += 1
    t = state["step"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    _fill(be, tmp, "multiply", s, s)          # v = b2 v + (1 - b2) g^2
    tmp *= 1.0 - b2
    v *= b2
    v += tmp
    s *= 1.0 - b1                # m = b1 m + (1 - b1) g
    m *= b1
    m += s
    if group["amsgrad"]:
        vmax = state["max_exp_avg_sq"]
        vmax[...] = p._backend.xp.maximum(vmax, v)
        v = vmax
    # p -= m / (sqrt(v) / sqrt(1 - b2^t) + eps) * lr / (1 - b1^t). sqrt, not a power
    # of 0.5: the ufunc power(v, 0.5, out=) has no square-root fast path. m / s is a
    # division, not s **= -1, for the same reason.
    _fill(be, s, "sqrt", v)
    s *= 1.0 / math.sqrt(1.0 - b2 ** t)
    s += eps
    _fill(be, tmp, "divide", m, s)
    tmp *= lr / (1.0 - b1 ** t)
    p.data -= tmp
