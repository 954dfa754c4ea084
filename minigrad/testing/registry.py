"""minigrad's op registry: every Function of the engine, each entry pairing a call
with its NumPy/SciPy reference, the hypothesis strategy of its inputs (shapes,
value domain, layouts, options) and whether a second derivative is checked.

``tests/test_ops.py`` runs, for every entry and on every backend, the forward
check (equals the reference), ``mg.gradcheck`` and (where ``gradgrad``)
``mg.gradgradcheck``; a test fails if some Function of minigrad is reached by no
entry. ``python -m minigrad.testing --list`` prints ``coverage_table()``.

A case is ``(args, params)``: ``args`` is a list of ``strategies.Arg`` (the same
``Arg`` object twice means the same tensor used twice, as in ``a * a``);
``params`` are keyword options passed to both ``fn`` and ``ref``.
"""
from __future__ import annotations

import warnings

import numpy as np  # host-side: NumPy is the reference the ops are checked against
import scipy.special
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from . import OpSpec, functions_reached
from . import strategies as S
from .strategies import binary, reduction, unary

OPS: list[OpSpec] = []


def op(name, fn, ref, cases, gradgrad=True, domain="real", notes="", **options):
    OPS.append(OpSpec(name, fn, ref, cases, gradgrad, domain, notes, **options))


# ----------------------------------------------------------------------------- arithmetic
op("add", lambda a, b: a + b, np.add, binary())
op("sub", lambda a, b: a - b, np.subtract, binary())
op("mul", lambda a, b: a * b, np.multiply, binary())
op("div", lambda a, b: a / b, np.divide, binary("real", "denominator"), domain="b away from 0")
op("pow", lambda a, b: a ** b, np.power, binary("positive", "small", same_domain="positive"),
   domain="a > 0")


@st.composite
def _pow_scalar_cases(draw):
    c = draw(st.sampled_from([2, 3, 0.5, -1.0, 1.5, -2]))
    domain = "real" if c in (2, 3) else "positive"
    return [draw(S.args(draw(S.shapes()), domain))], {"c": c}


op("pow_scalar", lambda x, c: x ** c, lambda x, c: x ** c, _pow_scalar_cases,
   domain="x > 0 unless c in {2, 3}")
op("neg", lambda x: -x, np.negative, unary())
op("scalar_operands", lambda x: (2.5 - x) * 0.5 + 1.0 / x - x / 3 + 2 ** x,
   lambda x: (2.5 - x) * 0.5 + 1.0 / x - x / 3 + 2 ** x, unary("denominator"),
   domain="x away from 0", notes="Python numbers on either side: radd rsub rmul rtruediv rpow")


@st.composite
def _matmul_cases(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    kind = draw(st.sampled_from(["2d", "batched", "vec@mat", "mat@vec", "vec@vec",
                                 "vec@batched", "batched@vec", "same"]))
    batch_a, batch_b = draw(S.broadcastable_shapes(min_dims=1, max_dims=2, max_side=3))
    if kind == "same":
        a = draw(S.args(batch_a + (n, n)))
        return [a, a], {}
    sa, sb = {"2d": ((n, k), (k, m)), "batched": (batch_a + (n, k), batch_b + (k, m)),
              "vec@mat": ((k,), (k, m)), "mat@vec": ((n, k), (k,)), "vec@vec": ((k,), (k,)),
              "vec@batched": ((k,), batch_b + (k, m)),
              "batched@vec": (batch_a + (n, k), (k,))}[kind]
    return [draw(S.args(sa)), draw(S.args(sb))], {}


op("matmul", lambda a, b: a @ b, np.matmul, _matmul_cases,
   notes="2-D, batched with broadcast batch dims, 1-D on either side, a @ a")

# ----------------------------------------------------------------------------- elementwise
op("exp", mg.exp, np.exp, unary("small"))
op("log", mg.log, np.log, unary("positive"), domain="x > 0")
op("sqrt", mg.sqrt, np.sqrt, unary("positive"), domain="x > 0")
op("abs", mg.abs, np.abs, unary("nonzero"), domain="|x| >= 0.1 (kink at 0)")
op("erf", mg.erf, scipy.special.erf, unary())
op("sin", mg.sin, np.sin, unary())
op("cos", mg.cos, np.cos, unary())
op("tanh", mg.tanh, np.tanh, unary())
op("sigmoid", mg.sigmoid, scipy.special.expit, unary())
op("relu", mg.relu, lambda x: np.maximum(x, 0), unary("nonzero"), domain="|x| >= 0.1")
op("leaky_relu", lambda x, negative_slope: mg.leaky_relu(x, negative_slope),
   lambda x, negative_slope: np.where(x > 0, x, negative_slope * x),
   unary("nonzero", st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, 0.2])})),
   domain="|x| >= 0.1")
op("elu", lambda x, alpha: mg.elu(x, alpha), lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(x)),
   unary("nonzero", st.fixed_dictionaries({"alpha": st.sampled_from([1.0, 0.5])})),
   domain="|x| >= 0.1")
op("softplus", mg.softplus, lambda x: np.logaddexp(0, x), unary())
op("clip", lambda x, min, max: mg.clip(x, min, max), lambda x, min, max: np.clip(x, min, max),
   unary("clip", st.sampled_from([{"min": S.CLIP_LO, "max": S.CLIP_HI},
                                  {"min": S.CLIP_LO, "max": None},
                                  {"min": None, "max": S.CLIP_HI}])),
   domain="x >= 0.05 away from the bounds")
op("maximum", mg.maximum, np.maximum, binary("grid", "offgrid", allow_same=False),
   domain="no ties (a on a grid, b between)")
op("minimum", mg.minimum, np.minimum, binary("grid", "offgrid", allow_same=False),
   domain="no ties (a on a grid, b between)")


@st.composite
def _where_cases(draw):
    if draw(st.integers(0, 4)) == 0:
        a = draw(S.args(draw(S.shapes())))
        args = [a, a]
        out_shape = a.value.shape
    else:
        sa, sb = draw(S.broadcastable_shapes())
        args = [draw(S.args(sa)), draw(S.args(sb))]
        out_shape = np.broadcast_shapes(sa, sb)
    cond_shape = tuple(draw(st.sampled_from([s, 1])) for s in out_shape)
    from hypothesis.extra import numpy as hnp
    cond = draw(hnp.arrays(np.bool_, cond_shape))
    return args, {"cond": cond}


op("where", lambda a, b, cond: mg.where(mg.tensor(cond), a, b),
   lambda a, b, cond: np.where(cond, a, b), _where_cases,
   notes="condition broadcast too; where(c, a, a)")

# ----------------------------------------------------------------------------- reductions
op("sum", lambda x, axis, keepdims: x.sum(axis, keepdims),
   lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims), reduction())
op("mean", lambda x, axis, keepdims: x.mean(axis, keepdims),
   lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims), reduction())
op("amax", lambda x, axis, keepdims: x.amax(axis, keepdims),
   lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims), reduction("distinct"),
   domain="distinct values (no ties)")
op("amin", lambda x, axis, keepdims: x.amin(axis, keepdims),
   lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims), reduction("distinct"),
   domain="distinct values (no ties)")


@st.composite
def _one_dim_cases(draw):
    """max(x) (no dim), or max(x, dim, keepdim) along one dim, on distinct values."""
    shape = draw(S.shapes())
    dim = draw(st.one_of(st.none(), st.integers(-max(len(shape), 1), max(len(shape), 1) - 1)))
    return [draw(S.args(shape, "distinct"))], {"dim": dim, "keepdim": draw(st.booleans())}


def _max_like(fn):
    def call(x, dim, keepdim):
        return getattr(x, fn)() if dim is None else getattr(x, fn)(dim, keepdim).values
    return call


def _np_max_like(fn):
    def ref(x, dim, keepdim):
        if dim is None:
            return fn(x)
        return fn(x, axis=dim % max(x.ndim, 1), keepdims=keepdim) if x.ndim else x
    return ref


op("max", _max_like("max"), _np_max_like(np.max), _one_dim_cases,
   domain="distinct values (no ties)", notes="max(x) and max(x, dim).values")
op("min", _max_like("min"), _np_max_like(np.min), _one_dim_cases,
   domain="distinct values (no ties)", notes="min(x) and min(x, dim).values")
_correction = st.fixed_dictionaries({"correction": st.sampled_from([0, 1])})
op("var", lambda x, axis, keepdims, correction: x.var(axis, keepdim=keepdims,
                                                      correction=correction),
   lambda x, axis, keepdims, correction: np.var(x, axis=axis, keepdims=keepdims, ddof=correction),
   reduction(extra=_correction))
op("std", lambda x, axis, keepdims, correction: x.std(axis, keepdim=keepdims,
                                                      correction=correction),
   lambda x, axis, keepdims, correction: np.std(x, axis=axis, keepdims=keepdims, ddof=correction),
   reduction("distinct", extra=_correction, min_count=2),
   domain="distinct values, >= 2 per reduction (std > 0)")
def _np_logsumexp(x, axis, keepdims):
    # scipy.special.logsumexp turns a 0-d input with keepdims into shape (1,): NumPy's own
    m = np.max(x, axis=axis, keepdims=True)
    y = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return y if keepdims else np.squeeze(y, axis=axis)


op("logsumexp", lambda x, axis, keepdims: x.logsumexp(axis, keepdims),
   _np_logsumexp, reduction())


@st.composite
def _softmax_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    return [draw(S.args(shape))], {"axis": draw(st.integers(-len(shape), len(shape) - 1))}


op("softmax", lambda x, axis: x.softmax(axis), lambda x, axis: scipy.special.softmax(x, axis=axis),
   _softmax_cases)
op("log_softmax", lambda x, axis: x.log_softmax(axis),
   lambda x, axis: scipy.special.log_softmax(x, axis=axis), _softmax_cases)


# ----------------------------------------------------------------------------- shape ops
@st.composite
def _reshape_cases(draw):
    shape = draw(S.shapes())
    dims = list(draw(st.permutations(shape)))
    for _ in range(draw(st.integers(0, 2))):
        dims.insert(draw(st.integers(0, len(dims))), 1)
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return [draw(S.args(shape))], {"shape": tuple(dims)}


def _np_reshape(x, shape):
    return np.reshape(x, shape)


op("reshape", lambda x, shape: x.reshape(shape), _np_reshape, _reshape_cases,
   notes="-1 and inserted size-1 dims")
op("view", lambda x, shape: x.view(*shape), _np_reshape, _reshape_cases)


@st.composite
def _two_axes_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    d = len(shape)
    return [draw(S.args(shape))], {"dim0": draw(st.integers(-d, d - 1)),
                                   "dim1": draw(st.integers(-d, d - 1))}


op("transpose", lambda x, dim0, dim1: x.transpose(dim0, dim1),
   lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1), _two_axes_cases)
op("swapaxes", lambda x, dim0, dim1: mg.swapaxes(x, dim0, dim1),
   lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1), _two_axes_cases)


@st.composite
def _permute_cases(draw):
    shape = draw(S.shapes())
    return [draw(S.args(shape))], {"dims": tuple(draw(st.permutations(range(len(shape)))))}


op("permute", lambda x, dims: x.permute(*dims), lambda x, dims: np.transpose(x, dims),
   _permute_cases)


@st.composite
def _flatten_cases(draw):
    shape = draw(S.shapes())
    d = max(len(shape), 1)
    s, e = sorted(draw(st.lists(st.integers(0, d - 1), min_size=2, max_size=2)))
    if draw(st.booleans()):
        s, e = s - d, e - d   # negative dims
    return [draw(S.args(shape))], {"start_dim": s, "end_dim": e}


def _np_flatten(x, start_dim, end_dim):
    if x.ndim == 0:
        return np.reshape(x, (1,))
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return np.reshape(x, x.shape[:s] + (-1,) + x.shape[e + 1:])


op("flatten", lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim), _np_flatten,
   _flatten_cases)


@st.composite
def _squeeze_cases(draw):
    shape = list(draw(S.shapes()))
    for _ in range(draw(st.integers(0, 2))):
        shape.insert(draw(st.integers(0, len(shape))), 1)
    ones = [i for i, s in enumerate(shape) if s == 1]
    axis = None
    if ones and draw(st.booleans()):
        picked = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        axis = picked[0] if len(picked) == 1 else tuple(picked)
    return [draw(S.args(tuple(shape)))], {"axis": axis}


op("squeeze", lambda x, axis: x.squeeze(axis), lambda x, axis: np.squeeze(x, axis),
   _squeeze_cases)


@st.composite
def _unsqueeze_cases(draw):
    shape = draw(S.shapes())
    return [draw(S.args(shape))], {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}


op("unsqueeze", lambda x, axis: x.unsqueeze(axis), lambda x, axis: np.expand_dims(x, axis),
   _unsqueeze_cases)


@st.composite
def _expand_cases(draw):
    small, big = draw(S.broadcastable_shapes())
    if len(small) > len(big) or any(s not in (1, b) for s, b in zip(small[::-1], big[::-1])):
        small, big = big, small
    target = tuple(np.broadcast_shapes(small, big))
    if draw(st.booleans()):   # PyTorch's -1: keep that size
        lead = len(target) - len(small)
        target = tuple(-1 if i >= lead and small[i - lead] == t and draw(st.booleans()) else t
                       for i, t in enumerate(target))
    return [draw(S.args(small))], {"shape": target}


def _np_expand(x, shape):
    lead = len(shape) - x.ndim
    return np.broadcast_to(x, tuple(x.shape[i - lead] if s == -1 else s
                                    for i, s in enumerate(shape)))


op("expand", lambda x, shape: x.expand(*shape), _np_expand, _expand_cases,
   notes="new leading dims, size-1 dims stretched, -1")
op("broadcast_to", lambda x, shape: mg.broadcast_to(x, _np_expand(np.zeros(x.shape), shape).shape),
   _np_expand, _expand_cases)


@st.composite
def _concat_cases(draw, stack=False):
    shape = draw(S.shapes(min_dims=0 if stack else 1))
    d = len(shape)
    axis = draw(st.integers(-d - 1, d) if stack else st.integers(-d, d - 1))
    n = draw(st.integers(1, 3))
    out = []
    for _ in range(n):
        if out and draw(st.integers(0, 3)) == 0:
            out.append(out[0])    # the same tensor twice: cat([a, a])
            continue
        s = list(shape)
        if not stack:
            s[axis] = draw(st.integers(1, 3))
            if out:
                s = [*out[0].value.shape]
                s[axis] = draw(st.integers(1, 3))
        out.append(draw(S.args(tuple(s))))
    return out, {"axis": axis}


op("concatenate", lambda *xs, axis: mg.concatenate(xs, axis),
   lambda *xs, axis: np.concatenate(xs, axis), _concat_cases,
   notes="1-3 inputs, cat([a, a])")
op("stack", lambda *xs, axis: mg.stack(xs, axis), lambda *xs, axis: np.stack(xs, axis),
   lambda: _concat_cases(stack=True), notes="1-3 inputs, 0-d inputs, stack([a, a])")


def _weighted_flat(pieces, cat):
    """Join split pieces into one output, piece i scaled by (i + 1), so a wrong
    boundary or a mixed-up piece changes the result and its gradient."""
    return cat([p.reshape(-1) * float(i + 1) for i, p in enumerate(pieces)])


def _np_sizes(n, split_size_or_sections):
    if isinstance(split_size_or_sections, int):
        return [min(split_size_or_sections, n - i) for i in range(0, n, split_size_or_sections)]
    return list(split_size_or_sections)


def _np_split(x, split, axis):
    cuts = np.cumsum(_np_sizes(x.shape[axis], split))[:-1]
    return _weighted_flat(np.split(x, cuts, axis), np.concatenate)


@st.composite
def _split_cases(draw, chunk=False):
    shape = draw(S.shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    if chunk:
        return [draw(S.args(shape))], {"chunks": draw(st.integers(1, n + 1)), "axis": axis}
    if draw(st.booleans()):
        split = draw(st.integers(1, n))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
        split = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    return [draw(S.args(shape))], {"split": split, "axis": axis}


op("split", lambda x, split, axis: _weighted_flat(mg.split(x, split, axis), mg.concatenate),
   _np_split, _split_cases, notes="int size (ragged last piece) or list of sizes, empty pieces")
op("chunk",
   lambda x, chunks, axis: _weighted_flat(mg.chunk(x, chunks, axis), mg.concatenate),
   lambda x, chunks, axis: _np_split(x, -(-x.shape[axis] // chunks), axis),
   lambda: _split_cases(chunk=True))


@st.composite
def _pad_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    k = draw(st.integers(1, len(shape)))
    pad = tuple(draw(st.lists(st.integers(0, 2), min_size=2 * k, max_size=2 * k)))
    return [draw(S.args(shape))], {"pad": pad, "value": draw(st.sampled_from([0.0, 1.5]))}


def _np_pad(x, pad, value):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return np.pad(x, widths, constant_values=value)


op("pad", lambda x, pad, value: mg.pad(x, pad, value=value), _np_pad, _pad_cases,
   notes="PyTorch F.pad order (last axis first), constant value")


# ----------------------------------------------------------------------------- indexing
@st.composite
def _getitem_basic_cases(draw):
    from hypothesis.extra import numpy as hnp
    shape = draw(S.shapes(min_dims=1))
    key = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return [draw(S.args(shape))], {"key": key}


op("getitem_basic", lambda x, key: x[key], lambda x, key: x[key], _getitem_basic_cases,
   notes="ints, slices with steps, None, ...")


@st.composite
def _getitem_int_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    form = draw(st.sampled_from(["first", "axis", "two", "tensor2d"]))
    if form == "two" and len(shape) < 2:
        form = "first"
    if form == "axis":
        ax = draw(st.integers(0, len(shape) - 1))
    else:
        ax = 0
    def idx(n):  # repeats on purpose: their gradients must ADD
        return draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5))
    if form == "two":
        i0 = idx(shape[0])
        i1 = [draw(st.integers(-shape[1], shape[1] - 1)) for _ in i0]
        key = (np.array(i0), np.array(i1))
    elif form == "tensor2d":
        key = np.array(idx(shape[0]) * 2).reshape(2, -1)
    else:
        key = (slice(None),) * ax + (np.array(idx(shape[ax])),)
    return [draw(S.args(shape))], {"key": key}


def _to_tensor_key(key):
    if isinstance(key, tuple):
        return tuple(mg.tensor(k) if isinstance(k, np.ndarray) else k for k in key)
    return mg.tensor(key) if isinstance(key, np.ndarray) else key


op("getitem_int_array", lambda x, key: x[_to_tensor_key(key)], lambda x, key: x[key],
   _getitem_int_cases, notes="repeated indices (gradient scatter-adds), any axis, 2-D index, "
                             "two index arrays")


@st.composite
def _getitem_bool_cases(draw):
    from hypothesis.extra import numpy as hnp
    shape = draw(S.shapes(min_dims=1))
    lead = draw(st.integers(1, len(shape)))
    mask = draw(hnp.arrays(np.bool_, shape[:lead]))
    return [draw(S.args(shape))], {"mask": mask}


op("getitem_bool", lambda x, mask: x[mg.tensor(mask)], lambda x, mask: x[mask],
   _getitem_bool_cases, notes="mask over all or the leading dims")




# ----------------------------------------------------------------------------- PyTorch's everyday ops
op("clone", lambda x: x.clone(), lambda x: x.copy(), unary())
op("square", lambda x: x.square(), np.square, unary())
op("reciprocal", lambda x: x.reciprocal(), np.reciprocal, unary("denominator"),
   domain="x away from 0")
op("rsqrt", lambda x: x.rsqrt(), lambda x: 1 / np.sqrt(x), unary("positive"), domain="x > 0")
op("log1p", lambda x: x.log1p(), np.log1p, unary("positive"), domain="x > 0")
op("expm1", lambda x: x.expm1(), np.expm1, unary("small"))
for _step in ("sign", "floor", "ceil", "trunc", "round"):
    op(_step, (lambda f: lambda x: getattr(x, f)())(_step), getattr(np, _step), unary("offgrid"),
       domain="x off integers and halves (the jumps)", notes="piecewise constant: gradient 0")
op("round_decimals", lambda x, decimals: x.round(decimals=decimals),
   lambda x, decimals: np.round(x, decimals), unary("offgrid", st.just({"decimals": 1})),
   domain="x off the rounding points")


@st.composite
def _mm_cases(draw, batched=False):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    lead = (draw(st.integers(1, 3)),) if batched else ()
    return [draw(S.args(lead + (n, k))), draw(S.args(lead + (k, m)))], {}


op("mm", lambda a, b: a.mm(b), np.matmul, _mm_cases)
op("bmm", lambda a, b: a.bmm(b), np.matmul, lambda: _mm_cases(batched=True))


@st.composite
def _dim_cases(draw, domain="real"):
    shape = draw(S.shapes(min_dims=1))
    return [draw(S.args(shape, domain))], {"dim": draw(st.integers(-len(shape), len(shape) - 1))}


op("cumsum", lambda x, dim: x.cumsum(dim), lambda x, dim: np.cumsum(x, axis=dim), _dim_cases)
op("prod", lambda x, axis, keepdims: x.prod(axis, keepdims),
   lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims), reduction("nonzero"),
   domain="|x| >= 0.1 (the zero rules are unit-tested)")


@st.composite
def _norm_cases(draw):
    shape = draw(S.shapes())
    p = draw(st.sampled_from([2, "fro", 1, 3, float("inf"), float("-inf")]))
    axis = draw(S.axes(len(shape)))
    domain = "distinct_magnitudes" if p in (float("inf"), float("-inf")) else "nonzero"
    return [draw(S.args(shape, domain))], {"p": p, "dim": axis, "keepdim": draw(st.booleans())}


def _np_norm(x, p, dim, keepdim):
    a = np.abs(x)
    if p in (2, "fro"):
        return np.sqrt(np.sum(a * a, axis=dim, keepdims=keepdim))
    if p == float("inf"):
        return np.max(a, axis=dim, keepdims=keepdim)
    if p == float("-inf"):
        return np.min(a, axis=dim, keepdims=keepdim)
    return np.sum(a ** p, axis=dim, keepdims=keepdim) ** (1 / p)


op("norm", lambda x, p, dim, keepdim: x.norm(p, dim, keepdim), _np_norm, _norm_cases,
   domain="|x| >= 0.1, distinct |x| for inf norms", notes="p = 2, 'fro', 1, 3, inf, -inf")


@st.composite
def _gather_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    ishape = tuple(draw(st.integers(1, s)) if i != dim % len(shape) else draw(st.integers(1, 4))
                   for i, s in enumerate(shape))
    n = shape[dim]
    index = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(ishape)),
                                   max_size=int(np.prod(ishape))))).reshape(ishape)
    return [draw(S.args(shape))], {"dim": dim, "index": index}


def _np_gather(x, dim, index):
    """PyTorch's gather: the index's own shape (it may be smaller than x off ``dim``)."""
    d = dim % x.ndim
    part = x[tuple(slice(None) if k == d else slice(0, n) for k, n in enumerate(index.shape))]
    return np.take_along_axis(part, np.where(index < 0, index + x.shape[d], index), axis=d)


op("gather", lambda x, dim, index: x.gather(dim, mg.tensor(index)), _np_gather,
   _gather_cases, notes="repeated and negative indices; index smaller than the input")


@st.composite
def _index_select_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    index = np.array(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)))
    return [draw(S.args(shape))], {"dim": dim, "index": index}


op("index_select", lambda x, dim, index: x.index_select(dim, mg.tensor(index)),
   lambda x, dim, index: np.take(x, index, axis=dim), _index_select_cases,
   notes="repeated indices")


@st.composite
def _masked_fill_cases(draw):
    from hypothesis.extra import numpy as hnp
    sx, sm = draw(S.broadcastable_shapes())
    if np.broadcast_shapes(sx, sm) != sx:
        sx, sm = sm, sx
    if np.broadcast_shapes(sx, sm) != sx:
        sm = sx
    return [draw(S.args(sx))], {"mask": draw(hnp.arrays(np.bool_, sm)),
                                "value": draw(st.sampled_from([0.0, -1.5]))}


op("masked_fill", lambda x, mask, value: x.masked_fill(mg.tensor(mask), value),
   lambda x, mask, value: np.where(mask, value, x), _masked_fill_cases,
   notes="mask broadcast to the input")


@st.composite
def _repeat_cases(draw):
    shape = draw(S.shapes())
    sizes = tuple(draw(st.integers(1, 3)) for _ in range(len(shape) + draw(st.integers(0, 2))))
    return [draw(S.args(shape))], {"sizes": sizes or (1,)}


op("repeat", lambda x, sizes: x.repeat(*sizes), lambda x, sizes: np.tile(x, sizes),
   _repeat_cases, notes="extra leading sizes add dims")


@st.composite
def _flip_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    dims = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True))
    return [draw(S.args(shape))], {"dims": tuple(dims)}


op("flip", lambda x, dims: x.flip(*dims), lambda x, dims: np.flip(x, dims), _flip_cases)


@st.composite
def _triangle_cases(draw):
    shape = draw(S.shapes(min_dims=2))
    return [draw(S.args(shape))], {"diagonal": draw(st.integers(-2, 2))}


op("tril", lambda x, diagonal: x.tril(diagonal), lambda x, diagonal: np.tril(x, diagonal),
   _triangle_cases)
op("triu", lambda x, diagonal: x.triu(diagonal), lambda x, diagonal: np.triu(x, diagonal),
   _triangle_cases)


@st.composite
def _clamp_tensor_cases(draw):
    shape = draw(S.shapes())
    bounds = draw(st.sampled_from(["min", "max", "both"]))
    lo = draw(S.args(shape, "grid")) if bounds != "max" else None
    hi = draw(S.args(shape, "midgrid")) if bounds != "min" else None
    x = draw(S.args(shape, "offgrid"))
    return [a for a in (x, lo, hi) if a is not None], {"bounds": bounds}


def _clamp_tensors(x, *b, bounds):
    lo = b[0] if bounds != "max" else None
    hi = b[-1] if bounds != "min" else None
    return mg.clamp(x, min=lo, max=hi)


def _np_clamp_tensors(x, *b, bounds):
    lo = b[0] if bounds != "max" else None
    hi = b[-1] if bounds != "min" else None
    y = x if lo is None else np.where(x < lo, lo, x)
    return y if hi is None else np.where(y > hi, hi, y)


op("clamp_tensor_bounds", _clamp_tensors, _np_clamp_tensors, _clamp_tensor_cases,
   domain="x, min and max on three disjoint grids (no ties)",
   notes="min and/or max tensors; where min > max, max")
op("clamp_min", lambda x: x.clamp_min(S.CLIP_LO), lambda x: np.maximum(x, S.CLIP_LO),
   unary("clip"))
op("softplus_beta_threshold", lambda x, beta, threshold: mg.softplus(x, beta, threshold),
   lambda x, beta, threshold: np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta),
   unary("clip", st.sampled_from([{"beta": 3.0, "threshold": 2.1},      # the switch at x = 0.7
                                  {"beta": 0.5, "threshold": 20.0}])),
   domain="beta x off the threshold (a small jump there, as in PyTorch)")

# ops without a gradient (as in PyTorch): forward only
op("isnan", lambda x: x.isnan(), np.isnan, unary(), differentiable=False)
op("isfinite", lambda x: x.isfinite(), np.isfinite, unary(), differentiable=False)
op("argmax", lambda x, dim: x.argmax(dim), lambda x, dim: np.argmax(x, axis=dim),
   lambda: _dim_cases("distinct"), differentiable=False, domain="distinct values")


# ----------------------------------------------------------------------------- conversions
op("cast", lambda x: x.astype("float32").astype("float64"),
   lambda x: x.astype(np.float32).astype(np.float64), unary(),
   notes="float64 -> float32 -> float64; gradcheck eps 1e-3, exact for this linear map "
         "up to float32 rounding (eps 1e-6 would sit below float32's resolution)",
   gradcheck_options={"eps": 1e-3})


def _round_trip(x):
    """x moved to another backend and back (numpy <-> strict; cupy -> numpy -> cupy)."""
    other = "strict" if x.backend == "numpy" else "numpy"
    return x.to(other).to(x.backend)


op("to_backend", _round_trip, lambda x: x, unary(),
   notes="to another backend and back; needs array-api-strict beside numpy")


# ----------------------------------------------------------------------------- conv and pooling
def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """The definition, one output pixel at a time (``padding`` may also be
    (top, bottom, left, right)):
    y[n,o,p,q] = b[o] + sum_{c,i,j} w[o,c,i,j] xpad[n, g(o)*Cg + c, p*sh + i*dh, q*sw + j*dw]."""
    (sh, sw), (dh, dw), pads = _two(stride), _two(dilation), _two(padding)
    pt, pb, pl, pr = pads if len(pads) == 4 else (pads[0], pads[0], pads[1], pads[1])
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xpad = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xpad[:, :, pt:pt + h, pl:pl + wd] = x
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for p in range(ho):
            for q in range(wo):
                for ci in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            y[:, oc, p, q] += w[oc, ci, i, j] * \
                                xpad[:, g * cg + ci, p * sh + i * dh, q * sw + j * dw]
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                         dilation=1):
    """Scatter: every x[n,ci,h,v] adds x * w[ci,co,i,j] at (h*sh + i*dh - ph, v*sw + j*dw - pw)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(_two, (stride, padding, output_padding,
                                                          dilation))
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    buf = np.zeros((n, cog * groups, ho + 2 * ph, wo + 2 * pw))
    cig = cin // groups
    for ci in range(cin):
        g = ci // cig
        for co in range(cog):
            for r in range(h):
                for v in range(wd):
                    for i in range(kh):
                        for j in range(kw):
                            buf[:, g * cog + co, r * sh + i * dh, v * sw + j * dw] += \
                                x[:, ci, r, v] * w[ci, co, i, j]
    y = buf[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def ref_pool(x, kernel_size, stride=None, padding=0, mode="max"):
    """Max or mean (zero padding counted) over each window, one output pixel at a time."""
    (kh, kw), (ph, pw) = _two(kernel_size), _two(padding)
    sh, sw = (kh, kw) if stride is None else _two(stride)
    n, c, h, w = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xpad = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, ho, wo))
    for p_ in range(ho):
        for q in range(wo):
            win = xpad[:, :, p_ * sh:p_ * sh + kh, q * sw:q * sw + kw]
            y[:, :, p_, q] = win.max(axis=(2, 3)) if mode == "max" else win.mean(axis=(2, 3))
    return y


@st.composite
def _conv_cases(draw, transposed=False):
    """Small convolutions: groups 1 or 2, every stride/padding/dilation up to 2 per axis."""
    groups = draw(st.sampled_from([1, 2]))
    ci, co = draw(st.integers(1, 2)) * groups, draw(st.integers(1, 2)) * groups
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw, dh, dw = (draw(st.integers(1, 2)) for _ in range(4))
    ph, pw = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    n = draw(st.integers(1, 2))
    params = {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw), "groups": groups}
    if transposed:
        h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        params["output_padding"] = (draw(st.integers(0, max(sh, dh) - 1)),
                                    draw(st.integers(0, max(sw, dw) - 1)))
        if min((h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1) <= 2:
            params["padding"] = (0, 0)        # keep the output at least one pixel
        wshape = (ci, co // groups, kh, kw)
    else:
        h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), dh * (kh - 1) + 3))
        w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), dw * (kw - 1) + 3))
        wshape = (co, ci // groups, kh, kw)
    x = draw(S.args((n, ci, h, w)))
    return [x, draw(S.contiguous(wshape)), draw(S.contiguous((co,)))], params


op("conv2d", lambda x, w, b, **kw: F.conv2d(x, w, b, **kw), ref_conv2d, _conv_cases,
   notes="groups, stride, padding, dilation per axis; bias; tests/test_conv.py has more")
op("conv_transpose2d", lambda x, w, b, **kw: F.conv_transpose2d(x, w, b, **kw),
   ref_conv_transpose2d, lambda: _conv_cases(transposed=True), notes="output_padding too")


@st.composite
def _pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 2), st.integers(1, 2))))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), kh - 2 * ph + 3))
    w = draw(st.integers(max(1, kw - 2 * pw), kw - 2 * pw + 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    return [draw(S.args(shape, "distinct"))], {"kernel_size": (kh, kw), "stride": stride,
                                              "padding": (ph, pw)}


op("max_pool2d", lambda x, **kw: F.max_pool2d(x, **kw), lambda x, **kw: ref_pool(x, **kw),
   _pool_cases, domain="distinct values (no ties in a window)")
op("avg_pool2d", lambda x, **kw: F.avg_pool2d(x, **kw),
   lambda x, **kw: ref_pool(x, mode="avg", **kw), _pool_cases)


def ref_adaptive_avg_pool2d(x, output_size):
    h, w = x.shape[-2:]
    oh, ow = output_size
    y = np.zeros(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * h) // oh, -(-(i + 1) * h // oh)
            c0, c1 = (j * w) // ow, -(-(j + 1) * w // ow)
            y[..., i, j] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return y


@st.composite
def _adaptive_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 5)),
             draw(st.integers(1, 5)))
    return [draw(S.args(shape))], {"output_size": (draw(st.integers(1, 4)),
                                                   draw(st.integers(1, 4)))}


op("adaptive_avg_pool2d", lambda x, output_size: F.adaptive_avg_pool2d(x, output_size),
   ref_adaptive_avg_pool2d, _adaptive_cases, notes="any input and output sizes")


@st.composite
def _interpolate_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, 3)))
    if draw(st.booleans()):
        return [draw(S.args(shape))], {"scale_factor": draw(st.integers(1, 3)), "size": None}
    return [draw(S.args(shape))], {"scale_factor": None,
                                   "size": (draw(st.integers(1, 7)), draw(st.integers(1, 7)))}


def _np_interpolate(x, scale_factor, size):
    h, w = x.shape[-2:]
    oh, ow = (h * scale_factor, w * scale_factor) if size is None else size
    rows, cols = [(i * h) // oh for i in range(oh)], [(j * w) // ow for j in range(ow)]
    return x[..., rows, :][..., cols]


op("interpolate", lambda x, scale_factor, size: F.interpolate(x, scale_factor=scale_factor,
                                                              size=size)
   if size is not None else F.interpolate(x, scale_factor=scale_factor),
   _np_interpolate, _interpolate_cases, notes="nearest; an integer scale or any size")


# ----------------------------------------------------------------------------- layers
@st.composite
def _linear_cases(draw):
    lead = draw(S.shapes(max_dims=2))
    k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return [draw(S.args(lead + (k,))), draw(S.args((m, k))), draw(S.contiguous((m,)))], {}


op("linear", F.linear, lambda x, w, b: x @ w.T + b, _linear_cases,
   notes="x of any leading shape, 1-D x, transposed weights")


def _np_batch_norm(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return xhat * w.reshape(shape) + b.reshape(shape)


@st.composite
def _batch_norm_cases(draw):
    c = draw(st.integers(1, 3))
    shape = (draw(st.integers(2, 4)), c) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return [draw(S.args(shape)), draw(S.contiguous((c,))), draw(S.contiguous((c,)))], {}


op("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
   _np_batch_norm, _batch_norm_cases, notes="batch statistics, (N, C) to (N, C, H, W)")


@st.composite
def _layer_norm_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    k = draw(st.integers(1, len(shape)))
    if np.prod(shape[-k:]) < 2:
        shape = shape[:-1] + (2,)
    return [draw(S.args(shape)), draw(S.contiguous(shape[-k:])),
            draw(S.contiguous(shape[-k:]))], {}


def _np_layer_norm(x, w, b, eps=1e-5):
    axes = tuple(range(x.ndim - w.ndim, x.ndim))
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps) * w + b


op("layer_norm", lambda x, w, b: F.layer_norm(x, w.shape, w, b), _np_layer_norm,
   _layer_norm_cases)


# ----------------------------------------------------------------------------- losses
_REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def _np_reduce(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


@st.composite
def _pair_cases(draw, domain_x="real", domain_t="real"):
    shape = draw(S.shapes())
    return [draw(S.args(shape, domain_x)), draw(S.args(shape, domain_t))], \
        {"reduction": draw(_REDUCTIONS)}


op("mse_loss", F.mse_loss, lambda x, t, reduction: _np_reduce((x - t) ** 2, reduction),
   _pair_cases)
op("l1_loss", F.l1_loss, lambda x, t, reduction: _np_reduce(np.abs(x - t), reduction),
   lambda: _pair_cases("grid", "offgrid"), domain="input != target (kink at 0)")
op("binary_cross_entropy", F.binary_cross_entropy,
   lambda x, t, reduction: _np_reduce(-(t * np.log(x) + (1 - t) * np.log(1 - x)), reduction),
   lambda: _pair_cases("probability", "probability"), domain="x, t in [0.05, 0.95]")
op("binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits,
   lambda x, t, reduction: _np_reduce(np.logaddexp(0, x) - x * t, reduction),
   lambda: _pair_cases("real", "probability"))


@st.composite
def _class_cases(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    extra = tuple(draw(st.lists(st.integers(1, 2), max_size=1)))
    target = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n * int(np.prod(extra)),
                                    max_size=n * int(np.prod(extra))))).reshape((n,) + extra)
    weight = draw(st.one_of(st.none(), st.lists(st.floats(0.5, 2.0), min_size=c, max_size=c)))
    return [draw(S.args((n, c) + extra))], {"target": target, "reduction": draw(_REDUCTIONS),
                                            "weight": weight}


def _np_cross_entropy(x, target, reduction, weight, log_probs=False):
    logp = x if log_probs else scipy.special.log_softmax(x, axis=1)
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight)
    picked = np.take_along_axis(logp, np.expand_dims(target, 1), axis=1)[:, 0]
    loss = -w[target] * picked
    if reduction == "mean":
        return loss.sum() / w[target].sum()
    return loss.sum() if reduction == "sum" else loss


def _class_loss(loss):
    def fn(x, target, reduction, weight):
        w = None if weight is None else mg.tensor(weight, dtype="float64")
        return loss(x, mg.tensor(target), weight=w, reduction=reduction)
    return fn


op("cross_entropy", _class_loss(F.cross_entropy), _np_cross_entropy, _class_cases,
   notes="class weights, reductions, a spatial axis")
op("nll_loss", _class_loss(F.nll_loss),
   lambda x, **kw: _np_cross_entropy(x, log_probs=True, **kw), _class_cases)


# ----------------------------------------------------------------------------- gelu ... group_norm
# (activations, vector norms, more losses, group norm): formulas in Tensor ops, no Function
def _np_gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return x * scipy.special.ndtr(x)       # x Phi(x), Phi the standard normal CDF


op("gelu", lambda x, approximate: F.gelu(x, approximate), _np_gelu,
   unary("real", st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])})),
   notes="exact (erf) and tanh approximation")
op("silu", F.silu, lambda x: x * scipy.special.expit(x), unary())
op("hardtanh", lambda x, min_val, max_val: F.hardtanh(x, min_val, max_val),
   lambda x, min_val, max_val: np.clip(x, min_val, max_val),
   unary("hardtanh", st.sampled_from([{"min_val": -1.0, "max_val": 1.0},
                                      {"min_val": S.CLIP_LO, "max_val": S.CLIP_HI}])),
   domain="x >= 0.05 away from the bounds")


@st.composite
def _normalize_cases(draw):
    shape = draw(S.shapes(min_dims=1))
    return [draw(S.args(shape, "nonzero"))], {"p": draw(st.sampled_from([2.0, 1.0, 3.0])),
                                              "dim": draw(st.integers(-len(shape),
                                                                      len(shape) - 1))}


def _np_normalize(x, p, dim):
    norm = np.sum(np.abs(x) ** p, axis=dim, keepdims=True) ** (1 / p)
    return x / np.maximum(norm, 1e-12)


op("normalize", lambda x, p, dim: F.normalize(x, p, dim), _np_normalize, _normalize_cases,
   domain="|x| >= 0.1 (abs's kink at 0 for p = 1)",
   notes="p in {1, 2, 3}; p = inf, 0 and the zero vector in tests/test_functional.py")


@st.composite
def _cosine_cases(draw):
    if draw(st.integers(0, 4)) == 0:
        a = draw(S.args(draw(S.shapes(min_dims=1)), "nonzero"))
        args, ndim = [a, a], a.value.ndim
    else:
        sa, sb = draw(S.broadcastable_shapes(min_dims=1))
        args, ndim = [draw(S.args(sa, "nonzero")), draw(S.args(sb, "nonzero"))], \
            max(len(sa), len(sb))
    return args, {"dim": draw(st.integers(-ndim, ndim - 1))}


def _np_cosine_similarity(a, b, dim):
    a, b = np.broadcast_arrays(a, b)
    na = np.maximum(np.linalg.norm(a, axis=dim), 1e-8)
    nb = np.maximum(np.linalg.norm(b, axis=dim), 1e-8)
    return np.sum(a * b, axis=dim) / (na * nb)


op("cosine_similarity", lambda a, b, dim: F.cosine_similarity(a, b, dim),
   _np_cosine_similarity, _cosine_cases, domain="|x| >= 0.1",
   notes="broadcast operands, cosine_similarity(a, a)")


@st.composite
def _kl_div_cases(draw):
    shape = draw(S.shapes())
    log_target = draw(st.booleans())
    target = draw(S.args(shape, "real" if log_target else "probability"))
    return [draw(S.args(shape)), target], {
        "reduction": draw(st.sampled_from(["mean", "sum", "none", "batchmean"])),
        "log_target": log_target}


def _kl_div(x, t, reduction, log_target):
    with warnings.catch_warnings():   # reduction="mean" warns, as PyTorch's: tested elsewhere
        warnings.filterwarnings("ignore", "kl_div: reduction='mean'", UserWarning)
        return F.kl_div(x, t, reduction, log_target)


def _np_kl_div(x, t, reduction, log_target):
    loss = np.exp(t) * (t - x) if log_target else t * (np.log(t) - x)
    if reduction == "batchmean":
        return loss.sum() / x.shape[0] if x.ndim else loss.sum()
    return _np_reduce(loss, reduction)


op("kl_div", _kl_div, _np_kl_div, _kl_div_cases, domain="target in [0.05, 0.95] (or any log t)",
   notes="batchmean (0-d: sum), log_target; target = 0 in tests/test_functional.py")


@st.composite
def _smooth_l1_cases(draw, threshold):
    args, params = draw(_pair_cases("grid", "offgrid"))
    if threshold == "beta":
        params["beta"] = draw(st.sampled_from([1.0, 0.5, 2.0, 0.0]))
    else:
        params["delta"] = draw(st.sampled_from([1.0, 0.5, 2.0]))
        if draw(st.booleans()):
            args.append(draw(S.args(args[0].value.shape, "probability")))   # weight
    return args, params


def _np_smooth_l1(x, t, reduction, beta):
    d = np.abs(x - t)
    loss = d if beta == 0 else np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta)
    return _np_reduce(loss, reduction)


def _np_huber(x, t, *weight, reduction, delta):
    d = np.abs(x - t)
    loss = np.where(d < delta, 0.5 * d ** 2, delta * (d - 0.5 * delta))
    return _np_reduce(loss * weight[0] if weight else loss, reduction)


_KINKS = "|input - target| >= 0.125 away from 0 and beta / delta (grid and offgrid values)"
op("smooth_l1_loss", lambda x, t, reduction, beta: F.smooth_l1_loss(x, t, reduction, beta),
   _np_smooth_l1, lambda: _smooth_l1_cases("beta"), domain=_KINKS, notes="beta = 0 is l1")
op("huber_loss", lambda x, t, *weight, reduction, delta: F.huber_loss(x, t, reduction, delta,
                                                                      *weight),
   _np_huber, lambda: _smooth_l1_cases("delta"), domain=_KINKS, notes="with and without weight")


@st.composite
def _group_norm_cases(draw):
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 2))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if c // groups * int(np.prod(spatial)) < 2:
        spatial = spatial + (2,)          # at least 2 values per group
    shape = (draw(st.integers(1, 3)), c) + spatial
    n_affine = draw(st.integers(0, 2))    # none, weight, weight and bias
    return [draw(S.args(shape))] + [draw(S.contiguous((c,))) for _ in range(n_affine)], \
        {"num_groups": groups}


def _np_group_norm(x, *weight_bias, num_groups, eps=1e-5):
    n, c = x.shape[:2]
    g = x.reshape(n, num_groups, -1)
    y = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    for k, p in enumerate(weight_bias):
        y = y * p.reshape(shape) if k == 0 else y + p.reshape(shape)
    return y


op("group_norm", lambda x, *wb, num_groups: F.group_norm(x, num_groups, *wb), _np_group_norm,
   _group_norm_cases, notes="(N, C) to (N, C, H, W), 1 to 3 groups, with and without affine")


# ----------------------------------------------------------------------------- the table
def coverage_table() -> str:
    """One line per registry entry: the checks tests/test_ops.py runs on it, the
    Functions it reaches (forward, backward and double backward) and its domain."""
    rows = [("op", "checks", "Functions reached", "domain / notes")]
    for s in OPS:
        checks = "forward (no gradient)" if not s.differentiable else \
            "forward grad" + (" gradgrad" if s.gradgrad else "")
        reached = " ".join(sorted(f.__name__.lstrip("_") for f in functions_reached(s)))
        rows.append((s.name, checks, reached,
                     "; ".join(x for x in (s.domain if s.domain != "real" else "", s.notes)
                               if x)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        if j == 0:
            lines.append("-" * len(lines[0]))
    lines.append(f"\n{len(OPS)} entries, run on every available backend (numpy, strict, and "
                 f"cupy with a GPU) by tests/test_ops.py: forward against the NumPy/SciPy "
                 f"reference, gradcheck and gradgradcheck, with inputs drawn with broadcasting, "
                 f"size-1 dims, 0-d tensors and non-contiguous layouts where the op takes them")
    return "\n".join(lines)
