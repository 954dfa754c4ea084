"""Neural-network modules (PyTorch's ``torch.nn``): ``from minigrad import nn``.

``nn.Module`` and ``nn.Parameter`` (module.py), layers with PyTorch's default
initialisations (layers.py), and ``nn.init`` (init.py). Stateless versions of
the layers and the losses are in ``minigrad.functional``.
"""
from .. import functional  # noqa: F401  (nn.functional, as torch.nn.functional)
from . import init, utils  # noqa: F401
from .module import (Module, ModuleDict, ModuleList, Parameter, Sequential,  # noqa: F401
                     StateDictError)
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all

__all__ = ["functional", "init", "utils", "Module", "ModuleDict", "ModuleList", "Parameter", "Sequential",
           "StateDictError", *_layers_all]
