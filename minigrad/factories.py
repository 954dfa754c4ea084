"""Tensor factories (PyTorch's names), all on the current backend unless ``backend=``."""
from __future__ import annotations

from .backend import get_backend as _get_backend, manual_seed  # noqa: F401 (mg.manual_seed)
from .ops import _shape_args as _shape
from .tensor import Tensor

__all__ = ["zeros", "ones", "full", "full_like", "arange", "eye", "rand", "randn", "randint",
           "manual_seed", "from_numpy"]


def _leaf(array, be, requires_grad):
    t = Tensor._make(array, be, False, None)
    return t.requires_grad_(True) if requires_grad else t


def zeros(*shape, dtype="float32", requires_grad=False, backend=None):
    be = _get_backend(backend)
    return _leaf(be.zeros(_shape(shape), dtype), be, requires_grad)


def ones(*shape, dtype="float32", requires_grad=False, backend=None):
    be = _get_backend(backend)
    return _leaf(be.ones(_shape(shape), dtype), be, requires_grad)


def full(shape, fill_value, dtype="float32", requires_grad=False, backend=None):
    be = _get_backend(backend)
    return _leaf(be.full(_shape((shape,)), fill_value, dtype), be, requires_grad)


def full_like(t, fill_value, dtype=None):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, backend=t._backend)


def arange(start, end=None, step=1, dtype=None, backend=None):
    """``arange(5)``, ``arange(2, 5)``, ``arange(0, 1, 0.25)``: int64 for integer
    arguments, float32 otherwise (as in PyTorch)."""
    be = _get_backend(backend)
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = "int64" if all(isinstance(v, int) for v in (start, end, step)) else "float32"
    return _leaf(be.arange(start, end, step, dtype=dtype), be, False)


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


def randint(low, high=None, size=(), dtype="int64", backend=None):
    """Integers in [low, high) (PyTorch's argument order: ``randint(low, high, size)``)."""
    be = _get_backend(backend)
    if high is None:
        low, high = 0, low
    return _leaf(be.integers(low, high, _shape((size,)), dtype=dtype), be, False)


def from_numpy(a, backend=None):
    """A tensor from a NumPy array (shared memory on the numpy backend, as in PyTorch)."""
    be = _get_backend(backend)
    return _leaf(be.from_numpy(a), be, False)
