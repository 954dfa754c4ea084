"""Hypothesis strategies for op tests: shapes, broadcastable shape pairs, axes,
dtypes, well-conditioned float64 arrays, and non-contiguous layouts.

Values are kept away from the points where an op has no derivative (relu/abs
at 0, clip at its bounds, ties in max/min/maximum) and inside each op's domain
(log/sqrt of positives, division by numbers away from 0), by a margin far
larger than gradcheck's eps (1e-6), so that central differences are exact up
to rounding and a failure always means a wrong backward.

A drawn argument is an ``Arg``: the array that becomes the leaf tensor
(``base``) and a ``layout`` that turns it into the op's input. The layouts
``"T"`` (transpose of a transposed base) and ``"step"`` (every other element
of a base twice as long in the last axis) hand the op a NON-contiguous array
on the numpy backend, the way a user's ``x.T`` or ``x[:, ::2]`` would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np  # host-side: test data is built on the host, then moved to a backend
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# ----------------------------------------------------------------------------- shapes
MAX_SIDE = 4
MAX_DIMS = 3


def shapes(min_dims=0, max_dims=MAX_DIMS, min_side=1, max_side=MAX_SIDE):
    """Shapes including 0-d ``()`` and size-1 dims (hypothesis favours small sides)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def broadcastable_shapes(draw, min_dims=0, max_dims=MAX_DIMS, max_side=MAX_SIDE):
    """Two shapes that broadcast together: the second may have fewer dims, and
    each of its dims is the first's size or 1 (and sometimes it is the first
    that has the 1)."""
    a = draw(shapes(min_dims, max_dims, max_side=max_side))
    nb = draw(st.integers(0, len(a)))
    b = []
    a_out = list(a)
    for i in range(len(a) - nb, len(a)):
        choice = draw(st.sampled_from(["same", "one", "stretch_a"]))
        if choice == "same":
            b.append(a[i])
        elif choice == "one":
            b.append(1)
        else:  # the first operand has the 1 here, the second the full size
            b.append(a[i] if a[i] > 1 else 2)
            a_out[i] = 1
    a, b = tuple(a_out), tuple(b)
    if draw(st.booleans()):
        a, b = b, a
    return a, b


def axes(ndim, allow_none=True):
    """An axis argument for a reduction over ``ndim`` dims: None, one int (maybe
    negative), or a tuple of distinct ints."""
    if ndim == 0:
        return st.just(None)
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                       unique=True).map(tuple)
    options = [single, several]
    if allow_none:
        options.append(st.just(None))
    return st.one_of(*options)


def reduced_size(shape, axis):
    """How many elements one reduction over ``axis`` sums."""
    if axis is None:
        axis = tuple(range(len(shape)))
    elif isinstance(axis, int):
        axis = (axis,)
    n = 1
    for a in axis:
        n *= shape[a]
    return n


# ----------------------------------------------------------------------------- values
def _interval(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def floats_avoiding(lo=-3.0, hi=3.0, avoid=(), gap=0.05):
    """Floats in [lo, hi] at least ``gap`` away from each point in ``avoid``."""
    edges = sorted(p for p in avoid if lo < p < hi)
    pieces, start = [], lo
    for p in edges:
        if p - gap > start:
            pieces.append(_interval(start, p - gap))
        start = p + gap
    if hi > start:
        pieces.append(_interval(start, hi))
    return st.one_of(*pieces)


# Named value domains, used by the op registry.
DOMAINS = {
    "real": _interval(-3.0, 3.0),
    "small": _interval(-1.5, 1.5),
    "nonzero": floats_avoiding(-3.0, 3.0, avoid=(0.0,), gap=0.1),   # relu, abs, leaky_relu, elu
    "positive": _interval(0.3, 3.0),                                 # log, sqrt, pow base
    "denominator": floats_avoiding(-3.0, 3.0, avoid=(0.0,), gap=0.5),
    "clip": floats_avoiding(-2.0, 2.0, avoid=(-0.5, 0.7), gap=0.05),  # clip(x, -0.5, 0.7)
    "hardtanh": floats_avoiding(-3.0, 3.0, avoid=(-1.0, -0.5, 0.7, 1.0), gap=0.05),  # its
    # default bounds (-1, 1) and clip's (-0.5, 0.7)
    "grid": st.integers(-12, 12).map(lambda k: 0.25 * k),            # maximum's first operand
    "offgrid": st.integers(-12, 12).map(lambda k: 0.25 * k + 0.125),  # ... and its second
    "midgrid": st.integers(-12, 12).map(lambda k: 0.25 * k + 0.0625),  # a third, off both
    "probability": _interval(0.05, 0.95),                            # BCE inputs and targets
}
CLIP_LO, CLIP_HI = -0.5, 0.7


@st.composite
def distinct_values(draw, shape, spacing=0.1):
    """An array of ``shape`` whose entries are pairwise at least ``spacing`` apart
    (no ties: max/min have a derivative; var > 0 so std has one)."""
    n = int(np.prod(shape, dtype=np.int64))
    perm = draw(st.permutations(range(n)))
    shift = draw(_interval(-1.0, 1.0))
    values = (np.asarray(perm, dtype=np.float64) - n / 2) * spacing * 3 + shift
    return np.reshape(values, shape)


@st.composite
def distinct_magnitudes(draw, shape, spacing=0.1):
    """An array of ``shape`` with random signs whose magnitudes are at least
    ``spacing`` and pairwise at least ``spacing`` apart (max and min of |x| have a
    derivative: no ties, and no entry near abs's kink at 0)."""
    n = int(np.prod(shape, dtype=np.int64))
    perm = np.asarray(draw(st.permutations(range(n))), dtype=np.float64)
    shift = draw(_interval(0.0, 1.0))
    signs = np.where(draw(st.lists(st.booleans(), min_size=n, max_size=n)), 1.0, -1.0)
    return np.reshape(signs * ((perm + 1) * spacing * 3 + shift), shape)


def arrays(shape, domain="real"):
    """float64 arrays of ``shape`` with values from a named domain (see ``DOMAINS``),
    pairwise distinct values for ``domain="distinct"``, or distinct magnitudes away
    from 0 for ``domain="distinct_magnitudes"``."""
    shape = tuple(shape)
    if domain == "distinct":
        return distinct_values(shape)
    if domain == "distinct_magnitudes":
        return distinct_magnitudes(shape)
    return hnp.arrays(np.float64, shape, elements=DOMAINS[domain])


# ----------------------------------------------------------------------------- layouts
@dataclass
class Arg:
    """One op input: ``base`` becomes the leaf tensor, ``layout`` turns it into the
    array the op sees. ``view(x)`` applies the layout to a NumPy array or a Tensor."""

    base: np.ndarray
    layout: str = "c"

    def view(self, x):
        if self.layout == "T":
            return x.T if isinstance(x, np.ndarray) else x.permute(*reversed(range(x.ndim)))
        if self.layout == "step":
            return x[..., ::2]
        return x

    @property
    def value(self) -> np.ndarray:
        return self.view(self.base)

    def __repr__(self):
        return f"Arg(layout={self.layout!r}, value=np.{self.value!r})"


@st.composite
def args(draw, shape, domain="real", layouts=("c", "T", "step")):
    """An ``Arg`` whose ``value`` has ``shape`` and values from ``domain``, stored
    contiguously ("c"), transposed ("T") or with a step of 2 ("step")."""
    shape = tuple(shape)
    layout = draw(st.sampled_from(layouts)) if len(shape) else "c"
    if layout == "T" and len(shape) < 2:
        layout = "c"
    value = draw(arrays(shape, domain))
    if layout == "T":
        return Arg(np.ascontiguousarray(value.T), "T")
    if layout == "step":
        base = np.empty(shape[:-1] + (2 * shape[-1],))
        base[..., ::2] = value
        base[..., 1::2] = draw(arrays(shape, domain))  # skipped entries: never reach the op
        return Arg(base, "step")
    return Arg(np.array(value), "c")


def contiguous(shape, domain="real"):
    return args(shape, domain, layouts=("c",))


def float_dtypes():
    """"float32" or "float64": for tests that a kernel or op keeps both."""
    return st.sampled_from(["float32", "float64"])


# ----------------------------------------------------------------------------- cases: (args, params)
def unary(domain="real", params=st.just({})):
    @st.composite
    def cases(draw):
        shape = draw(shapes())
        return [draw(args(shape, domain))], draw(params)
    return cases


def binary(domain_a="real", domain_b="real", allow_same=True, same_domain=None):
    """Two broadcastable operands; sometimes the SAME tensor twice (a + a)."""
    @st.composite
    def cases(draw):
        if allow_same and draw(st.integers(0, 4)) == 0:
            a = draw(args(draw(shapes()), same_domain or domain_b))
            return [a, a], {}
        sa, sb = draw(broadcastable_shapes())
        return [draw(args(sa, domain_a)), draw(args(sb, domain_b))], {}
    return cases


def reduction(domain="real", extra=None, min_count=1):
    """One operand, an axis (None, int or tuple) and keepdims."""
    @st.composite
    def cases(draw):
        shape = draw(shapes())
        axis = draw(axes(len(shape)))
        params = {"axis": axis, "keepdims": draw(st.booleans())}
        if extra is not None:
            params.update(draw(extra))
        need = min_count + params.get("correction", 0)
        if reduced_size(shape, axis) < need:   # e.g. std over one element: no derivative
            shape = tuple(max(s, need) for s in shape) if shape else shape
            if reduced_size(shape, axis) < need:
                shape, params["axis"] = (need,), None
        return [draw(args(shape, domain))], params
    return cases


