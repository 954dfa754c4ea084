"""minigrad: a small, readable reverse-mode autodiff engine on NumPy or CuPy.

>>> import minigrad as mg
>>> x = mg.tensor(2.0, requires_grad=True)
>>> y = x ** 3
>>> y.backward()
>>> x.grad.item()
12.0
"""
from .backend import (BackendError, available_backends, backend, get_backend,  # noqa: F401
                      set_backend)
from .dtypes import DTYPES as _DTYPES, DType  # noqa: F401
from .tensor import (Function, Tensor, enable_grad, grad, is_grad_enabled,  # noqa: F401
                     no_grad, set_grad_enabled, tensor)
from .ops import (abs, add, argmax, argmin, broadcast_to, cat, chunk, clamp, clip,  # noqa: F401
                  concat, concatenate, cos, div, elu, eq, erf, exp, expand, flatten, ge, gt, le,
                  leaky_relu, log, log_softmax, logsumexp, lt, matmul, max, maximum, mean,
                  min, minimum, mul, ne, neg, pad, permute, pow, relu, reshape, sigmoid, sin,
                  softmax, softplus, split, sqrt, squeeze, stack, std, sub, sum, sum_to,
                  swapaxes, tanh, transpose, unsqueeze, var, view, where, zeros_like, ones_like)
from .factories import (arange, eye, full, full_like, ones, rand, randint, randn,  # noqa: F401
                        zeros, from_numpy)
from .backend import manual_seed  # noqa: F401
from .gradcheck import gradcheck, gradgradcheck  # noqa: F401

float32 = _DTYPES["float32"]
float64 = _DTYPES["float64"]
int32 = _DTYPES["int32"]
int64 = _DTYPES["int64"]
uint8 = _DTYPES["uint8"]
bool = _DTYPES["bool"]

__version__ = "0.1.0"

from . import functional, nn, optim  # noqa: E402,F401  (they import the core above)
from .serialization import load, save  # noqa: E402,F401
from . import data  # noqa: E402,F401

# Last: registering the fast paths (minigrad/kernels/) replaces reference functions
# of the modules above where a kernel applies; MINIGRAD_KERNELS=off leaves them alone.
from . import kernels  # noqa: E402,F401
