"""Tensor factories (PyTorch's names), all on the current backend unless ``backend=``."""
from __future__ import annotations

from .backend import get_backend as _get_backend, manual_seed  # noqa: F401 (mg.manual_seed)
from .ops import _shape_args as _shape
from .tensor import Tensor

__all__ = ["zeros", "ones", "empty", "full", "full_like", "empty_like", "rand_like",
           "randn_like", "arange", "linspace", "eye", "rand", "randn", "randint", "manual_seed",
           "from_numpy"]


def _leaf(array, be, requires_grad):
    t = Tensor._make(array, be, False, None)
    return t.requires_grad_(True) if requires_grad else t


def zeros(*shape, dtype="float32", requires_grad=False, backend=None):
    be = _get_backend(backend)
    return _leaf(be.zeros(_shape(shape), dtype), be, requires_grad)


def ones(*shape, dtype="float32", requires_grad=False, backend=None):
    be = _get_backend(backend)
    return _leaf(be.ones(_shape(shape), dtype), be, requires_grad)


def empty(*shape, dtype="float32", requires_grad=False, backend=None):
    """A new tensor of ``shape`` (zero-filled here: uninitialised memory teaches nothing)."""
    return zeros(*shape, dtype=dtype, requires_grad=requires_grad, backend=backend)


def full(shape, fill_value, dtype=None, requires_grad=False, backend=None):
    """``shape`` filled with ``fill_value``; the dtype follows the value as in PyTorch
    (bool -> bool, int -> int64, float -> float32) unless given."""
    be = _get_backend(backend)
    if dtype is None:
        dtype = "bool" if isinstance(fill_value, bool) else \
            "int64" if isinstance(fill_value, int) else "float32"
    return _leaf(be.full(_shape((shape,)), fill_value, dtype), be, requires_grad)


def full_like(t, fill_value, dtype=None):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, backend=t._backend)


def empty_like(t, dtype=None):
    return full(t.shape, 0, dtype=dtype or t.dtype, backend=t._backend)


def rand_like(t, dtype=None):
    return rand(t.shape, dtype=dtype or t.dtype, backend=t._backend)


def randn_like(t, dtype=None):
    return randn(t.shape, dtype=dtype or t.dtype, backend=t._backend)


def arange(start, end=None, step=1, dtype=None, backend=None):
    """``arange(5)``, ``arange(2, 5)``, ``arange(0, 1, 0.25)``: int64 for integer
    arguments, float32 otherwise (as in PyTorch). With an integer dtype the bounds are
    truncated to integers first, as PyTorch does: ``arange(3.1, dtype=int64)`` is
    [0, 1, 2]."""
    be = _get_backend(backend)
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        dtype = "int64" if all(isinstance(v, int) for v in (start, end, step)) else "float32"
    name = getattr(dtype, "name", str(dtype))
    if not name.startswith("float"):
        start, end, step = int(start), int(end), int(step)
    return _leaf(be.arange(start, end, step, dtype=dtype), be, False)


def linspace(start, end, steps, dtype="float32", backend=None):
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    be = _get_backend(backend)
    if steps == 1:
        return _leaf(be.full((1,), start, dtype), be, False)
    x = be.arange(steps, dtype="float64") * ((end - start) / (steps - 1)) + start
    return _leaf(be.xp.astype(x, be.dtype(dtype)), be, False)


def eye(n, m=None, dtype="float32", backend=None):
    be = _get_backend(backend)
    return _leaf(be.eye(n, m, dtype=dtype), be, False)


def rand(*shape, dtype="float32", requires_grad=False, backend=None):
    """Uniform on [0, 1), from the backend's generator (seed with ``manual_seed``)."""
    be = _get_backend(backend)
    return _leaf(be.uniform(_shape(shape), dtype=dtype), be, requires_grad)


def randn(*shape, dtype="float32", requires_grad=False, backend=None):
    """Standard normal, from the backend's generator (seed with ``manual_seed``)."""
    be = _get_backend(backend)
    return _leaf(be.normal(_shape(shape), dtype=dtype), be, requires_grad)


def randint(low, high=None, size=None, dtype="int64", backend=None):
    """Integers in [low, high), PyTorch's two spellings: ``randint(low, high, size)`` and
    ``randint(high, size)``; a float ``dtype`` gives the same integers as floats."""
    be = _get_backend(backend)
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high              # randint(high, size)
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: missing the size argument, e.g. randint(0, 10, (3,))")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be larger than low ({low})")
    name = getattr(dtype, "name", str(dtype))
    ints = be.integers(low, high, _shape((size,)), dtype="int64")
    return _leaf(ints if name == "int64" else be.xp.astype(ints, be.dtype(dtype)), be, False)


def from_numpy(a, backend=None):
    """A tensor from a NumPy array (shared memory on the numpy backend, as in PyTorch)."""
    be = _get_backend(backend)
    return _leaf(be.from_numpy(a), be, False)
