"""Gradient-check tests you can trust, for your own ops and layers.

``check_function`` runs three checks on every available backend, on cases that
hypothesis draws (shapes with broadcasting, size-1 and 0-d dimensions,
non-contiguous inputs, the same tensor used twice):

1. forward: ``fn`` equals a reference you trust (NumPy, SciPy, loops), in float64;
2. gradcheck: backward against central differences, with a random upstream gradient;
3. gradgradcheck: the second derivative, through the graph that backward builds.

A failure names the check, the backend and the case (hypothesis shrinks it first).
minigrad's own op registry (``minigrad/testing/registry.py``) is built with the
same tools, and ``python -m minigrad.testing --list`` prints it.

Needs hypothesis (``pip install -e ".[test]"``). An example, a hand-written
``Function`` checked against NumPy:

>>> import numpy as np
>>> import minigrad as mg
>>> from minigrad.testing import check_function, strategies as S
>>> class Cube(mg.Function):
...     def forward(self, x):
...         return x * x * x
...     def backward(self, gy):
...         x, = self.inputs
...         return gy * 3.0 * x * x
>>> check_function(lambda x: Cube.apply(x), lambda x: x ** 3, S.unary())
True

A backward that forgets the factor 3 fails, naming what failed where:

>>> class WrongCube(Cube):
...     def backward(self, gy):
...         x, = self.inputs
...         return gy * x * x
>>> check_function(lambda x: WrongCube.apply(x), lambda x: x ** 3, S.unary(),
...                gradgrad=False)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
minigrad.testing.CheckFailed: gradcheck failed on backend 'numpy' ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np  # host-side: references and comparisons run on host copies
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy

from ..backend import available_backends, backend as use_backend, get_backend
from ..gradcheck import gradcheck, gradgradcheck
from ..tensor import Function, Tensor, grad, tensor
from . import strategies

__all__ = ["OpSpec", "CheckFailed", "check_function", "check_forward", "check_gradient",
           "check_second_derivative", "functions_reached", "available_backends",
           "strategies"]


class CheckFailed(AssertionError):
    """One of check_function's checks failed; the message says which, where and on what."""


@dataclass
class OpSpec:
    """One op under test.

    ``fn(*tensors, **params) -> Tensor`` is the op, ``ref(*arrays, **params)`` its
    NumPy reference, ``cases()`` a hypothesis strategy of ``(args, params)``:
    ``args`` a list of ``strategies.Arg`` (the same Arg twice is the same tensor
    twice), ``params`` keyword options for both. ``gradgrad``: a second derivative
    exists and is checked. ``gradcheck_options`` overrides eps/atol/rtol, for ops
    that round through float32 (say why in ``notes``). ``differentiable=False``:
    the op has no gradient (indices, masks, as in PyTorch) and only its forward is
    checked."""
    name: str
    fn: Callable
    ref: Callable
    cases: Callable
    gradgrad: bool = True
    domain: str = "real"
    notes: str = ""
    gradcheck_options: dict = field(default_factory=dict)
    forward_tol: float = 1e-12
    differentiable: bool = True


# ----------------------------------------------------------------------------- the checks
def _leaves(args, backend):
    """One float64 leaf tensor per distinct Arg (the same Arg twice -> the same tensor)."""
    leaves = {}
    for a in args:
        if id(a) not in leaves:
            leaves[id(a)] = tensor(a.base, dtype="float64", requires_grad=True, backend=backend)
    return leaves


def _closure(spec, args, params):
    """fn(*distinct leaves) -> output, applying each Arg's layout on the way in."""
    order = list(dict.fromkeys(id(a) for a in args))

    def fn(*leaves):
        by_id = dict(zip(order, leaves))
        return spec.fn(*[a.view(by_id[id(a)]) for a in args], **params)
    return fn, order


def check_forward(spec, case, backend):
    """fn equals the reference in value, shape and dtype (float64 kept), and backward
    gives every leaf a float64 gradient of its shape on the same backend."""
    args, params = case
    leaves = _leaves(args, backend)
    fn, order = _closure(spec, args, params)
    out = fn(*[leaves[i] for i in order])
    expected = np.asarray(spec.ref(*[a.value for a in args], **params))
    if out.backend != backend:
        raise CheckFailed(f"the output is on backend {out.backend!r}, not {backend!r}")
    if spec.differentiable and out.dtype != "float64":
        raise CheckFailed(f"float64 inputs gave a {out.dtype.name} output")
    if not spec.differentiable and out.dtype != expected.dtype.name:
        raise CheckFailed(f"dtype {out.dtype.name}, the reference's {expected.dtype.name}")
    if out.shape != expected.shape:
        raise CheckFailed(f"output shape {out.shape}, the reference's {expected.shape}")
    np.testing.assert_allclose(out.numpy(), expected, rtol=spec.forward_tol,
                               atol=spec.forward_tol)
    if not spec.differentiable:
        if out.requires_grad:
            raise CheckFailed("an op without a gradient gave an output that requires grad")
        return
    if not out.requires_grad:
        raise CheckFailed("the output does not require grad")
    out.backward(Tensor._make(get_backend(backend).ones(out.shape, "float64"),
                              get_backend(backend), False, None))
    for i in order:
        g = leaves[i].grad
        if g is None or g.shape != leaves[i].shape or g.dtype != "float64" or \
                g.backend != backend:
            raise CheckFailed(f"a leaf of shape {leaves[i].shape} got the gradient "
                              f"{None if g is None else (g.shape, g.dtype, g.backend)}")


def check_gradient(spec, case, backend):
    args, params = case
    leaves = _leaves(args, backend)
    fn, order = _closure(spec, args, params)
    gradcheck(fn, [leaves[i] for i in order], **spec.gradcheck_options)


def check_second_derivative(spec, case, backend):
    args, params = case
    leaves = _leaves(args, backend)
    fn, order = _closure(spec, args, params)
    gradgradcheck(fn, [leaves[i] for i in order], **spec.gradcheck_options)


CHECKS = {"forward": check_forward, "gradcheck": check_gradient,
          "gradgradcheck": check_second_derivative}


def run_check(check, spec, case, backend):
    """Run one named check with ``backend`` current (so tensors made inside ``fn``
    land there too); any failure becomes a CheckFailed that says what and where."""
    try:
        with use_backend(backend):
            CHECKS[check](spec, case, backend)
    except Exception as e:
        args, params = case
        raise CheckFailed(f"{check} failed on backend {backend!r} for {spec.name}"
                          f"({', '.join(repr(a) for a in args)}"
                          f"{', ' if params else ''}{', '.join(f'{k}={v!r}' for k, v in params.items())}):"
                          f" {type(e).__name__}: {e}") from None


def check_function(fn, reference, cases, *, name=None, gradgrad=True, backends=None,
                   max_examples=None, **gradcheck_options):
    """Check ``fn`` against ``reference``, its gradient against central differences and
    (``gradgrad``) its second derivative, on every backend in ``backends`` (default:
    all available), for cases drawn from the hypothesis strategy ``cases`` (see
    ``OpSpec``; ``strategies.unary()`` and ``strategies.binary()`` are ready ones).

    Returns True, or raises ``CheckFailed`` naming the check, the backend and the
    (shrunk) case.
    ``max_examples`` overrides the hypothesis profile's; ``eps``, ``atol`` and
    ``rtol`` go to gradcheck."""
    strategy = cases if isinstance(cases, SearchStrategy) else cases()
    spec = OpSpec(name or getattr(fn, "__name__", "fn"), fn, reference, lambda: strategy,
                  gradgrad, gradcheck_options=gradcheck_options)
    checks = ["forward", "gradcheck"] + (["gradgradcheck"] if gradgrad else [])
    # (check_function is for differentiable functions; OpSpec(differentiable=False)
    # entries of the registry run the forward check alone)
    options = {"suppress_health_check": [HealthCheck.too_slow], "deadline": None}
    if max_examples is not None:
        options["max_examples"] = max_examples
    for backend in backends or available_backends():
        for check in checks:
            @settings(**options)
            @given(strategy)
            def run(case):
                run_check(check, spec, case, backend)
            try:
                run()
            except CheckFailed as e:
                raise CheckFailed(str(e)) from None
    return True


# ----------------------------------------------------------------------------- coverage
def functions_reached(spec, backend="numpy", examples=3) -> set:
    """The Function classes that ``examples`` drawn cases of ``spec`` apply in their
    forward, backward and the backward of the backward (the second derivative's
    graph). The draw is derandomised, so the answer is the same every time."""
    seen = set()
    original = Function.__dict__["apply"]

    def traced(cls, *inputs, **options):
        seen.add(cls)
        return original.__func__(cls, *inputs, **options)

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(spec.cases())
    def trace(case):
        args, params = case
        with use_backend(backend):
            _apply_twice(spec, args, params, backend)

    Function.apply = classmethod(traced)
    try:
        trace()
    finally:
        Function.apply = original
    return seen


def _apply_twice(spec, args, params, backend):
    """Forward, backward with create_graph, and the backward of that backward."""
    leaves = _leaves(args, backend)
    fn, order = _closure(spec, args, params)
    xs = [leaves[i] for i in order]
    out = fn(*xs)
    if not isinstance(out, Tensor) or not out.requires_grad:
        return
    v = tensor(np.ones(out.shape), dtype="float64", requires_grad=True, backend=backend)
    gs = [g for g in grad(out, xs, grad_outputs=v, create_graph=True, allow_unused=True)
          if g is not None and g.requires_grad]
    if gs:
        total = gs[0].sum()
        for g in gs[1:]:
            total = total + g.sum()
        grad(total, xs + [v], allow_unused=True)
