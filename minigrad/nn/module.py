"""``Module`` and ``Parameter``: PyTorch's way of bundling state with a forward pass.

A Module keeps three ordered registries, filled by plain attribute assignment:

* ``_parameters``: ``Parameter`` tensors (trainable, found by ``parameters()``);
* ``_buffers``: tensors that are state but not trained (BatchNorm's running
  statistics), registered with ``register_buffer``;
* ``_modules``: child Modules, which makes a model a tree.

Every tree walk (``named_parameters``, ``state_dict``, ``to``, ``train``) follows
``_modules`` recursively, and dotted names (``"encoder.0.weight"``) say where in
the tree a tensor lives.
"""
from __future__ import annotations

import copy
from collections import OrderedDict, namedtuple

from ..backend import all_backends as _all_backends, get_backend as _get_backend
from ..dtypes import DTYPES as _DTYPES, DType
from ..tensor import Tensor, no_grad

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "StateDictError"]


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default).

    ``nn.Parameter(t)`` shares ``t``'s array (no copy), like PyTorch.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = _get_backend().zeros((0,))
        if isinstance(data, Tensor):
            self.data = data.data
            self.grad = None
            self._ctx = None
            self._backend = data._backend
            self._version = 0
            self.requires_grad = False
        else:
            super().__init__(data)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        raise TypeError("minigrad tensors are not pickled; use mg.save(state_dict, path)")

    def __deepcopy__(self, memo):
        return _deepcopy_tensor(self, memo)


def _deepcopy_tensor(t, memo):
    """A copy of a parameter or buffer with its own array, on the same backend
    (the Backend object itself is shared, never copied)."""
    if t is None:
        return None
    if id(t) in memo:
        return memo[id(t)]
    be = t._backend
    data = be.xp.asarray(t.data, copy=True)
    if isinstance(t, Parameter):
        c = Parameter(Tensor._make(data, be, False, None), requires_grad=t.requires_grad)
    else:
        c = Tensor._make(data, be, t.requires_grad and t._ctx is None, None)
    if t.grad is not None:
        c.grad = Tensor._make(be.xp.asarray(t.grad.data, copy=True), be, False, None)
    memo[id(t)] = c
    return c


class StateDictError(ValueError, RuntimeError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys
    (a ValueError, and a RuntimeError as in PyTorch)."""


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _resolve_target(target):
    """'numpy' | Backend -> ('backend', Backend); mg.float64 | 'float64' -> ('dtype', name)."""
    if isinstance(target, DType):
        return "dtype", target.name
    if isinstance(target, str) and target in _DTYPES:
        return "dtype", target
    return "backend", _get_backend(target)


class Module:
    """Base class of every layer and model: subclass it, create parameters and
    sub-modules in ``__init__`` (after ``super().__init__()``), write ``forward``.

    >>> import minigrad as mg
    >>> from minigrad import nn
    >>> class MLP(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = nn.Linear(4, 8)
    ...         self.out = nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x).relu())
    >>> [name for name, _ in MLP().named_parameters()]
    ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
    """

    training: bool

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()

    # ------------------------------------------------------------------ attributes
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() was called "
                                 f"(call super().__init__() first in {type(self).__name__})")
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            self._register(params, name, value)
        elif isinstance(value, Module):
            self._register(modules, name, value)
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(nn.Parameter or None expected)")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                "(Tensor or None expected)")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"{name!r} (nn.Module or None expected)")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _register(self, registry, name, value):
        """registry[name] = value, with the name gone from every other registry and
        attribute. A name the registry already holds keeps its place, as in a dict
        assignment: seq[0] = layer must not move layer 0 to the end of the forward pass."""
        if name not in registry:
            self._forget(name)
        registry[name] = value

    def _forget(self, name):
        d = self.__dict__
        d.pop(name, None)
        for reg in (d["_parameters"], d["_buffers"], d["_modules"]):
            reg.pop(name, None)
        d["_non_persistent"].discard(name)

    def __getattr__(self, name):
        # only reached when normal lookup fails: look in the three registries
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if name in d[reg]:
                del d[reg][name]
                d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be an nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._register(self._parameters, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """State that is saved in ``state_dict`` (unless ``persistent=False``) and moved
        by ``to()``, but not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, "
                            f"got {type(tensor).__name__}")
        self._register(self._buffers, name, tensor)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be an nn.Module or None, "
                            f"got {type(module).__name__}")
        if not isinstance(name, str) or "." in name or name == "":
            raise ValueError(f"add_module: invalid module name {name!r}")
        self._register(self._modules, name, module)

    register_module = add_module

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ tree walks
    def named_modules(self, memo=None, prefix=""):
        """(dotted name, module) for this module and every descendant, each once."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse):
        seen = set()
        walk = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in walk:
            for name, t in m.__dict__[registry].items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs; a parameter shared by two modules appears once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call ``fn(m)`` on every descendant, then on self (children first, as PyTorch)."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode=True):
        """Training mode (Dropout drops, BatchNorm uses batch statistics) for the whole tree."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool, got {mode!r}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter: frozen parameters get no
        ``.grad`` and optimizers skip them."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
            if not requires_grad:
                p.grad = None
        return self

    def zero_grad(self, set_to_none=True):
        """Clear the gradients (set to None, or to zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._make(p._backend.zeros(p.shape, p.data.dtype), p._backend,
                                      False, None)

    # ------------------------------------------------------------------ moving
    def to(self, target):
        """Move every parameter and buffer to a backend (``"numpy"``, ``"cupy"``,
        ``"strict"``) or cast floating ones to a dtype (``mg.float64``), in place.
        The Parameter objects stay the same, so optimizers keep working."""
        kind, value = _resolve_target(target)
        with no_grad():
            for t in self._all_tensors():
                if kind == "backend":
                    _move(t, value)
                elif t.dtype.is_floating_point:
                    _cast(t, value)
        return self

    def double(self):
        return self.to("float64")

    def float(self):
        return self.to("float32")

    def _all_tensors(self):
        seen = set()
        for m in self.modules():
            for reg in ("_parameters", "_buffers"):
                for t in m.__dict__[reg].values():
                    if t is not None and id(t) not in seen:
                        seen.add(id(t))
                        yield t

    # ------------------------------------------------------------------ state
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered dict ``dotted name -> Tensor`` of every parameter and persistent
        buffer. The tensors share the live arrays (detached unless ``keep_vars``)."""
        out = OrderedDict() if destination is None else destination
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            for name, p in m._parameters.items():
                if p is not None:
                    key = f"{mod_prefix}.{name}" if mod_prefix else name
                    out[key] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    key = f"{mod_prefix}.{name}" if mod_prefix else name
                    out[key] = b if keep_vars else b.detach()
        return out

    def _state_targets(self):
        targets = OrderedDict()
        for mod_prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    targets[f"{mod_prefix}.{name}" if mod_prefix else name] = p
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    targets[f"{mod_prefix}.{name}" if mod_prefix else name] = b
        return targets

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` into this module's parameters and buffers
        (cast to each one's dtype and moved to its backend; values may be Tensors of
        any backend or NumPy arrays). Raises ``StateDictError`` listing every missing
        key, unexpected key (both only when ``strict``) and shape mismatch, before
        changing anything. Values may be any host array with ``__array__`` too (a
        torch.Tensor, without minigrad importing torch). Returns ``(missing_keys,
        unexpected_keys)``."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems = []
        if strict and unexpected:
            problems.append("Unexpected key(s) in state_dict: "
                            + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            problems.append("Missing key(s) in state_dict: "
                            + ", ".join(f'"{k}"' for k in missing) + ".")
        for key, t in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            shape = _shape_of(value)
            if shape is None:
                problems.append(f"value for {key} is a {type(value).__name__}, "
                                "not a Tensor or array.")
            elif shape != t.shape:
                problems.append(f"size mismatch for {key}: copying a param with shape "
                                f"{shape} from checkpoint, the shape in current model is "
                                f"{t.shape}.")
        arrays = {}
        if not problems:      # convert everything first: nothing changes if one fails
            for key, t in targets.items():
                if key in state_dict:
                    try:
                        arrays[key] = _array_for(state_dict[key], t)
                    except (TypeError, ValueError) as e:
                        problems.append(f"value for {key} cannot become a {t.dtype.name} "
                                        f"array ({e}).")
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 + "\n\t".join(problems))
        with no_grad():
            for key, array in arrays.items():
                targets[key].data = array
        return IncompatibleKeys(missing, unexpected)

    def __deepcopy__(self, memo):
        """``copy.deepcopy(model)``: new arrays for every parameter and buffer (shared
        ones stay shared in the copy), same backends."""
        for b in _all_backends():
            memo.setdefault(id(b), b)
        new = object.__new__(type(self))
        memo[id(self)] = new
        d = new.__dict__
        for k, v in self.__dict__.items():
            if k in ("_parameters", "_buffers"):
                d[k] = OrderedDict((n, _deepcopy_tensor(t, memo)) for n, t in v.items())
            else:
                d[k] = copy.deepcopy(v, memo)
        return new

    # ------------------------------------------------------------------ repr
    def extra_repr(self):
        """One line of settings shown inside the module's repr (override in layers)."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        main = type(self).__name__ + "("
        if not lines:
            return main + ")"
        if len(lines) == 1 and not self._modules:
            return main + lines[0] + ")"
        return main + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))


def _shape_of(value):
    if isinstance(value, Tensor):
        return value.shape
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return tuple(value.shape)
    return None


def _array_for(value, like: Tensor):
    """A fresh array with ``value``'s numbers and ``like``'s backend and dtype."""
    be = like._backend
    arr = be.from_any(value.data if isinstance(value, Tensor) else value)
    return be.xp.astype(arr, like.data.dtype, copy=True)


def _move(t: Tensor, be):
    if t._backend is be:
        return
    src = t._backend
    t.data = be.from_numpy(src.to_numpy(t.data))
    if t.grad is not None:
        t.grad = Tensor._make(be.from_numpy(src.to_numpy(t.grad.data)), be, False, None)
    t._backend = be


def _cast(t: Tensor, dtype_name):
    be = t._backend
    dt = be.dtype(dtype_name)
    if t.data.dtype == dt:
        return
    t.data = be.xp.astype(t.data, dt)
    if t.grad is not None:
        t.grad = Tensor._make(be.xp.astype(t.grad.data, dt), be, False, None)


# ---------------------------------------------------------------------- containers
class _ModuleSequence(Module):
    """What Sequential and ModuleList share: children named "0", "1", ... in order."""

    def _index(self, idx):
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a {type(self).__name__} of "
                             f"{n} modules")
        return idx % n

    def __setitem__(self, idx, module):
        setattr(self, list(self._modules)[self._index(idx)], module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSequence):
    """Modules applied in order: ``Sequential(nn.Linear(784, 400), nn.ReLU(), ...)``
    or ``Sequential(OrderedDict(name=module, ...))``. Indexable (an int gives the
    module, a slice a new Sequential), iterable and sized."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (dict, OrderedDict)):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, "
                                    "not an nn.Module")
                self.add_module(str(i), m)

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[self._index(idx)][1]

    def __delitem__(self, idx):
        keys = list(self._modules)
        for k in (keys[idx] if isinstance(idx, slice) else [keys[self._index(idx)]]):
            del self._modules[k]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters are registered (a plain Python list hides them)."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __getitem__(self, idx):
        items = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(items[idx])
        return items[self._index(idx)]

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self


class ModuleDict(Module):
    """A dict of modules whose parameters are registered."""

    def __init__(self, modules=None):
        super().__init__()
        for k, m in (modules or {}).items():
            self.add_module(k, m)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

