"""Backend-independent dtypes: ``mg.float32 == t.dtype`` on NumPy, CuPy and strict alike.

A ``DType`` is a name. The backend turns a name into its library's dtype object
(``be.dtype("float32")``); ``dtype_of(array)`` goes the other way; ``result_type``
is PyTorch's type promotion, on names. This module imports nothing of minigrad,
so both the backend and the tensor can use it.
"""
from __future__ import annotations

__all__ = ["DType", "DTYPES", "dtype_of", "category", "promote_types", "result_type"]


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


# ----------------------------------------------------------------------------- promotion
_INTS = {"uint8": 8, "int8": 8, "int16": 16, "int32": 32, "int64": 64}


def category(name: str) -> int:
    """0 for bool, 1 for integers, 2 for floating point."""
    return 0 if name == "bool" else 1 if name in _INTS else 2


def promote_types(a: str, b: str) -> str:
    """PyTorch's ``promote_types`` for two dtype names: the smallest dtype that holds
    both (bool < integers < floats; an integer meeting a float gives that float)."""
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    if ca == 2:
        return "float64"
    if "uint8" in (a, b):                 # uint8 and a signed int: the next signed size
        other = b if a == "uint8" else a
        return "int16" if other == "int8" else other
    return a if _INTS[a] >= _INTS[b] else b


def _combine(higher, lower):
    """PyTorch's combine_categories: the higher-priority group wins unless the lower
    one brings a higher category (bool -> int, integer -> float)."""
    if higher is None:
        return lower
    if lower is None or category(higher) == 2:
        return higher
    if higher == "bool" or category(lower) == 2:
        return promote_types(higher, lower)
    return higher


def result_type(dimensioned=(), zero_dim=(), scalars=()):
    """PyTorch's type promotion for an op's operands, as dtype names: tensors with
    dimensions decide within their category; 0-d tensors only when they bring a higher
    category; Python scalars only then too, as the default dtype of their category
    (float -> float32, int -> int64, bool -> bool)."""
    def promoted(names):
        out = None
        for n in names:
            out = n if out is None else promote_types(out, n)
        return out

    defaults = {bool: "bool", int: "int64", float: "float32"}
    wrapped = promoted(defaults[type(s)] if type(s) in defaults else
                       "float32" if isinstance(s, float) else
                       "bool" if isinstance(s, bool) else "int64" for s in scalars)
    return _combine(promoted(dimensioned), _combine(promoted(zero_dim), wrapped))
