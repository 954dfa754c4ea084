"""Backend-independent dtypes: ``mg.float32 == t.dtype`` on NumPy, CuPy and strict alike.

A ``DType`` is a name. The backend turns a name into its library's dtype object
(``be.dtype("float32")``); ``dtype_of(array)`` goes the other way. This module
imports nothing of minigrad, so both the backend and the tensor can use it.
"""
from __future__ import annotations

__all__ = ["DType", "DTYPES", "dtype_of"]


class DType:
    """A dtype name that compares equal to its string: ``mg.float32 == "float32"``."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        if isinstance(other, DType):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"minigrad.{self.name}"

    @property
    def is_floating_point(self):
        return self.name.startswith("float")


DTYPES = {n: DType(n) for n in ("float32", "float64", "int8", "int16", "int32", "int64",
                                "uint8", "bool")}

# (type of the library's dtype, dtype) -> DType, because str() of a NumPy dtype is slow
# and dtype_of runs on every .dtype. The type comes first so that the dtypes of two
# libraries are never compared with each other (array-api-strict warns when they are).
_CACHE = {}


def dtype_of(array) -> DType:
    """The DType of an array of any backend."""
    d = array.dtype
    try:
        return _CACHE[(type(d), d)]
    except KeyError:
        result = _CACHE[(type(d), d)] = _named(d)
        return result
    except TypeError:  # an unhashable dtype object
        return _named(d)


def _named(d):
    name = str(d).rsplit(".", 1)[-1]  # "float32" or "array_api_strict.float32"
    return DTYPES.get(name) or DType(name)
