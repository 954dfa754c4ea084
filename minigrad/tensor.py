"""Tensor, Function and the reverse-mode engine.

A ``Tensor`` wraps one array of the current backend. Every differentiable op is
a ``Function`` subclass (see ``ops.py``) with ``forward`` on arrays and
``backward`` on Tensors. Calling an op while gradients are enabled records a
node: the Function object keeps its input Tensors and whatever arrays its
backward needs, and the output Tensor points back to it through ``_ctx``.

    x ──┐
        ├─ Mul ── y ── Sum ── loss        loss._ctx is the Sum node,
    w ──┘                                 Sum.inputs == (y,), y._ctx is Mul, ...

``backward`` walks that graph from the output, consumers before producers.
The order comes from ``generation`` (1 + the largest generation among a node's
inputs, leaves being 0): a node's generation exceeds that of every node it
depends on, so popping the largest generation first from a heap means every
gradient flowing INTO a node has arrived before the node passes it on. No
recursion is involved, so a 10,000-op chain is as easy as a 10-op one.

Because every backward is written with Tensor ops, running backward with
gradient recording ON (``create_graph=True``) builds a graph of the backward
pass itself: that is all double backward needs.

Each Function has exactly one output; multi-output ops (``split``, ``chunk``)
are several single-output ops. That keeps nodes simple: the gradient of a node
is the gradient of its one output.
"""
from __future__ import annotations

import functools
import heapq
import itertools

from .backend import format_array as _format_array, get_backend as _get_backend, \
    host_array as _host_array
from .dtypes import DTYPES, DType, dtype_of

__all__ = ["Tensor", "Function", "DType", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "grad", "tensor", "tensor_method"]


# ----------------------------------------------------------------------------- grad mode
_grad_enabled = [True]


def is_grad_enabled() -> bool:
    return _grad_enabled[0]


class set_grad_enabled:
    """Turn graph recording on or off: at once when called (``mg.set_grad_enabled(False)``),
    for a block as a context manager, or for a function as a decorator (PyTorch's)."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.prev = _grad_enabled[0]
        _grad_enabled[0] = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _grad_enabled[0] = self.prev

    def __call__(self, fn):
        _grad_enabled[0] = self.prev      # decorating changes nothing until fn runs
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad:
    """``with mg.no_grad():`` (or ``@mg.no_grad()``) records nothing: for evaluation and
    optimizer updates."""

    mode = False

    def __enter__(self):
        self.prev = _grad_enabled[0]
        _grad_enabled[0] = self.mode

    def __exit__(self, *exc):
        _grad_enabled[0] = self.prev

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _grad_enabled[0]
            _grad_enabled[0] = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _grad_enabled[0] = prev
        return wrapper


class enable_grad(no_grad):
    """``with mg.enable_grad():`` records the graph again inside a no_grad block."""

    mode = True


# ----------------------------------------------------------------------------- Function
_GRAPH_FREED = ("Trying to backward through the graph a second time (or to use saved "
                "values after they were freed). Pass retain_graph=True to the first "
                "backward() or mg.grad() call if you need to backward twice.")


class Function:
    """Base class of every differentiable op.

    Subclasses write ``forward(self, *arrays, **options) -> array`` (saving on
    ``self`` whatever backward needs) and ``backward(self, gy) -> grads``, where
    ``gy`` and the returned gradients are Tensors, one per input (or None for
    an input that gets no gradient). Inside backward, ``self.inputs`` are the
    input Tensors and ``self.output()`` rebuilds the output Tensor.

    In-place changes: every Tensor counts its in-place updates (``_version``), the
    node records the count of each input, and backward refuses to run on an input
    that changed since (an optimizer step between forward and backward, say), as
    PyTorch does. A Function whose backward reads only shapes or masks of its inputs
    sets ``uses_inputs = False`` and is not checked.
    """

    generation = 0
    inputs = None
    uses_inputs = True

    @classmethod
    def apply(cls, *inputs, **options):
        fn = cls()
        be = inputs[0]._backend
        for t in inputs[1:]:
            if t._backend is not be:
                raise ValueError(
                    f"{cls.__name__}: got tensors on two backends, {be.name!r} and "
                    f"{t._backend.name!r}; move one with .to({be.name!r}) first")
        fn._backend = be
        fn.xp = be.xp
        try:
            data = fn.forward(*[t.data for t in inputs], **options)
        except (ValueError, TypeError) as e:
            if str(e).startswith(cls.__name__.lower()) or type(e) is not ValueError:
                raise
            shapes = " and ".join(str(t.shape) for t in inputs)
            raise ValueError(f"{cls.__name__.lower()}: cannot apply to shapes {shapes}: {e}") \
                from None
        if _grad_enabled[0]:
            # one loop instead of any()/tuple()/max() generators: this runs for every op
            needs, gen = [], 0
            for t in inputs:
                needs.append(t.requires_grad)
                ctx = t._ctx
                if ctx is not None and ctx.generation > gen:
                    gen = ctx.generation
            if True in needs:
                fn.inputs = inputs
                fn.needs_input_grad = tuple(needs)
                fn.generation = gen + 1
                if cls.uses_inputs:
                    fn.versions = [t._version for t in inputs]
                return Tensor._make(data, be, True, fn)
        return Tensor._make(data, be, False, None)

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def save_output(self, y):
        """Call from forward to let backward use ``self.output()``. Only the array is
        kept, so the node does not hold its output Tensor alive (no cycle)."""
        self._out = y
        return y

    def output(self):
        return Tensor._make(self._out, self._backend, True, self)

    def check_versions(self):
        """Raise if an input this node's backward reads was changed in place since."""
        if not self.uses_inputs:
            return
        for t, v in zip(self.inputs, self.versions):
            if t._version != v:
                kind = "a Parameter" if type(t).__name__ == "Parameter" else "a tensor"
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: {kind} of shape {t.shape}, input of "
                    f"{type(self).__name__}, is at version {t._version}; expected version "
                    f"{v} instead. Something changed it between the forward pass and "
                    f"backward() (an optimizer step? call backward() before opt.step())")

    def release(self):
        """Drop inputs and saved arrays once backward has used them."""
        gen = self.generation
        self.__dict__.clear()
        self.generation = gen
        self.inputs = None

    def __repr__(self):
        return f"<{type(self).__name__} node, generation {self.generation}>"


# ----------------------------------------------------------------------------- Tensor
def tensor(data, requires_grad=False, dtype=None, backend=None):
    """A new leaf Tensor holding a copy of ``data`` (PyTorch's ``torch.tensor``).

    Python floats become float32 (PyTorch's default), ints int64, bools bool;
    NumPy arrays keep their dtype unless ``dtype`` is given.
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, backend=backend)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    This class holds the data, the gradient, the link to the graph (``_ctx``),
    conversions and ``backward``. Its arithmetic (``x + y``, ``x @ w``, ``x[i]``)
    and math methods (``x.sum()``, ``x.reshape()``) are the functions of ``ops.py``
    marked ``@tensor_method``, each defined next to the op it applies.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_backend", "_version", "__weakref__")
    __array_priority__ = 1000  # numpy scalars on the left defer to our operators

    def __init__(self, data, requires_grad=False, dtype=None, backend=None):
        be = _get_backend(backend)
        if isinstance(data, Tensor):
            data = data.data
        if be.is_array(data):
            arr = be.xp.asarray(data, copy=True) if dtype is None else \
                be.xp.astype(data, be.dtype(dtype), copy=True)
        else:
            arr = _host_to_backend(data, be, dtype)
        self.data = arr
        self.grad = None
        self._ctx = None
        self._backend = be
        self._version = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(data, be, requires_grad, ctx):
        t = object.__new__(Tensor)
        t.data = data
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = ctx
        t._backend = be
        t._version = 0
        return t

    # -- attributes
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> DType:
        return dtype_of(self.data)

    @property
    def size(self) -> int:
        n = 1
        for s in self.data.shape:
            n *= s
        return n

    def numel(self) -> int:
        return self.size

    def dim(self) -> int:
        return self.ndim

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def device(self) -> str:
        return self._backend.name

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # -- conversion
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.dtype.is_floating_point:
            raise TypeError(f"only floating-point tensors can require gradients, "
                            f"got dtype {self.dtype.name}; convert with .float() first")
        if self._ctx is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use .detach()")
        self.requires_grad = requires_grad
        return self

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._make(self.data, self._backend, False, None)

    def numpy(self):
        """A NumPy copy on the host (explicit transfer from CuPy or strict)."""
        return self._backend.to_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is "
                               "ambiguous; use .any() or .all()")
        return bool(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.size != 1:
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def to(self, target, dtype=None) -> Tensor:
        """``t.to("cupy")`` moves to a backend; ``t.to(mg.float64)`` casts; both
        keep the graph (the gradient flows back across the move)."""
        if isinstance(target, DType) or target in DTYPES:
            return self.astype(target)
        out = ToBackend.apply(self, backend=target) if _get_backend(target) is not \
            self._backend else self
        return out.astype(dtype) if dtype is not None else out

    def astype(self, dtype) -> Tensor:
        name = dtype.name if isinstance(dtype, DType) else str(dtype).rsplit(".", 1)[-1]
        if name == self.dtype.name:
            return self
        return Cast.apply(self, dtype=name)

    def float(self):
        return self.astype("float32")

    def double(self):
        return self.astype("float64")

    def long(self):
        return self.astype("int64")

    # -- in-place updates: they write into ``data`` and count a version (see Function)
    def _inplace_value(self, name, other):
        """``other`` as an array of this tensor's dtype and backend, after checking that
        this tensor may be changed in place."""
        if self.requires_grad and _grad_enabled[0]:
            where = "a leaf tensor that requires grad" if self._ctx is None else \
                "a tensor that is part of a graph"
            raise RuntimeError(f"{name}: {where} cannot be changed in place while gradients "
                               "are recorded; do it under mg.no_grad(), or use the "
                               "out-of-place op (x = x + y)")
        be = self._backend
        if isinstance(other, Tensor):
            if other._backend is not be:
                raise ValueError(f"{name}: the other tensor is on backend {other.backend!r}, "
                                 f"this one on {be.name!r}")
            other = other.data
        elif not be.is_array(other):
            other = be.asarray(other)
        kind = dtype_of(other)
        if kind.is_floating_point and not self.dtype.is_floating_point:
            raise TypeError(f"{name}: a {kind.name} value cannot be written into a "
                            f"{self.dtype.name} tensor in place")
        return other if other.dtype == self.data.dtype else \
            be.xp.astype(other, self.data.dtype)

    def _wrote(self):
        self._version += 1
        return self

    def add_(self, other, alpha=1):
        """self += alpha * other, in place."""
        v = self._inplace_value("add_", other)
        self.data += v if alpha == 1 else v * alpha
        return self._wrote()

    def sub_(self, other, alpha=1):
        v = self._inplace_value("sub_", other)
        self.data -= v if alpha == 1 else v * alpha
        return self._wrote()

    def mul_(self, other):
        self.data *= self._inplace_value("mul_", other)
        return self._wrote()

    def div_(self, other):
        self.data /= self._inplace_value("div_", other)
        return self._wrote()

    def copy_(self, src):
        """Write ``src`` (broadcast to this shape, cast to this dtype) into this tensor."""
        v = self._inplace_value("copy_", src)
        self.data[...] = self._backend.xp.broadcast_to(v, self.data.shape)
        return self._wrote()

    def fill_(self, value):
        self._inplace_value("fill_", 0)
        self.data[...] = self._backend.full(self.data.shape, value, self.data.dtype)
        return self._wrote()

    def zero_(self):
        return self.fill_(0)

    def clamp_(self, min=None, max=None):
        self._inplace_value("clamp_", 0)
        self.data[...] = self._backend.xp.clip(self.data, min, max)
        return self._wrote()

    # -- autograd
    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires
        grad. ``gradient`` is the upstream gradient (required unless self is scalar)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was made under no_grad)")
        if gradient is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got "
                                   f"shape {self.shape}; pass gradient= of the same shape, "
                                   "or reduce with .sum() first")
            gradient = Tensor._make(self._backend.ones(self.shape, self.data.dtype),
                                    self._backend, False, None)
        _run_backward([self], [_as_grad(gradient, self)], retain_graph or create_graph,
                      create_graph, inputs=None)

    def __repr__(self):
        body = _format_array(self.numpy(), prefix="tensor(")
        extras = []
        if self.dtype.name not in ("float32", "int64", "bool"):
            extras.append(f"dtype={self.dtype!r}")
        if self._backend.name != "numpy":
            extras.append(f"backend={self._backend.name!r}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{type(self._ctx).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __hash__ = object.__hash__


def _host_to_backend(data, be, dtype):
    """Python scalars, lists and NumPy arrays -> a fresh array on ``be``."""
    return be.from_numpy(_host_array(data, dtype), dtype)


def _as_grad(g, like: Tensor) -> Tensor:
    if not isinstance(g, Tensor):
        g = Tensor(g, dtype=like.dtype, backend=like._backend)
    if g.shape != like.shape:
        raise RuntimeError(f"gradient of shape {g.shape} given for an output of shape {like.shape}")
    return g


def tensor_method(*names, reflected=None, prop=False):
    """Decorator for the functions of ``ops.py``: also make ``fn`` the Tensor method
    ``names`` (default: its own name), so ``x.exp()`` calls ``exp(x)``.

    ``reflected="__radd__"`` adds the operator with swapped operands (``2 + x``);
    ``prop=True`` makes a property (``x.T``). Bare ``@tensor_method`` uses the name."""
    if len(names) == 1 and callable(names[0]):
        return tensor_method()(names[0])

    def register(fn):
        for name in names or (fn.__name__,):
            setattr(Tensor, name, property(fn) if prop else fn)
        if reflected:
            setattr(Tensor, reflected, lambda a, b: fn(b, a))
        return fn
    return register


class Cast(Function):
    """y = x as another dtype;  dx = gy cast back (``Tensor.astype``, ``Tensor.to``)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    def forward(self, x, dtype="float32"):
        self.old = dtype_of(x).name
        return self.xp.astype(x, self._backend.dtype(dtype))

    def backward(self, gy):
        return gy.astype(self.old)


class ToBackend(Function):
    """Move to another backend through the host;  dx = gy moved back (``Tensor.to``)."""

    uses_inputs = False   # backward reads shapes, masks or the output only

    @classmethod
    def apply(cls, x, backend=None):
        out = super().apply(x, backend=backend)
        target = _get_backend(backend)
        out._backend = target          # the output lives on the target backend
        if out._ctx is not None:
            out._ctx._backend = target
        return out

    def forward(self, x, backend=None):
        self.source = self._backend
        return _get_backend(backend).from_numpy(self.source.to_numpy(x))

    def backward(self, gy):
        return gy.to(self.source.name)


# ----------------------------------------------------------------------------- the engine
def _run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs):
    """Propagate ``grad_outputs`` from ``outputs`` back through the graph.

    With ``inputs=None`` gradients accumulate into every reached leaf's ``.grad``
    (``Tensor.backward``). Otherwise the gradients of ``inputs`` are returned, no
    ``.grad`` is touched (``mg.grad``), and backward runs only on the nodes from
    which some input can be reached: branches that lead to other leaves only (a
    discriminator's weights, when the gradient of the generator is asked) are skipped.
    """
    node_grads = {}      # Function -> gradient of its output, summed over consumers
    leaf_grads = {}      # id(leaf tensor) -> [tensor, gradient]
    heap, tie = [], itertools.count()
    if inputs is None:
        wanted = wanted_nodes = leads = None
    else:
        wanted = {id(t) for t in inputs if t._ctx is None}
        wanted_nodes = {t._ctx: None for t in inputs if t._ctx is not None}
        useful = _nodes_leading_to(outputs, wanted, wanted_nodes)

        def leads(x):
            return id(x) in wanted if x._ctx is None else \
                x._ctx in useful or x._ctx in wanted_nodes

    def accumulate(t, g):
        if t._ctx is None:
            if wanted is None or id(t) in wanted:
                if id(t) in leaf_grads:
                    leaf_grads[id(t)][1] = leaf_grads[id(t)][1] + g
                else:
                    leaf_grads[id(t)] = [t, g]
            return
        node = t._ctx
        if node in node_grads:
            node_grads[node] = node_grads[node] + g
        else:
            node_grads[node] = g
            heapq.heappush(heap, (-node.generation, next(tie), node))

    with set_grad_enabled(create_graph):
        for t, g in zip(outputs, grad_outputs):
            if t.requires_grad and (leads is None or leads(t)):
                accumulate(t, g)
        while heap:
            _, _, node = heapq.heappop(heap)
            gy = node_grads.pop(node)
            if node.inputs is None:
                raise RuntimeError(_GRAPH_FREED)
            if leads is not None:
                if node in wanted_nodes:
                    wanted_nodes[node] = gy
                if node not in useful:
                    continue
                needs = node.needs_input_grad   # ask only for the gradients that lead on
                node.needs_input_grad = tuple(n and leads(x) for n, x in zip(needs, node.inputs))
            node.check_versions()
            gxs = node.backward(gy)
            if leads is not None:
                node.needs_input_grad = needs
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            for x, gx in zip(node.inputs, gxs):
                if gx is not None and x.requires_grad and (leads is None or leads(x)):
                    if gx.data.shape != x.data.shape:
                        raise RuntimeError(
                            f"{type(node).__name__}.backward returned a gradient of shape "
                            f"{tuple(gx.shape)} for an input of shape {tuple(x.shape)}")
                    accumulate(x, gx)
            if not retain_graph:
                node.release()

    if inputs is None:
        for t, g in leaf_grads.values():
            g = g if create_graph else g.detach()
            t.grad = g if t.grad is None else t.grad + g
        return None
    result = []
    for t in inputs:
        if t._ctx is None:
            g = leaf_grads.get(id(t), [None, None])[1]
        else:
            g = wanted_nodes.get(t._ctx)
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return result


def _nodes_leading_to(outputs, wanted_leaves, wanted_nodes):
    """The nodes above ``outputs`` from which a wanted leaf or node can be reached,
    found by one depth-first walk with an explicit stack (inputs before consumers)."""
    useful, done = set(), set()
    stack = [t._ctx for t in outputs if t._ctx is not None]
    while stack:
        node = stack[-1]
        if node in done:
            stack.pop()
            continue
        if node.inputs is None:
            raise RuntimeError(_GRAPH_FREED)
        pending = [x._ctx for x in node.inputs if x._ctx is not None and x._ctx not in done]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        done.add(node)
        for x in node.inputs:
            if (id(x) in wanted_leaves) if x._ctx is None else \
                    (x._ctx in useful or x._ctx in wanted_nodes):
                useful.add(node)
                break
    return useful


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs`` (PyTorch's
    ``torch.autograd.grad``), returned as a tuple; ``.grad`` is left alone.

    With ``create_graph=True`` the returned gradients are themselves part of a
    graph and can be differentiated again (gradient penalties, Hessian-vector
    products).
    """
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    single_in = isinstance(inputs, Tensor)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    gs = []
    for o, g in zip(outputs, grad_outputs):
        if not o.requires_grad:
            raise RuntimeError("mg.grad: an output does not require grad")
        if g is None:
            if o.size != 1:
                raise RuntimeError(f"mg.grad: grad_outputs is needed for a non-scalar output "
                                   f"of shape {o.shape}")
            g = Tensor._make(o._backend.ones(o.shape, o.data.dtype), o._backend, False, None)
        gs.append(_as_grad(g, o))
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("mg.grad: an input does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    result = _run_backward(outputs, gs, retain, create_graph, inputs)
    for t, g in zip(inputs, result):
        if g is None and not allow_unused:
            raise RuntimeError(f"mg.grad: an input of shape {t.shape} was not used in the "
                               "graph of the outputs; pass allow_unused=True to get None")
    return tuple(result)
