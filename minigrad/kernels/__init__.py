"""Kernels: faster ways to compute exactly what a reference function computes.

The reading path (``tensor.py``, ``ops.py``, ``conv.py``, ``functional.py``,
``optim.py``) is the formula, and it runs on every backend. A kernel is
registered beside it as an override of ONE reference function, for the
backends and shapes where it pays:

    @override(conv, "im2col_nhwc", when=lambda be, xpad, *rest: "strided_views" in be.capabilities)
    def im2col_window_view(be, xpad, g, ho, wo): ...

With kernels on, ``conv.im2col_nhwc`` is replaced by a small dispatcher that calls
the kernel where ``when(...)`` holds and the reference everywhere else. With
kernels off nothing is replaced at all: the code that runs is the reading path,
line for line. Every kernel is tested equal to its reference
(``tests/test_kernels.py``) on each backend it runs on, in float32 and float64.

The switch: ``MINIGRAD_KERNELS=off`` in the environment (read at import),
``minigrad.kernels.set_enabled(False)``, or ``with minigrad.kernels.disabled():``.
``python -m minigrad.kernels`` lists the kernels with what each computes.

The reading path never imports this package; ``minigrad/__init__.py`` does, once,
and that import is what registers the kernels.
"""
from __future__ import annotations

import functools
import os

from ..tensor import is_grad_enabled

__all__ = ["Override", "override", "registered", "is_enabled", "set_enabled", "disabled",
           "writes_in_place", "not_recording"]

_OVERRIDES: list["Override"] = []
_enabled = [os.environ.get("MINIGRAD_KERNELS", "on").strip().lower() not in ("off", "0", "no",
                                                                               "false")]


class Override:
    """A kernel that replaces ``owner.name`` (a module function or a method) where
    ``when(*args, **kwargs)`` is true for a call's arguments."""

    def __init__(self, owner, name, kernel, when):
        self.owner, self.name, self.kernel, self.when = owner, name, kernel, when
        self.reference = getattr(owner, name)
        self._defined_on_owner = name in vars(owner)

        @functools.wraps(self.reference)
        def dispatch(*args, **kwargs):
            if self.when(*args, **kwargs):
                return self.kernel(*args, **kwargs)
            return self.reference(*args, **kwargs)

        self.dispatch = dispatch

    @property
    def qualname(self):
        """``"conv.im2col_nhwc"``, ``"Adam._update"``: what the kernel replaces."""
        owner = getattr(self.owner, "__name__", str(self.owner)).rsplit(".", 1)[-1]
        return f"{owner}.{self.name}"

    def install(self):
        setattr(self.owner, self.name, self.dispatch)

    def uninstall(self):
        if self._defined_on_owner:
            setattr(self.owner, self.name, self.reference)
        else:  # it was inherited: let the owner inherit it again
            delattr(self.owner, self.name)

    def __repr__(self):
        return f"<kernel {self.kernel.__name__} for {self.qualname}>"


def override(owner, name, when):
    """Register the decorated function as a kernel for ``owner.name`` (see the module
    docstring). It takes the same arguments as the reference and returns the same
    result wherever ``when`` holds."""
    def register(kernel):
        ov = Override(owner, name, kernel, when)
        _OVERRIDES.append(ov)
        if _enabled[0]:
            ov.install()
        return kernel
    return register


def writes_in_place(be, a) -> bool:
    """Whether a kernel may write ``be``'s functions' results into arrays with ``out=``
    (the ``"ufunc_out"`` capability) for an array like ``a``: not for a 0-d one, whose
    results NumPy gives as scalars, which take no ``out=``."""
    return "ufunc_out" in be.capabilities and a.ndim > 0


def not_recording(node, gy) -> bool:
    """``when`` of a backward kernel on arrays: no graph of the backward is recorded
    (``create_graph=True`` needs the reference, which is written in Tensor ops)."""
    return not is_grad_enabled()


def registered() -> list[Override]:
    """Every registered kernel, in registration order."""
    return list(_OVERRIDES)


def is_enabled() -> bool:
    return _enabled[0]


class set_enabled:
    """Turn the kernels on or off now; used in a ``with`` block, restore the previous
    setting at its end."""

    def __init__(self, mode: bool):
        self.prev = _enabled[0]
        _switch(bool(mode))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _switch(self.prev)


def disabled():
    """``with minigrad.kernels.disabled():`` runs the block on the reading path alone."""
    return set_enabled(False)


def _switch(mode):
    if mode == _enabled[0]:
        return
    _enabled[0] = mode
    for ov in _OVERRIDES:
        ov.install() if mode else ov.uninstall()


# Registration: importing these modules adds their overrides.
from . import activations, conv, linear, losses, optim, workspace  # noqa: E402,F401

if _enabled[0]:     # the allocator's side of buffer reuse: see workspace.py
    workspace.keep_freed_memory()
