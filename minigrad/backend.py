"""The array backend: the ONE place that knows which array library is in use.

Everything above this module (tensor, ops, conv, nn, optim, data, models) does
array math through ``be.xp``, a namespace that follows the Python Array API
standard, and calls this module for the few things the standard lacks:

=================  =====================  ==========================  ===================
need               numpy                  cupy                        strict (test only)
=================  =====================  ==========================  ===================
namespace ``xp``   ``numpy``              ``array_api_compat.cupy``   ``array_api_strict``
device             ``"cpu"``              current CUDA device         ``Device("device1")``
scatter-add        ``np.add.at``          ``cupyx.scatter_add``       one-hot matmul
random numbers     ``np.random.Generator`` ``cupy.random.Generator``  NumPy host RNG, copied
to the host        identity               ``.get()``                  ``to_device(CPU)``
erf                ``scipy.special.erf``  ``cupyx.scipy.special.erf`` SciPy on a host copy
=================  =====================  ==========================  ===================

The ``strict`` backend puts its arrays on array-api-strict's non-CPU device,
where any implicit conversion to NumPy raises. It stands in for a GPU on
machines without one: code that would break on CuPy breaks on it too.

Choosing a backend: ``mg.set_backend("cupy")``, ``with mg.backend("cupy"):``,
or the environment variable ``MINIGRAD_BACKEND`` (read when a backend is first
needed, so a bad value cannot break ``import minigrad``).

Capabilities: what a backend can do beyond the standard is a name in
``be.capabilities``, so that code above asks "can you?" and never "are you NumPy?":

* ``"strided_views"``: ``be.strided_windows(x, shape, strides)`` gives a zero-copy
  view with arbitrary element strides (NumPy's ``as_strided``);
* ``"cpu_blas"``: matrix products run on the host's BLAS, on CPU threads;
* ``"ufunc_out"``: the namespace's elementwise functions take ``out=`` (NumPy's
  ufuncs), so a result can be written into an existing array without a temporary.

This module imports nothing of minigrad: dtypes arrive as names, or as objects
with a ``.name`` (``minigrad.DType``).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["Backend", "BackendError", "get_backend", "set_backend", "backend", "all_backends",
           "available_backends", "backend_of", "host_array", "format_array", "host_rng",
           "is_host_array", "manual_seed"]

BACKEND_NAMES = ("numpy", "cupy", "strict")


class BackendError(RuntimeError):
    """A backend was asked for that cannot be used on this machine."""


class Backend:
    """An array library plus the handful of operations the Array API lacks.

    Attributes: ``name`` (``"numpy"``, ``"cupy"`` or ``"strict"``), ``xp`` (the
    array namespace) and ``device`` (what creation functions put arrays on).
    """

    name = "abstract"
    capabilities = frozenset()

    def __init__(self):
        self.seed(_seed[0])

    # -- creation: every array is made through these, so it lands on our device
    def asarray(self, data, dtype=None):
        """Array on this backend from a Python scalar, list, or array of ANY backend
        of the same library. Arrays of another library must go through ``from_numpy``."""
        if dtype is not None:
            dtype = self.dtype(dtype)
        return self.xp.asarray(data, dtype=dtype, device=self.device)

    def from_numpy(self, a, dtype=None):
        """Explicit host -> device transfer of a NumPy array."""
        return self.asarray(np.asarray(a), dtype)

    def to_numpy(self, a):
        """Explicit device -> host transfer; the only way data leaves the backend."""
        return np.asarray(a)

    def from_any(self, a):
        """An array of this backend from an array of ANY backend, a NumPy array, or any
        host array-like with ``__array__`` (a torch CPU tensor, say); no copy when ``a``
        already is one of ours."""
        if self.is_array(a):
            return a
        if is_host_array(a):
            return self.from_numpy(a)
        for b in _instances.values():
            if b.is_array(a):
                return self.from_numpy(b.to_numpy(a))
        if hasattr(a, "__array__"):
            return self.from_numpy(np.asarray(a))
        raise TypeError(f"{type(a).__name__} is not an array (no backend's, and no __array__)")

    def zeros(self, shape, dtype="float32"):
        return self.xp.zeros(shape, dtype=self.dtype(dtype), device=self.device)

    def ones(self, shape, dtype="float32"):
        return self.xp.ones(shape, dtype=self.dtype(dtype), device=self.device)

    def full(self, shape, value, dtype="float32"):
        return self.xp.full(shape, value, dtype=self.dtype(dtype), device=self.device)

    def arange(self, *args, dtype="int64"):
        return self.xp.arange(*args, dtype=self.dtype(dtype), device=self.device)

    def eye(self, n, m=None, dtype="float32"):
        return self.xp.eye(n, m, dtype=self.dtype(dtype), device=self.device)

    def dtype(self, d):
        """The namespace's dtype object for a name (``"float32"``), a ``minigrad.DType``
        or a dtype of this namespace."""
        name = d if isinstance(d, str) else getattr(d, "name", None)
        if not isinstance(name, str):
            return d  # already a dtype object of some namespace
        name = {"float": "float32", "double": "float64", "long": "int64",
                "int": "int64", "bool_": "bool"}.get(name, name)
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise TypeError(f"dtype {d!r} is not known to the {self.name} backend") from None

    # -- what the standard lacks
    def scatter_add(self, target, index, values):
        """``target[index] += values``, adding repeated indices (``index`` is
        anything a basic or integer-array ``__getitem__`` takes). In place."""
        raise NotImplementedError

    def index_add(self, target, axis, index, values):
        """PyTorch's ``index_add_``: ``target[..., index[i], ...] += values[..., i, ...]``
        along ``axis`` for a 1-D integer ``index`` (repeats add). In place."""
        return self.scatter_add(target, (slice(None),) * axis + (index,), values)

    def erf(self, a):
        """The error function 2/sqrt(pi) * integral_0^a exp(-t^2) dt, elementwise (the
        standard has no special functions)."""
        from scipy import special  # host-side: scipy's erf on the host's array
        return self.from_numpy(special.erf(self.to_numpy(a)))

    def seed(self, n):
        """Reseed this backend's one random generator."""
        raise NotImplementedError

    def rng_state(self):
        """The generator's state as a JSON-able dict, for checkpoints."""
        return self._host_rng.bit_generator.state

    def set_rng_state(self, state):
        self._host_rng.bit_generator.state = state

    def normal(self, shape, dtype="float32"):
        raise NotImplementedError

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32"):
        raise NotImplementedError

    def integers(self, low, high, shape, dtype="int64"):
        raise NotImplementedError

    def permutation(self, n):
        """A random permutation of ``range(n)`` as a NumPy (host) array: data loaders
        index host-side datasets with it."""
        return self._host_rng.permutation(n)

    def synchronize(self):
        """Wait for queued device work (for honest timings); no-op on the CPU."""

    def is_array(self, a):
        return type(a) is self._array_type

    def __repr__(self):
        return f"<minigrad backend {self.name!r}>"


class NumpyBackend(Backend):
    name = "numpy"
    capabilities = frozenset({"strided_views", "cpu_blas", "ufunc_out"})

    def __init__(self):
        self.xp = np
        self.device = "cpu"
        self._array_type = np.ndarray
        super().__init__()

    def asarray(self, data, dtype=None):
        # numpy.asarray takes device= since NumPy 2.0; skip the keyword in the hot path.
        return np.asarray(data, dtype=None if dtype is None else self.dtype(dtype))

    def is_array(self, a):
        return isinstance(a, np.ndarray)

    def scatter_add(self, target, index, values):
        np.add.at(target, index, values)
        return target

    def erf(self, a):
        from scipy import special  # host-side: NumPy arrays are host arrays
        return special.erf(a)

    def seed(self, n):
        self._host_rng = np.random.default_rng(n)

    def normal(self, shape, dtype="float32"):
        return self._host_rng.standard_normal(shape, dtype=self.dtype(dtype))

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32"):
        u = self._host_rng.random(shape, dtype=self.dtype(dtype))
        return u if (low, high) == (0.0, 1.0) else u * (high - low) + low

    def integers(self, low, high, shape, dtype="int64"):
        return self._host_rng.integers(low, high, shape, dtype=self.dtype(dtype))

    def strided_windows(self, x, shape, strides):
        """A read-only view of ``x`` with the given shape and element strides (the
        ``"strided_views"`` capability)."""
        item = x.itemsize
        return np.lib.stride_tricks.as_strided(
            x, shape, [s * item for s in strides], writeable=False)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self):
        try:
            import cupy
            import cupyx
        except ImportError as e:
            raise BackendError(
                "the 'cupy' backend needs CuPy, which is not installed: "
                "pip install -e \".[cuda12]\" (or \".[cuda13]\", matching your CUDA driver)"
            ) from e
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # the CUDA runtime raises its own error types
            raise BackendError(f"the 'cupy' backend found no usable CUDA GPU ({e}); "
                               "use --backend numpy on this machine") from None
        if n == 0:
            raise BackendError("the 'cupy' backend found no CUDA GPU; use --backend numpy")
        # array-api-compat's view of CuPy: the standard's names (permute_dims,
        # cumulative_sum, ...) on plain cupy arrays, where CuPy's own spelling differs
        from array_api_compat import cupy as xp
        self.xp = xp
        self._cupy = cupy
        self._cupyx = cupyx
        self._array_type = cupy.ndarray
        self.device = None  # CuPy's creation functions use the current device
        super().__init__()

    def asarray(self, data, dtype=None):
        return self.xp.asarray(data, dtype=None if dtype is None else self.dtype(dtype))

    def zeros(self, shape, dtype="float32"):
        return self.xp.zeros(shape, dtype=self.dtype(dtype))

    def ones(self, shape, dtype="float32"):
        return self.xp.ones(shape, dtype=self.dtype(dtype))

    def full(self, shape, value, dtype="float32"):
        return self.xp.full(shape, value, dtype=self.dtype(dtype))

    def arange(self, *args, dtype="int64"):
        return self.xp.arange(*args, dtype=self.dtype(dtype))

    def eye(self, n, m=None, dtype="float32"):
        return self.xp.eye(n, m, dtype=self.dtype(dtype))

    def to_numpy(self, a):
        return self._cupy.asnumpy(a)

    def scatter_add(self, target, index, values):
        # cupy.scatter_add was removed in CuPy 9; cupyx.scatter_add is the one that stays.
        self._cupyx.scatter_add(target, index, values)
        return target

    def erf(self, a):
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(a)

    def seed(self, n):
        self._host_rng = np.random.default_rng(n)  # for permutations and state
        self._dev_rng = self._cupy.random.default_rng(n)

    def rng_state(self):
        # CuPy's generator state is not serialisable; keep a host seed stream instead.
        return self._host_rng.bit_generator.state

    def set_rng_state(self, state):
        self._host_rng.bit_generator.state = state
        self._dev_rng = self._cupy.random.default_rng(int(self._host_rng.integers(2**63)))

    def normal(self, shape, dtype="float32"):
        return self._dev_rng.standard_normal(shape, dtype=self.dtype(dtype))

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32"):
        u = self._dev_rng.random(shape, dtype=self.dtype(dtype))
        return u if (low, high) == (0.0, 1.0) else u * (high - low) + low

    def integers(self, low, high, shape, dtype="int64"):
        return self._dev_rng.integers(low, high, shape).astype(self.dtype(dtype))

    def synchronize(self):
        self._cupy.cuda.get_current_stream().synchronize()



class StrictBackend(Backend):
    """array-api-strict on its non-CPU device: a GPU stand-in for tests."""

    name = "strict"

    def __init__(self):
        try:
            import array_api_strict as xs
        except ImportError as e:
            raise BackendError("the 'strict' backend is for tests and needs array-api-strict: "
                               "pip install -e \".[test]\"") from e
        self.xp = xs
        self.device = xs.Device("device1")
        self._cpu = xs.Device("CPU_DEVICE")
        self._array_type = type(xs.asarray(0))
        super().__init__()

    def from_numpy(self, a, dtype=None):
        # np -> strict CPU array -> explicit transfer to the stand-in device
        a = self.xp.asarray(np.asarray(a), dtype=None if dtype is None else self.dtype(dtype))
        return a.to_device(self.device)

    def asarray(self, data, dtype=None):
        if isinstance(data, np.ndarray) or isinstance(data, np.generic):
            return self.from_numpy(data, dtype)
        return super().asarray(data, dtype)

    def to_numpy(self, a):
        if not isinstance(a, self._array_type):
            return np.asarray(a)
        return np.asarray(a.to_device(self._cpu))

    def scatter_add(self, target, index, values):
        # The standard has no scatter. Generic fallback: flatten target, turn the
        # index into flat positions, and add with a one-hot matrix product
        # (O(n*m) memory, fine for test sizes).
        xp = self.xp
        gathered = self._flat_positions(target.shape, index)
        pos = xp.reshape(gathered, (-1,))
        vals = xp.broadcast_to(xp.asarray(values, dtype=target.dtype, device=self.device),
                               gathered.shape)
        onehot = xp.astype(pos[:, None] == xp.arange(_size(target.shape), device=self.device)[None, :],
                           target.dtype)
        added = xp.reshape(xp.reshape(vals, (1, -1)) @ onehot, target.shape)
        target[...] = target + added
        return target

    def _flat_positions(self, shape, index):
        """The flat position of every element ``x[index]`` picks from an array of
        ``shape``. array-api-strict takes integer arrays only when they index ALL
        axes, so k arrays over the leading k axes are expanded by hand."""
        xp = self.xp
        key = index if isinstance(index, tuple) else (index,)
        k = len(key)
        if k < len(shape) and all(self.is_array(i) for i in key):
            inner = _size(shape[k:])
            lead = xp.reshape(xp.arange(_size(shape[:k]), device=self.device), shape[:k])[key]
            pos = lead[..., None] * inner + xp.arange(inner, device=self.device)
            return xp.reshape(pos, tuple(lead.shape) + tuple(shape[k:]))
        flat = xp.reshape(xp.arange(_size(shape), device=self.device), shape)
        return flat[key]

    def index_add(self, target, axis, index, values):
        # a one-hot matrix (n, m) sends the n gathered slices back onto m rows
        xp = self.xp
        m = target.shape[axis]
        index = xp.where(index < 0, index + m, index)  # -1 is the last row, as in x[-1]
        onehot = xp.astype(index[:, None] == xp.arange(m, device=self.device)[None, :],
                           target.dtype)
        moved = xp.moveaxis(values, axis, -1)                 # (..., n)
        added = xp.moveaxis(moved @ onehot, -1, axis)         # (..., m), back in place
        target[...] = target + added
        return target

    def seed(self, n):
        self._host_rng = np.random.default_rng(n)

    def normal(self, shape, dtype="float32"):
        return self.from_numpy(self._host_rng.standard_normal(shape), dtype)

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32"):
        return self.from_numpy(self._host_rng.uniform(low, high, shape), dtype)

    def integers(self, low, high, shape, dtype="int64"):
        return self.from_numpy(self._host_rng.integers(low, high, shape), dtype)


# -- host-side helpers: the engine's only contact with NumPy outside the backends
def host_array(data, dtype=None):
    """A fresh NumPy (host) array from Python scalars, nested lists or a NumPy array.

    Python floats become float32 and Python ints int64 (PyTorch's defaults);
    NumPy arrays keep their dtype. ``dtype`` overrides both."""
    arr = np.array(data, copy=True)
    if dtype is not None:
        return arr
    if arr.dtype.kind == "O":
        raise TypeError(f"cannot make a tensor from {type(data).__name__} "
                        f"(ragged or mixed nested sequences?)")
    if not isinstance(data, (np.ndarray, np.generic)):
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
    return arr


def is_host_array(a) -> bool:
    """True for NumPy arrays and NumPy scalars (host data, any backend may import it)."""
    return isinstance(a, (np.ndarray, np.generic))


def format_array(host, prefix="tensor(", precision=4, threshold=200) -> str:
    """The body of a tensor's repr, from a host array that came out of ``to_numpy``."""
    return np.array2string(host, separator=", ", prefix=prefix, precision=precision,
                           threshold=threshold)


def host_rng(seed=None):
    """A NumPy random Generator on the host, for things that are not tensors
    (gradcheck's directions, shuffling indices)."""
    return np.random.default_rng(seed)


def _size(shape):
    n = 1
    for s in shape:
        n *= s
    return n


_FACTORIES = {"numpy": NumpyBackend, "cupy": CupyBackend, "strict": StrictBackend}
_instances: dict[str, Backend] = {}
_current: list[Backend | None] = [None]   # None until a backend is first needed
_seed = [0]                               # what every new backend is seeded with


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called ``name`` (created once), or the current one if None."""
    if name is None:
        return _current[0] or _default_backend()
    if isinstance(name, Backend):
        return name
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name not in _instances:
        _instances[name] = _FACTORIES[name]()
    return _instances[name]


def _default_backend() -> Backend:
    """The first current backend: ``$MINIGRAD_BACKEND`` if set, else numpy."""
    env = os.environ.get("MINIGRAD_BACKEND")
    try:
        _current[0] = get_backend(env or "numpy")
    except (BackendError, ValueError) as e:
        raise type(e)(f"MINIGRAD_BACKEND={env}: {e}") from None
    return _current[0]


def set_backend(name: str) -> Backend:
    """Make ``name`` the backend that new tensors are created on."""
    _current[0] = get_backend(name)
    return _current[0]


@contextlib.contextmanager
def backend(name: str):
    """``with mg.backend("cupy"): ...`` creates tensors on CuPy inside the block."""
    old = _current[0]
    set_backend(name)
    try:
        yield _current[0]
    finally:
        _current[0] = old


def available_backends() -> list[str]:
    """Backends that can be used on this machine (numpy always)."""
    out = []
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
            out.append(name)
        except BackendError:
            pass
    return out


def backend_of(a) -> Backend:
    """The backend whose array type ``a`` is."""
    for b in _instances.values():
        if b.is_array(a):
            return b
    raise TypeError(f"{type(a).__name__} is not an array of any minigrad backend")


def all_backends() -> list[Backend]:
    """The backends created so far in this process."""
    return list(_instances.values())


def manual_seed(n: int):
    """Seed every backend's generator with ``n``: those created so far, and those
    created later (PyTorch's ``torch.manual_seed``, with its range: a negative seed
    maps to 2**64 - 1 + n)."""
    n = int(n)
    if not -2 ** 63 <= n < 2 ** 64:
        raise ValueError(f"manual_seed: seed must be in [-2**63, 2**64), got {n}")
    if n < 0:
        n += 2 ** 64 - 1
    _seed[0] = n
    for b in _instances.values():
        b.seed(n)
