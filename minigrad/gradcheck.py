"""Numerical gradient checks: ``mg.gradcheck`` and ``mg.gradgradcheck``.

For a function f and a random upstream gradient v, backward computes
g = d<v, f(x)>/dx. Central differences estimate the same numbers:

    g_i  ~  (<v, f(x + eps e_i)> - <v, f(x - eps e_i)>) / (2 eps)

with an error of order eps^2. In float64 with eps = 1e-6 that is ~1e-12 of
truncation plus ~1e-10 of rounding, far below the tolerance |a - n| <= atol +
rtol |n| (PyTorch's defaults: atol 1e-5, rtol 1e-3). A random v, not ones,
catches a backward that ignores its upstream gradient.

Small inputs are checked element by element (the full gradient); large ones
along random directions u, comparing <g, u> with the directional difference.

``minigrad.testing`` runs both on drawn cases for your own ops;
``python -m minigrad.testing --list`` prints which ops the test suite covers.
"""
from __future__ import annotations

from .backend import host_rng as _host_rng
from .ops import concatenate
from .tensor import Tensor, grad, no_grad

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]

FULL_CHECK_MAX_ELEMENTS = 256
N_DIRECTIONS = 8


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _inner(v, out):
    xp = out._backend.xp
    return float(xp.sum(v.data * out.data))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True):
    """Check the backward of ``fn(*inputs) -> Tensor`` against central differences.

    ``inputs`` are float64 tensors; those with ``requires_grad=True`` are
    checked. Returns True, or raises ``GradcheckError`` naming the input, the
    worst element and both values.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype.name != "float64":
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype.name}; finite differences "
                            "need float64 (use .double())")
    be = inputs[checked[0]]._backend
    xp = be.xp
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError("gradcheck: fn must return one Tensor")
    rng = _host_rng(seed)  # host RNG for directions only
    v = Tensor._make(be.from_numpy(rng.standard_normal(out.shape), "float64"), be, False, None)
    if out.requires_grad:
        analytic = grad(out, [inputs[i] for i in checked], grad_outputs=v, allow_unused=True)
    else:
        analytic = [None] * len(checked)

    def objective(replaced_index, new_data):
        args = list(inputs)
        t = inputs[replaced_index]
        # keep requires_grad: gradgradcheck's fn differentiates its inputs inside
        args[replaced_index] = Tensor._make(new_data, be, t.requires_grad, None)
        return _inner(v, fn(*args))

    for i, a in zip(checked, analytic):
        x = inputs[i]
        if a is not None and a.shape != x.shape:
            raise GradcheckError(f"gradcheck: the gradient of input {i} has shape {a.shape}, "
                                 f"the input {x.shape}")
        a_data = be.zeros(x.shape, "float64") if a is None else a.data
        results = []   # (analytic, numerical, tolerance, where) for every element/direction
        if x.size <= FULL_CHECK_MAX_ELEMENTS:
            for flat in range(x.size):
                idx = _unravel(flat, x.shape)
                d = be.zeros(x.shape, "float64")
                d[idx] = eps
                num = (objective(i, x.data + d) - objective(i, x.data - d)) / (2 * eps)
                results.append((float(a_data[idx]), num, atol + rtol * abs(num),
                                f"element {idx}"))
        else:
            for k in range(N_DIRECTIONS):
                u = be.from_numpy(rng.standard_normal(x.shape), "float64")
                num = (objective(i, x.data + eps * u) - objective(i, x.data - eps * u)) / (2 * eps)
                # a directional derivative sums size-many rounding errors: widen rtol
                tol = atol + rtol * (1 + x.size ** 0.5 / 4) * abs(num)
                results.append((float(xp.sum(a_data * u)), num, tol, f"random direction {k}"))
        bad = [r for r in results if not abs(r[0] - r[1]) <= r[2]]
        if bad:
            ana, num, tol, where = max(bad, key=lambda r: abs(r[0] - r[1]) - r[2])
            msg = (f"gradcheck failed at input {i} (shape {x.shape}), {where}: analytic "
                   f"{ana:.10g}, numerical {num:.10g} (difference {abs(ana - num):.3g} > atol + "
                   f"rtol*|numerical| = {tol:.3g}); the worst of {len(bad)} failing out of "
                   f"{len(results)} checks")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def _unravel(flat, shape):
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return tuple(reversed(idx))


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check second derivatives: gradcheck of x, v -> d<v, fn(x)>/dx, whose own
    backward differentiates the backward graph (built with create_graph=True)."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    be = inputs[checked[0]]._backend
    with no_grad():
        out_shape = fn(*inputs).shape
    rng = _host_rng(seed + 1)
    v = Tensor._make(be.from_numpy(rng.standard_normal(out_shape), "float64"), be, True, None)
    n = len(inputs)

    def first_derivative(*args):
        xs, gy = args[:n], args[n]
        out = fn(*xs)
        if not out.requires_grad:
            return concatenate([(xs[i] * 0.0).reshape(-1) for i in checked])
        gs = grad(out, [xs[i] for i in checked], grad_outputs=gy, create_graph=True,
                  allow_unused=True)
        parts = [(g if g is not None else xs[i] * 0.0).reshape(-1) for i, g in zip(checked, gs)]
        return concatenate(parts) if len(parts) > 1 else parts[0]

    return gradcheck(first_derivative, (*inputs, v), eps=eps, atol=atol, rtol=rtol, seed=seed + 2)
