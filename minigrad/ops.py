"""Differentiable ops: forward on arrays, backward on Tensors, side by side.

Each op is a ``Function`` with ``forward`` (arrays in, array out) and
``backward`` (the upstream gradient ``gy`` in, one gradient per input out),
followed by the public function that applies it. ``@tensor_method`` on that
function also makes it a Tensor method or operator: ``exp(x)`` is ``x.exp()``,
``add(a, b)`` is ``a + b``.

Every ``backward`` uses only Tensor ops (never raw arrays, except constant
masks), so running it with gradient recording on builds the graph of the
gradient, and second derivatives come for free.

Broadcasting: a binary op broadcasts like NumPy in forward; in backward each
input's gradient is ``sum_to`` its own shape (summing over the axes that
forward stretched).
"""
from __future__ import annotations

import builtins

from .tensor import Function, Tensor, tensor_method


# ----------------------------------------------------------------------------- helpers
def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; Python numbers become constant tensors with ``like``'s
    backend and (float) dtype, so ``x * 0.5`` stays float32."""
    if isinstance(x, Tensor):
        return x
    if like is None:
        return Tensor(x)
    be = like._backend
    if be.is_array(x):
        return _const(x, be)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        if isinstance(x, float) and not like.dtype.is_floating_point:
            return _const(be.asarray(x, "float32"), be)
        return _const(be.asarray(x, like.data.dtype), be)
    return Tensor(x, backend=be)


def _const(array, be) -> Tensor:
    """An array as a Tensor outside the graph (masks, constants)."""
    return Tensor._make(array, be, False, None)


def _operands(a, b):
    """Both operands of a binary op as Tensors of one dtype kind. PyTorch's promotion:
    an integer or bool tensor meeting a float one becomes that float dtype (NumPy
    would go to float64, and the Array API refuses to mix kinds at all)."""
    if isinstance(a, Tensor):
        b = as_tensor(b, a)
    else:
        a = as_tensor(a, b)
    # identity first (dtype objects are singletons per library), then the canonical
    # DType objects: never == between two libraries' dtypes (array-api-strict warns)
    if a.data.dtype is not b.data.dtype and a.dtype is not b.dtype:
        fa, fb = a.dtype.is_floating_point, b.dtype.is_floating_point
        if fa and not fb:
            b = _cast_const(b, a.dtype.name)
        elif fb and not fa:
            a = _cast_const(a, b.dtype.name)
        elif not fa and a.dtype.name == "bool":
            a = _cast_const(a, b.dtype.name)
        elif not fb and b.dtype.name == "bool":
            b = _cast_const(b, a.dtype.name)
    return a, b


def _cast_const(t, dtype_name):
    """An integer/bool tensor (never part of a graph) converted to ``dtype_name``."""
    be = t._backend
    return _const(be.xp.astype(t.data, be.dtype(dtype_name)), be)


def _broadcast_shapes(*shapes):
    ndim = builtins.max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _shape_args(shape):
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


# ----------------------------------------------------------------------------- arithmetic
class Add(Function):
    """y = a + b;  da = gy, db = gy (each summed back to its shape)."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


@tensor_method("add", "__add__", reflected="__radd__")
def add(a, b):
    return Add.apply(*_operands(a, b))


class Sub(Function):
    """y = a - b;  da = gy, db = -gy."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


@tensor_method("sub", "__sub__", reflected="__rsub__")
def sub(a, b):
    return Sub.apply(*_operands(a, b))


class Mul(Function):
    """y = a * b;  da = gy * b, db = gy * a."""

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        return (sum_to(gy * b, a.shape) if need_a else None,
                sum_to(gy * a, b.shape) if need_b else None)


@tensor_method("mul", "__mul__", reflected="__rmul__")
def mul(a, b):
    return Mul.apply(*_operands(a, b))


class Div(Function):
    """y = a / b;  da = gy / b, db = -gy * a / b**2."""

    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        ga = gy / b
        return (sum_to(ga, a.shape) if need_a else None,
                sum_to(-ga * a / b, b.shape) if need_b else None)


@tensor_method("div", "__truediv__", reflected="__rtruediv__")
def div(a, b):
    """True division: two integer tensors give float32 (as in PyTorch)."""
    a, b = _operands(a, b)
    if not a.dtype.is_floating_point:
        a = _cast_const(a, "float32")
    if not b.dtype.is_floating_point:
        b = _cast_const(b, a.dtype.name)
    return Div.apply(a, b)


class Neg(Function):
    """y = -x;  dx = -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


@tensor_method("neg", "__neg__")
def neg(x):
    return Neg.apply(x)


class PowScalar(Function):
    """y = x ** c for a constant c;  dx = gy * c * x ** (c - 1)."""

    def forward(self, x, c):
        self.c = c
        return x ** c

    def backward(self, gy):
        x, = self.inputs
        if self.c == 2:
            return gy * (2.0 * x)
        return gy * (self.c * x ** (self.c - 1))


class Pow(Function):
    """y = a ** b;  da = gy * b * a ** (b - 1),  db = gy * log(a) * a ** b."""

    def forward(self, a, b):
        return self.save_output(a ** b)

    def backward(self, gy):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        return (sum_to(gy * b * a ** (b - 1.0), a.shape) if need_a else None,
                sum_to(gy * log(a) * self.output(), b.shape) if need_b else None)


@tensor_method("pow", "__pow__")
def pow(x, exponent):
    """x ** exponent, for a constant (Python number) or a tensor exponent."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        return PowScalar.apply(x, c=exponent)
    if not isinstance(x, Tensor):
        x = as_tensor(x, exponent)
    return Pow.apply(x, as_tensor(exponent, x))


@tensor_method("__rpow__")
def _rpow(x, base):
    """``2 ** x``: a number raised to a tensor."""
    return pow(as_tensor(base, x), x)


class MatMul(Function):
    """y = a @ b (NumPy's matmul: batched, and 1-D operands as vectors).

    With both at least 2-D:  da = gy @ b^T,  db = a^T @ gy, each summed over the
    batch axes that broadcasting added. A 1-D ``a`` is treated as a (1, k) row,
    a 1-D ``b`` as a (k, 1) column, and the extra axis is removed again.
    """

    def forward(self, a, b):
        return self.xp.matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        a2 = a if a.ndim > 1 else a.reshape((1,) + a.shape)
        b2 = b if b.ndim > 1 else b.reshape(b.shape + (1,))
        if a.ndim == 1 and b.ndim == 1:
            gy = gy.reshape((1, 1))
        elif a.ndim == 1:
            gy = gy.unsqueeze(-2)
        elif b.ndim == 1:
            gy = gy.unsqueeze(-1)
        ga = sum_to(gy @ b2.mT, a2.shape).reshape(a.shape) if need_a else None
        gb = sum_to(a2.mT @ gy, b2.shape).reshape(b.shape) if need_b else None
        return ga, gb


@tensor_method("matmul", "__matmul__", reflected="__rmatmul__")
def matmul(a, b):
    a, b = _operands(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align "
                         f"({ka} != {kb} in the contracted dimension)")
    return MatMul.apply(a, b)


# ----------------------------------------------------------------------------- elementwise
class Exp(Function):
    """y = exp(x);  dx = gy * y."""

    def forward(self, x):
        return self.save_output(self.xp.exp(x))

    def backward(self, gy):
        return gy * self.output()


@tensor_method
def exp(x):
    return Exp.apply(x)


class Log(Function):
    """y = log(x);  dx = gy / x."""

    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


@tensor_method
def log(x):
    return Log.apply(x)


class Sqrt(Function):
    """y = sqrt(x);  dx = gy / (2 y)."""

    def forward(self, x):
        return self.save_output(self.xp.sqrt(x))

    def backward(self, gy):
        return gy / (2.0 * self.output())


@tensor_method
def sqrt(x):
    return Sqrt.apply(x)


class Abs(Function):
    """y = |x|;  dx = gy * sign(x) (0 at x = 0, as in PyTorch)."""

    def forward(self, x):
        self.sign = self.xp.sign(x)
        return self.xp.abs(x)

    def backward(self, gy):
        return gy * _const(self.sign, self._backend)


@tensor_method("abs", "__abs__")
def abs(x):
    return Abs.apply(x)


class Erf(Function):
    """y = erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt;  dx = gy * 2/sqrt(pi) * exp(-x^2).
    The standard has no erf: the backend computes it."""

    def forward(self, x):
        return self._backend.erf(x)

    def backward(self, gy):
        x, = self.inputs
        return gy * (1.1283791670955126 * exp(-(x * x)))


@tensor_method
def erf(x):
    return Erf.apply(x)


class Sin(Function):
    """y = sin(x);  dx = gy * cos(x)."""

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        return gy * cos(self.inputs[0])


@tensor_method
def sin(x):
    return Sin.apply(x)


class Cos(Function):
    """y = cos(x);  dx = -gy * sin(x)."""

    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, gy):
        return -gy * sin(self.inputs[0])


@tensor_method
def cos(x):
    return Cos.apply(x)


class Tanh(Function):
    """y = tanh(x);  dx = gy * (1 - y^2)."""

    def forward(self, x):
        return self.save_output(self.xp.tanh(x))

    def backward(self, gy):
        y = self.output()
        return gy * (1.0 - y * y)


@tensor_method
def tanh(x):
    return Tanh.apply(x)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dx = gy * y * (1 - y).

    Computed as (1 + tanh(x/2)) / 2, which never overflows for large |x|."""

    def forward(self, x):
        return self.save_output(0.5 * self.xp.tanh(0.5 * x) + 0.5)

    def backward(self, gy):
        y = self.output()
        return gy * (y * (1.0 - y))


@tensor_method
def sigmoid(x):
    return Sigmoid.apply(x)


class ReLU(Function):
    """y = max(x, 0);  dx = gy * [x > 0]."""

    def forward(self, x):
        self.mask = x > 0
        return self.xp.where(self.mask, x, self.xp.zeros_like(x))

    def backward(self, gy):
        return where(_const(self.mask, self._backend), gy, 0.0)


@tensor_method
def relu(x):
    return ReLU.apply(x)


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dx = gy * (1 if x > 0 else slope)."""

    def forward(self, x, negative_slope=0.01):
        self.mask = x > 0
        self.slope = negative_slope
        return self.xp.where(self.mask, x, x * negative_slope)

    def backward(self, gy):
        return where(_const(self.mask, self._backend), gy, gy * self.slope)


@tensor_method
def leaky_relu(x, negative_slope=0.01):
    return LeakyReLU.apply(x, negative_slope=negative_slope)


class ELU(Function):
    """y = x if x > 0 else alpha * (exp(x) - 1);  dx = gy * (1 if x > 0 else alpha * exp(x))."""

    def forward(self, x, alpha=1.0):
        xp = self.xp
        self.mask = x > 0
        self.alpha = alpha
        return xp.where(self.mask, x, alpha * (xp.exp(xp.minimum(x, 0 * x)) - 1))

    def backward(self, gy):
        x, = self.inputs
        neg = exp(minimum(x, 0.0)) * self.alpha
        return where(_const(self.mask, self._backend), gy, gy * neg)


@tensor_method
def elu(x, alpha=1.0):
    return ELU.apply(x, alpha=alpha)


class Softplus(Function):
    """y = log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) so that large |x|
    neither overflows nor loses precision;  dx = gy * sigmoid(x)."""

    def forward(self, x):
        xp = self.xp
        return xp.maximum(x, 0 * x) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        return gy * sigmoid(self.inputs[0])


@tensor_method
def softplus(x):
    return Softplus.apply(x)


class Clip(Function):
    """y = min(max(x, lo), hi);  dx = gy where lo <= x <= hi, else 0."""

    def forward(self, x, lo=None, hi=None):
        xp = self.xp
        mask = xp.ones_like(x, dtype=xp.bool)
        if lo is not None:
            mask = mask & (x >= lo)
        if hi is not None:
            mask = mask & (x <= hi)
        self.mask = mask
        return xp.clip(x, lo, hi)

    def backward(self, gy):
        return where(_const(self.mask, self._backend), gy, 0.0)


@tensor_method("clip", "clamp")
def clip(x, min=None, max=None):
    """Clamp to [min, max] (either may be None). Also called ``clamp``."""
    return Clip.apply(x, lo=min, hi=max)


clamp = clip


class Maximum(Function):
    """y = max(a, b) elementwise; the gradient goes to the input y comes from (to a on
    ties)."""

    def forward(self, a, b):
        self.from_a = a >= b
        return self.xp.maximum(a, b)

    def backward(self, gy):
        a, b = self.inputs
        m = _const(self.from_a, self._backend)
        return sum_to(where(m, gy, 0.0), a.shape), sum_to(where(m, 0.0, gy), b.shape)


class Minimum(Maximum):
    """y = min(a, b) elementwise; the backward of Maximum, with a <= b choosing a."""

    def forward(self, a, b):
        self.from_a = a <= b
        return self.xp.minimum(a, b)


@tensor_method
def maximum(a, b):
    return Maximum.apply(*_operands(a, b))


@tensor_method
def minimum(a, b):
    return Minimum.apply(*_operands(a, b))


class Where(Function):
    """y = a where cond else b (cond is a constant boolean mask)."""

    def forward(self, a, b, cond=None):
        self.cond = cond
        return self.xp.where(cond, a, b)

    def backward(self, gy):
        a, b = self.inputs
        zero = zeros_like(gy)
        need_a, need_b = self.needs_input_grad
        return (sum_to(Where.apply(gy, zero, cond=self.cond), a.shape) if need_a else None,
                sum_to(Where.apply(zero, gy, cond=self.cond), b.shape) if need_b else None)


def where(condition, x, y):
    """Elementwise ``x if condition else y``; condition is a boolean tensor or array."""
    if isinstance(x, Tensor):
        like = x
    elif isinstance(y, Tensor):
        like = y
    else:
        raise TypeError("where: x or y must be a tensor")
    x, y = as_tensor(x, like), as_tensor(y, like)
    if isinstance(condition, Tensor):
        if condition._backend is not like._backend:
            raise ValueError(f"where: the condition is on backend {condition.backend!r}, "
                             f"the values on {like.backend!r}")
        cond = condition.data
    elif like._backend.is_array(condition):
        cond = condition
    else:
        cond = Tensor(condition, backend=like._backend).data
    return Where.apply(x, y, cond=cond)


# ----------------------------------------------------------------------------- reductions
class Sum(Function):
    """y = sum of x over ``axis``;  dx = gy broadcast back over the summed axes."""

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape = x.shape
        self.axes = _normalize_axis(axis, x.ndim)
        return self.xp.sum(x, axis=self.axes, keepdims=keepdims)

    def backward(self, gy):
        return gy.reshape(_keepdims_shape(self.in_shape, self.axes)).broadcast_to(self.in_shape)


@tensor_method
def sum(x, axis=None, keepdims=False):
    return Sum.apply(x, axis=axis, keepdims=keepdims)


@tensor_method
def mean(x, axis=None, keepdims=False):
    n = 1
    for a in _normalize_axis(axis, x.ndim):
        n *= x.shape[a]
    return sum(x, axis, keepdims) * (1.0 / n)


class MaxMin(Function):
    """y = max (or min) of x over ``axis``. The gradient is shared equally among
    the elements that attain it (the subgradient PyTorch's full reduction uses)."""

    def forward(self, x, axis=None, keepdims=False, mode="max"):
        xp = self.xp
        self.in_shape = x.shape
        self.axes = _normalize_axis(axis, x.ndim)
        if x.ndim and builtins.min(x.shape[a] for a in self.axes) == 0:
            raise ValueError(f"{mode}() of an empty axis of a tensor of shape {tuple(x.shape)}")
        reduce = xp.max if mode == "max" else xp.min
        y = reduce(x, axis=self.axes, keepdims=True)
        hit = xp.astype(x == y, x.dtype)
        self.weight = hit / xp.sum(hit, axis=self.axes, keepdims=True)
        return y if keepdims else xp.reshape(y, tuple(s for i, s in enumerate(x.shape)
                                                      if i not in self.axes))

    def backward(self, gy):
        gy = gy.reshape(_keepdims_shape(self.in_shape, self.axes))
        return gy * _const(self.weight, self._backend)


@tensor_method
def max(x, axis=None, keepdims=False):
    return MaxMin.apply(x, axis=axis, keepdims=keepdims, mode="max")


@tensor_method
def min(x, axis=None, keepdims=False):
    return MaxMin.apply(x, axis=axis, keepdims=keepdims, mode="min")


@tensor_method
def var(x, axis=None, keepdims=False, correction=0):
    """Variance with ``correction`` subtracted from the count (0: population
    variance, NumPy's default; 1: PyTorch's ``unbiased``)."""
    n = 1
    for a in _normalize_axis(axis, x.ndim):
        n *= x.shape[a]
    d = x - mean(x, axis, keepdims=True)
    return sum(d * d, axis, keepdims) * (1.0 / builtins.max(n - correction, 1))


@tensor_method
def std(x, axis=None, keepdims=False, correction=0):
    return sqrt(var(x, axis, keepdims, correction))


@tensor_method
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))), m = max(x) held
    constant, so exp never overflows; the gradient is softmax(x)."""
    m = max(x, axis, keepdims=True).detach()
    y = log(sum(exp(x - m), axis, keepdims=True)) + m
    if not keepdims:
        y = y.reshape(tuple(s for i, s in enumerate(y.shape)
                            if i not in _normalize_axis(axis, x.ndim)))
    return y


@tensor_method
def softmax(x, axis=-1):
    e = exp(x - max(x, axis, keepdims=True).detach())
    return e / sum(e, axis, keepdims=True)


@tensor_method
def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis, keepdims=True)


# ----------------------------------------------------------------------------- shapes
class Reshape(Function):
    """y = x reshaped;  dx = gy reshaped back."""

    def forward(self, x, shape=None):
        self.in_shape = x.shape
        return self.xp.reshape(x, shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


@tensor_method("reshape", "view")
def reshape(x, *shape):
    shape = _shape_args(shape)
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if shape.count(-1) > 1 or known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {shape}")
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    n = 1
    for s in shape:
        n *= s
    if n != x.size:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                         f"({x.size} elements) into {shape}")
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


view = reshape


@tensor_method
def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return x.reshape(1)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    n = 1
    for d in x.shape[s:e + 1]:
        n *= d
    return x.reshape(x.shape[:s] + (n,) + x.shape[e + 1:])


@tensor_method
def squeeze(x, axis=None):
    if axis is None:
        shape = tuple(d for d in x.shape if d != 1)
    else:
        axes = _normalize_axis(axis, x.ndim)
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {x.shape} has size {x.shape[a]}, not 1")
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return x.reshape(shape)


@tensor_method
def unsqueeze(x, axis):
    axis = axis % (x.ndim + 1)
    return x.reshape(x.shape[:axis] + (1,) + x.shape[axis:])


class Permute(Function):
    """y = x with its axes reordered;  dx = gy with the inverse order."""

    def forward(self, x, axes=None):
        self.axes = axes
        return self.xp.permute_dims(x, axes)

    def backward(self, gy):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return gy.permute(*inverse)


@tensor_method
def permute(x, *axes):
    axes = _shape_args(axes)
    if sorted(a % builtins.max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
        raise ValueError(f"permute: {axes} is not a permutation of the {x.ndim} axes")
    return Permute.apply(x, axes=tuple(a % x.ndim for a in axes))


@tensor_method("transpose", "swapaxes")
def transpose(x, dim0=-2, dim1=-1):
    """Swap two axes (PyTorch's ``transpose``; NumPy calls it ``swapaxes``)."""
    axes = list(range(x.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return permute(x, *axes)


swapaxes = transpose


@tensor_method("T", prop=True)
def _reversed_axes(x):
    """``x.T``: all axes reversed."""
    return permute(x, *reversed(range(x.ndim)))


@tensor_method("mT", prop=True)
def _matrix_transpose(x):
    """``x.mT``: the last two axes swapped (every matmul backward uses it)."""
    n = x.ndim
    if n < 2:
        raise ValueError(f"mT needs at least 2 dimensions, got shape {x.shape}")
    return Permute.apply(x, axes=tuple(range(n - 2)) + (n - 1, n - 2))


class BroadcastTo(Function):
    """y = x broadcast to ``shape``;  dx = gy summed back to x's shape."""

    def forward(self, x, shape=None):
        self.in_shape = x.shape
        return self.xp.broadcast_to(x, shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


@tensor_method
def broadcast_to(x, *shape):
    shape = _shape_args(shape)
    if shape == x.shape:
        return x
    try:
        if _broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}") from None
    return BroadcastTo.apply(x, shape=shape)


@tensor_method
def expand(x, *shape):
    """PyTorch's expand: like broadcast_to, with -1 meaning 'keep this size'."""
    shape = _shape_args(shape)
    lead = len(shape) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    return broadcast_to(x, shape)


class SumTo(Function):
    """y = x summed down to ``shape`` (the adjoint of broadcast_to)."""

    def forward(self, x, shape=None):
        self.in_shape = x.shape
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                          if s == 1 and x.shape[i + lead] != 1)
        y = self.xp.sum(x, axis=axes, keepdims=True) if axes else x
        return self.xp.reshape(y, shape)

    def backward(self, gy):
        return gy.broadcast_to(self.in_shape)


@tensor_method
def sum_to(x, shape):
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return SumTo.apply(x, shape=shape)


class Concat(Function):
    """y = the inputs joined along ``axis``;  each dx is its slice of gy."""

    def forward(self, *xs, axis=0):
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return self.xp.concat(xs, axis=axis)

    def backward(self, gy):
        out, start = [], 0
        for n in self.sizes:
            idx = [slice(None)] * gy.ndim
            idx[self.axis] = slice(start, start + n)
            out.append(gy[tuple(idx)])
            start += n
        return tuple(out)


def concatenate(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    first = tensors[0]
    ax = axis % first.ndim
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if i != ax):
            raise ValueError(f"concatenate: shapes {first.shape} and {t.shape} differ outside "
                             f"axis {axis}")
    if len(tensors) == 1:
        return first
    return Concat.apply(*tensors, axis=ax)


cat = concat = concatenate


def stack(tensors, axis=0):
    tensors = list(tensors)
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    return concatenate([unsqueeze(t, axis) for t in tensors], axis)


@tensor_method
def split(x, split_size_or_sections, axis=0):
    """PyTorch's split: an int is the size of each piece (the last may be smaller),
    a list gives the size of every piece."""
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        sizes = [builtins.min(size, n - i) for i in range(0, n, size)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to {n}")
    out, start = [], 0
    for s in sizes:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + s)
        out.append(x[tuple(idx)])
        start += s
    return tuple(out)


@tensor_method
def chunk(x, chunks, axis=0):
    n = x.shape[axis]
    return split(x, -(-n // chunks), axis)


class Pad(Function):
    """Constant padding: ``widths`` is ((before, after), ...) per axis;  dx is the
    un-padded centre of gy."""

    def forward(self, x, widths=None, value=0.0):
        shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, widths))
        y = self._backend.full(shape, value, x.dtype)
        self.centre = tuple(slice(lo, lo + s) for s, (lo, hi) in zip(x.shape, widths))
        y[self.centre] = x
        return y

    def backward(self, gy):
        return gy[self.centre]


def pad(x, pad, value=0.0):
    """Constant padding with PyTorch's ``F.pad`` convention: ``pad`` lists
    (before, after) pairs starting from the LAST axis: (left, right, top, bottom)."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: needs an even number of widths, at most 2 per axis, got {pad}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if builtins.min(builtins.min(w) for w in widths) < 0:
        raise ValueError(f"pad: negative widths are not supported, got {pad}")
    return Pad.apply(x, widths=tuple(widths), value=value)


# ----------------------------------------------------------------------------- indexing
class GetItem(Function):
    """y = x[key] (basic slicing, integer arrays, boolean masks);
    dx = zeros with gy put back in place (added where integer indices repeat)."""

    def forward(self, x, key=None):
        self.key = key
        if key[0] == "take":
            _, axis, idx = key
            xp = self.xp
            y = xp.take(x, xp.reshape(idx, (-1,)), axis=axis)
            return xp.reshape(y, x.shape[:axis] + tuple(idx.shape) + x.shape[axis + 1:])
        return x[key[1]]

    def backward(self, gy):
        return IndexAdd.apply(gy, key=self.key, shape=self.inputs[0].shape)


class IndexAdd(Function):
    """y = zeros(shape) with y[key] += x (repeated integer indices add up): the
    gradient of GetItem. Its own gradient is GetItem again."""

    def forward(self, x, key=None, shape=None):
        self.key = key
        be = self._backend
        y = be.zeros(shape, x.dtype)
        if key[0] == "take":
            _, axis, idx = key
            flat = tuple(shape[:axis]) + (-1,) + tuple(shape[axis + 1:])
            be.index_add(y, axis, self.xp.reshape(idx, (-1,)), self.xp.reshape(x, flat))
        elif key[0] == "fancy":
            be.scatter_add(y, key[1], x)
        else:
            k, x = _drop_newaxes(key[1], x, len(shape))
            y[k] = x
        return y

    def backward(self, gy):
        return GetItem.apply(gy, key=self.key)


@tensor_method("__getitem__")
def getitem(x, key):
    """``x[key]`` with NumPy's semantics: basic slicing, integer arrays (tensors,
    lists) and boolean masks. Several index arrays are turned into ONE ``take``
    along merged axes, the form every backend supports (the Array API has no
    general multi-array indexing), so the gradient always scatter-adds once."""
    key = _normalize_key(key, x._backend, x.ndim)
    if key[0] == "take":
        # the Array API leaves negative indices in take() unspecified: make them positive
        _, axis, idx = key
        xp = x._backend.xp
        return GetItem.apply(x, key=("take", axis, xp.where(idx < 0, idx + x.shape[axis], idx)))
    if key[0] != "fancy":
        return GetItem.apply(x, key=key)
    return _fancy_getitem(x, key[1])


def _normalize_key(key, be, ndim):
    """Tensors inside an index become arrays; a trailing ``...`` is added where
    the index names fewer axes than the tensor has (NumPy does this implicitly,
    the Array API wants it spelled out). Returns ("basic" | "take" | "fancy",
    ...): integer-array indices may repeat, so their gradient must scatter-ADD."""
    if not isinstance(key, tuple):
        key = (key,)
    out, fancy, used, ellipsis = [], False, 0, False
    for k in key:
        if isinstance(k, Tensor):
            if k._backend is not be:
                raise ValueError(f"index tensor is on backend {k.backend!r}, "
                                 f"the indexed tensor on {be.name!r}")
            k = k.data
        elif isinstance(k, list) or type(k).__module__ == "numpy":
            k = Tensor(k, backend=be).data
        if k is Ellipsis:
            ellipsis = True
        elif k is None:
            pass
        elif be.is_array(k):
            if k.dtype == be.xp.bool:
                # a mask stands for the integer arrays of its True positions;
                # using those lets the gradient take the one scatter-add path
                out.extend(be.xp.nonzero(k))
                used += k.ndim
                fancy = True
                continue
            fancy = True
            used += 1
        else:
            used += 1
        out.append(k)
    if used > ndim:
        raise IndexError(f"too many indices ({used}) for a tensor with {ndim} dimensions")
    if fancy:
        # One integer array with whole axes around it is a `take` along that axis:
        # the form every backend (array-api-strict included) supports.
        arrays = [i for i, k in enumerate(out) if be.is_array(k)]
        if len(arrays) == 1 and not ellipsis and all(
                isinstance(k, slice) and k == slice(None) for k in out[:arrays[0]]) and all(
                isinstance(k, slice) and k == slice(None) for k in out[arrays[0] + 1:]):
            return ("take", arrays[0], out[arrays[0]])
    if not ellipsis and used < ndim:
        out.append(Ellipsis)
    return ("fancy" if fancy else "basic", tuple(out))


def _fancy_getitem(x, key):
    xp = x._backend.xp
    # 1. spell out "...", then split the key: a basic pass (slices, None) and an
    #    advanced pass (index arrays; integers count as 0-d arrays, as in NumPy)
    consumed = builtins.sum(0 if k is None or k is Ellipsis else 1 for k in key)
    full = []
    for k in key:
        if k is Ellipsis:
            full.extend([slice(None)] * (x.ndim - consumed))
        else:
            full.append(k)
    full.extend([slice(None)] * (x.ndim - consumed))
    basic, positions, arrays, out_dim = [], [], [], 0
    for k in full:
        if k is None or isinstance(k, slice):
            basic.append(k)
            out_dim += 1
        else:
            basic.append(slice(None))
            positions.append(out_dim)
            arrays.append(k if x._backend.is_array(k) else
                          x._backend.asarray(int(k), "int64"))
            out_dim += 1
    y = x
    if any(k is None or k != slice(None) for k in basic):
        y = GetItem.apply(x, key=("basic", tuple(basic)))
    # 2. NumPy's rule: adjacent advanced axes keep their place, separated ones go first
    if positions != list(range(positions[0], positions[0] + len(positions))):
        rest = [d for d in range(y.ndim) if d not in positions]
        y = permute(y, *positions, *rest)
        positions = list(range(len(positions)))
    p0, k = positions[0], len(positions)
    sizes = y.shape[p0:p0 + k]
    # 3. merge the advanced axes into one and index it with the flat position
    n = 1
    for s in sizes:
        n *= s
    y = y.reshape(y.shape[:p0] + (n,) + y.shape[p0 + k:])
    flat, stride = None, n
    for idx, s in zip(arrays, sizes):
        stride //= s
        idx = xp.where(idx < 0, idx + s, idx)
        term = idx * stride if stride != 1 else idx
        flat = term if flat is None else flat + term
    return GetItem.apply(y, key=("take", p0, flat))


def _drop_newaxes(key, x, ndim):
    """``y[key] = x`` may not contain ``None`` (the Array API forbids it in
    setitem): remove each ``None`` from the key and its size-1 axis from x."""
    if not any(k is None for k in key):
        return key, x
    used = builtins.sum(0 if k is None or k is Ellipsis else
                        (k.ndim if hasattr(k, "ndim") and k.ndim else 1) for k in key)
    axis, drop = 0, []
    for k in key:
        if k is None:
            drop.append(axis)
            axis += 1
        elif k is Ellipsis:
            axis += ndim - used
        elif isinstance(k, slice) or hasattr(k, "ndim"):
            axis += 1
    shape = tuple(s for i, s in enumerate(x.shape) if i not in drop)
    return tuple(k for k in key if k is not None), x.__array_namespace__().reshape(x, shape) \
        if hasattr(x, "__array_namespace__") else x.reshape(shape)


# ----------------------------------------------------------------------------- not differentiable
def _nograd(x, array):
    """A result that never requires grad (indices, comparisons, masks)."""
    return _const(array, x._backend)


@tensor_method
def argmax(x, axis=None, keepdims=False):
    xp = x._backend.xp
    if axis is None:
        return _nograd(x, xp.argmax(xp.reshape(x.data, (-1,))))
    return _nograd(x, xp.argmax(x.data, axis=axis, keepdims=keepdims))


@tensor_method
def argmin(x, axis=None, keepdims=False):
    xp = x._backend.xp
    if axis is None:
        return _nograd(x, xp.argmin(xp.reshape(x.data, (-1,))))
    return _nograd(x, xp.argmin(x.data, axis=axis, keepdims=keepdims))


@tensor_method("all")
def _all(x, axis=None):
    return _nograd(x, x._backend.xp.all(x.data, axis=axis))


@tensor_method("any")
def _any(x, axis=None):
    return _nograd(x, x._backend.xp.any(x.data, axis=axis))


def _comparison(name, compare):
    def op(a, b):
        a, b = _operands(a, b)
        if a._backend is not b._backend:
            raise ValueError(f"comparison of tensors on backends {a.backend!r} and {b.backend!r}")
        return _nograd(a, compare(a.data, b.data))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise ``a {name} b`` as a bool tensor (``Tensor.__{name}__``)."
    return tensor_method(f"__{name}__")(op)


eq = _comparison("eq", lambda a, b: a == b)
ne = _comparison("ne", lambda a, b: a != b)
lt = _comparison("lt", lambda a, b: a < b)
le = _comparison("le", lambda a, b: a <= b)
gt = _comparison("gt", lambda a, b: a > b)
ge = _comparison("ge", lambda a, b: a >= b)


def zeros_like(x, dtype=None):
    return _const(x._backend.zeros(x.shape, dtype or x.data.dtype), x._backend)


def ones_like(x, dtype=None):
    return _const(x._backend.ones(x.shape, dtype or x.data.dtype), x._backend)


@tensor_method("__pos__")
def _positive(x):
    """``+x`` is x."""
    return x
