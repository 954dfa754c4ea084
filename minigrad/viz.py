"""Draw the graph behind tensors: ``mg.viz.to_dot(loss)`` is Graphviz DOT text,
``mg.viz.draw(loss, path="graph.svg")`` renders it with Graphviz's ``dot``.

A node per Function (a box: the op's name) and per leaf (an ellipse: its name,
shape and dtype, and whether it requires grad); the edges run as the data flows,
each labelled with the shape of the tensor it carries, into the tensors drawn
(double ellipses). ``backward=True`` draws instead the graph that
``mg.grad(..., create_graph=True)`` builds for the gradients of a scalar with
respect to its leaves: the backward pass as ops of its own, the graph a second
derivative runs through.

>>> import minigrad as mg
>>> x = mg.tensor(2.0, requires_grad=True)
>>> dot = mg.viz.to_dot(x * x + x, names={"x": x})
>>> dot.splitlines()[0], dot.count("shape=box")      # one box per op: Mul and Add
('digraph minigrad {', 2)
"""
from __future__ import annotations

import os
import shutil
import subprocess

from .tensor import grad

__all__ = ["to_dot", "draw"]


def _escape(text):
    """Text for a DOT label: quotes escaped, line breaks as DOT's \\n."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _describe(t):
    shape = "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
    return f"{shape} {t.dtype.name}"


def to_dot(*tensors, names=None, backward=False) -> str:
    """The graph behind ``tensors`` in Graphviz DOT. ``names`` maps labels to tensors
    (``{"x": x, "w": w}``) to name leaves and outputs. With ``backward=True`` each
    (scalar) tensor is replaced by its gradients with respect to every leaf that
    requires grad, computed with ``create_graph=True``: their graph is the backward
    pass."""
    names = {id(t): n for n, t in (names or {}).items()}
    roots = list(tensors)
    if backward:
        roots = []
        for t in tensors:
            leaves = [x for x in _leaves(t) if x.requires_grad]
            gs = grad(t, leaves, create_graph=True, retain_graph=True, allow_unused=True)
            for x, g in zip(leaves, gs):
                if g is not None:
                    names.setdefault(id(g), f"d{names.get(id(t), 'out')}/d"
                                            f"{names.get(id(x), 'leaf')}")
                    roots.append(g)
    ids, lines = {}, []

    def node_id(key, label, attrs):
        if key not in ids:
            ids[key] = f"n{len(ids)}"
            lines.append(f'  {ids[key]} [label="{_escape(label)}" {attrs}];')
        return ids[key]

    def fn_node(fn):
        return node_id(("fn", id(fn)), type(fn).__name__.lstrip("_"),
                       "shape=box style=filled fillcolor=lightgrey")

    def source(t):
        """The node a tensor comes out of: its Function, or itself as a leaf."""
        if t._ctx is not None:
            return fn_node(t._ctx)
        default = "leaf" if t.requires_grad else \
            f"{t.item():.4g}" if t.size == 1 else "constant"
        label = f"{names.get(id(t), default)}\n{_describe(t)}"
        style = "shape=ellipse" + (" style=bold" if t.requires_grad else " color=grey")
        return node_id(("leaf", id(t)), label, style)

    edges, seen = [], set()
    stack = [t._ctx for t in roots if t._ctx is not None]
    while stack:                      # every Function once, no recursion
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        if fn.inputs is None:
            raise RuntimeError("viz: the graph was freed by backward(); draw it before, or "
                               "pass retain_graph=True to backward()")
        me = fn_node(fn)
        for x in fn.inputs:
            edges.append(f'  {source(x)} -> {me} [label="{_escape(_describe(x))}"];')
            if x._ctx is not None:
                stack.append(x._ctx)
    for i, t in enumerate(roots):
        out = node_id(("out", i), f"{names.get(id(t), 'output')}\n{_describe(t)}",
                      "shape=doubleoctagon" if backward else "shape=doublecircle")
        edges.append(f"  {source(t)} -> {out};")
    return "\n".join(["digraph minigrad {", "  rankdir=LR;",
                      '  node [fontname="Helvetica" fontsize=11];',
                      '  edge [fontname="Helvetica" fontsize=9];', *lines, *edges, "}"])


def _leaves(t):
    out, seen, stack = [], set(), [t]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if x._ctx is None:
            out.append(x)
        elif x._ctx.inputs is not None:
            stack.extend(x._ctx.inputs)
    return out


def draw(*tensors, path="graph.svg", names=None, backward=False) -> str:
    """Render ``to_dot(*tensors, ...)`` to ``path`` (.svg, .png or .pdf) with Graphviz's
    ``dot``; returns the path. Without Graphviz, says how to get it."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("viz.draw needs Graphviz's `dot` program: apt-get install graphviz "
                           "(macOS: brew install graphviz); or paste mg.viz.to_dot(...) into "
                           "any Graphviz viewer")
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "svg"
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"viz.draw: path must end in .svg, .png or .pdf, got {path!r}")
    text = to_dot(*tensors, names=names, backward=backward)
    result = subprocess.run([dot, f"-T{fmt}", "-o", os.fspath(path)], input=text.encode(),
                            capture_output=True, timeout=60)
    if result.returncode:
        raise RuntimeError(f"viz.draw: dot failed: {result.stderr.decode().strip()}")
    return os.fspath(path)
