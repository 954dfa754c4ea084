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

from .dtypes import result_type as _result_type
from .tensor import Function, Tensor, tensor_method


# ----------------------------------------------------------------------------- helpers
def as_tensor(x, like: Tensor | None = None, dtype=None) -> Tensor:
    """Tensors pass through; Python numbers and arrays become constant tensors on
    ``like``'s backend, with ``dtype`` (default: what PyTorch would give the number
    next to ``like``, so ``x * 0.5`` stays float32)."""
    if isinstance(x, Tensor):
        return x
    if like is None:
        return Tensor(x) if dtype is None else Tensor(x, dtype=dtype)
    be = like._backend
    if be.is_array(x):
        return _const(x, be)
    if isinstance(x, (int, float)):
        return _const(be.asarray(x, dtype or result_type(like, x)), be)
    return Tensor(x, backend=be, dtype=dtype)


def _const(array, be) -> Tensor:
    """An array as a Tensor outside the graph (masks, constants)."""
    return Tensor._make(array, be, False, None)


def result_type(*operands) -> str:
    """The dtype name PyTorch gives an op on these Tensors and Python numbers
    (``torch.result_type``): see ``minigrad.dtypes.result_type``."""
    dims, zeros, scalars = [], [], []
    for t in operands:
        if isinstance(t, Tensor):
            (dims if t.ndim else zeros).append(t.dtype.name)
        else:
            scalars.append(t)
    return _result_type(dims, zeros, scalars)


def _operands(a, b):
    """Both operands of a binary op as Tensors of one dtype, by PyTorch's promotion:
    an int tensor meeting a float one becomes float, a 0-d float64 does not widen a
    float32 tensor, a bool tensor plus an int gives int64 (NumPy would differ on each,
    and the Array API refuses to mix kinds at all). A float operand that requires grad
    is cast by a Cast node, so its gradient flows back in its own dtype."""
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.data.dtype is b.data.dtype:
        return a, b
    like = a if isinstance(a, Tensor) else b
    target = result_type(a, b)
    return _as_dtype(a, target, like), _as_dtype(b, target, like)


def _as_dtype(t, name, like):
    if not isinstance(t, Tensor):
        return as_tensor(t, like, name)
    if t.dtype == name:
        return t
    return t.astype(name) if t.requires_grad else _cast_const(t, name)


def _cast_const(t, dtype_name):
    """A tensor outside the graph converted to ``dtype_name``."""
    be = t._backend
    return _const(be.xp.astype(t.data, be.dtype(dtype_name)), be)


def _floating(x):
    """Integer and bool inputs of a float function become float32, PyTorch's default
    dtype (``exp`` of an int64 tensor is float32, not NumPy's float64)."""
    return x if x.dtype.is_floating_point else _cast_const(x, "float32")


def _broadcast_shapes(*shapes):
    ndim = builtins.max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _normalize_axis(axis, ndim, fn="dim"):
    """``dim`` as a tuple of non-negative axes: None or () means all of them, and a
    0-d tensor takes dim 0 or -1 as PyTorch does (there is nothing to reduce)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if not axes:
        return tuple(range(ndim))
    size = builtins.max(ndim, 1)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int) or not -size <= a < size:
            raise IndexError(f"{fn}: dim {a!r} is out of range for a tensor with {ndim} "
                             f"dimensions (expected an int in [{-size}, {size - 1}])")
        if a % size in out:
            raise ValueError(f"{fn}: dim {a % size} appears more than once in {axis!r}")
        out.append(a % size)
    return tuple(out) if ndim else ()


def _dim(fn, dim, axis, default=None):
    """PyTorch's ``dim=``, or NumPy's ``axis=`` as an alias (not both)."""
    if axis is not None:
        if dim is not None and dim is not default:
            raise TypeError(f"{fn}: got both dim={dim!r} and axis={axis!r}; pass one of them")
        return axis
    return default if dim is None else dim


def _keepdim(fn, keepdim, keepdims):
    """PyTorch's ``keepdim=``, or NumPy's ``keepdims=`` as an alias (not both)."""
    if keepdims is not None:
        if keepdim:
            raise TypeError(f"{fn}: got both keepdim= and keepdims=; pass one of them")
        return bool(keepdims)
    return bool(keepdim)


def _reduced(x, axes, keepdim):
    """The shape of reducing ``x`` over ``axes``."""
    return tuple(1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes)


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

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

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
        if self.c == 0:                 # x ** 0 = 1 everywhere, also at x = 0
            return gy * 0.0
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
    """x ** exponent, for a constant (Python number) or a tensor exponent; an integer
    tensor to a float power is float32, to an int power stays integer (PyTorch)."""
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        if isinstance(exponent, float):
            x = _floating(x)
        return PowScalar.apply(x, c=exponent)
    return Pow.apply(*_operands(x, exponent))


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

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        return self.save_output(self.xp.exp(x))

    def backward(self, gy):
        return gy * self.output()


@tensor_method
def exp(x):
    return Exp.apply(_floating(x))


class Log(Function):
    """y = log(x);  dx = gy / x."""

    def forward(self, x):
        return self.xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


@tensor_method
def log(x):
    return Log.apply(_floating(x))


class Sqrt(Function):
    """y = sqrt(x);  dx = gy / (2 y)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        return self.save_output(self.xp.sqrt(x))

    def backward(self, gy):
        return gy / (2.0 * self.output())


@tensor_method
def sqrt(x):
    return Sqrt.apply(_floating(x))


class Abs(Function):
    """y = |x|;  dx = gy * sign(x) (0 at x = 0, as in PyTorch)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
    return Erf.apply(_floating(x))


class Sin(Function):
    """y = sin(x);  dx = gy * cos(x)."""

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, gy):
        return gy * cos(self.inputs[0])


@tensor_method
def sin(x):
    return Sin.apply(_floating(x))


class Cos(Function):
    """y = cos(x);  dx = -gy * sin(x)."""

    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, gy):
        return -gy * sin(self.inputs[0])


@tensor_method
def cos(x):
    return Cos.apply(_floating(x))


class Tanh(Function):
    """y = tanh(x);  dx = gy * (1 - y^2)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        return self.save_output(self.xp.tanh(x))

    def backward(self, gy):
        y = self.output()
        return gy * (1.0 - y * y)


@tensor_method
def tanh(x):
    return Tanh.apply(_floating(x))


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dx = gy * y * (1 - y).

    Computed from e = exp(-|x|), which never overflows: y = 1 / (1 + e) for x >= 0
    and e / (1 + e) for x < 0, so it stays accurate far into the tails (float32
    down to about -88), where BCE(sigmoid(x), 1) still needs it."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        return self.save_output(xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))

    def backward(self, gy):
        y = self.output()
        return gy * (y * (1.0 - y))


@tensor_method
def sigmoid(x):
    return Sigmoid.apply(_floating(x))


class ReLU(Function):
    """y = max(x, 0) (nan stays nan, as in PyTorch);  dx = gy * [x > 0]."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        self.mask = x > 0
        return self.xp.where(self.mask | self.xp.isnan(x), x, self.xp.zeros_like(x))

    def backward(self, gy):
        return where(_const(self.mask, self._backend), gy, 0.0)


@tensor_method
def relu(x):
    return ReLU.apply(x)


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dx = gy * (1 if x > 0 else slope)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
    """y = log(1 + exp(beta x)) / beta, computed as (max(bx, 0) + log1p(exp(-|bx|))) / beta
    so that large |x| neither overflows nor loses precision; y = x where beta x >
    threshold (PyTorch's switch to the identity);  dx = gy * sigmoid(beta x), 1 there."""

    def forward(self, x, beta=1.0, threshold=20.0):
        xp = self.xp
        bx = x * beta if beta != 1.0 else x
        self.beta, self.linear = beta, bx > threshold
        y = xp.maximum(bx, 0 * bx) + xp.log1p(xp.exp(-xp.abs(bx)))
        return xp.where(self.linear, x, y / beta if beta != 1.0 else y)

    def backward(self, gy):
        x, = self.inputs
        slope = sigmoid(x * self.beta) if self.beta != 1.0 else sigmoid(x)
        return where(_const(self.linear, self._backend), gy, gy * slope)


@tensor_method
def softplus(x, beta=1.0, threshold=20.0):
    return Softplus.apply(_floating(x), beta=beta, threshold=threshold)


class Clip(Function):
    """y = min(max(x, lo), hi) for constant bounds (None for none);  dx = gy where
    lo <= x <= hi, else 0."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
    """Clamp to [min, max] (either may be None; numbers or tensors that broadcast with
    x). Tensor bounds get the gradient where they are the result, x where it is
    inside, and where min > max the result is max, as in PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if not isinstance(min, Tensor) and not isinstance(max, Tensor):
        x = _floating(x) if isinstance(min, float) or isinstance(max, float) else x
        return Clip.apply(x, lo=min, hi=max)
    y = x if min is None else _clamp_to(x, min, below=True)
    return y if max is None else _clamp_to(y, max, below=False)


def _clamp_to(y, bound, below):
    """where(y < bound, bound, y) (or >), both broadcast to the result's shape."""
    b, y = _operands(bound, y)
    shape = _broadcast_shapes(b.shape, y.shape)
    b, y = broadcast_to(b, shape), broadcast_to(y, shape)
    return where(y < b if below else y > b, b, y)


clamp = clip


@tensor_method
def clamp_min(x, min):
    return clip(x, min=min)


@tensor_method
def clamp_max(x, max):
    return clip(x, max=max)


class Maximum(Function):
    """y = max(a, b) elementwise (nan wins, as in PyTorch); the gradient goes to the
    input y comes from, and is split half and half on ties."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, a, b):
        self.weight_a = self._weights(a, b)
        return self.xp.maximum(a, b)

    def _weights(self, a, b):
        xp = self.xp
        return xp.astype(a > b, a.dtype) + 0.5 * xp.astype(a == b, a.dtype)

    def backward(self, gy):
        a, b = self.inputs
        w = _const(self.weight_a, self._backend)
        return sum_to(gy * w, a.shape), sum_to(gy * (1.0 - w), b.shape)


class Minimum(Maximum):
    """y = min(a, b) elementwise; Maximum's backward, with a < b choosing a."""

    def forward(self, a, b):
        self.weight_a = self._weights(b, a)
        return self.xp.minimum(a, b)


@tensor_method
def maximum(a, b):
    return Maximum.apply(*_operands(a, b))


@tensor_method
def minimum(a, b):
    return Minimum.apply(*_operands(a, b))


class Where(Function):
    """y = a where cond else b (cond is a constant boolean mask)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape = x.shape
        self.axes = _normalize_axis(axis, x.ndim)
        return self.xp.sum(x, axis=self.axes, keepdims=keepdims)

    def backward(self, gy):
        return gy.reshape(_keepdims_shape(self.in_shape, self.axes)).broadcast_to(self.in_shape)


@tensor_method
def sum(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Sum over ``dim`` (an int, a tuple, or None for all); integers and bools sum
    to int64, as in PyTorch."""
    dim, keepdim = _dim("sum", dim, axis), _keepdim("sum", keepdim, keepdims)
    if dtype is not None:
        x = x.astype(dtype)
    elif not x.dtype.is_floating_point and x.dtype != "int64":
        x = _cast_const(x, "int64")
    return Sum.apply(x, axis=_normalize_axis(dim, x.ndim, "sum"), keepdims=keepdim)


def _count(x, axes):
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


@tensor_method
def mean(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Mean over ``dim``; the mean of no elements is nan, as in PyTorch."""
    dim, keepdim = _dim("mean", dim, axis), _keepdim("mean", keepdim, keepdims)
    x = _floating(x if dtype is None else x.astype(dtype))
    axes = _normalize_axis(dim, x.ndim, "mean")
    n = _count(x, axes)
    return sum(x, axes, keepdim) * (1.0 / n if n else float("nan"))


class MaxMin(Function):
    """y = max (or min) of x over ``axis``. The gradient is shared equally among
    the elements that attain it (PyTorch's ``amax``/``amin`` and full ``max``)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The largest value over ``dim`` (an int, a tuple, or None for all); ties share
    the gradient equally."""
    dim, keepdim = _dim("amax", dim, axis), _keepdim("amax", keepdim, keepdims)
    return MaxMin.apply(x, axis=_normalize_axis(dim, x.ndim, "amax"), keepdims=keepdim,
                        mode="max")


@tensor_method
def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The smallest value over ``dim``; ties share the gradient equally."""
    dim, keepdim = _dim("amin", dim, axis), _keepdim("amin", keepdim, keepdims)
    return MaxMin.apply(x, axis=_normalize_axis(dim, x.ndim, "amin"), keepdims=keepdim,
                        mode="min")


class MaxResult(tuple):
    """``(values, indices)`` of ``max``/``min`` along a dim, like torch.return_types."""

    __slots__ = ()

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])

    def __repr__(self):
        return f"(values={self[0]!r}, indices={self[1]!r})"


def _max_or_min(fn, x, dim, keepdim, axis, keepdims, other):
    if isinstance(dim, Tensor) or other is not None:
        return (maximum if fn == "max" else minimum)(x, dim if other is None else other)
    dim, keepdim = _dim(fn, dim, axis), _keepdim(fn, keepdim, keepdims)
    if dim is None:
        return (amax if fn == "max" else amin)(x)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{fn}: dim must be one int (got {dim!r}); for several dims use "
                        f"a{fn}(x, dim)")
    (axis,) = _normalize_axis(dim, x.ndim, fn) or (0,)
    pick = argmax if fn == "max" else argmin
    indices = pick(x, dim, keepdim=True)
    values = gather(x, axis, indices) if x.ndim else x
    if not keepdim and x.ndim:
        values, indices = values.squeeze(axis), indices.squeeze(axis)
    return MaxResult(values, indices)


@tensor_method
def max(x, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    """PyTorch's three ``max``: ``max(x)`` the largest value (ties share the gradient);
    ``max(x, dim)`` the named tuple (values, indices) along one dim, the gradient going
    to the index given; ``max(x, y)`` with a tensor y is ``maximum(x, y)``."""
    return _max_or_min("max", x, dim, keepdim, axis, keepdims, other)


@tensor_method
def min(x, dim=None, keepdim=False, *, other=None, axis=None, keepdims=None):
    """``min(x)``, ``min(x, dim)`` -> (values, indices), or ``min(x, y)`` = minimum."""
    return _max_or_min("min", x, dim, keepdim, axis, keepdims, other)


def _correction(fn, unbiased, correction):
    if unbiased is not None and correction is not None:
        raise TypeError(f"{fn}: got both unbiased= and correction=; pass one of them")
    if unbiased is not None:
        return 1 if unbiased else 0
    return 1 if correction is None else correction


@tensor_method
def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    """Variance over ``dim`` with ``correction`` subtracted from the count: 1 by
    default (PyTorch's sample variance; ``unbiased=False`` or ``correction=0`` for
    the population variance). No degrees of freedom left (n <= correction) gives nan."""
    if isinstance(dim, bool):        # var(x, True): PyTorch's (input, unbiased) overload
        dim, unbiased = None, dim
    dim, keepdim = _dim("var", dim, axis), _keepdim("var", keepdim, keepdims)
    c = _correction("var", unbiased, correction)
    x = _floating(x)
    axes = _normalize_axis(dim, x.ndim, "var")
    dof = _count(x, axes) - c
    d = x - mean(x, axes, keepdim=True)
    return sum(d * d, axes, keepdim) * (1.0 / dof if dof > 0 else float("nan"))


class SafeSqrt(Function):
    """y = sqrt(v) for a v >= 0 that is a spread (std, a 2-norm): dv = gy / (2y), and 0
    where y = 0, as in PyTorch's std and norm (sqrt itself has an infinite slope there)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, v):
        return self.save_output(self.xp.sqrt(v))

    def backward(self, gy):
        y = self.output()
        zero = _const(self.xp.astype(y.data == 0, y.data.dtype), self._backend)
        return gy / (2.0 * y + zero) * (1.0 - zero)


@tensor_method
def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    """sqrt(var(x, ...)), same arguments; the gradient of a constant's std is 0."""
    return SafeSqrt.apply(var(x, dim, unbiased, keepdim, correction=correction, axis=axis,
                              keepdims=keepdims))


@tensor_method
def logsumexp(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))), m = max(x) held
    constant (0 where it is infinite, so all -inf gives -inf), so exp never
    overflows; the gradient is softmax(x)."""
    dim, keepdim = _dim("logsumexp", dim, axis), _keepdim("logsumexp", keepdim, keepdims)
    x = _floating(x)
    axes = _normalize_axis(dim, x.ndim, "logsumexp")
    m = amax(x, axes, keepdim=True).detach()
    m = where(_const(x._backend.xp.isinf(m.data), x._backend), 0.0, m)
    y = log(sum(exp(x - m), axes, keepdim=True)) + m
    return y if keepdim else y.reshape(_reduced(x, axes, False))


@tensor_method
def softmax(x, dim=-1, *, dtype=None, axis=None):
    """exp(x) / sum(exp(x)) along ``dim`` (default -1: PyTorch has no default)."""
    x = _floating(x if dtype is None else x.astype(dtype))
    axes = _normalize_axis(_dim("softmax", dim, axis, default=-1), x.ndim, "softmax")
    e = exp(x - amax(x, axes, keepdim=True).detach())
    return e / sum(e, axes, keepdim=True)


@tensor_method
def log_softmax(x, dim=-1, *, dtype=None, axis=None):
    """x - logsumexp(x) along ``dim``: log of softmax, without its under- and overflow."""
    x = _floating(x if dtype is None else x.astype(dtype))
    axes = _normalize_axis(_dim("log_softmax", dim, axis, default=-1), x.ndim, "log_softmax")
    return x - logsumexp(x, axes, keepdim=True)


# ----------------------------------------------------------------------------- shapes
class Reshape(Function):
    """y = x reshaped;  dx = gy reshaped back."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
    (s,), (e,) = (_normalize_axis(d, x.ndim, "flatten") for d in (start_dim, end_dim))
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    n = 1
    for d in x.shape[s:e + 1]:
        n *= d
    return x.reshape(x.shape[:s] + (n,) + x.shape[e + 1:])


@tensor_method
def squeeze(x, dim=None, *, axis=None):
    """Drop size-1 dims: all of them, or those of ``dim`` that have size 1 (a dim of
    another size is left alone, as in PyTorch)."""
    dim = _dim("squeeze", dim, axis)
    axes = _normalize_axis(dim, x.ndim, "squeeze")
    return x.reshape(tuple(d for i, d in enumerate(x.shape) if not (i in axes and d == 1)))


@tensor_method
def unsqueeze(x, dim=None, *, axis=None):
    """Insert a size-1 dim at ``dim`` (in [-ndim - 1, ndim])."""
    dim = _dim("unsqueeze", dim, axis)
    if dim is None:
        raise TypeError("unsqueeze: missing the dim argument")
    (d,) = _normalize_axis(dim, x.ndim + 1, "unsqueeze")
    return x.reshape(x.shape[:d] + (1,) + x.shape[d:])


class Permute(Function):
    """y = x with its axes reordered;  dx = gy with the inverse order."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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
    if x.ndim == 0:
        _normalize_axis((dim0,), 0, "transpose"), _normalize_axis((dim1,), 0, "transpose")
        return x
    (a,), (b,) = _normalize_axis(dim0, x.ndim, "transpose"), _normalize_axis(dim1, x.ndim,
                                                                            "transpose")
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
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

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

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


def concatenate(tensors, dim=0, *, axis=None):
    """Join tensors along ``dim`` (PyTorch's ``cat``); dtypes are promoted as for +."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    dim = _dim("cat", dim, axis, default=0)
    first = tensors[0]
    if first.ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    (ax,) = _normalize_axis(dim, first.ndim, "cat")
    for t in tensors[1:]:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if i != ax):
            raise ValueError(f"cat: shapes {first.shape} and {t.shape} differ outside "
                             f"dim {dim}")
    if len(tensors) == 1:
        return first
    target = result_type(*tensors)
    return Concat.apply(*[_as_dtype(t, target, first) for t in tensors], axis=ax)


cat = concat = concatenate


def stack(tensors, dim=0, *, axis=None):
    """Join same-shaped tensors along a new dim ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    dim = _dim("stack", dim, axis, default=0)
    return concatenate([unsqueeze(t, dim) for t in tensors], dim)


@tensor_method
def split(x, split_size_or_sections, dim=0, *, axis=None):
    """PyTorch's split: an int is the size of each piece (the last may be smaller),
    a list gives the size of every piece."""
    (ax,) = _normalize_axis(_dim("split", dim, axis, default=0), x.ndim, "split")
    n = x.shape[ax]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size < 1:
            raise ValueError(f"split: split_size must be a positive int, got {size}")
        sizes = [builtins.min(size, n - i) for i in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not add up to {n}")
    out, start = [], 0
    for s in sizes:
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(start, start + s)
        out.append(x[tuple(idx)])
        start += s
    return tuple(out)


@tensor_method
def chunk(x, chunks, dim=0, *, axis=None):
    """Split into ``chunks`` pieces of ceil(n / chunks) (PyTorch's rule; maybe fewer)."""
    (ax,) = _normalize_axis(_dim("chunk", dim, axis, default=0), x.ndim, "chunk")
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    return split(x, builtins.max(1, -(-x.shape[ax] // chunks)), ax)


class Pad(Function):
    """Constant padding: ``widths`` is ((before, after), ...) per axis;  dx is the
    un-padded centre of gy."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, widths=None, value=0.0):
        shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, widths))
        y = self._backend.full(shape, value, x.dtype)
        self.centre = tuple(slice(lo, lo + s) for s, (lo, hi) in zip(x.shape, widths))
        y[self.centre] = x
        return y

    def backward(self, gy):
        return gy[self.centre]


def pad(x, pad, mode="constant", value=None):
    """PyTorch's ``F.pad``: ``pad`` lists (before, after) pairs starting from the LAST
    axis: (left, right, top, bottom, ...). ``mode``: "constant" (``value``, default 0),
    "reflect" (mirror without repeating the edge; each width < that axis's size),
    "replicate" (repeat the edge) or "circular" (wrap around). The non-constant modes
    are index gathers, so their gradient adds back onto the positions they copied."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: needs an even number of widths, at most 2 per axis, got {pad}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if builtins.min(builtins.min(w) for w in widths) < 0:
        raise ValueError(f"pad: negative widths are not supported, got {pad}")
    if mode == "constant":
        return Pad.apply(x, widths=tuple(widths), value=0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or "
                         f"'circular', got {mode!r}")
    if value is not None:
        raise ValueError(f"pad: value= only applies to mode='constant', not {mode!r}")
    be = x._backend
    for axis, (lo, hi) in enumerate(widths):
        if lo == hi == 0:
            continue
        n = x.shape[axis]
        if mode == "reflect" and builtins.max(lo, hi) >= n:
            raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the "
                             f"size {n} of dim {axis}")
        if mode == "circular" and builtins.max(lo, hi) > n:
            raise ValueError(f"pad: circular padding ({lo}, {hi}) is larger than the size "
                             f"{n} of dim {axis}")
        source = []
        for i in range(-lo, n + hi):
            if mode == "replicate":
                source.append(builtins.min(builtins.max(i, 0), n - 1))
            elif mode == "circular":
                source.append(i % n)
            else:
                source.append(builtins.abs(i) if i < n else 2 * (n - 1) - i)
        x = index_select(x, axis, _const(be.asarray(source, "int64"), be))
    return x


# ----------------------------------------------------------------------------- indexing
class GetItem(Function):
    """y = x[key] (basic slicing, integer arrays, boolean masks);
    dx = zeros with gy put back in place (added where integer indices repeat)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

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

    uses_inputs = False   # backward reads shapes, masks or the output only

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


@tensor_method
def gather(x, dim, index):
    """out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (likewise for other dims): pick
    along ``dim`` by the int tensor ``index``, which has x's number of dims and sizes
    at most x's outside ``dim``. The gradient adds back where indices repeat."""
    if not isinstance(index, Tensor) or index.dtype.is_floating_point:
        raise TypeError("gather: index must be an integer tensor")
    if index.ndim != builtins.max(x.ndim, 1) and not (x.ndim == 0 and index.ndim == 0):
        raise ValueError(f"gather: index has {index.ndim} dims, the input {x.ndim}; they "
                         "must match")
    if x.ndim == 0:
        return x.reshape(index.shape) if index.size else x
    (d,) = _normalize_axis(dim, x.ndim, "gather")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, x.shape)) if k != d):
        raise ValueError(f"gather: index of shape {index.shape} is larger than the input "
                         f"{x.shape} outside dim {d}")
    be, xp = x._backend, x._backend.xp
    idx = index.data
    if bool(be.to_numpy(xp.any((idx < -x.shape[d]) | (idx >= x.shape[d])))):
        raise IndexError(f"gather: index out of range for dim {d} of size {x.shape[d]}")
    idx = xp.where(idx < 0, idx + x.shape[d], idx)
    # the flat position of every picked element: sum of coordinate * stride
    flat, stride = None, 1
    for k in reversed(range(x.ndim)):
        coord = idx if k == d else xp.reshape(be.arange(index.shape[k]),
                                              (1,) * k + (-1,) + (1,) * (x.ndim - k - 1))
        term = coord * stride
        flat = term if flat is None else flat + term
        stride *= x.shape[k]
    flat = xp.broadcast_to(flat, tuple(index.shape))
    return x.reshape(-1)[_const(flat, be)]


@tensor_method
def take_along_dim(x, indices, dim):
    """PyTorch's ``take_along_dim`` for a given dim: ``gather`` with broadcasting."""
    return gather(x, dim, indices)


@tensor_method
def index_select(x, dim, index):
    """The slices ``index`` (a 1-D int tensor) of x along ``dim``."""
    if not isinstance(index, Tensor) or index.ndim > 1 or index.dtype.is_floating_point:
        raise TypeError("index_select: index must be a 1-D integer tensor")
    (d,) = _normalize_axis(dim, x.ndim, "index_select") or (0,)
    if x.ndim == 0:
        return x if index.ndim == 0 else x.reshape(1)[index]
    return x[(slice(None),) * d + (index.reshape(-1),)]


@tensor_method
def masked_fill(x, mask, value):
    """x with ``value`` where the bool tensor ``mask`` (broadcast to x) is True."""
    if not isinstance(mask, Tensor) or mask.dtype != "bool":
        raise TypeError("masked_fill: mask must be a bool tensor")
    return where(mask, as_tensor(value, x, x.dtype.name) if not isinstance(value, Tensor)
                 else value, x)


@tensor_method
def repeat(x, *sizes):
    """Tile x ``sizes[i]`` times along dim i (PyTorch's ``repeat``; extra leading sizes
    add dims). Built from reshape and broadcast, so the gradient sums the copies."""
    sizes = _shape_args(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: give at least one size per dim ({x.ndim}), got {sizes}")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    y = x.reshape(tuple(v for d in shape for v in (1, d)))
    y = y.broadcast_to(tuple(v for r, d in zip(sizes, shape) for v in (r, d)))
    return y.reshape(tuple(r * d for r, d in zip(sizes, shape)))


class Flip(Function):
    """y = x reversed along ``axes``;  dx = gy reversed the same way."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, axes=()):
        self.axes = axes
        return self.xp.flip(x, axis=axes) if axes else x

    def backward(self, gy):
        return Flip.apply(gy, axes=self.axes)


@tensor_method
def flip(x, *dims):
    """Reverse the order along each dim in ``dims``."""
    return Flip.apply(x, axes=_normalize_axis(_shape_args(dims) if dims else (), x.ndim,
                                              "flip") if dims else ())


def _triangle(x, diagonal, lower):
    if x.ndim < 2:
        raise ValueError(f"{'tril' if lower else 'triu'}: needs at least 2 dims, got shape "
                         f"{x.shape}")
    be = x._backend
    rows = be.xp.reshape(be.arange(x.shape[-2]), (-1, 1))
    cols = be.xp.reshape(be.arange(x.shape[-1]), (1, -1))
    keep = cols - rows <= diagonal if lower else cols - rows >= diagonal
    return where(_const(keep, be), x, 0)


@tensor_method
def tril(x, diagonal=0):
    """The lower triangle of the last two dims (j - i <= diagonal), zeros above."""
    return _triangle(x, diagonal, lower=True)


@tensor_method
def triu(x, diagonal=0):
    """The upper triangle of the last two dims (j - i >= diagonal), zeros below."""
    return _triangle(x, diagonal, lower=False)


class Step(Function):
    """y = sign, floor, ceil, round or trunc of x: piecewise constant, so dx = 0 (as in
    PyTorch; at the jumps there is no derivative)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, mode="sign"):
        return getattr(self.xp, mode)(x)

    def backward(self, gy):
        return gy * 0.0


@tensor_method
def sign(x):
    return Step.apply(x, mode="sign")


@tensor_method
def floor(x):
    return Step.apply(x, mode="floor") if x.dtype.is_floating_point else x


@tensor_method
def ceil(x):
    return Step.apply(x, mode="ceil") if x.dtype.is_floating_point else x


@tensor_method
def trunc(x):
    return Step.apply(x, mode="trunc") if x.dtype.is_floating_point else x


@tensor_method
def round(x, decimals=0):
    """Round half to even (as PyTorch and NumPy), to ``decimals`` places."""
    if not x.dtype.is_floating_point:
        return x
    if decimals == 0:
        return Step.apply(x, mode="round")
    scale = 10.0 ** decimals
    return Step.apply(x * scale, mode="round") / scale


@tensor_method
def isnan(x):
    return _nograd(x, x._backend.xp.isnan(x.data))


@tensor_method
def isinf(x):
    return _nograd(x, x._backend.xp.isinf(x.data))


@tensor_method
def isfinite(x):
    return _nograd(x, x._backend.xp.isfinite(x.data))


@tensor_method
def expand_as(x, other):
    return expand(x, other.shape)


@tensor_method
def view_as(x, other):
    return reshape(x, other.shape)


class Clone(Function):
    """y = a copy of x;  dx = gy."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        return self.xp.asarray(x, copy=True)

    def backward(self, gy):
        return gy


@tensor_method
def clone(x):
    """A copy with its own memory that stays in the graph (``detach().clone()`` leaves it)."""
    return Clone.apply(x)


@tensor_method
def mm(a, b):
    """The matrix product of two 2-D tensors."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: both operands must be 2-D, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


@tensor_method
def bmm(a, b):
    """Batched matrix product of (B, n, k) and (B, k, m) tensors (no broadcasting)."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"bmm: operands must be 3-D with the same batch size, got shapes "
                         f"{a.shape} and {b.shape}")
    return matmul(a, b)


@tensor_method
def square(x):
    return x * x


@tensor_method
def reciprocal(x):
    return 1.0 / _floating(x)


@tensor_method
def rsqrt(x):
    return _floating(x) ** -0.5


class Log1p(Function):
    """y = log(1 + x), exact for small x;  dx = gy / (1 + x)."""

    def forward(self, x):
        return self.xp.log1p(x)

    def backward(self, gy):
        return gy / (1.0 + self.inputs[0])


@tensor_method
def log1p(x):
    return Log1p.apply(_floating(x))


class Expm1(Function):
    """y = exp(x) - 1, exact for small x;  dx = gy * (y + 1)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x):
        return self.save_output(self.xp.expm1(x))

    def backward(self, gy):
        return gy * (self.output() + 1.0)


@tensor_method
def expm1(x):
    return Expm1.apply(_floating(x))


class Cumsum(Function):
    """y_i = x_0 + ... + x_i along ``axis``;  dx_i = gy_i + ... + gy_last (the sum
    from the other end: flip, cumsum, flip)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, axis=0):
        self.axis = axis
        return self.xp.cumulative_sum(x, axis=axis)

    def backward(self, gy):
        return flip(Cumsum.apply(flip(gy, self.axis), axis=self.axis), self.axis)


@tensor_method
def cumsum(x, dim, *, dtype=None, axis=None):
    """Running sum along ``dim`` (integers and bools sum to int64, as in PyTorch)."""
    dim = _dim("cumsum", dim, axis)
    if dtype is not None:
        x = x.astype(dtype)
    elif not x.dtype.is_floating_point and x.dtype != "int64":
        x = _cast_const(x, "int64")
    if x.ndim == 0:
        _normalize_axis(dim, 0, "cumsum")
        return Clone.apply(x)
    (d,) = _normalize_axis(dim, x.ndim, "cumsum")
    return Cumsum.apply(x, axis=d)


class Prod(Function):
    """y = product of x over ``axis``;  dx_i = gy * (product of the others): y / x_i
    where x_i != 0; at a lone zero the product of the rest, and 0 where a slice holds
    two zeros or more (PyTorch's exact rule)."""

    def forward(self, x, axis=None, keepdims=False):
        self.in_shape, self.axes, self.keepdims = x.shape, _normalize_axis(axis, x.ndim), keepdims
        return self.save_output(self.xp.prod(x, axis=self.axes, keepdims=keepdims))

    def backward(self, gy):
        x, = self.inputs
        shape = _keepdims_shape(self.in_shape, self.axes)
        y, gy = self.output().reshape(shape), gy.reshape(shape)
        zero = x == 0.0
        others = Prod.apply(where(zero, 1.0, x), axis=self.axes, keepdims=True)
        lone = sum(zero, self.axes, keepdim=True) == 1
        at_zero = where(lone, others, 0.0)
        return gy * where(zero, at_zero, y / where(zero, 1.0, x))


@tensor_method
def prod(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Product over ``dim`` (an int, a tuple, or None for all)."""
    dim, keepdim = _dim("prod", dim, axis), _keepdim("prod", keepdim, keepdims)
    if dtype is not None:
        x = x.astype(dtype)
    elif not x.dtype.is_floating_point and x.dtype != "int64":
        x = _cast_const(x, "int64")
    return Prod.apply(x, axis=_normalize_axis(dim, x.ndim, "prod"), keepdims=keepdim)


@tensor_method
def norm(x, p="fro", dim=None, keepdim=False):
    """The vector p-norm over ``dim`` (all elements by default): p = 2 or "fro" the
    Euclidean norm (gradient 0 at the zero vector, as in PyTorch), 1, inf, -inf, 0
    (the count of non-zeros) or any other number (sum |x|^p)^(1/p), whose zero vector
    also gets gradient 0."""
    x = _floating(x)
    axes = _normalize_axis(dim, x.ndim, "norm")
    if p in ("fro", 2, 2.0):
        return SafeSqrt.apply(sum(x * x, axes, keepdim))
    if p == float("inf"):
        return amax(abs(x), axes, keepdim)
    if p == float("-inf"):
        return amin(abs(x), axes, keepdim)
    if p == 0:
        return sum(_cast_const(x != 0.0, x.dtype.name), axes, keepdim)
    if p == 1:
        return sum(abs(x), axes, keepdim)
    if isinstance(p, str) or not isinstance(p, (int, float)):
        raise ValueError(f"norm: p must be a number or 'fro', got {p!r}")
    s = sum(abs(x) ** p, axes, keepdim)
    nonzero = s > 0.0        # the zero vector: norm 0, gradient 0 (not 0 * inf)
    return where(nonzero, where(nonzero, s, 1.0) ** (1.0 / p), 0.0)


# ----------------------------------------------------------------------------- not differentiable
def _nograd(x, array):
    """A result that never requires grad (indices, comparisons, masks)."""
    return _const(array, x._backend)


def _arg_reduce(fn, x, dim, keepdim, axis, keepdims):
    xp = x._backend.xp
    dim, keepdim = _dim(fn, dim, axis), _keepdim(fn, keepdim, keepdims)
    pick = xp.argmax if fn == "argmax" else xp.argmin
    if dim is None:
        flat = pick(xp.reshape(x.data, (-1,)))
        return _nograd(x, xp.reshape(flat, (1,) * x.ndim) if keepdim else flat)
    (ax,) = _normalize_axis(dim, x.ndim, fn) or (None,)
    if ax is None:                                   # a 0-d tensor: its one index, 0
        return _nograd(x, x._backend.zeros((), "int64"))
    return _nograd(x, xp.astype(pick(x.data, axis=ax, keepdims=keepdim), xp.int64))


@tensor_method
def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the largest value, over all elements (flat index) or along ``dim``."""
    return _arg_reduce("argmax", x, dim, keepdim, axis, keepdims)


@tensor_method
def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the smallest value, over all elements (flat index) or along ``dim``."""
    return _arg_reduce("argmin", x, dim, keepdim, axis, keepdims)


@tensor_method("all")
def _all(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    dim, keepdim = _dim("all", dim, axis), _keepdim("all", keepdim, keepdims)
    xp = x._backend.xp
    return _nograd(x, xp.all(xp.astype(x.data, xp.bool), axis=_normalize_axis(dim, x.ndim, "all"),
                             keepdims=keepdim))


@tensor_method("any")
def _any(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    dim, keepdim = _dim("any", dim, axis), _keepdim("any", keepdim, keepdims)
    xp = x._backend.xp
    return _nograd(x, xp.any(xp.astype(x.data, xp.bool), axis=_normalize_axis(dim, x.ndim, "any"),
                             keepdims=keepdim))


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
